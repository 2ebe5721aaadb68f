//! Schema-guided conversion between the JSON form of a message (what serde produces for
//! our types) and an Avro value. Tagged enums are flattened in both: a record with a
//! `type` string and nullable fields for every variant's data, so the Avro schemas in
//! `topics/schemas/` describe exactly the JSON documents, field for field.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::types::Value;
use serde_json::Value as Json;

/// Why a value did not fit its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Mismatch {
    pub path: String,
    pub reason: String,
}

fn mismatch(path: &str, reason: impl Into<String>) -> Mismatch {
    Mismatch { path: path.to_owned(), reason: reason.into() }
}

/// JSON to Avro, following `schema`. Absent fields become `null` where the schema allows.
pub fn to_avro(schema: &Schema, json: &Json, path: &str) -> Result<Value, Mismatch> {
    Ok(match (schema, json) {
        (Schema::Null, Json::Null) => Value::Null,
        (Schema::Boolean, Json::Bool(b)) => Value::Boolean(*b),
        (Schema::Int, Json::Number(n)) => Value::Int(
            n.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| mismatch(path, "not an int"))?,
        ),
        (Schema::Long, Json::Number(n)) => {
            Value::Long(n.as_i64().ok_or_else(|| mismatch(path, "not a long"))?)
        }
        (Schema::String, Json::String(s)) => Value::String(s.clone()),
        (Schema::Array(a), Json::Array(items)) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| to_avro(&a.items, v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        (Schema::Map(m), Json::Object(o)) => Value::Map(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), to_avro(&m.types, v, &format!("{path}.{k}"))?)))
                .collect::<Result<HashMap<_, _>, _>>()?,
        ),
        (Schema::Union(u), value) => {
            let variants = u.variants();
            if value.is_null() {
                let i = variants
                    .iter()
                    .position(|s| *s == Schema::Null)
                    .ok_or_else(|| mismatch(path, "null not allowed"))?;
                Value::Union(i as u32, Box::new(Value::Null))
            } else {
                let (i, v) = variants
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| **s != Schema::Null)
                    .find_map(|(i, s)| to_avro(s, value, path).ok().map(|v| (i, v)))
                    .ok_or_else(|| mismatch(path, "no union branch fits"))?;
                Value::Union(i as u32, Box::new(v))
            }
        }
        (Schema::Record(r), Json::Object(o)) => {
            if let Some(extra) = o.keys().find(|k| !r.lookup.contains_key(*k)) {
                return Err(mismatch(path, format!("field {extra:?} is not in the schema")));
            }
            let fields = r.fields.iter().map(|f| {
                let v = o.get(&f.name).unwrap_or(&Json::Null);
                Ok((f.name.clone(), to_avro(&f.schema, v, &format!("{path}.{}", f.name))?))
            });
            Value::Record(fields.collect::<Result<_, _>>()?)
        }
        (s, v) => return Err(mismatch(path, format!("{v} does not fit {s:?}"))),
    })
}

/// Avro to JSON; `null` record fields are left out (they were absent in the JSON).
pub fn to_json(value: &Value) -> Result<Json, Mismatch> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(n) => Json::from(*n),
        Value::Long(n) => Json::from(*n),
        Value::String(s) => Json::String(s.clone()),
        Value::Union(_, v) => to_json(v)?,
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(m) => Json::Object(
            m.iter().map(|(k, v)| Ok((k.clone(), to_json(v)?))).collect::<Result<_, Mismatch>>()?,
        ),
        Value::Record(fields) => {
            let mut out = serde_json::Map::new();
            for (k, v) in fields {
                let j = to_json(v)?;
                if !j.is_null() {
                    out.insert(k.clone(), j);
                }
            }
            Json::Object(out)
        }
        other => return Err(mismatch("$", format!("unexpected avro value {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[
                {"name":"type","type":"string"},
                {"name":"n","type":["null","long"],"default":null}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn absent_fields_become_null_and_come_back_absent() {
        let json = serde_json::json!({"type": "tick"});
        let avro = to_avro(&schema(), &json, "$").unwrap();
        assert_eq!(to_json(&avro).unwrap(), json);
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        let extra = serde_json::json!({"type": "tick", "surprise": 1});
        assert!(to_avro(&schema(), &extra, "$").unwrap_err().reason.contains("surprise"));
        let wrong = serde_json::json!({"type": 5});
        assert_eq!(to_avro(&schema(), &wrong, "$").unwrap_err().path, "$.type");
        let missing = serde_json::json!({"n": 1});
        assert!(to_avro(&schema(), &missing, "$").is_err(), "a required field is missing");
    }
}
