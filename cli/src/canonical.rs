//! Canonical JSON: object keys sorted (byte order of their UTF-8, which is code-point
//! order), no whitespace outside strings, strings and numbers as `serde_json` writes them.
//! Independent of `serde_json`'s `preserve_order` feature, which another crate of the
//! workspace could switch on.

use serde_json::Value;

/// The canonical text of `v`.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_at_every_depth_without_whitespace() {
        let v = json!({"b": [ {"z": 1, "a": "x y"} ], "a": null, "é": true, "Z": 2.5});
        assert_eq!(
            to_string(&v),
            r#"{"Z":2.5,"a":null,"b":[{"a":"x y","z":1}],"é":true}"#
        );
        assert_eq!(to_string(&json!("a\"\n")), r#""a\"\n""#);
        assert_eq!(to_string(&json!([])), "[]");
        assert_eq!(to_string(&json!({})), "{}");
    }
}
