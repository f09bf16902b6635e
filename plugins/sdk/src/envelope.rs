use serde::Serialize;

use crate::platform::{kv, ledger, types};

/// Response codes (`rsp_code`) of the open-banking API that plugins answer with.
pub mod rsp {
    /// Success.
    pub const SUCCESS: &str = "A0000";
    /// Participant bank error.
    pub const BANK_ERROR: &str = "A0002";
    /// Platform internal error.
    pub const INTERNAL: &str = "A0003";
    /// Request format error; the message names the field.
    pub const FORMAT: &str = "A0004";
    /// Participant bank timeout.
    pub const BANK_TIMEOUT: &str = "A0017";
    /// No transactions in the asked range.
    pub const NO_TRANSACTIONS: &str = "A0018";
}

const JSON: &str = "application/json; charset=UTF-8";

/// A response under construction.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// The body of every open-banking answer: `rsp_code`, `rsp_message`, then the
/// API's own fields. The gateway adds `api_tran_id` and `api_tran_dtm`.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    rsp_code: &'a str,
    rsp_message: &'a str,
    #[serde(flatten)]
    fields: T,
}

impl Response {
    /// HTTP 200 with `rsp_code` `A0000` and `fields` (a struct or JSON object)
    /// merged into the top-level object.
    pub fn success<T: Serialize>(fields: &T) -> Self {
        Self::envelope(rsp::SUCCESS, "", fields)
    }

    /// HTTP 200 with a business failure code: open-banking clients read
    /// `rsp_code`, not the HTTP status, for business outcomes.
    pub fn failure(rsp_code: &str, rsp_message: &str) -> Self {
        Self::envelope(rsp_code, rsp_message, &serde_json::Map::new())
    }

    /// [`Response::failure`] with more fields (e.g. the bank's answer).
    pub fn failure_with<T: Serialize>(rsp_code: &str, rsp_message: &str, fields: &T) -> Self {
        Self::envelope(rsp_code, rsp_message, fields)
    }

    fn envelope<T: Serialize>(rsp_code: &str, rsp_message: &str, fields: &T) -> Self {
        let envelope = Envelope {
            rsp_code,
            rsp_message,
            fields,
        };
        match serde_json::to_vec(&envelope) {
            Ok(body) => Self::json_bytes(200, body),
            // Only a `fields` value that is not a JSON object gets here: a
            // plugin bug, reported as such instead of a malformed body.
            Err(e) => Self::json_bytes(
                200,
                format!(
                    r#"{{"rsp_code":"{}","rsp_message":"plugin produced an invalid body: {}"}}"#,
                    rsp::INTERNAL,
                    json_escape(&e.to_string())
                )
                .into_bytes(),
            ),
        }
    }

    fn json_bytes(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), JSON.into())],
            body,
        }
    }

    /// A response with any status and body, for APIs that are not open-banking JSON.
    pub fn raw(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn into_raw(self) -> types::Response {
        types::Response {
            status: self.status,
            headers: self.headers,
            body: self.body,
        }
    }
}

fn json_escape(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// A business failure: becomes HTTP 200 with this `rsp_code` and
/// `rsp_message`, and any extra `fields` (such as the bank's answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub rsp_code: String,
    pub rsp_message: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(rsp_code: &str, rsp_message: impl Into<String>) -> Self {
        Self {
            rsp_code: rsp_code.into(),
            rsp_message: rsp_message.into(),
            fields: serde_json::Map::new(),
        }
    }

    /// Adds `name` unless the error already carries it (the bank's own
    /// answer wins over what the plugin knows from the request).
    pub fn with_field(mut self, name: &str, value: &str) -> Self {
        self.fields
            .entry(name)
            .or_insert_with(|| serde_json::Value::String(value.to_owned()));
        self
    }

    /// `A0004`: the request is malformed; the message says which field and why.
    pub fn format(message: impl Into<String>) -> Self {
        Self::new(rsp::FORMAT, message)
    }

    /// `A0004` for a required field that is missing or empty.
    pub fn missing_field(field: &str) -> Self {
        Self::format(format!("{field}: required field is missing"))
    }

    /// `A0004` for a field whose value has the wrong format.
    pub fn invalid_field(field: &str, expected: &str) -> Self {
        Self::format(format!("{field}: must be {expected}"))
    }
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Self {
        Response::failure_with(&e.rsp_code, &e.rsp_message, &e.fields)
    }
}

/// The bank part of the common response header (`bank_tran_id`,
/// `bank_tran_date`, `bank_code_tran`, `bank_rsp_code`, `bank_rsp_message`).
pub fn bank_answer_fields(a: &ledger::BankAnswer) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("bank_tran_id", &a.bank_tran_id),
        ("bank_tran_date", &a.bank_tran_date),
        ("bank_code_tran", &a.bank_code_tran),
        ("bank_rsp_code", &a.bank_rsp_code),
        ("bank_rsp_message", &a.bank_rsp_message),
    ] {
        m.insert(k.into(), serde_json::Value::String(v.clone()));
    }
    m
}

/// HTTP 200 `A0000` with the bank part of the common header and `fields`
/// (a JSON object) merged into the top-level object.
pub fn bank_success(answer: &ledger::BankAnswer, fields: serde_json::Value) -> Response {
    let mut map = bank_answer_fields(answer);
    if let serde_json::Value::Object(fields) = fields {
        map.extend(fields);
    }
    Response::success(&map)
}

/// `Y` or `N`, as the API writes booleans.
pub fn yn(b: bool) -> &'static str {
    if b { "Y" } else { "N" }
}

impl ApiError {
    /// The bank's refusal (or timeout) of the call made with
    /// `bank_tran_id`, which the answer echoes when the bank did not.
    pub fn from_bank(e: ledger::Error, bank_tran_id: &str) -> Self {
        ApiError::from(e).with_field("bank_tran_id", bank_tran_id)
    }
}

impl From<ledger::Refusal> for ApiError {
    fn from(r: ledger::Refusal) -> Self {
        let mut e = Self::new(&r.rsp_code, r.rsp_message);
        if let Some(bank) = &r.bank {
            e.fields = bank_answer_fields(bank);
        }
        e
    }
}

impl From<ledger::Error> for ApiError {
    /// The bank's decision, passed through unchanged: its `rsp_code` and
    /// message and, when a bank answered, its `bank_*` fields.
    fn from(e: ledger::Error) -> Self {
        match e {
            ledger::Error::Timeout => Self::new(rsp::BANK_TIMEOUT, "participant bank timeout"),
            ledger::Error::Backend(m) => Self::new(rsp::BANK_ERROR, m),
            ledger::Error::Refused(r) => r.into(),
        }
    }
}

impl From<kv::Error> for ApiError {
    fn from(e: kv::Error) -> Self {
        match e {
            kv::Error::TooLarge(m) | kv::Error::Store(m) => Self::new(rsp::INTERNAL, m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_puts_the_envelope_first() {
        #[derive(Serialize)]
        struct Fields {
            res_cnt: String,
        }
        let r = Response::success(&Fields {
            res_cnt: "3".into(),
        });
        assert_eq!(r.status(), 200);
        assert_eq!(
            std::str::from_utf8(r.body()).ok(),
            Some(r#"{"rsp_code":"A0000","rsp_message":"","res_cnt":"3"}"#)
        );
    }

    #[test]
    fn failure_is_http_200_with_the_code() {
        let r: Response = ApiError::missing_field("bank_tran_id").into();
        assert_eq!(r.status(), 200);
        assert_eq!(
            std::str::from_utf8(r.body()).ok(),
            Some(r#"{"rsp_code":"A0004","rsp_message":"bank_tran_id: required field is missing"}"#)
        );
    }

    #[test]
    fn non_object_fields_become_an_internal_error() {
        let r = Response::success(&"not an object");
        let body = std::str::from_utf8(r.body()).unwrap_or_default();
        assert!(body.starts_with(r#"{"rsp_code":"A0003""#), "{body}");
    }
}
