//! JSON with every object key given once. serde_json keeps the last of
//! repeated keys without a word; a request that names a field twice is
//! ambiguous (the gateway refuses it before authorisation, and the SDK
//! refuses it again so that a plugin never picks one of two values).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `body` as one JSON value; a key repeated in any object is an
/// error that names it.
pub(crate) fn parse(body: &[u8]) -> Result<Value, serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    let value = UniqueValue.deserialize(&mut reader)?;
    reader.end()?;
    Ok(value)
}

struct UniqueValue;

impl<'de> DeserializeSeed<'de> for UniqueValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(UniqueValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "{key}: JSON key given more than once"
                )));
            }
            let value = map.next_value_seed(UniqueValue)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_serde_json_but_refuses_repeated_keys() {
        let body = br#" {"req_list":[{"a":"1","b":2},{"a":"3","b":-4.5,"c":[true,null]}],"x":{}} "#;
        assert_eq!(parse(body).ok(), serde_json::from_slice::<Value>(body).ok());
        for body in [
            &br#"{"fintech_use_num":"A","fintech_use_num":"B"}"#[..],
            br#"{"fintech_use_num":"A","fintech\u005fuse_num":"B"}"#,
            br#"{"req_list":[{"tran_amt":"1","tran_amt":"2"}]}"#,
        ] {
            let e = parse(body).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("given more than once"), "{e}");
        }
        assert!(parse(br#"{"a":1} x"#).is_err());
    }
}
