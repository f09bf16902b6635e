//! Request fields of the open-banking API and their formats. Every check
//! answers `A0004` with a message that names the field, never a trap.
//!
//! The API sends every value as a JSON string (amounts too: `"10000"`);
//! query parameters of `GET` APIs read the same way through
//! [`Fields::from_query`].

use serde_json::{Map, Value};

use crate::envelope::ApiError;
use crate::request::Request;

/// The fields of one request: a JSON object body, or the query string.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    map: Map<String, Value>,
    /// Prefix for messages, e.g. `req_list[0].` for items of a list.
    path: String,
}

impl Fields {
    /// The request body, which must be a JSON object.
    pub fn from_body(req: &Request) -> Result<Self, ApiError> {
        match crate::unique::parse(req.body()) {
            Ok(Value::Object(map)) => Ok(Self {
                map,
                path: String::new(),
            }),
            Ok(_) => Err(ApiError::format("request body: must be a JSON object")),
            Err(e) => Err(ApiError::format(format!("request body: {e}"))),
        }
    }

    /// The query parameters (each name is given once: [`crate::api!`]
    /// refuses a query that repeats one before the handler runs).
    pub fn from_query(req: &Request) -> Self {
        let mut map = Map::new();
        for (k, v) in req.query_pairs() {
            map.entry(k.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
        Self {
            map,
            path: String::new(),
        }
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.path)
    }

    /// A string field that must be present and not empty.
    pub fn required(&self, field: &str) -> Result<&str, ApiError> {
        match self.optional(field)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::missing_field(&self.name(field))),
        }
    }

    /// A string field that may be absent; an empty string is `Some("")`.
    pub fn optional(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ApiError::invalid_field(&self.name(field), "a JSON string")),
        }
    }

    /// A string field with at most `max` characters (empty when absent).
    pub fn text(&self, field: &str, max: usize) -> Result<&str, ApiError> {
        let v = self.optional(field)?.unwrap_or("");
        max_chars(&self.name(field), v, max)?;
        Ok(v)
    }

    /// A list of objects, e.g. `req_list`.
    pub fn list(&self, field: &str) -> Result<Vec<Fields>, ApiError> {
        match self.map.get(field) {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(map) => Ok(Fields {
                        map: map.clone(),
                        path: format!("{}{field}[{i}].", self.path),
                    }),
                    _ => Err(ApiError::invalid_field(
                        &format!("{}{field}[{i}]", self.path),
                        "a JSON object",
                    )),
                })
                .collect(),
            None | Some(Value::Null) => Err(ApiError::missing_field(&self.name(field))),
            Some(_) => Err(ApiError::invalid_field(&self.name(field), "a JSON array")),
        }
    }

    /// Required `bank_tran_id`, checked with [`bank_tran_id`].
    pub fn bank_tran_id(&self, field: &str) -> Result<&str, ApiError> {
        let v = self.required(field)?;
        bank_tran_id(&self.name(field), v)?;
        Ok(v)
    }

    /// Required `tran_dtime`-like field, checked with [`dtime`].
    pub fn dtime(&self, field: &str) -> Result<&str, ApiError> {
        let v = self.required(field)?;
        dtime(&self.name(field), v)?;
        Ok(v)
    }

    /// Required 8-digit date.
    pub fn date(&self, field: &str) -> Result<&str, ApiError> {
        let v = self.required(field)?;
        date(&self.name(field), v)?;
        Ok(v)
    }

    /// Required 6-digit time.
    pub fn time(&self, field: &str) -> Result<&str, ApiError> {
        let v = self.required(field)?;
        time(&self.name(field), v)?;
        Ok(v)
    }

    /// Required 24-digit fintech number.
    pub fn fintech_use_num(&self, field: &str) -> Result<&str, ApiError> {
        let v = self.required(field)?;
        fintech_use_num(&self.name(field), v)?;
        Ok(v)
    }

    /// Required amount, a digit string, parsed.
    pub fn amount(&self, field: &str) -> Result<u64, ApiError> {
        let v = self.required(field)?;
        amount(&self.name(field), v)
    }

    /// Required field that must be one of `allowed`.
    pub fn one_of(&self, field: &str, allowed: &[&str]) -> Result<&str, ApiError> {
        let v = self.required(field)?;
        one_of(&self.name(field), v, allowed)?;
        Ok(v)
    }

    /// Required field of exactly `len` ASCII digits.
    pub fn digits(&self, field: &str, len: usize) -> Result<&str, ApiError> {
        let v = self.required(field)?;
        digits(&self.name(field), v, len)?;
        Ok(v)
    }
}

/// `bank_tran_id`: the 10-character institution code, `U`, and 9 more
/// upper-case letters or digits (20 characters). Whether the code is the
/// caller's is the bank's check.
pub fn bank_tran_id(field: &str, v: &str) -> Result<(), ApiError> {
    let ok = v.len() == 20
        && v.as_bytes().get(10) == Some(&b'U')
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            "20 characters: the 10-character institution code, 'U' and 9 upper-case letters or digits",
        ))
    }
}

/// `YYYYMMDDhhmmss`, a real date and time.
pub fn dtime(field: &str, v: &str) -> Result<(), ApiError> {
    let ok = v.len() == 14
        && v.bytes().all(|b| b.is_ascii_digit())
        && valid_date(&v[..8])
        && valid_time(&v[8..]);
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(field, "14 digits YYYYMMDDhhmmss"))
    }
}

/// `YYYYMMDD`, a real date.
pub fn date(field: &str, v: &str) -> Result<(), ApiError> {
    if v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit()) && valid_date(v) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(field, "8 digits YYYYMMDD"))
    }
}

/// `hhmmss`, a real time.
pub fn time(field: &str, v: &str) -> Result<(), ApiError> {
    if v.len() == 6 && v.bytes().all(|b| b.is_ascii_digit()) && valid_time(v) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(field, "6 digits hhmmss"))
    }
}

/// 24 digits.
pub fn fintech_use_num(field: &str, v: &str) -> Result<(), ApiError> {
    digits(field, v, 24)
}

/// An amount in won: 1 to 12 digits, not zero.
pub fn amount(field: &str, v: &str) -> Result<u64, ApiError> {
    let ok = !v.is_empty() && v.len() <= 12 && v.bytes().all(|b| b.is_ascii_digit());
    match v.parse::<u64>() {
        Ok(n) if ok && n > 0 => Ok(n),
        _ => Err(ApiError::invalid_field(
            field,
            "an amount in won as a string of 1 to 12 digits, not zero",
        )),
    }
}

/// Exactly `len` ASCII digits.
pub fn digits(field: &str, v: &str, len: usize) -> Result<(), ApiError> {
    if v.len() == len && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(field, &format!("{len} digits")))
    }
}

/// One of `allowed`.
pub fn one_of(field: &str, v: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        Err(ApiError::invalid_field(
            field,
            &format!("one of {}", list.join(", ")),
        ))
    }
}

/// At most `max` characters.
pub fn max_chars(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.chars().count() <= max {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            &format!("at most {max} characters"),
        ))
    }
}

fn valid_date(d: &str) -> bool {
    let (Ok(y), Ok(m), Ok(day)) = (
        d[..4].parse::<u32>(),
        d[4..6].parse::<u32>(),
        d[6..8].parse::<u32>(),
    ) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    y >= 1900 && (1..=days).contains(&day)
}

fn valid_time(t: &str) -> bool {
    let (Ok(h), Ok(m), Ok(s)) = (
        t[..2].parse::<u32>(),
        t[2..4].parse::<u32>(),
        t[4..6].parse::<u32>(),
    ) else {
        return false;
    };
    h < 24 && m < 60 && s < 60
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<impl std::fmt::Debug, ApiError>) -> String {
        match r {
            Err(e) => {
                assert_eq!(e.rsp_code, "A0004");
                e.rsp_message
            }
            Ok(v) => format!("accepted {v:?}"),
        }
    }

    #[test]
    fn bank_tran_ids_need_the_institution_shape() {
        assert!(bank_tran_id("bank_tran_id", "M202300001U123456789").is_ok());
        for bad in [
            "M202300001X123456789",
            "M202300001U12345678",
            "m202300001U123456789",
            "M202300001U12345678가",
        ] {
            assert!(
                message(bank_tran_id("bank_tran_id", bad)).starts_with("bank_tran_id:"),
                "{bad}"
            );
        }
    }

    #[test]
    fn dates_and_times_must_exist() {
        assert!(dtime("tran_dtime", "20240229235959").is_ok());
        assert!(dtime("tran_dtime", "20230229120000").is_err());
        assert!(dtime("tran_dtime", "20241301120000").is_err());
        assert!(dtime("tran_dtime", "20240101246000").is_err());
        assert!(message(dtime("tran_dtime", "2024")).starts_with("tran_dtime:"));
        assert!(date("from_date", "20241231").is_ok());
        assert!(time("from_time", "235960").is_err());
    }

    #[test]
    fn amounts_are_digit_strings() {
        assert_eq!(amount("tran_amt", "10000").ok(), Some(10_000));
        for bad in ["", "0", "-1", "1.5", "1e3", "1234567890123", " 1"] {
            assert!(
                message(amount("tran_amt", bad)).starts_with("tran_amt:"),
                "{bad}"
            );
        }
    }

    #[test]
    fn fields_name_their_path() {
        let mut map = Map::new();
        map.insert("tran_amt".into(), Value::from(100));
        map.insert("req_list".into(), serde_json::json!([{ "tran_amt": "x" }]));
        let f = Fields {
            map,
            path: String::new(),
        };
        assert!(message(f.amount("tran_amt")).contains("tran_amt: must be a JSON string"));
        assert!(message(f.required("absent")).starts_with("absent:"));
        let items = f.list("req_list").unwrap_or_default();
        assert!(message(items[0].amount("tran_amt")).starts_with("req_list[0].tran_amt:"));
        assert!(message(f.text("tran_amt", 3)).contains("JSON string"));
    }
}
