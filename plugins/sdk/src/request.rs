use serde::de::DeserializeOwned;

use crate::envelope::ApiError;
use crate::platform::types;

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

    /// A query parameter given more than once, if any. [`crate::api!`]
    /// answers `A0004` for such a request before the handler runs.
    pub fn repeated_query(&self) -> Option<&str> {
        repeated(&self.query)
    }

    /// The value of query parameter `name`, percent-decoded.
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
    /// (serde names the field). A key repeated in any object is refused.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        crate::unique::parse(&self.raw.body)
            .and_then(T::deserialize)
            .map_err(|e| ApiError::format(format!("request body: {e}")))
    }
}

/// The query's fields, decoded by `form_urlencoded` as the gateway decodes
/// them (`+` is a space, invalid escapes stay as they are).
fn parse_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A name given more than once, if any (an empty name is no field and is
/// not counted, as at the gateway).
fn repeated(pairs: &[(String, String)]) -> Option<&str> {
    let mut names: Vec<&str> = pairs
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !k.is_empty())
        .collect();
    names.sort_unstable();
    names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
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
        assert_eq!(repeated(&q), None);
    }

    #[test]
    fn repeated_names_are_found_after_decoding() {
        let q = parse_query("fintech_use_num=OTHER&x=1&fintech%5Fuse%5Fnum=MINE");
        assert_eq!(repeated(&q), Some("fintech_use_num"));
        assert_eq!(repeated(&parse_query("&&==&=&%")), None);
    }

    /// The vectors the host's `sfop-core` form tests read too: a plugin and
    /// the gateway's authorisation read every query the same way, and the
    /// SDK refuses (A0004) exactly the queries the gateway refuses.
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
            repeated: twice,
        } in vectors.cases
        {
            let q = parse_query(&query);
            assert_eq!(q, pairs, "pairs of {query:?}");
            assert_eq!(repeated(&q), twice.as_deref(), "repeated of {query:?}");
        }
        Ok(())
    }
}
