//! `http` and `config`: the capabilities of `sfop:platform@0.2.0`.

/// Outbound HTTP to the origins the manifest allows (`capabilities =
/// ["http"]`, `allowed_hosts = ["https://core.bank.example:8443"]`).
///
/// ```ignore
/// use sfop_sdk::http;
///
/// let answer = http::Request::post("https://core.bank.example:8443/v1/score")
///     .json(&serde_json::json!({ "account": "1234" }))?
///     .header("authorization", &format!("Bearer {key}"))
///     .timeout_ms(800)
///     .send()?;
/// let score: Score = answer.json()?;
/// ```
///
/// An `http::Error` converts into [`ApiError`](crate::ApiError): a timeout
/// is `A0017`, an upstream that failed `A0002`, a request the platform
/// refused (origin not allowed, malformed) `A0003`.
pub mod http {
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use crate::ApiError;
    use crate::platform::raw_http as raw;

    pub use raw::Error;

    /// An outbound request under construction.
    #[derive(Debug, Clone)]
    pub struct Request {
        raw: raw::Request,
    }

    impl Request {
        /// A request with `method` to `url` (absolute, `https://` or `http://`).
        pub fn new(method: &str, url: &str) -> Self {
            Self {
                raw: raw::Request {
                    method: method.to_owned(),
                    url: url.to_owned(),
                    headers: Vec::new(),
                    body: Vec::new(),
                    timeout_ms: None,
                },
            }
        }

        pub fn get(url: &str) -> Self {
            Self::new("GET", url)
        }

        pub fn post(url: &str) -> Self {
            Self::new("POST", url)
        }

        /// Adds a header (`host`, `content-length` and hop-by-hop headers are
        /// the platform's to set).
        pub fn header(mut self, name: &str, value: &str) -> Self {
            self.raw.headers.push((name.to_owned(), value.to_owned()));
            self
        }

        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
            self.raw.body = body.into();
            self
        }

        /// A JSON body, with `content-type: application/json`.
        pub fn json<T: Serialize>(self, value: &T) -> Result<Self, ApiError> {
            let body = serde_json::to_vec(value)
                .map_err(|e| ApiError::new(crate::rsp::INTERNAL, format!("request body: {e}")))?;
            Ok(self.header("content-type", "application/json").body(body))
        }

        /// At most `ms` milliseconds; never longer than what is left of the
        /// call's `timeout_ms`, which bounds it anyway.
        pub fn timeout_ms(mut self, ms: u32) -> Self {
            self.raw.timeout_ms = Some(ms);
            self
        }

        /// Sends it and waits for the whole answer.
        pub fn send(self) -> Result<Response, Error> {
            raw::send(&self.raw).map(|raw| Response { raw })
        }
    }

    /// An upstream's answer.
    #[derive(Debug, Clone)]
    pub struct Response {
        raw: raw::Response,
    }

    impl Response {
        pub fn status(&self) -> u16 {
            self.raw.status
        }

        /// The first value of header `name` (any case).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.raw
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub fn body(&self) -> &[u8] {
            &self.raw.body
        }

        /// The body as JSON; a body that is not is the upstream's fault (`A0002`).
        pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
            serde_json::from_slice(&self.raw.body).map_err(|e| {
                ApiError::new(
                    crate::rsp::BANK_ERROR,
                    format!("the backend's answer is not the expected JSON: {e}"),
                )
            })
        }
    }

    impl From<Error> for ApiError {
        fn from(e: Error) -> Self {
            match e {
                Error::Timeout => ApiError::new(crate::rsp::BANK_TIMEOUT, "backend timeout"),
                Error::TooLarge(n) => ApiError::new(
                    crate::rsp::BANK_ERROR,
                    format!("the backend's answer exceeds {n} bytes"),
                ),
                Error::Connect(m) | Error::Tls(m) => {
                    ApiError::new(crate::rsp::BANK_ERROR, format!("backend not reached: {m}"))
                }
                Error::DeniedHost(m) | Error::Invalid(m) => ApiError::new(crate::rsp::INTERNAL, m),
            }
        }
    }
}

/// The plugin's variables (`capabilities = ["config"]`, `[variables]`).
///
/// ```ignore
/// let url = sfop_sdk::config::require("backend_url")?;
/// ```
pub mod config {
    use crate::ApiError;
    use crate::platform::raw_config as raw;

    pub use raw::Error;

    /// The value of variable `name`: `None` when it is optional, has no
    /// default and the operator set none.
    pub fn get(name: &str) -> Result<Option<String>, Error> {
        raw::get(name)
    }

    /// The value of variable `name`, or an internal error (`A0003`) naming it.
    pub fn require(name: &str) -> Result<String, ApiError> {
        match raw::get(name) {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(ApiError::new(
                crate::rsp::INTERNAL,
                format!("variable {name} has no value"),
            )),
            Err(Error::Undeclared(m)) => Err(ApiError::new(crate::rsp::INTERNAL, m)),
        }
    }
}
