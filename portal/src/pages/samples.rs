//! Copyable client code for an API's page: curl, Python (`requests`) and
//! JavaScript (`fetch`), all three built from the same documented example
//! request, so they send the same call. The token is read from the
//! environment (`ACCESS_TOKEN`), never written into the code.

use super::*;

/// One client's code.
#[derive(Debug)]
pub(super) struct Sample {
    pub id: &'static str,
    pub label: &'static str,
    pub code: String,
}

/// The documented example as a call: method, full URL and JSON body (for
/// methods with a body).
#[derive(Debug)]
struct Call {
    method: String,
    url: String,
    body: Option<Value>,
}

/// A string as a single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A string as a JSON string literal, which Python and JavaScript read the
/// same way.
fn string_literal(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// A JSON value as a Python literal (`True`, `False`, `None`), indented.
fn python_literal(value: &Value, indent: usize) -> String {
    let pad = "    ".repeat(indent + 1);
    let end = "    ".repeat(indent);
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_literal(s),
        Value::Array(items) if items.is_empty() => "[]".into(),
        Value::Array(items) => {
            let inner: Vec<String> = items
                .iter()
                .map(|v| format!("{pad}{},", python_literal(v, indent + 1)))
                .collect();
            format!("[\n{}\n{end}]", inner.join("\n"))
        }
        Value::Object(map) if map.is_empty() => "{}".into(),
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{pad}{}: {},",
                        string_literal(k),
                        python_literal(v, indent + 1)
                    )
                })
                .collect();
            format!("{{\n{}\n{end}}}", inner.join("\n"))
        }
    }
}

/// A JSON value as a JavaScript object literal, indented like the rest.
fn js_literal(value: &Value, indent: usize) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let pad = "  ".repeat(indent);
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_owned()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn curl(call: &Call) -> String {
    let mut out = format!("curl -X {} {}", call.method, shell_quote(&call.url));
    out.push_str(" \\\n  -H \"Authorization: Bearer $ACCESS_TOKEN\"");
    if let Some(body) = &call.body {
        out.push_str(" \\\n  -H 'Content-Type: application/json; charset=UTF-8'");
        let json = serde_json::to_string(body).unwrap_or_default();
        let _ = write!(out, " \\\n  --data {}", shell_quote(&json));
    }
    out
}

fn python(call: &Call) -> String {
    let mut out = format!(
        "import os\n\nimport requests\n\nresponse = requests.request(\n    {},\n    {},\n    headers={{\"Authorization\": \"Bearer \" + os.environ[\"ACCESS_TOKEN\"]}},\n",
        string_literal(&call.method),
        string_literal(&call.url),
    );
    if let Some(body) = &call.body {
        let _ = writeln!(out, "    json={},", python_literal(body, 1));
    }
    out.push_str(")\nanswer = response.json()\nif answer[\"rsp_code\"] != \"A0000\":\n    raise RuntimeError(answer[\"rsp_code\"] + \" \" + answer[\"rsp_message\"])\nprint(answer)");
    out
}

fn javascript(call: &Call) -> String {
    let mut out = format!(
        "const response = await fetch({}, {{\n  method: {},\n  headers: {{\n    Authorization: `Bearer ${{process.env.ACCESS_TOKEN}}`,\n",
        string_literal(&call.url),
        string_literal(&call.method),
    );
    if call.body.is_some() {
        out.push_str("    \"Content-Type\": \"application/json; charset=UTF-8\",\n");
    }
    out.push_str("  },\n");
    if let Some(body) = &call.body {
        let _ = writeln!(out, "  body: JSON.stringify({}),", js_literal(body, 1));
    }
    out.push_str("});\nconst answer = await response.json();\nif (answer.rsp_code !== \"A0000\") {\n  throw new Error(`${answer.rsp_code} ${answer.rsp_message}`);\n}\nconsole.log(answer);");
    out
}

/// curl, Python and JavaScript for the documented example of `v`, or none
/// when it documents no example.
pub(super) fn samples(base_url: &str, v: &VersionEntry) -> Vec<Sample> {
    let m = &v.manifest;
    let (Some(route), Some(example)) = (
        m.routes.first(),
        m.docs.as_ref().and_then(|d| d.example.as_ref()),
    ) else {
        return Vec::new();
    };
    let get_like = route.method == "GET" || route.method == "DELETE";
    let call = if get_like {
        let query = example.request.trim();
        Call {
            method: route.method.clone(),
            url: if query.is_empty() {
                format!("{base_url}{}", route.path)
            } else {
                format!("{base_url}{}?{query}", route.path)
            },
            body: None,
        }
    } else {
        Call {
            method: route.method.clone(),
            url: format!("{base_url}{}", route.path),
            body: Some(
                serde_json::from_str(&example.request)
                    .unwrap_or_else(|_| Value::String(example.request.clone())),
            ),
        }
    };
    vec![
        Sample {
            id: "sample-curl",
            label: "curl",
            code: curl(&call),
        },
        Sample {
            id: "sample-python",
            label: "Python (requests)",
            code: python(&call),
        },
        Sample {
            id: "sample-javascript",
            label: "JavaScript (fetch)",
            code: javascript(&call),
        },
    ]
}

/// The samples as HTML, each with a copy button (the portal's script).
pub(super) fn samples_html(base_url: &str, v: &VersionEntry) -> maud::Markup {
    let list = samples(base_url, v);
    maud::html! {
        @if !list.is_empty() {
            h2 #code { "Call it from your code" }
            p.muted {
                "The example above as curl, Python and JavaScript; set " code { "ACCESS_TOKEN" }
                " to a token with the API's scope. Use a new " code { "bank_tran_id" } " for every call."
            }
        }
        @for s in &list {
            div.sample-head {
                h3 { (s.label) }
                button type="button" class="copy" data-copy=(s.id) id={ "copy-" (s.id) } { "Copy" }
            }
            pre id=(s.id) { (s.code) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() -> serde_json::Result<()> {
        let v: Value = serde_json::from_str(r#"{"a":[1,true,null],"b":"x'\"y"}"#)?;
        assert_eq!(
            python_literal(&v, 0),
            "{\n    \"a\": [\n        1,\n        True,\n        None,\n    ],\n    \"b\": \"x'\\\"y\",\n}"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        Ok(())
    }
}
