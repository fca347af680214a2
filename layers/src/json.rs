//! Canonical JSON: the only serializer for JSON whose bytes get hashed (image configs, manifests,
//! indexes). Object keys are sorted bytewise at every depth, there is no insignificant whitespace,
//! strings use serde_json's escaping (`"`, `\`, control characters; non-ASCII kept as UTF-8), and
//! numbers are printed as serde_json prints them. The same value therefore always gives the same
//! bytes and the same digest, whatever the field order of the Rust types or map iteration order.
//!
//! This is ocidir-rs's approach (canonical JSON everywhere a digest is taken). Unlike OLPC
//! canonical JSON it escapes control characters, so the output is always valid JSON (history
//! `created_by` strings routinely contain newlines). Go's `encoding/json` additionally escapes
//! `<`, `>` and `&`; we do not, so a config is not byte-identical to BuildKit's.

use serde::Serialize;
use serde_json::Value;

use crate::digest::Digest;

/// Why a value could not be serialized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The value cannot be represented as JSON (e.g. a map with non-string keys).
    #[error("serialize {what} as json: {source}")]
    Serialize {
        /// A short description of the value (its type name).
        what: &'static str,
        /// The underlying error.
        source: serde_json::Error,
    },
}

/// The canonical JSON bytes of `value`.
pub fn to_canonical_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JsonError> {
    let what = std::any::type_name::<T>();
    let tree =
        serde_json::to_value(value).map_err(|source| JsonError::Serialize { what, source })?;
    let mut out = Vec::new();
    write_value(&tree, &mut out).map_err(|source| JsonError::Serialize { what, source })?;
    Ok(out)
}

/// The canonical JSON bytes of `value` and their digest.
pub fn to_canonical_digest<T: Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Digest), JsonError> {
    let bytes = to_canonical_vec(value)?;
    let digest = Digest::of(&bytes);
    Ok((bytes, digest))
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        scalar => {
            serde_json::to_writer(&mut *out, scalar)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Serialize)]
    struct Config {
        zeta: u32,
        alpha: &'static str,
        nested: HashMap<&'static str, Vec<i32>>,
    }

    #[test]
    fn canonical_table() {
        let cases: Vec<(Value, &str)> = vec![
            (
                serde_json::json!({"b": 1, "a": [true, null, 1.5], "B": "x"}),
                r#"{"B":"x","a":[true,null,1.5],"b":1}"#,
            ),
            (
                serde_json::json!("line\nnext \"q\" ü"),
                "\"line\\nnext \\\"q\\\" ü\"",
            ),
            (serde_json::json!({}), "{}"),
            (
                serde_json::json!({"k": {"z": {}, "y": []}}),
                r#"{"k":{"y":[],"z":{}}}"#,
            ),
        ];
        for (value, want) in cases {
            assert_eq!(
                String::from_utf8(to_canonical_vec(&value).expect("json")).expect("utf8"),
                want
            );
        }
    }

    #[test]
    fn struct_field_and_map_order_do_not_matter() {
        let mut nested = HashMap::new();
        for k in ["q", "c", "m", "a"] {
            nested.insert(k, vec![1]);
        }
        let c = Config {
            zeta: 1,
            alpha: "a",
            nested,
        };
        let text = String::from_utf8(to_canonical_vec(&c).expect("json")).expect("utf8");
        assert_eq!(
            text,
            r#"{"alpha":"a","nested":{"a":[1],"c":[1],"m":[1],"q":[1]},"zeta":1}"#
        );
        let (_, d) = to_canonical_digest(&c).expect("json");
        assert_eq!(d, Digest::of(text.as_bytes()));
    }
}
