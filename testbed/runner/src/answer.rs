//! What every answer must look like: the common header, the documented
//! fields, digit strings. Pure functions over one reply.

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use sfop_core::Docs;

use crate::bench::HttpReply;

/// Fields of the common header every answer carries.
pub const HEADER_FIELDS: &[&str] = &["api_tran_id", "api_tran_dtm", "rsp_code", "rsp_message"];

/// Problems with the common envelope of `reply` (empty: well-formed).
pub fn envelope_problems(reply: &HttpReply) -> Vec<String> {
    let mut problems = Vec::new();
    let json = reply
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/json"));
    if !json {
        problems.push(format!(
            "content-type is {:?}, not application/json",
            reply.content_type.as_deref().unwrap_or("absent")
        ));
    }
    let Some(Value::Object(body)) = reply.json() else {
        problems.push("the body is not a JSON object".into());
        return problems;
    };
    let text = |k: &str| body.get(k).and_then(Value::as_str);
    match text("api_tran_id") {
        Some(id) if !id.is_empty() && id.len() <= 40 => {
            if reply.header_tran_id.as_deref() != Some(id) {
                problems.push("x-api-tran-id header differs from api_tran_id".into());
            }
        }
        other => problems.push(format!("api_tran_id {other:?} is not 1-40 characters")),
    }
    match text("api_tran_dtm") {
        Some(d) if d.len() == 17 && d.bytes().all(|b| b.is_ascii_digit()) => {}
        other => problems.push(format!("api_tran_dtm {other:?} is not 17 digits")),
    }
    match text("rsp_code") {
        Some(c) if c.len() == 5 && c.bytes().all(|b| b.is_ascii_alphanumeric()) => {}
        other => problems.push(format!("rsp_code {other:?} is not a 5-character code")),
    }
    if text("rsp_message").is_none() {
        problems.push("rsp_message is missing or not a string".into());
    }
    problems
}

/// Problems with the fields of a success answer against the documented
/// response fields: missing documented fields and undocumented ones, at the
/// top level and in the items of documented lists.
pub fn field_problems(docs: &Docs, body: &Map<String, Value>) -> Vec<String> {
    let mut top: BTreeSet<&str> = HEADER_FIELDS.iter().copied().collect();
    let mut lists: Vec<(&str, BTreeSet<&str>)> = Vec::new();
    for f in &docs.response {
        match f.name.split_once("[].") {
            Some((list, field)) => {
                top.insert(list);
                match lists.iter_mut().find(|(l, _)| *l == list) {
                    Some((_, fields)) => {
                        fields.insert(field);
                    }
                    None => lists.push((list, BTreeSet::from([field]))),
                }
            }
            None => {
                top.insert(f.name.as_str());
            }
        }
    }
    // Bank-touching answers carry the bank part of the header too; an API
    // that documents any of it must document all of it, so nothing to add.
    let mut problems = Vec::new();
    for name in &top {
        if !body.contains_key(*name) {
            problems.push(format!("documented field {name} is missing"));
        }
    }
    for name in body.keys() {
        if !top.contains(name.as_str()) {
            problems.push(format!("field {name} is not documented"));
        }
    }
    for (list, fields) in &lists {
        let Some(value) = body.get(*list) else {
            continue;
        };
        let Some(items) = value.as_array() else {
            problems.push(format!("{list} is not a list"));
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let Some(item) = item.as_object() else {
                problems.push(format!("{list}[{i}] is not an object"));
                continue;
            };
            // An item with its own failure code carries only what applies.
            let failed = item
                .get("rsp_code")
                .and_then(Value::as_str)
                .is_some_and(|c| c != "A0000");
            for f in fields {
                if !failed && !item.contains_key(*f) {
                    problems.push(format!("documented field {list}[{i}].{f} is missing"));
                }
            }
            for k in item.keys() {
                if !fields.contains(k.as_str()) {
                    problems.push(format!("field {list}[{i}].{k} is not documented"));
                }
            }
        }
    }
    problems
}

/// Whether a field holds an amount or a count by its name (`*_amt`, `*_cnt`).
fn amount_like(name: &str) -> bool {
    name.ends_with("_amt") || name.ends_with("_cnt")
}

/// Problems with numeric fields: documented `N(..)` fields and any
/// `*_amt`/`*_cnt` field must be JSON strings of digits (amounts may carry
/// a leading `-`; documented `N` fields may be empty when not applicable).
pub fn amount_problems(docs: Option<&Docs>, body: &Map<String, Value>) -> Vec<String> {
    let documented_digits: BTreeSet<&str> = docs
        .map(|d| {
            d.response
                .iter()
                .filter(|f| f.kind.starts_with("N("))
                .map(|f| f.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    let mut problems = Vec::new();
    let mut check = |path: String, doc_name: &str, leaf: &str, v: &Value| {
        let digits = documented_digits.contains(doc_name);
        if !digits && !amount_like(leaf) {
            return;
        }
        match v {
            Value::String(s) => {
                let unsigned = s.strip_prefix('-').unwrap_or(s);
                let ok = if s.is_empty() {
                    digits
                } else {
                    !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit())
                };
                if !ok {
                    problems.push(format!("{path} = {s:?} is not a string of digits"));
                }
            }
            other => problems.push(format!(
                "{path} is {other}, a JSON {} instead of a string of digits",
                json_type(other)
            )),
        }
    };
    for (k, v) in body {
        if let Value::Array(items) = v {
            for (i, item) in items.iter().enumerate() {
                if let Value::Object(fields) = item {
                    for (fk, fv) in fields {
                        check(format!("{k}[{i}].{fk}"), &format!("{k}[].{fk}"), fk, fv);
                    }
                }
            }
        } else {
            check(k.clone(), k, k, v);
        }
    }
    problems
}

/// The JSON type name of a value.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sfop_core::manifest::FieldDoc;

    fn docs() -> Docs {
        let f = |name: &str, kind: &str| FieldDoc {
            name: name.into(),
            kind: kind.into(),
            required: false,
            description: "d".into(),
            routes: Vec::new(),
        };
        Docs {
            response: vec![
                f("res_cnt", "N(5)"),
                f("res_list[].bank_name", "AH(20)"),
                f("res_list[].tran_amt", "N(12)"),
            ],
            ..Docs::default()
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_renamed_field_is_both_missing_and_undocumented() {
        let body = obj(json!({
            "api_tran_id": "x", "api_tran_dtm": "1", "rsp_code": "A0000", "rsp_message": "",
            "res_cnt": "1", "res_list": [{"bank_nm": "x", "tran_amt": "1"}]
        }));
        let p = field_problems(&docs(), &body);
        assert!(
            p.iter()
                .any(|p| p.contains("res_list[0].bank_name is missing")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.contains("res_list[0].bank_nm is not documented")),
            "{p:?}"
        );
    }

    #[test]
    fn amounts_must_be_digit_strings() {
        let body = obj(json!({"res_cnt": 1, "res_list": [{"tran_amt": "1,000"}], "x_amt": "-5"}));
        let p = amount_problems(Some(&docs()), &body);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("res_cnt is 1, a JSON number"), "{p:?}");
        assert!(p[1].contains("res_list[0].tran_amt"), "{p:?}");
    }
}
