//! Reading, from a request, the resources its API acts on (the manifest's
//! `[access]` field references), for the authoriser's facts.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::manifest::{Access, FieldRef, Manifest};

/// The resources one request names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub accounts: Vec<String>,
    pub user: Option<String>,
    pub amount: Option<i64>,
}

/// Extracts what `access` points at from the raw query and body. A body that
/// is not JSON yields nothing from the body: the plugin answers the format
/// error, and checks that need those facts fail closed.
pub fn extract(access: &Access, query: &str, body: &[u8]) -> Resources {
    let json: Option<Value> = if access_uses_body(access) {
        serde_json::from_slice(body).ok()
    } else {
        None
    };
    let values = |reference: &Option<String>| -> Vec<String> {
        let Some(field) = reference.as_deref().and_then(FieldRef::parse) else {
            return Vec::new();
        };
        match field {
            FieldRef::Query(name) => crate::form::parse(query.as_bytes())
                .all(name)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            FieldRef::Body(name) => json
                .as_ref()
                .and_then(|j| scalar(j.get(name)?))
                .into_iter()
                .collect(),
            FieldRef::BodyList { list, field } => json
                .as_ref()
                .and_then(|j| j.get(list)?.as_array())
                .map(|items| items.iter().filter_map(|i| scalar(i.get(field)?)).collect())
                .unwrap_or_default(),
        }
    };
    let amounts = values(&access.amount);
    Resources {
        accounts: values(&access.account),
        user: values(&access.user).into_iter().next(),
        // The total moved; absent when any part is missing or not a number.
        amount: (!amounts.is_empty())
            .then(|| {
                amounts
                    .iter()
                    .map(|a| a.parse::<i64>().ok())
                    .try_fold(0i64, |sum, a| sum.checked_add(a?))
            })
            .flatten(),
    }
}

/// A field the authoriser reads (`[access]`) whose value is not in the format
/// its `[[docs.request]]` type says. The gateway answers it with `A0004`
/// before it decides ownership, as the plugin would have: a malformed
/// `user_seq_no` is a format error in the testbed and live alike, not a
/// refusal for another user. The message is the SDK's for the same check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// As the SDK names it: `user_seq_no`, `req_list[1].tran_amt`.
    pub field: String,
    pub problem: Problem,
}

/// What is wrong with a [`Malformed`] field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Present but empty.
    Missing,
    /// A JSON body's value that is not a string (the API sends every value
    /// as a string).
    NotString,
    /// An account or user reference that is not exactly this many digits.
    Digits(usize),
    /// An amount that is not 1 to this many digits, or zero.
    Amount(usize),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        match self.problem {
            Problem::Missing => write!(f, "{field}: required field is missing"),
            Problem::NotString => write!(f, "{field}: must be a JSON string"),
            Problem::Digits(n) => write!(f, "{field}: must be {n} digits"),
            Problem::Amount(n) => write!(
                f,
                "{field}: must be an amount in won as a string of 1 to {n} digits, not zero"
            ),
        }
    }
}

/// The first `[access]` field of the request whose value breaks the format
/// its documented type (`N(n)`) sets: users and accounts are exactly `n`
/// digits, amounts 1 to `n` digits and not zero. Fields without a
/// documented `N(n)` type, absent fields and bodies that are not JSON are
/// left to the plugin (an absent field gives the authoriser nothing to
/// check; the plugin answers it).
pub fn malformed(manifest: &Manifest, query: &str, body: &[u8]) -> Option<Malformed> {
    let access = &manifest.access;
    let mut json: Option<Option<Value>> = None;
    for (reference, amount) in [
        (&access.user, false),
        (&access.account, false),
        (&access.amount, true),
    ] {
        let Some(field) = reference.as_deref().and_then(FieldRef::parse) else {
            continue;
        };
        let documented = match field {
            FieldRef::Query(name) | FieldRef::Body(name) => manifest.request_field(name),
            FieldRef::BodyList { list, field } => {
                manifest.request_field(&format!("{list}[].{field}"))
            }
        };
        let Some(n) = documented.and_then(|d| d.digits()) else {
            continue;
        };
        let check = |name: String, value: &Value| -> Option<Malformed> {
            let problem = match value {
                Value::Null => return None,
                Value::String(s) if s.is_empty() => Problem::Missing,
                Value::String(s) => {
                    let digits = s.bytes().all(|b| b.is_ascii_digit());
                    match amount {
                        false if digits && s.len() == n => return None,
                        false => Problem::Digits(n),
                        true if digits && s.len() <= n && s.bytes().any(|b| b != b'0') => {
                            return None;
                        }
                        true => Problem::Amount(n),
                    }
                }
                _ => Problem::NotString,
            };
            Some(Malformed {
                field: name,
                problem,
            })
        };
        let found = match field {
            FieldRef::Query(name) => crate::form::parse(query.as_bytes())
                .all(name)
                .into_iter()
                .find_map(|v| check(name.to_owned(), &Value::String(v.to_owned()))),
            FieldRef::Body(name) => json
                .get_or_insert_with(|| serde_json::from_slice(body).ok())
                .as_ref()
                .and_then(|j| check(name.to_owned(), j.get(name)?)),
            FieldRef::BodyList { list, field } => json
                .get_or_insert_with(|| serde_json::from_slice(body).ok())
                .as_ref()
                .and_then(|j| j.get(list)?.as_array())
                .and_then(|items| {
                    items.iter().enumerate().find_map(|(i, item)| {
                        check(format!("{list}[{i}].{field}"), item.get(field)?)
                    })
                }),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// A field a request gives more than once, where a reader could take either
/// value: the same name twice in the query string, in a form body, or in one
/// JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeated {
    pub place: Place,
    /// The decoded name.
    pub field: String,
}

/// Where a [`Repeated`] field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Query,
    Form,
    Json,
}

impl fmt::Display for Repeated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.place {
            Place::Query => "query parameter",
            Place::Form => "form field",
            Place::Json => "JSON key",
        };
        write!(f, "{}: {place} given more than once", self.field)
    }
}

/// The first field `query` or `body` gives twice, if any. The gateway refuses
/// such a request before it authorises it: the authoriser checks every value
/// it finds while a plugin serves one, so a repeat would let a request be
/// authorised for one account and served for another. Every field of a
/// query, a form and a JSON object is single-valued; a list is a JSON array.
///
/// The body is read as JSON whatever its content type (the SDK and
/// [`extract`] do the same), and as a form when `content_type` says so. A
/// body that is not JSON has no JSON keys to repeat: [`extract`] finds
/// nothing in it and the plugin refuses its format.
pub fn repeated(query: &str, content_type: Option<&str>, body: &[u8]) -> Option<Repeated> {
    if let Some(field) = crate::form::repeated_name(query.as_bytes()) {
        return Some(Repeated {
            place: Place::Query,
            field,
        });
    }
    let is_form = content_type.is_some_and(|t| {
        t.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    if is_form && let Some(field) = crate::form::repeated_name(body) {
        return Some(Repeated {
            place: Place::Form,
            field,
        });
    }
    let starts_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    if starts_json {
        let mut reader = serde_json::Deserializer::from_slice(body);
        if let Ok(Some(field)) = UniqueKeys.deserialize(&mut reader)
            && reader.end().is_ok()
        {
            return Some(Repeated {
                place: Place::Json,
                field,
            });
        }
    }
    None
}

/// Walks a JSON value and yields the first key repeated within one object.
/// serde_json keeps the last of repeated keys without a word, so the walk
/// looks at each object's keys itself.
struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(inner) = seq.next_element_seed(UniqueKeys)? {
            found = found.or(inner);
        }
        Ok(found)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        let mut found = None;
        while let Some(key) = map.next_key_seed(Key)? {
            keys.push(key);
            found = found.or(map.next_value_seed(UniqueKeys)?);
        }
        keys.sort_unstable();
        let here = keys
            .windows(2)
            .find(|w| w[0] == w[1])
            .map(|w| w[0].clone().into_owned());
        Ok(here.or(found))
    }
}

/// A JSON object key, borrowed from the body unless it has escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

fn access_uses_body(access: &Access) -> bool {
    [&access.account, &access.user, &access.amount]
        .iter()
        .any(|r| r.as_deref().is_some_and(|r| r.starts_with("body:")))
}

/// Strings as they are; numbers in their JSON text (clients sometimes send
/// amounts as numbers).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(account: &str, user: Option<&str>, amount: Option<&str>) -> Access {
        Access {
            account: Some(account.into()),
            user: user.map(Into::into),
            amount: amount.map(Into::into),
        }
    }

    #[test]
    fn from_query_body_and_lists() {
        let r = extract(
            &access("query:fintech_use_num", None, None),
            "fintech_use_num=F1&x=1",
            b"",
        );
        assert_eq!(r.accounts, ["F1"]);

        let body = br#"{"fintech_use_num":"F2","tran_amt":"15000","user_seq_no":"1100000001"}"#;
        let r = extract(
            &access(
                "body:fintech_use_num",
                Some("body:user_seq_no"),
                Some("body:tran_amt"),
            ),
            "",
            body,
        );
        assert_eq!(
            (r.accounts, r.user, r.amount),
            (vec!["F2".into()], Some("1100000001".into()), Some(15000))
        );

        let body = br#"{"req_list":[{"fintech_use_num":"A","tran_amt":"100"},{"fintech_use_num":"B","tran_amt":200}]}"#;
        let r = extract(
            &access(
                "body:req_list[].fintech_use_num",
                None,
                Some("body:req_list[].tran_amt"),
            ),
            "",
            body,
        );
        assert_eq!(r.accounts, ["A", "B"]);
        assert_eq!(r.amount, Some(300));
    }

    #[test]
    fn malformed_bodies_and_amounts_yield_nothing() {
        let r = extract(
            &access("body:fintech_use_num", None, Some("body:tran_amt")),
            "",
            b"{not json",
        );
        assert_eq!(r, Resources::default());
        let r = extract(
            &access("body:fintech_use_num", None, Some("body:tran_amt")),
            "",
            br#"{"tran_amt":"12a"}"#,
        );
        assert_eq!(r.amount, None);
        let r = extract(
            &access("body:fintech_use_num", None, Some("body:tran_amt")),
            "",
            br#"{"tran_amt":"99999999999999999999"}"#,
        );
        assert_eq!(r.amount, None);
    }

    fn manifest(access: &str, request: &[(&str, &str)]) -> Manifest {
        let fields: String = request
            .iter()
            .map(|(name, kind)| {
                format!(
                    "[[docs.request]]\nname = \"{name}\"\ntype = \"{kind}\"\ndescription = \"d\"\n"
                )
            })
            .collect();
        let text = format!(
            "name = \"t\"\nversion = \"1.0.0\"\ndescription = \"t\"\nscope = \"transfer\"\n\
             [[routes]]\nmethod = \"POST\"\npath = \"/t\"\n[docs]\n{fields}[access]\n{access}\n"
        );
        match Manifest::parse(&text) {
            Ok(m) => m,
            Err(e) => panic!("{e}: {text}"),
        }
    }

    #[test]
    fn malformed_access_fields_say_what_the_sdk_says() {
        let user = manifest("user = \"query:user_seq_no\"", &[("user_seq_no", "N(10)")]);
        let said = |m: &Manifest, q: &str, b: &[u8]| malformed(m, q, b).map(|e| e.to_string());
        assert_eq!(said(&user, "user_seq_no=1100000001", b""), None);
        assert_eq!(
            said(&user, "user_seq_no=12345", b""),
            Some("user_seq_no: must be 10 digits".into())
        );
        assert_eq!(
            said(&user, "user_seq_no=110000000a", b""),
            Some("user_seq_no: must be 10 digits".into())
        );
        assert_eq!(
            said(&user, "user_seq_no=", b""),
            Some("user_seq_no: required field is missing".into())
        );
        // Absent: the plugin answers it.
        assert_eq!(said(&user, "other=1", b""), None);

        let withdraw = manifest(
            "account = \"body:fintech_use_num\"\namount = \"body:tran_amt\"",
            &[("fintech_use_num", "N(24)"), ("tran_amt", "N(12)")],
        );
        let ok = br#"{"fintech_use_num":"120230000100000000000015","tran_amt":"1000"}"#;
        assert_eq!(said(&withdraw, "", ok), None);
        assert_eq!(
            said(
                &withdraw,
                "",
                br#"{"fintech_use_num":"1202300001","tran_amt":"1000"}"#
            ),
            Some("fintech_use_num: must be 24 digits".into())
        );
        assert_eq!(
            said(
                &withdraw,
                "",
                br#"{"fintech_use_num":120230000100000000000015,"tran_amt":"1000"}"#
            ),
            Some("fintech_use_num: must be a JSON string".into())
        );
        for bad in ["0", "-5", "1.5", "1234567890123"] {
            let body =
                format!(r#"{{"fintech_use_num":"120230000100000000000015","tran_amt":"{bad}"}}"#);
            assert_eq!(
                said(&withdraw, "", body.as_bytes()),
                Some(
                    "tran_amt: must be an amount in won as a string of 1 to 12 digits, not zero"
                        .into()
                ),
                "{bad}"
            );
        }
        // Not JSON, or the field null: the plugin's to answer.
        assert_eq!(said(&withdraw, "", b"{not json"), None);
        assert_eq!(said(&withdraw, "", br#"{"fintech_use_num":null}"#), None);

        let deposit = manifest(
            "amount = \"body:req_list[].tran_amt\"",
            &[("req_list[].tran_amt", "N(12)")],
        );
        assert_eq!(
            said(
                &deposit,
                "",
                br#"{"req_list":[{"tran_amt":"5"},{"tran_amt":"x"}]}"#
            ),
            Some(
                "req_list[1].tran_amt: must be an amount in won as a string of 1 to 12 digits, not zero"
                    .into()
            )
        );
        // Undocumented, or not N(n): nothing to hold the value to.
        let loose = manifest("user = \"query:user_seq_no\"", &[("user_seq_no", "AN(10)")]);
        assert_eq!(said(&loose, "user_seq_no=12345", b""), None);
        let undocumented = manifest("user = \"query:user_seq_no\"", &[]);
        assert_eq!(said(&undocumented, "user_seq_no=12345", b""), None);
    }

    #[test]
    fn repeated_fields_are_found_in_query_form_and_json() {
        let found =
            |q: &str, t: Option<&str>, b: &[u8]| repeated(q, t, b).map(|r| (r.place, r.field));
        assert_eq!(found("fintech_use_num=A&tran_dtime=1", None, b""), None);
        assert_eq!(
            found("fintech_use_num=OTHER&fintech_use_num=MINE", None, b""),
            Some((Place::Query, "fintech_use_num".into()))
        );
        let form = Some("application/x-www-form-urlencoded; charset=UTF-8");
        assert_eq!(found("", form, b"a=1&a=2"), Some((Place::Form, "a".into())));
        // Not a form: the same bytes are not read as one.
        assert_eq!(found("", Some("text/plain"), b"a=1&a=2"), None);
        assert_eq!(
            found(
                "",
                None,
                br#"{"fintech_use_num":"A","tran_amt":"1","fintech_use_num":"B"}"#
            ),
            Some((Place::Json, "fintech_use_num".into()))
        );
        // Escapes decode to the same key.
        assert_eq!(
            found(
                "",
                None,
                br#"{"fintech_use_num":"A","fintech\u005fuse_num":"B"}"#
            ),
            Some((Place::Json, "fintech_use_num".into()))
        );
        // In any object, however deep; the same key in sibling objects is fine.
        assert_eq!(
            found(
                "",
                None,
                br#"{"req_list":[{"tran_amt":"1"},{"tran_amt":"2","tran_amt":"3"}]}"#
            ),
            Some((Place::Json, "tran_amt".into()))
        );
        assert_eq!(
            found(
                "",
                Some("application/json"),
                br#" {"req_cnt":"2","req_list":[{"fintech_use_num":"A","tran_amt":"1"},{"fintech_use_num":"B","tran_amt":2,"x":{"y":[null,true,1.5]}}]}"#
            ),
            None
        );
        // Not JSON, or JSON with trailing bytes: no keys to repeat.
        assert_eq!(found("", None, br#"{"a":1,"a":2"#), None);
        assert_eq!(found("", None, br#"{"a":1,"a":2} x"#), None);
    }
}
