//! Stamping the common envelope (`api_tran_id`, `api_tran_dtm`) onto a JSON
//! object written by a plugin, without parsing it into a tree.
//!
//! The body is validated as JSON in full (so a malformed body is still
//! refused), then its top-level members are copied byte for byte after the
//! two envelope fields. Members a plugin wrote under the envelope's keys are
//! dropped: a plugin cannot forge them. Bodies this byte-level path cannot
//! decide with certainty (a top-level key written with escapes, or a key
//! repeated) take the slow path: parse into a map, rebuild, serialise.

use serde::de::IgnoredAny;
use serde_json::{Map, Value};

const ID_KEY: &[u8] = b"\"api_tran_id\"";
const DTM_KEY: &[u8] = b"\"api_tran_dtm\"";

/// `body` (a JSON object) with `api_tran_id` and `api_tran_dtm` first;
/// values the body had under those keys are replaced. `None` when the body
/// is not a JSON object.
pub(crate) fn stamp(body: &[u8], id: &str, dtm: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    // Well-formed JSON, in full, before anything is copied.
    serde_json::from_str::<IgnoredAny>(text).ok()?;
    match members(body) {
        Scan::Object(members) => Some(splice(&members, id, dtm, body.len())),
        Scan::NotAnObject => None,
        Scan::Undecided => slow(text, id, dtm),
    }
}

/// The top-level members of a valid JSON text, as raw byte slices
/// (`"key":value`), envelope keys left out.
enum Scan<'a> {
    Object(Vec<&'a [u8]>),
    NotAnObject,
    /// Escaped or repeated top-level keys.
    Undecided,
}

fn members(body: &[u8]) -> Scan<'_> {
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return Scan::NotAnObject;
    }
    i = skip_ws(body, i + 1);
    let mut out = Vec::new();
    let mut keys: Vec<&[u8]> = Vec::new();
    if body.get(i) == Some(&b'}') {
        return Scan::Object(out);
    }
    loop {
        // A key: the text is valid JSON, so a string starts here.
        let start = i;
        let Some(key_end) = string_end(body, i) else {
            return Scan::Undecided;
        };
        let key = &body[start..key_end];
        if key.contains(&b'\\') || keys.contains(&key) {
            return Scan::Undecided;
        }
        keys.push(key);
        i = skip_ws(body, key_end);
        if body.get(i) != Some(&b':') {
            return Scan::Undecided;
        }
        i = skip_ws(body, i + 1);
        let Some(value_end) = value_end(body, i) else {
            return Scan::Undecided;
        };
        if key != ID_KEY && key != DTM_KEY {
            out.push(&body[start..value_end]);
        }
        i = skip_ws(body, value_end);
        match body.get(i) {
            Some(b',') => i = skip_ws(body, i + 1),
            Some(b'}') => return Scan::Object(out),
            _ => return Scan::Undecided,
        }
    }
}

fn splice(members: &[&[u8]], id: &str, dtm: &str, hint: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(hint + id.len() + dtm.len() + 40);
    out.extend_from_slice(b"{\"api_tran_id\":");
    push_str(&mut out, id);
    out.extend_from_slice(b",\"api_tran_dtm\":");
    push_str(&mut out, dtm);
    for member in members {
        out.push(b',');
        out.extend_from_slice(member);
    }
    out.push(b'}');
    out
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// The envelope through a parsed map (the body is known to be valid JSON).
fn slow(text: &str, id: &str, dtm: &str) -> Option<Vec<u8>> {
    let fields: Map<String, Value> = serde_json::from_str(text).ok()?;
    let mut stamped = Map::with_capacity(fields.len() + 2);
    stamped.insert("api_tran_id".into(), Value::String(id.to_owned()));
    stamped.insert("api_tran_dtm".into(), Value::String(dtm.to_owned()));
    for (k, v) in fields {
        if k != "api_tran_id" && k != "api_tran_dtm" {
            stamped.insert(k, v);
        }
    }
    serde_json::to_vec(&stamped).ok()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the string starting at `i` (which must be `"`).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The index just past the value starting at `i`, in valid JSON.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        // Numbers, true, false, null: up to the next delimiter.
        _ => {
            let mut j = i;
            while !matches!(
                b.get(j),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                j += 1;
            }
            Some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00000000000000aa0000000000000001";
    const DTM: &str = "20261129120000123";

    fn stamped(body: &str) -> Option<Value> {
        let out = stamp(body.as_bytes(), ID, DTM)?;
        serde_json::from_slice(&out).ok()
    }

    fn keys(v: &Value) -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn envelope_comes_first_and_the_rest_is_kept_in_order() {
        let v = stamped(r#"{"rsp_code":"A0000","rsp_message":"","n":[1,{"a":"}"}],"x":-1.5e3}"#);
        let v = v.unwrap_or_default();
        assert_eq!(
            keys(&v),
            [
                "api_tran_id",
                "api_tran_dtm",
                "rsp_code",
                "rsp_message",
                "n",
                "x"
            ]
        );
        assert_eq!(v["api_tran_id"], ID);
        assert_eq!(v["api_tran_dtm"], DTM);
        assert_eq!(v["n"][1]["a"], "}");
        assert_eq!(v["x"], -1500.0);
    }

    #[test]
    fn a_plugin_cannot_forge_the_envelope() {
        for body in [
            r#"{"api_tran_id":"forged","rsp_code":"A0000","api_tran_dtm":"1"}"#,
            r#"{"rsp_code":"A0000","api_tran_id":{"nested":"forged"}}"#,
            r#"{"api_tran_id":"forged"}"#,
            // Escaped key: the slow path decodes it.
            r#"{"api\u005ftran_id":"forged","rsp_code":"A0000"}"#,
            // Repeated key: the slow path too.
            r#"{"api_tran_id":"a","api_tran_id":"b","rsp_code":"A0000"}"#,
        ] {
            let v = stamped(body).unwrap_or_default();
            assert_eq!(v["api_tran_id"], ID, "{body}");
            assert_eq!(v["api_tran_dtm"], DTM, "{body}");
            assert_eq!(keys(&v)[..2], ["api_tran_id", "api_tran_dtm"], "{body}");
            let text = String::from_utf8(stamp(body.as_bytes(), ID, DTM).unwrap_or_default())
                .unwrap_or_default();
            assert!(!text.contains("forged"), "{text}");
            assert_eq!(text.matches("api_tran_id").count(), 1, "{text}");
        }
    }

    #[test]
    fn whitespace_and_empty_objects() {
        let v = stamped(" \n{ \"a\" : 1 ,\t\"api_tran_id\" : \"x\" , \"b\" : [ ] } \n")
            .unwrap_or_default();
        assert_eq!(keys(&v), ["api_tran_id", "api_tran_dtm", "a", "b"]);
        let v = stamped("{}").unwrap_or_default();
        assert_eq!(keys(&v), ["api_tran_id", "api_tran_dtm"]);
        let v = stamped("{ }").unwrap_or_default();
        assert_eq!(keys(&v), ["api_tran_id", "api_tran_dtm"]);
        let v = stamped(r#"{"api_tran_id":"x"}"#).unwrap_or_default();
        assert_eq!(keys(&v), ["api_tran_id", "api_tran_dtm"]);
    }

    #[test]
    fn strings_with_quotes_and_braces_are_copied_whole() {
        let body = r#"{"a":"x\"},{\"y","b":"\\","c":"한글 \u00e9"}"#;
        let v = stamped(body).unwrap_or_default();
        assert_eq!(v["a"], "x\"},{\"y");
        assert_eq!(v["b"], "\\");
        assert_eq!(v["c"], "한글 é");
    }

    #[test]
    fn anything_but_a_valid_json_object_is_refused() {
        for body in [
            "",
            "[]",
            "\"text\"",
            "1",
            "null",
            "{",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1} x",
            "{\"a\":1}{}",
            "{'a':1}",
            "{\"a\":\"\u{1}\"}",
        ] {
            assert!(stamp(body.as_bytes(), ID, DTM).is_none(), "{body:?}");
        }
        assert!(stamp(b"{\"a\":\"\xff\"}", ID, DTM).is_none());
    }

    #[test]
    fn the_fast_path_agrees_with_the_slow_one() {
        for body in [
            r#"{"rsp_code":"A0000","rsp_message":"ok","res_list":[{"bank_code_std":"002","bank_name":"산업은행"}],"res_cnt":"1"}"#,
            r#"{"plugin":"echo","json":null,"caller":null,"api_tran_id":"forged","now_millis":"1"}"#,
            r#"{"t":true,"f":false,"n":null,"num":0,"neg":-0.5,"e":1E+2}"#,
        ] {
            let fast = stamped(body);
            let slow = slow(body, ID, DTM).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            assert_eq!(fast, slow, "{body}");
        }
    }
}
