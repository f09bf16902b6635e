//! Requests the testbed makes: built from a package's documented example or
//! its own cases, then mutated (fresh `bank_tran_id`s, a field dropped, a
//! wrong type) and sent through the gateway.

use serde_json::Value;
use sfop_core::Manifest;

use crate::bench::{Bench, HttpRequest, PERSONA_HEADER, default_persona, encode_query_value};
use crate::cases::Case;

/// One call, before it becomes HTTP.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub persona: String,
    pub method: String,
    pub path: String,
    /// Query parameters (decoded); rendered percent-encoded.
    pub query: Vec<(String, String)>,
    /// A query string sent as is, instead of `query`.
    pub raw_query: Option<String>,
    /// A JSON body.
    pub body: Option<Value>,
    /// Body bytes sent as is, instead of `body`.
    pub raw_body: Option<Vec<u8>>,
    pub content_type: Option<String>,
}

impl Call {
    /// An empty call on the manifest's first route, as its default persona.
    pub fn on_route(manifest: &Manifest) -> Self {
        let (method, path) = manifest
            .routes
            .first()
            .map(|r| (r.method.clone(), r.path.clone()))
            .unwrap_or_else(|| ("GET".into(), "/".into()));
        Self {
            persona: default_persona(&manifest.scope).into(),
            method,
            path,
            query: Vec::new(),
            raw_query: None,
            body: None,
            raw_body: None,
            content_type: None,
        }
    }

    /// The documented example request (`[docs.example]`), if any: a query
    /// string for `GET`, a JSON body otherwise.
    pub fn example(manifest: &Manifest) -> Option<Self> {
        let example = manifest.docs.as_ref()?.example.as_ref()?;
        let mut call = Self::on_route(manifest);
        let text = example.request.trim();
        if text.starts_with('{') {
            call.body = Some(serde_json::from_str(text).ok()?);
        } else {
            call.query = parse_query(text);
        }
        Some(call)
    }

    /// The package's own case, with placeholders filled.
    pub fn from_case(manifest: &Manifest, case: &Case, bench: &Bench) -> Self {
        let mut call = Self::on_route(manifest);
        if let Some(p) = &case.persona {
            call.persona = p.clone();
        }
        if let Some(m) = &case.method {
            call.method = m.to_ascii_uppercase();
        }
        if let Some(p) = &case.path {
            call.path = p.clone();
        }
        let id = bench.tran_id();
        let now = sfop_core::time::format_dtm(
            sfop_core::time::now_millis(),
            sfop_core::time::KST_OFFSET_MINUTES,
        );
        let fill = |t: &str| {
            t.replace("{bank_tran_id}", &id)
                .replace("{today}", now.get(..8).unwrap_or_default())
                .replace("{now}", now.get(..14).unwrap_or_default())
        };
        if let Some(q) = &case.query {
            call.raw_query = Some(fill(q));
        }
        if let Some(b) = &case.body {
            call.raw_body = Some(fill(b).into_bytes());
            call.content_type = Some("application/json".into());
        }
        call
    }

    /// Whether the request carries fields in a JSON body (vs. the query).
    pub fn uses_body(&self) -> bool {
        self.body.is_some() || self.raw_body.is_some()
    }

    /// Replaces every `bank_tran_id` (top level, in the query, and in items
    /// of lists) with a fresh one, so that a call is not a repeat.
    pub fn refresh_tran_ids(&mut self, bench: &Bench) {
        for (k, v) in &mut self.query {
            if k == "bank_tran_id" {
                *v = bench.tran_id();
            }
        }
        if let Some(Value::Object(map)) = &mut self.body {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(s) if k == "bank_tran_id" => *s = bench.tran_id(),
                    Value::Array(items) => {
                        for item in items {
                            if let Some(Value::String(s)) = item.get_mut("bank_tran_id") {
                                *s = bench.tran_id();
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The value of a top-level request field (query or body).
    pub fn field(&self, name: &str) -> Option<String> {
        if let Some(Value::Object(map)) = &self.body {
            return map.get(name).and_then(Value::as_str).map(str::to_owned);
        }
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The request's `bank_tran_id`: top level, or of the first list item.
    pub fn tran_id(&self) -> Option<String> {
        self.field("bank_tran_id")
            .or_else(|| self.list_field("bank_tran_id"))
    }

    /// The request's amount `tran_amt`, top level or of the first list item.
    pub fn amount(&self) -> Option<u64> {
        self.field("tran_amt")
            .or_else(|| self.list_field("tran_amt"))?
            .parse()
            .ok()
    }

    /// A string field of the first item of the first list in the body.
    fn list_field(&self, name: &str) -> Option<String> {
        let Some(Value::Object(map)) = &self.body else {
            return None;
        };
        map.values().find_map(|v| {
            v.as_array()?
                .first()?
                .get(name)?
                .as_str()
                .map(str::to_owned)
        })
    }

    /// Sets a top-level request field (query or body) to a string.
    pub fn set_field(&mut self, name: &str, value: Value) {
        if let Some(Value::Object(map)) = &mut self.body {
            map.insert(name.to_owned(), value);
            return;
        }
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        match self.query.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = text,
            None => self.query.push((name.to_owned(), text)),
        }
    }

    /// Sets a field of every item of a body list (`req_list[].tran_amt`).
    pub fn set_list_field(&mut self, list: &str, name: &str, value: Value) {
        if let Some(Value::Array(items)) = self.body.as_mut().and_then(|b| b.get_mut(list)) {
            for item in items {
                if let Value::Object(map) = item {
                    map.insert(name.to_owned(), value.clone());
                }
            }
        }
    }

    /// Removes a top-level request field.
    pub fn remove_field(&mut self, name: &str) {
        if let Some(Value::Object(map)) = &mut self.body {
            map.remove(name);
        }
        self.query.retain(|(k, _)| k != name);
    }

    /// The HTTP request.
    pub fn to_http(&self) -> HttpRequest {
        let query = match &self.raw_query {
            Some(q) => q.clone(),
            None => self
                .query
                .iter()
                .map(|(k, v)| format!("{}={}", encode_query_value(k), encode_query_value(v)))
                .collect::<Vec<_>>()
                .join("&"),
        };
        let target = if query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{query}", self.path)
        };
        let body = match (&self.raw_body, &self.body) {
            (Some(raw), _) => raw.clone(),
            (None, Some(v)) => serde_json::to_vec(v).unwrap_or_default(),
            (None, None) => Vec::new(),
        };
        let mut headers = vec![(PERSONA_HEADER.to_owned(), self.persona.clone())];
        let content_type = self
            .content_type
            .clone()
            .or_else(|| self.body.as_ref().map(|_| "application/json".to_owned()));
        if let Some(ct) = content_type {
            headers.push(("content-type".into(), ct));
        }
        HttpRequest {
            method: self.method.clone(),
            target,
            headers,
            body,
        }
    }

    /// A short description for the report.
    pub fn describe(&self) -> String {
        let req = self.to_http();
        let body = String::from_utf8_lossy(&req.body);
        let body = if body.chars().count() > 160 {
            format!(
                "{}… ({} bytes)",
                body.chars().take(160).collect::<String>(),
                req.body.len()
            )
        } else {
            body.into_owned()
        };
        let target = if req.target.chars().count() > 200 {
            format!("{}…", req.target.chars().take(200).collect::<String>())
        } else {
            req.target
        };
        if body.is_empty() {
            format!("{} {} as {}", req.method, target, self.persona)
        } else {
            format!(
                "{} {} as {} body {}",
                req.method, target, self.persona, body
            )
        }
    }
}

/// `a=1&b=2` → pairs (no decoding: examples are plain ASCII).
pub(crate) fn parse_query(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}
