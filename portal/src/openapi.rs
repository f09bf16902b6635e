//! OpenAPI 3.1 for every served API, generated from the manifests' `[docs]`.
//! Field types in the reference's notation (`AN(20)`, `N(12)`, `Object[]`)
//! become JSON Schema strings with `maxLength` (the open-banking wire format
//! sends numbers as strings), digit fields (`N(n)`) with a `pattern`, and
//! keep the notation in `x-sfop-type`. Each route gets the fields that name
//! it (or name no route) and the example that names it (the first route:
//! `[docs.example]`), so two routes of one package can differ. Response
//! examples get the common header the gateway stamps (`api_tran_id`,
//! `api_tran_dtm`) when the package's example leaves it out, and every
//! HTTP-level refusal is documented with the envelope schema.

use serde_json::{Map, Value, json};
use sfop_core::manifest::{Example, FieldDoc};

use crate::{ApiEntry, VersionState};

/// `AN(20)` → (`AN`, Some(20)); `Object[]` → (`Object[]`, None).
pub(crate) fn parse_kind(kind: &str) -> (&str, Option<u32>) {
    match kind.split_once('(') {
        Some((base, rest)) => (base, rest.trim_end_matches(')').trim().parse().ok()),
        None => (kind, None),
    }
}

/// A documented field tree: `res_list[].bank_name` is field `bank_name` of
/// the items of list `res_list`.
#[derive(Debug, Default)]
struct Node<'a> {
    doc: Option<&'a FieldDoc>,
    list: bool,
    /// A response field: may be empty when it does not apply (e.g. no
    /// maturity date), and an amount may be negative (an overdrawn line).
    response: bool,
    children: Vec<(String, Node<'a>)>,
}

impl<'a> Node<'a> {
    fn child(&mut self, name: &str) -> &mut Node<'a> {
        let i = match self.children.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                let child = Node {
                    response: self.response,
                    ..Node::default()
                };
                self.children.push((name.to_owned(), child));
                self.children.len() - 1
            }
        };
        &mut self.children[i].1
    }

    /// The fields of `route` (those that name it or name no route).
    fn build(fields: &'a [FieldDoc], route: &str, response: bool) -> Node<'a> {
        let mut root = Node {
            response,
            ..Node::default()
        };
        let of_route = fields
            .iter()
            .filter(|f| f.routes.is_empty() || f.routes.iter().any(|r| r == route));
        for f in of_route {
            let parts: Vec<&str> = f.name.split("[].").collect();
            let mut node = &mut root;
            for (i, part) in parts.iter().enumerate() {
                node = node.child(part);
                if i + 1 < parts.len() {
                    node.list = true;
                }
            }
            node.doc = Some(f);
        }
        root
    }

    fn required(&self) -> Vec<Value> {
        self.children
            .iter()
            .filter(|(_, n)| n.doc.is_some_and(|d| d.required))
            .map(|(name, _)| Value::String(name.clone()))
            .collect()
    }

    fn object_schema(&self) -> Value {
        let properties: Map<String, Value> = self
            .children
            .iter()
            .map(|(name, n)| (name.clone(), n.schema()))
            .collect();
        let mut schema = json!({ "type": "object", "properties": properties });
        let required = self.required();
        if !required.is_empty() {
            schema["required"] = Value::Array(required);
        }
        schema
    }

    fn schema(&self) -> Value {
        let mut schema = if self.list || !self.children.is_empty() {
            let items = self.object_schema();
            if self.list || self.doc.is_some_and(|d| d.kind.ends_with("[]")) {
                json!({ "type": "array", "items": items })
            } else {
                items
            }
        } else {
            match self.doc.map(|d| parse_kind(&d.kind)) {
                Some((base, _)) if base.ends_with("[]") => {
                    json!({ "type": "array", "items": { "type": "object" } })
                }
                Some((base, _)) if base.eq_ignore_ascii_case("object") => {
                    json!({ "type": "object" })
                }
                Some(("N", Some(len))) => {
                    let name = self.doc.map(|d| d.name.as_str()).unwrap_or_default();
                    digits_schema(name, len, self.response)
                }
                Some((_, Some(len))) => json!({ "type": "string", "maxLength": len }),
                _ => json!({ "type": "string" }),
            }
        };
        if let Some(doc) = self.doc {
            schema["description"] = Value::String(doc.description.clone());
            schema["x-sfop-type"] = Value::String(doc.kind.clone());
        }
        schema
    }
}

/// Digit fields whose length is fixed: dates, times, codes, user and
/// fintech numbers. Amounts, counts and account numbers are 1 to `n` digits.
fn fixed_length(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    ["fintech_use_num", "user_seq_no"]
        .iter()
        .any(|s| last.ends_with(s))
        || [
            "_date",
            "_dtime",
            "_time",
            "_dtm",
            "code_std",
            "code_tran",
            "rsp_code",
            "bank_code",
        ]
        .iter()
        .any(|s| last.ends_with(s))
}

/// The schema of an `N(len)` field: a string of digits. A response field may
/// be empty when it does not apply, and an amount may be negative.
fn digits_schema(name: &str, len: u32, response: bool) -> Value {
    let amount = name.ends_with("_amt");
    match (fixed_length(name), response) {
        (true, false) => json!({
            "type": "string", "minLength": len, "maxLength": len,
            "pattern": format!("^[0-9]{{{len}}}$"),
        }),
        (true, true) => json!({
            "type": "string", "maxLength": len,
            "pattern": format!("^([0-9]{{{len}}})?$"),
        }),
        (false, false) => json!({
            "type": "string", "minLength": 1, "maxLength": len,
            "pattern": format!("^[0-9]{{1,{len}}}$"),
        }),
        (false, true) if amount => json!({
            "type": "string", "maxLength": len + 1,
            "pattern": format!("^-?[0-9]{{0,{len}}}$"),
        }),
        (false, true) => json!({
            "type": "string", "maxLength": len,
            "pattern": format!("^[0-9]{{0,{len}}}$"),
        }),
    }
}

/// `a=1&b=2` → {a: "1", b: "2"} (percent-decoded).
fn query_example(query: &str) -> Map<String, Value> {
    crate::render::parse_form(query.as_bytes())
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

/// The common header of every answer, with its schema.
fn envelope_properties() -> Map<String, Value> {
    let mut props = Map::new();
    props.insert(
        "api_tran_id".into(),
        json!({ "type": "string", "minLength": 1, "maxLength": 40,
                "description": "The platform's id of this call; quote it to the operator" }),
    );
    props.insert(
        "api_tran_dtm".into(),
        json!({ "type": "string", "pattern": "^[0-9]{17}$", "minLength": 17, "maxLength": 17,
                "description": "When the platform answered, YYYYMMDDhhmmssSSS (KST)" }),
    );
    props.insert(
        "rsp_code".into(),
        json!({ "type": "string", "pattern": "^[A-Z][0-9]{4}$",
                "description": "A0000 on success; otherwise the reason" }),
    );
    props.insert(
        "rsp_message".into(),
        json!({ "type": "string", "description": "Empty on success; otherwise what to fix" }),
    );
    props
}

/// The header values shown in examples (the gateway stamps real ones).
pub(crate) const EXAMPLE_API_TRAN_ID: &str = "0192f3a1c2d34e5f8a6b7c8d9e0f1a2b";
pub(crate) const EXAMPLE_API_TRAN_DTM: &str = "20261122120000123";

/// A package's example response with the common header first, as the
/// gateway sends it: `api_tran_id` and `api_tran_dtm` are the gateway's, so
/// packages may leave them out of their examples.
pub(crate) fn stamped_example(response: &str) -> Option<Value> {
    let Ok(Value::Object(body)) = serde_json::from_str::<Value>(response) else {
        return None;
    };
    let mut out = Map::new();
    out.insert("api_tran_id".into(), json!(EXAMPLE_API_TRAN_ID));
    out.insert("api_tran_dtm".into(), json!(EXAMPLE_API_TRAN_DTM));
    for key in ["rsp_code", "rsp_message"] {
        out.insert(key.into(), body.get(key).cloned().unwrap_or(json!("")));
    }
    out.extend(body);
    Some(Value::Object(out))
}

/// The documented example of `route` (a path) of an API: the one that names
/// it, else `[docs.example]` when it names no route and `route` is the
/// package's first.
pub fn example_of<'a>(manifest: &'a sfop_core::Manifest, route: &str) -> Option<&'a Example> {
    let docs = manifest.docs.as_ref()?;
    let first = manifest.routes.first().map(|r| r.path.as_str());
    docs.example
        .iter()
        .chain(&docs.examples)
        .find(|e| e.route.as_deref() == Some(route))
        .or_else(|| {
            docs.example
                .as_ref()
                .filter(|e| e.route.is_none() && first == Some(route))
        })
}

/// HTTP-level answers: (status, component name, when, example rsp_code).
/// Business refusals are not among them: a scope the token lacks (A0011),
/// an account or user it was not granted (A0304, A0301), a malformed or
/// repeated field (A0004) are HTTP 200 with the rsp_code, as on the KFTC
/// platform (ADR 0021); no API answers 403.
const HTTP_ANSWERS: &[(u16, &str, &str, &str)] = &[
    (
        400,
        "BadRequest",
        "The request body could not be read (the transfer broke off or its framing is invalid); a malformed or repeated field is a business answer, HTTP 200 with A0004",
        "A0004",
    ),
    (
        401,
        "Unauthorized",
        "No access token, or one the platform rejects (O0001 missing or malformed, O0002 rejected or expired); the answer carries WWW-Authenticate. A valid token that does not allow the call is a business answer: HTTP 200 with A0011 (scope), A0304 (account) or A0301 (user, a restriction of the token)",
        "O0002",
    ),
    (
        404,
        "NotFound",
        "No API serves this path (or the pinned version is not served)",
        "A0004",
    ),
    (
        405,
        "MethodNotAllowed",
        "The path is served, with another method",
        "O0010",
    ),
    (
        413,
        "PayloadTooLarge",
        "The body is larger than the API's limit",
        "A0004",
    ),
    (
        429,
        "TooManyRequests",
        "Too many requests from this client: throttled, nothing was done; retry after the time in Retry-After",
        "A0013",
    ),
    (
        503,
        "ServiceUnavailable",
        "The API is closed, or the platform is too busy to take the call (then with Retry-After); nothing was done, retry later",
        "A0013",
    ),
    (
        504,
        "GatewayTimeout",
        "The API did not finish in time: the result is not final; reconcile with /v2.0/transfer/result before retrying a transfer",
        "A0007",
    ),
];

fn http_responses() -> Map<String, Value> {
    HTTP_ANSWERS
        .iter()
        .map(|(status, name, when, code)| {
            let example = json!({
                "api_tran_id": EXAMPLE_API_TRAN_ID,
                "api_tran_dtm": EXAMPLE_API_TRAN_DTM,
                "rsp_code": code,
                "rsp_message": when,
            });
            (
                (*name).to_owned(),
                json!({
                    "description": format!("HTTP {status}: {when}"),
                    "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/ErrorEnvelope" },
                        "example": example,
                    } }
                }),
            )
        })
        .collect()
}

/// A short hash of which versions are served, so the document's version
/// changes whenever the catalogue does.
fn catalogue_version(apis: &[ApiEntry]) -> String {
    let served: Vec<String> = apis
        .iter()
        .flat_map(|a| {
            a.versions
                .iter()
                .filter(|v| v.state.is_served())
                .map(|v| format!("{}@{}:{}", a.name, v.manifest.version, v.sha256))
        })
        .collect();
    let digest = crate::sha256_hex(served.join("\n").as_bytes());
    format!("{}+{}", env!("CARGO_PKG_VERSION"), &digest[..12])
}

/// The OpenAPI 3.1 document of every served API's current version, with
/// `server_url` (e.g. `https://127.0.0.1:8443`) as its server.
pub fn openapi(apis: &[ApiEntry], server_url: &str) -> Value {
    let mut paths = Map::new();
    let mut tags = Vec::new();
    for api in apis {
        let Some(current) = api.current() else {
            continue;
        };
        let m = &current.manifest;
        tags.push(json!({ "name": m.name, "description": m.description }));
        let docs = m.docs.clone().unwrap_or_default();
        let codes: Vec<Value> = docs
            .codes
            .iter()
            .map(|c| json!({ "rsp_code": c.code, "meaning": c.meaning }))
            .collect();
        for (i, route) in m.routes.iter().enumerate() {
            let request = Node::build(&docs.request, &route.path, false);
            let response = Node::build(&docs.response, &route.path, true);
            let example = example_of(m, &route.path);
            let mut response_schema = response.object_schema();
            if let Some(props) = response_schema["properties"].as_object_mut() {
                let mut all = envelope_properties();
                all.extend(std::mem::take(props));
                *props = all;
            }
            let mut required = vec![
                json!("api_tran_id"),
                json!("api_tran_dtm"),
                json!("rsp_code"),
                json!("rsp_message"),
            ];
            if let Some(own) = response_schema["required"].as_array() {
                required.extend(own.iter().cloned());
            }
            response_schema["required"] = Value::Array(required);
            let mut ok = json!({
                "description": "Answered. rsp_code A0000 is success; any other rsp_code (also with status 200) is documented in x-sfop-rsp-codes.",
                "content": { "application/json": { "schema": response_schema } }
            });
            if let Some(parsed) = example.and_then(|e| stamped_example(&e.response)) {
                ok["content"]["application/json"]["example"] = parsed;
            }
            let reference =
                |name: &str| json!({ "$ref": format!("#/components/responses/{name}") });
            let mut responses = Map::new();
            responses.insert("200".into(), ok);
            for (status, name, _, _) in HTTP_ANSWERS {
                if *status == 413 && (route.method == "GET" || route.method == "DELETE") {
                    continue;
                }
                responses.insert(status.to_string(), reference(name));
            }
            responses.insert(
                "default".into(),
                json!({
                    "description": "Refused before or by the API, in the common envelope (e.g. 504 A0007 when the API did not answer in time)",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorEnvelope" } } }
                }),
            );
            let mut op = json!({
                "operationId": if i == 0 { m.name.clone() } else { format!("{}-{}", m.name, i + 1) },
                "summary": m.description,
                "tags": [m.name],
                "security": [{ "openBanking": [m.scope] }],
                "responses": responses,
                "x-sfop-version": m.version.to_string(),
                "x-sfop-scope": m.scope,
                "x-sfop-rsp-codes": codes,
            });
            if matches!(current.state, VersionState::Deprecated { .. }) {
                op["deprecated"] = Value::Bool(true);
            }
            if let VersionState::Deprecated { sunset } = &current.state {
                op["x-sfop-sunset"] = Value::String(sunset.clone());
            }
            if route.method == "GET" || route.method == "DELETE" {
                let examples = example
                    .map(|e| query_example(&e.request))
                    .unwrap_or_default();
                let params: Vec<Value> = request
                    .children
                    .iter()
                    .map(|(name, node)| {
                        let mut p = json!({
                            "name": name,
                            "in": "query",
                            "required": node.doc.is_some_and(|d| d.required),
                            "schema": node.schema(),
                        });
                        if let Some(d) = node.doc {
                            p["description"] = Value::String(d.description.clone());
                        }
                        if let Some(v) = examples.get(name) {
                            p["example"] = v.clone();
                        }
                        p
                    })
                    .collect();
                if !params.is_empty() {
                    op["parameters"] = Value::Array(params);
                }
            } else {
                let mut body = json!({
                    "required": true,
                    "content": { "application/json": { "schema": request.object_schema() } }
                });
                if let Some(parsed) =
                    example.and_then(|e| serde_json::from_str::<Value>(&e.request).ok())
                {
                    body["content"]["application/json"]["example"] = parsed;
                }
                op["requestBody"] = body;
            }
            let item = paths
                .entry(route.path.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            item[route.method.to_lowercase()] = op;
        }
    }
    let base = server_url.trim_end_matches('/');
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sfop open banking APIs",
            "version": catalogue_version(apis),
            "description": "Every API live on this platform, generated from the packages that serve it. Calls need an OAuth 2.0 access token (a biscuit) with the operation's scope; user scopes are granted by the account holder on the consent page, oob by client credentials (PKCE is required in the authorization code flow). Business refusals are HTTP 200 with an rsp_code other than A0000; HTTP 4xx/5xx answers are the platform's own (components/responses).",
        },
        "servers": [{ "url": base }],
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "openBanking": {
                    "type": "oauth2",
                    "description": "The reference platform's OAuth 2.0 endpoints; tokens are biscuits.",
                    "flows": {
                        "authorizationCode": {
                            "authorizationUrl": format!("{base}/oauth/2.0/authorize"),
                            "tokenUrl": format!("{base}/oauth/2.0/token"),
                            "refreshUrl": format!("{base}/oauth/2.0/token"),
                            "scopes": {
                                "login": crate::render::scope_text("login"),
                                "inquiry": crate::render::scope_text("inquiry"),
                                "transfer": crate::render::scope_text("transfer"),
                            }
                        },
                        "clientCredentials": {
                            "tokenUrl": format!("{base}/oauth/2.0/token"),
                            "scopes": { "oob": crate::render::scope_text("oob") }
                        }
                    }
                }
            },
            "responses": http_responses(),
            "schemas": {
                "ErrorEnvelope": {
                    "type": "object",
                    "properties": envelope_properties(),
                    "required": ["api_tran_id", "api_tran_dtm", "rsp_code", "rsp_message"]
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_with_lengths() {
        assert_eq!(parse_kind("AN(20)"), ("AN", Some(20)));
        assert_eq!(parse_kind("N(12)"), ("N", Some(12)));
        assert_eq!(parse_kind("Object[]"), ("Object[]", None));
    }

    #[test]
    fn list_fields_nest_as_arrays_of_objects() {
        let f = |name: &str, kind: &str, required: bool| FieldDoc {
            name: name.into(),
            kind: kind.into(),
            required,
            description: format!("{name} 설명"),
            routes: Vec::new(),
        };
        let fields = [
            f("res_cnt", "N(5)", true),
            f("res_list", "Object[]", true),
            f("res_list[].bank_name", "AH(20)", true),
            f("res_list[].bank_code_std", "N(3)", false),
        ];
        let schema = Node::build(&fields, "/any", false).object_schema();
        assert_eq!(schema["required"], json!(["res_cnt", "res_list"]));
        assert_eq!(schema["properties"]["res_cnt"]["maxLength"], json!(5));
        let list = &schema["properties"]["res_list"];
        assert_eq!(list["type"], json!("array"));
        assert_eq!(list["items"]["required"], json!(["bank_name"]));
        assert_eq!(
            list["items"]["properties"]["bank_name"]["description"],
            json!("res_list[].bank_name 설명")
        );
    }
}
