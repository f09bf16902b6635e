use serde::de::DeserializeOwned;

use crate::bindings::sfop::platform::types;
use crate::envelope::ApiError;

/// An HTTP request routed to this plugin by the gateway.
#[derive(Debug)]
pub struct Request {
    raw: types::Request,
    query: Vec<(String, String)>,
}

impl Request {
    pub(crate) fn from_raw(raw: types::Request) -> Self {
        let query = parse_query(&raw.query);
        Self { raw, query }
    }

    /// The platform's identifier of this call (`api_tran_id`).
    pub fn api_tran_id(&self) -> &str {
        &self.raw.api_tran_id
    }

    /// Upper-case HTTP method.
    pub fn method(&self) -> &str {
        &self.raw.method
    }

    /// Path without the query string.
    pub fn path(&self) -> &str {
        &self.raw.path
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every query parameter, percent-decoded, in order.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    /// Query parameter `name`, or an `A0004` error naming it.
    pub fn required_query(&self, name: &str) -> Result<&str, ApiError> {
        match self.query(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::missing_field(name)),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The raw body.
    pub fn body(&self) -> &[u8] {
        &self.raw.body
    }

    /// The body as JSON of type `T`, or an `A0004` error that says what is wrong
    /// (serde names the field).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.raw.body)
            .map_err(|e| ApiError::format(format!("request body: {e}")))
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (as space); invalid escapes are kept verbatim.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_split_and_decoded() {
        let q = parse_query("user_seq_no=1100000001&name=%ED%99%8D+gil&flag&bad=%zz&end=%4");
        assert_eq!(q[0], ("user_seq_no".into(), "1100000001".into()));
        assert_eq!(q[1], ("name".into(), "홍 gil".into()));
        assert_eq!(q[2], ("flag".into(), "".into()));
        assert_eq!(q[3], ("bad".into(), "%zz".into()));
        assert_eq!(q[4], ("end".into(), "%4".into()));
    }
}
