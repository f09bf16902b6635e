//! `application/x-www-form-urlencoded`, both ways. Decoding is the
//! `form_urlencoded` crate of the `url` project, the decoder the plugin SDK
//! uses too, so the gateway's authorisation and a plugin read a query or a
//! form the same way.

use std::borrow::Cow;

/// Parsed form or query fields, in order; a name may repeat.
#[derive(Debug, Default, Clone)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Every field, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.fields
    }

    /// Every field, in order, owned.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.fields
    }

    /// A name given more than once, if any (the first in sorted order).
    pub fn repeated(&self) -> Option<&str> {
        let mut names: Vec<&str> = self
            .fields
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !k.is_empty())
            .collect();
        names.sort_unstable();
        names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
    }
}

/// Parses a query string or form body. Pairs split on `&`, empty pairs are
/// skipped, `+` is a space, invalid escapes are kept verbatim and invalid
/// UTF-8 becomes U+FFFD.
pub fn parse(input: &[u8]) -> Form {
    let fields = form_urlencoded::parse(input)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Form { fields }
}

/// The first name (in sorted order) that `input` gives more than once,
/// decoded: what the gateway checks before it authorises a request. An
/// empty name is no field anyone reads and is not counted. Sorting keeps it
/// `O(n log n)` in the number of fields, whatever a client sends.
pub fn repeated_name(input: &[u8]) -> Option<String> {
    repeated_name_except(input, &[])
}

/// [`repeated_name`], for a form whose fields named in `lists` may repeat
/// (a consent form's accounts).
pub fn repeated_name_except(input: &[u8], lists: &[&str]) -> Option<String> {
    first_repeated(
        form_urlencoded::parse(input)
            .map(|(k, _)| k)
            .filter(|k| !k.is_empty() && !lists.contains(&k.as_ref())),
    )
}

fn first_repeated<'a>(names: impl Iterator<Item = Cow<'a, str>>) -> Option<String> {
    let mut names: Vec<Cow<'a, str>> = names.collect();
    if names.len() < 2 {
        return None;
    }
    names.sort_unstable();
    names
        .windows(2)
        .find(|w| w[0] == w[1])
        .map(|w| w[0].clone().into_owned())
}

/// A type a form or query reads into ([`decode`]): serde fields, each
/// given at most once except those named in [`Fields::LISTS`], which read
/// into a `Vec` and may repeat (a consent form's accounts). Unknown names
/// are ignored unless the type says otherwise (`deny_unknown_fields`).
pub trait Fields: serde::de::DeserializeOwned {
    /// The names that may repeat.
    const LISTS: &'static [&'static str] = &[];
}

/// No fields read: a query or form only checked for repeated names.
impl Fields for serde::de::IgnoredAny {}

/// Why a form or query did not read as the type asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// A name given more than once where one value is read (RFC 6749 §3.1
    /// forbids it for every OAuth request): the decoded name.
    #[error("{0}: given more than once")]
    Repeated(String),
    /// A field is missing or does not read as its type: serde's message,
    /// which names the field.
    #[error("{0}")]
    Invalid(String),
}

/// Reads `input` (a query string or form body, decoded as [`parse`] does)
/// as `T`. A name other than `T`'s [`Fields::LISTS`] given twice is
/// refused before any value is read, by the rule the gateway holds every
/// API's query and form to ([`repeated_name_except`]), so no reader can
/// take a different one of two values than another: serde_urlencoded
/// would keep the last.
pub fn decode<T: Fields>(input: &[u8]) -> Result<T, FormError> {
    if let Some(name) = repeated_name_except(input, T::LISTS) {
        return Err(FormError::Repeated(name));
    }
    let mut fields = serde_json::Map::new();
    for (name, value) in form_urlencoded::parse(input).filter(|(name, _)| !name.is_empty()) {
        let value = serde_json::Value::String(value.into_owned());
        if !T::LISTS.contains(&name.as_ref()) {
            fields.insert(name.into_owned(), value);
        } else if let serde_json::Value::Array(values) = fields
            .entry(name.into_owned())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        {
            values.push(value);
        }
    }
    serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| FormError::Invalid(e.to_string()))
}

/// `pairs` as an `application/x-www-form-urlencoded` body or query string
/// (the url crate's serializer, which [`parse`] reads back).
pub fn serialize<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn serialize_is_read_back_by_parse() {
        let pairs = [
            ("grant_type", "authorization_code"),
            ("redirect_uri", "https://app.example/cb?x=1&y=2"),
            ("scope", "login inquiry"),
            ("odd", "a+b=c%d 한"),
        ];
        let text = super::serialize(pairs);
        assert!(
            !text.contains(' ') && text.matches('&').count() == 3,
            "{text}"
        );
        let form = super::parse(text.as_bytes());
        for (k, v) in pairs {
            assert_eq!(form.get(k), Some(v), "{k} in {text}");
        }
    }

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Consent {
        pending: String,
        action: Option<String>,
        #[serde(default)]
        account: Vec<String>,
    }

    impl Fields for Consent {
        const LISTS: &'static [&'static str] = &["account"];
    }

    #[test]
    fn decode_reads_fields_lists_and_refuses_repeats() {
        let c: Consent = decode(b"pending=p%201&account=a&account=b&other=x").unwrap();
        assert_eq!(c.pending, "p 1");
        assert_eq!(c.action, None);
        assert_eq!(c.account, ["a", "b"]);
        assert_eq!(
            decode::<Consent>(b"pending=a&action=x&pending=b").unwrap_err(),
            FormError::Repeated("pending".into())
        );
        // Decoded before compared: an escaped name is the same name.
        assert_eq!(
            decode::<Consent>(b"pending=a&p%65nding=b").unwrap_err(),
            FormError::Repeated("pending".into())
        );
        let missing = decode::<Consent>(b"action=login").unwrap_err();
        assert!(missing.to_string().contains("pending"), "{missing}");
        // A name no field reads is refused twice all the same: another
        // reader (a plugin, a proxy) might take either value.
        assert_eq!(
            decode::<Consent>(b"pending=a&other=x&other=y").unwrap_err(),
            FormError::Repeated("other".into())
        );
        assert!(decode::<serde::de::IgnoredAny>(b"a=1&b=2").is_ok());
        assert!(decode::<serde::de::IgnoredAny>(b"a=1&a=2").is_err());
    }

    #[test]
    fn round_trips_and_repeats() {
        let f = parse(b"scope=login+inquiry&account=a1&account=a2&x=%ED%99%8D&bad=%zz&end=%4");
        assert_eq!(f.get("scope"), Some("login inquiry"));
        assert_eq!(f.all("account"), ["a1", "a2"]);
        assert_eq!(f.get("x"), Some("홍"));
        assert_eq!(f.get("bad"), Some("%zz"));
        assert_eq!(f.get("end"), Some("%4"));
        assert_eq!(f.repeated(), Some("account"));
        let encoded = encode("a b&c=홍");
        assert_eq!(
            parse(format!("k={encoded}").as_bytes()).get("k"),
            Some("a b&c=홍")
        );
    }

    #[test]
    fn repeated_names_are_found_after_decoding() {
        assert_eq!(repeated_name(b""), None);
        assert_eq!(repeated_name(b"a=1&b=2&&c"), None);
        // Garbage with nameless fields names no field twice.
        assert_eq!(repeated_name(b"&&==&=&%"), None);
        assert_eq!(
            repeated_name(b"fintech_use_num=OTHER&x=1&fintech_use_num=MINE").as_deref(),
            Some("fintech_use_num")
        );
        // The same name however it is spelled on the wire.
        assert_eq!(
            repeated_name(b"fintech_use_num=A&fintech%5Fuse%5Fnum=B").as_deref(),
            Some("fintech_use_num")
        );
        assert_eq!(repeated_name(b"a+b=1&a%20b=2").as_deref(), Some("a b"));
        // A name with no value counts too.
        assert_eq!(repeated_name(b"flag&flag=1").as_deref(), Some("flag"));
        assert_eq!(parse(b"a=1&b=2").repeated(), None);
    }

    /// The vectors the plugin SDK's native tests read too
    /// (`plugins/sdk/src/request.rs`): the gateway's authorisation and a
    /// plugin read every query the same way.
    #[test]
    fn shared_query_vectors() -> Result<(), serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Vectors {
            cases: Vec<Case>,
        }
        #[derive(serde::Deserialize)]
        struct Case {
            query: String,
            pairs: Vec<(String, String)>,
            repeated: Option<String>,
        }
        let vectors: Vectors =
            serde_json::from_str(include_str!("../../../testdata/query-vectors.json"))?;
        assert!(vectors.cases.len() >= 30, "{} cases", vectors.cases.len());
        for Case {
            query,
            pairs,
            repeated,
        } in vectors.cases
        {
            let form = parse(query.as_bytes());
            assert_eq!(form.pairs(), pairs.as_slice(), "pairs of {query:?}");
            assert_eq!(
                form.repeated(),
                repeated.as_deref(),
                "Form::repeated of {query:?}"
            );
            assert_eq!(
                repeated_name(query.as_bytes()),
                repeated,
                "repeated_name of {query:?}"
            );
            // What the gateway refuses before it authorises (A0004).
            assert_eq!(
                crate::access::repeated(&query, None, b"").map(|r| r.field),
                repeated,
                "the gateway's check of {query:?}"
            );
            // What the platform's typed forms refuse (the OAuth endpoints).
            assert_eq!(
                decode::<serde::de::IgnoredAny>(query.as_bytes()).err(),
                repeated.clone().map(FormError::Repeated),
                "decode of {query:?}"
            );
        }
        Ok(())
    }
}
