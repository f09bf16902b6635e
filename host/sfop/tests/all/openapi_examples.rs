//! Issue 17: the OpenAPI document validates against itself, and its examples
//! work. Through `sfop serve` over real HTTPS: every example of
//! `/portal/openapi.json` (request bodies, query parameters, responses,
//! HTTP-level answers) is validated against its schema with the Python
//! `jsonschema` package (draft 2020-12, the dialect of OpenAPI 3.1; it comes
//! with `openapi-spec-validator`, which `cargo xtask portal-test-tools`
//! installs); then every documented example request is sent to the platform
//! with a real token (oob by client credentials, user scopes through the
//! authorize pages with PKCE) and must answer `200 A0000` with a body that
//! validates against the documented 200 schema.
//!
//! The examples are adapted to the running platform only where a real
//! client would change them: a fresh `bank_tran_id` per call, `tran_dtime`
//! now, inquiry periods ending today, and `transfer/result` asking about the
//! withdrawal this test made.

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::served::Served;

/// Validates `checks` (`[{label, schema, instance}]`) against the schemas
/// they point at (`schema` is a JSON pointer into `doc`, whose `$ref`s are
/// resolved); prints one line per failure and the count checked.
const VALIDATE: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
doc = json.load(open(sys.argv[1]))
checks = json.load(open(sys.argv[2]))
def at(pointer):
    node = doc
    for part in pointer.lstrip('#/').split('/'):
        if part:
            key = part.replace('~1', '/').replace('~0', '~')
            node = node[int(key)] if isinstance(node, list) else node[key]
    return node
def resolve(node):
    if isinstance(node, dict):
        if '$ref' in node:
            return resolve(at(node['$ref']))
        return {k: resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v) for v in node]
    return node
failed = 0
for c in checks:
    schema = resolve(at(c['schema']))
    Draft202012Validator.check_schema(schema)
    for e in Draft202012Validator(schema).iter_errors(c['instance']):
        failed += 1
        print(f"FAIL {c['label']}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
print(f"checked {len(checks)}, failed {failed}")
"#;

fn pointer(parts: &[&str]) -> String {
    let escaped: Vec<String> = parts
        .iter()
        .map(|p| p.replace('~', "~0").replace('/', "~1"))
        .collect();
    format!("#/{}", escaped.join("/"))
}

/// Runs [`VALIDATE`] over `checks`; the failures, if any.
fn validate(doc: &Value, checks: &[Value]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (doc_file, checks_file, script) = (
        dir.path().join("openapi.json"),
        dir.path().join("checks.json"),
        dir.path().join("validate.py"),
    );
    std::fs::write(&doc_file, serde_json::to_vec(doc)?)?;
    std::fs::write(&checks_file, serde_json::to_vec(checks)?)?;
    std::fs::write(&script, VALIDATE)?;
    let out = Command::new("python3")
        .arg(&script)
        .arg(&doc_file)
        .arg(&checks_file)
        .output()
        .context("running python3")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if said.contains("No module named 'jsonschema'") {
        bail!(
            "python3 lacks jsonschema: run `cargo xtask portal-test-tools` (cargo xtask ci does)"
        );
    }
    if !out.status.success() || !said.contains(&format!("checked {}, failed 0", checks.len())) {
        bail!("examples do not validate against their schemas:\n{said}");
    }
    Ok(())
}

/// Every operation of the document: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            out.push((path.clone(), method.clone(), op.clone()));
        }
    }
    out
}

/// What the document itself claims: each example against its schema.
fn document_checks(doc: &Value) -> Result<Vec<Value>> {
    let mut checks = Vec::new();
    let mut examples = 0;
    for (path, method, op) in operations(doc) {
        let label = format!("{} {path}", method.to_uppercase());
        let base = ["paths", path.as_str(), method.as_str()];
        if let Some(example) = op.pointer("/requestBody/content/application~1json/example") {
            let mut p = base.to_vec();
            p.extend(["requestBody", "content", "application/json", "schema"]);
            checks.push(json!({ "label": format!("{label} request"), "schema": pointer(&p), "instance": example }));
        }
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for (i, param) in params.iter().enumerate() {
            let name = param["name"].as_str().unwrap_or_default();
            match param.get("example") {
                Some(example) => {
                    let i = i.to_string();
                    let mut p = base.to_vec();
                    p.extend(["parameters", i.as_str(), "schema"]);
                    checks.push(json!({ "label": format!("{label} ?{name}"), "schema": pointer(&p), "instance": example }));
                }
                None if param["required"] == json!(true) && op.get("x-example-free").is_none() => {
                    bail!("{label}: required parameter {name} has no example");
                }
                None => {}
            }
        }
        for (status, response) in op["responses"].as_object().into_iter().flatten() {
            let mut p = base.to_vec();
            p.extend(["responses", status.as_str()]);
            let (schema, example) = match response.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let target = doc
                        .pointer(r.trim_start_matches('#'))
                        .context("dangling $ref")?;
                    (
                        format!("{r}/content/application~1json/schema"),
                        target.pointer("/content/application~1json/example"),
                    )
                }
                None => (
                    format!("{}/content/application~1json/schema", pointer(&p)),
                    response.pointer("/content/application~1json/example"),
                ),
            };
            if let Some(example) = example {
                checks.push(json!({ "label": format!("{label} {status}"), "schema": schema, "instance": example }));
            }
        }
        if op
            .pointer("/responses/200/content/application~1json/example")
            .is_some()
        {
            examples += 1;
        }
        for status in ["401", "404", "405", "429", "503", "504"] {
            assert!(
                op["responses"].get(status).is_some(),
                "{label}: HTTP {status} is not documented"
            );
        }
        // Business refusals are HTTP 200 with their rsp_code (ADR 0021):
        // no API answers 403, so none documents it.
        assert!(
            op["responses"].get("403").is_none(),
            "{label}: HTTP 403 is documented, but refusals are 200 with an rsp_code"
        );
    }
    assert!(
        examples >= 13,
        "every route documents a success example: {examples}"
    );
    Ok(checks)
}

/// `YYYYMMDD` (KST) `days` before now.
fn kst_date(days_ago: u64) -> String {
    let ms = sfop_core::time::now_millis() - days_ago * 86_400_000;
    sfop_core::time::format_dtm(ms, sfop_core::time::KST_OFFSET_MINUTES)[..8].to_owned()
}

fn now_dtime() -> String {
    let ms = sfop_core::time::now_millis();
    sfop_core::time::format_dtm(ms, sfop_core::time::KST_OFFSET_MINUTES)[..14].to_owned()
}

/// The example adapted to now: fresh `bank_tran_id`s, `tran_dtime` now,
/// periods ending today, and `transfer/result` about `withdrawn`.
fn adapt(
    value: &mut Value,
    next_id: &mut impl FnMut() -> String,
    withdrawn: &Option<(String, String)>,
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match (k.as_str(), v) {
                    ("bank_tran_id", v) => *v = json!(next_id()),
                    ("tran_dtime", v) => *v = json!(now_dtime()),
                    ("to_date", v) => *v = json!(kst_date(0)),
                    ("from_date", v) => *v = json!(kst_date(40)),
                    ("org_bank_tran_id", v) => {
                        if let Some((id, _)) = withdrawn {
                            *v = json!(id);
                        }
                    }
                    ("org_bank_tran_date", v) => {
                        if let Some((_, date)) = withdrawn {
                            *v = json!(date);
                        }
                    }
                    (_, v) => adapt(v, next_id, withdrawn),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| adapt(v, next_id, withdrawn)),
        _ => {}
    }
}

fn query_of(params: &[Value], adapted: &Value) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    params
        .iter()
        .filter_map(|p| {
            let name = p["name"].as_str()?;
            let value = adapted.get(name)?.as_str()?;
            Some(format!("{name}={}", encode(value)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn every_openapi_example_validates_and_works_against_the_platform() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let served = Served::start(&data, &dir.path().join("serve.log"))?;
    let reply = served
        .https("GET", "/portal/openapi.json", &[], Vec::new())
        .await?;
    assert_eq!(reply.status, 200);
    let doc: Value = reply.json()?;

    // 1. The document against itself.
    let mut checks = document_checks(&doc)?;
    validate(&doc, &checks)?;

    // The deposit by account number has its own contract.
    let acnt = &doc["paths"]["/v2.0/transfer/deposit/acnt_num"]["post"];
    let fin = &doc["paths"]["/v2.0/transfer/deposit/fin_num"]["post"];
    let item = |op: &Value| {
        op.pointer("/requestBody/content/application~1json/schema/properties/req_list/items")
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        item(acnt)["required"]
            .as_array()
            .map(|r| r.contains(&json!("account_num")) && !r.contains(&json!("fintech_use_num"))),
        Some(true),
        "{}",
        item(acnt)
    );
    assert!(item(acnt)["properties"].get("fintech_use_num").is_none());
    assert!(item(fin)["properties"].get("account_num").is_none());
    assert_eq!(
        item(fin)["properties"]["fintech_use_num"]["pattern"],
        json!("^[0-9]{24}$")
    );

    // 2. Every example request, sent.
    let oob = served.oob_token().await?;
    let user = served.user_token("hong", "hong1234").await?;
    let mut seq = 0u32;
    let mut next_id = || {
        seq += 1;
        format!(
            "M202300001U{:09}",
            700_000_000 + seq + (std::process::id() % 1000) * 1000
        )
    };
    let mut ops = operations(&doc);
    // Money first (transfer/result asks about the withdrawal), account
    // cancel last (it withdraws a consent).
    let rank = |path: &str| match path {
        p if p.contains("withdraw") => 0,
        p if p.contains("transfer/result") => 2,
        p if p.contains("account/cancel") => 3,
        _ => 1,
    };
    ops.sort_by_key(|(path, _, _)| rank(path));
    let mut withdrawn: Option<(String, String)> = None;
    let mut sent = 0;
    for (path, method, op) in &ops {
        let label = format!("{} {path}", method.to_uppercase());
        let scope = op["x-sfop-scope"].as_str().unwrap_or_default();
        let token = if scope == "oob" { &oob } else { &user };
        let auth = format!("Bearer {token}");
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let reply = if method == "get" {
            let mut example: Value = params
                .iter()
                .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p.get("example")?.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into();
            adapt(&mut example, &mut next_id, &withdrawn);
            let query = query_of(&params, &example);
            let target = if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{query}")
            };
            served
                .https("GET", &target, &[("authorization", &auth)], Vec::new())
                .await?
        } else {
            let mut example = op
                .pointer("/requestBody/content/application~1json/example")
                .cloned()
                .with_context(|| format!("{label}: no example request"))?;
            adapt(&mut example, &mut next_id, &withdrawn);
            if path.contains("withdraw") {
                withdrawn = Some((
                    example["bank_tran_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    kst_date(0),
                ));
            }
            served
                .https(
                    &method.to_uppercase(),
                    path,
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                    ],
                    serde_json::to_vec(&example)?,
                )
                .await?
        };
        let body = reply.json().with_context(|| label.clone())?;
        assert_eq!(
            (reply.status, body["rsp_code"].as_str()),
            (200, Some("A0000")),
            "{label} answered {body}"
        );
        checks.push(json!({
            "label": format!("{label} answer"),
            "schema": pointer(&["paths", path, method, "responses", "200", "content", "application/json", "schema"]),
            "instance": body,
        }));
        sent += 1;
    }
    assert!(sent >= 13, "{sent} examples sent");
    // 3. Every answer is what the document says a 200 is.
    validate(&doc, &checks)?;

    // An HTTP-level answer as documented: no token is 401 with the envelope.
    let refused = served
        .https("GET", "/v2.0/bank/status", &[], Vec::new())
        .await?;
    assert_eq!(refused.status, 401);
    validate(
        &doc,
        &[json!({
            "label": "401 without a token",
            "schema": "#/components/responses/Unauthorized/content/application~1json/schema",
            "instance": refused.json()?,
        })],
    )?;
    served.stop()
}
