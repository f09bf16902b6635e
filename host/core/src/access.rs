//! Reading, from a request, the resources its API acts on (the manifest's
//! `[access]` field references), for the authoriser's facts.

use crate::manifest::{Access, FieldRef};
use serde_json::Value;

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
}
