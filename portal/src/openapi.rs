//! OpenAPI 3.1 for every served API, generated from the manifests' `[docs]`.
//! Field types in the reference's notation (`AN(20)`, `N(12)`, `Object[]`)
//! become JSON Schema strings with `maxLength` (the open-banking wire format
//! sends numbers as strings) and keep the notation in `x-sfop-type`.

use serde_json::{Map, Value, json};
use sfop_core::manifest::FieldDoc;

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
    children: Vec<(String, Node<'a>)>,
}

impl<'a> Node<'a> {
    fn child(&mut self, name: &str) -> &mut Node<'a> {
        let i = match self.children.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.children.push((name.to_owned(), Node::default()));
                self.children.len() - 1
            }
        };
        &mut self.children[i].1
    }

    fn build(fields: &'a [FieldDoc]) -> Node<'a> {
        let mut root = Node::default();
        for f in fields {
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

/// `a=1&b=2` → {a: "1", b: "2"} (percent-decoded).
fn query_example(query: &str) -> Map<String, Value> {
    crate::render::parse_form(query.as_bytes())
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

const ENVELOPE: &[(&str, &str)] = &[
    (
        "api_tran_id",
        "The platform's id of this call; quote it to the operator",
    ),
    (
        "api_tran_dtm",
        "When the platform answered, YYYYMMDDhhmmssSSS (KST)",
    ),
    ("rsp_code", "A0000 on success; otherwise the reason"),
    ("rsp_message", "Empty on success; otherwise what to fix"),
];

fn envelope_properties() -> Map<String, Value> {
    ENVELOPE
        .iter()
        .map(|(name, description)| {
            (
                (*name).to_owned(),
                json!({ "type": "string", "description": description }),
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
        let request = Node::build(&docs.request);
        let response = Node::build(&docs.response);
        let example = docs.example.as_ref();
        let mut response_schema = response.object_schema();
        if let Some(props) = response_schema["properties"].as_object_mut() {
            let mut all = envelope_properties();
            all.extend(std::mem::take(props));
            *props = all;
        }
        response_schema["required"] =
            json!(["api_tran_id", "api_tran_dtm", "rsp_code", "rsp_message"]);
        let mut ok = json!({
            "description": "Answered. rsp_code A0000 is success; any other rsp_code (also with status 200) is documented below.",
            "content": { "application/json": { "schema": response_schema } }
        });
        if let Some(parsed) = example.and_then(|e| serde_json::from_str::<Value>(&e.response).ok())
        {
            ok["content"]["application/json"]["example"] = parsed;
        }
        let codes: Vec<Value> = docs
            .codes
            .iter()
            .map(|c| json!({ "rsp_code": c.code, "meaning": c.meaning }))
            .collect();
        for (i, route) in m.routes.iter().enumerate() {
            let mut op = json!({
                "operationId": if i == 0 { m.name.clone() } else { format!("{}-{}", m.name, i + 1) },
                "summary": m.description,
                "tags": [m.name],
                "security": [{ "openBanking": [m.scope] }],
                "responses": {
                    "200": ok,
                    "default": {
                        "description": "Refused before or by the API, in the common envelope",
                        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorEnvelope" } } }
                    }
                },
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
            "description": "Every API live on this platform, generated from the packages that serve it. Calls need an OAuth 2.0 access token (a biscuit) with the operation's scope; user scopes are granted by the account holder on the consent page, oob by client credentials.",
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
            "schemas": {
                "ErrorEnvelope": {
                    "type": "object",
                    "properties": envelope_properties(),
                    "required": ["api_tran_id", "rsp_code", "rsp_message"]
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
        };
        let fields = [
            f("res_cnt", "N(5)", true),
            f("res_list", "Object[]", true),
            f("res_list[].bank_name", "AH(20)", true),
            f("res_list[].bank_code_std", "N(3)", false),
        ];
        let schema = Node::build(&fields).object_schema();
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
