//! Hand-written codec for `google.protobuf.Struct`.
//!
//! Envoy hands a plugin configuration given as a `google.protobuf.Struct` to the wasm VM as
//! the *serialized protobuf bytes* of the Struct, not as JSON. [`decode_struct`] turns those
//! bytes into a [`serde_json::Value`] (always an object); [`encode_struct`] is the inverse,
//! used by tests for round trips.
//!
//! The messages involved (from `google/protobuf/struct.proto`):
//!
//! ```text
//! message Struct    { map<string, Value> fields = 1; }   // entry: key = 1, value = 2
//! message Value     { oneof kind {
//!                       NullValue null_value = 1;        // varint enum
//!                       double    number_value = 2;      // fixed64
//!                       string    string_value = 3;
//!                       bool      bool_value = 4;
//!                       Struct    struct_value = 5;
//!                       ListValue list_value = 6; } }
//! message ListValue { repeated Value values = 1; }
//! ```
//!
//! Decoding follows protobuf semantics where they matter: unknown fields are skipped
//! according to their wire type (groups included), a repeated map key keeps the last entry,
//! the last member of the `kind` oneof wins, and a repeated embedded message is merged
//! (a second `struct_value` merges into the first, a second `list_value` appends). A known
//! field with the wrong wire type is refused rather than skipped, so garbage is reported
//! early. A `Value` with no `kind` decodes as `null`.
//!
//! Numbers: a double that is integral and within ±2^53 becomes a JSON integer (so
//! `lifetimeSeconds: 300` deserializes into an integer field); any other finite double stays
//! a JSON float; NaN and infinities are refused.
//!
//! The decoder never panics: every read is bounds-checked and nesting (of `Struct`,
//! `ListValue` and skipped groups) is limited to [`MAX_DEPTH`] levels.

use core::fmt;

use serde_json::{Map, Number, Value};

use super::protobuf::{check_depth, put_bytes, put_tag, put_varint, Reader};
pub use super::protobuf::{ProtoError, MAX_DEPTH};
use super::protobuf::{WT_FIXED64, WT_LEN, WT_VARINT};

/// Largest magnitude at which every integer is exactly representable as an `f64` (2^53).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Why bytes are not a valid serialized `google.protobuf.Struct` (or why a JSON value cannot
/// be encoded as one). Offsets are byte offsets into the whole input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StructPbError {
    /// Not well-formed protobuf, a known field with the wrong wire type, a string that is
    /// not UTF-8, or nesting deeper than [`MAX_DEPTH`].
    Wire(ProtoError),
    /// `number_value` is NaN or infinite, which JSON cannot represent.
    NonFiniteNumber {
        /// Where the 8 bytes of the double start.
        offset: usize,
    },
    /// [`encode_struct`] was given something other than a JSON object.
    NotAnObject,
}

impl From<ProtoError> for StructPbError {
    fn from(e: ProtoError) -> Self {
        StructPbError::Wire(e)
    }
}

impl fmt::Display for StructPbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wire(e) => e.fmt(f),
            Self::NonFiniteNumber { offset } => write!(
                f,
                "number_value at byte {offset} is NaN or infinite (not representable in JSON)"
            ),
            Self::NotAnObject => f.write_str("a google.protobuf.Struct must be a JSON object"),
        }
    }
}

impl std::error::Error for StructPbError {}

// ---------------------------------------------------------------------------------------
// Decoding.
// ---------------------------------------------------------------------------------------

/// Decodes the serialized bytes of a `google.protobuf.Struct` into a JSON object.
///
/// Empty input is the empty Struct (`{}`).
pub fn decode_struct(bytes: &[u8]) -> Result<Value, StructPbError> {
    let mut r = Reader::new(bytes);
    read_struct(&mut r, 1).map(Value::Object)
}

/// Reads the fields of a `Struct` until the end of `r`.
fn read_struct(r: &mut Reader<'_>, depth: usize) -> Result<Map<String, Value>, StructPbError> {
    check_depth(depth)?;
    let mut map = Map::new();
    while !r.at_end() {
        let tag = r.tag()?;
        if tag.field == 1 {
            tag.expect("Struct.fields", WT_LEN)?;
            let mut entry = r.len_delimited("a Struct.fields entry")?;
            let (key, value) = read_entry(&mut entry, depth)?;
            // Map semantics: a later entry with the same key replaces the earlier one.
            map.insert(key, value);
        } else {
            r.skip(&tag, depth)?;
        }
    }
    Ok(map)
}

/// Reads one `map<string, Value>` entry of the Struct at `depth`.
fn read_entry(r: &mut Reader<'_>, depth: usize) -> Result<(String, Value), StructPbError> {
    let mut key = None;
    let mut value = None;
    while !r.at_end() {
        let tag = r.tag()?;
        match tag.field {
            1 => {
                tag.expect("Struct.fields key", WT_LEN)?;
                key = Some(r.string("a map key")?);
            }
            2 => {
                tag.expect("Struct.fields value", WT_LEN)?;
                let mut sub = r.len_delimited("a Value")?;
                value = Some(read_value(&mut sub, depth, value.take())?);
            }
            _ => r.skip(&tag, depth)?,
        }
    }
    Ok((key.unwrap_or_default(), value.unwrap_or(Value::Null)))
}

/// Reads a `Value` held by a message at `depth`, merging into `prior` (the result of an
/// earlier occurrence of the same field, protobuf's merge semantics).
fn read_value(
    r: &mut Reader<'_>,
    depth: usize,
    prior: Option<Value>,
) -> Result<Value, StructPbError> {
    let mut kind = prior;
    while !r.at_end() {
        let tag = r.tag()?;
        match tag.field {
            1 => {
                tag.expect("Value.null_value", WT_VARINT)?;
                // NullValue has a single member; open enums accept any number.
                r.varint("Value.null_value")?;
                kind = Some(Value::Null);
            }
            2 => {
                tag.expect("Value.number_value", WT_FIXED64)?;
                let offset = r.offset();
                let raw = r.take(8, "Value.number_value")?;
                let mut le = [0u8; 8];
                le.copy_from_slice(raw);
                let number = number_to_json(f64::from_le_bytes(le))
                    .ok_or(StructPbError::NonFiniteNumber { offset })?;
                kind = Some(Value::Number(number));
            }
            3 => {
                tag.expect("Value.string_value", WT_LEN)?;
                kind = Some(Value::String(r.string("Value.string_value")?));
            }
            4 => {
                tag.expect("Value.bool_value", WT_VARINT)?;
                kind = Some(Value::Bool(r.varint("Value.bool_value")? != 0));
            }
            5 => {
                tag.expect("Value.struct_value", WT_LEN)?;
                let mut sub = r.len_delimited("Value.struct_value")?;
                let fields = read_struct(&mut sub, depth + 1)?;
                kind = Some(match kind {
                    Some(Value::Object(mut existing)) => {
                        existing.extend(fields);
                        Value::Object(existing)
                    }
                    _ => Value::Object(fields),
                });
            }
            6 => {
                tag.expect("Value.list_value", WT_LEN)?;
                let mut sub = r.len_delimited("Value.list_value")?;
                let values = read_list(&mut sub, depth + 1)?;
                kind = Some(match kind {
                    Some(Value::Array(mut existing)) => {
                        existing.extend(values);
                        Value::Array(existing)
                    }
                    _ => Value::Array(values),
                });
            }
            _ => r.skip(&tag, depth)?,
        }
    }
    Ok(kind.unwrap_or(Value::Null))
}

/// Reads the fields of a `ListValue` until the end of `r`.
fn read_list(r: &mut Reader<'_>, depth: usize) -> Result<Vec<Value>, StructPbError> {
    check_depth(depth)?;
    let mut values = Vec::new();
    while !r.at_end() {
        let tag = r.tag()?;
        if tag.field == 1 {
            tag.expect("ListValue.values", WT_LEN)?;
            let mut sub = r.len_delimited("a ListValue element")?;
            values.push(read_value(&mut sub, depth, None)?);
        } else {
            r.skip(&tag, depth)?;
        }
    }
    Ok(values)
}

/// JSON number for a double: an integer when integral and within ±2^53, else a float;
/// `None` for NaN and infinities.
fn number_to_json(x: f64) -> Option<Number> {
    if !x.is_finite() {
        return None;
    }
    if x.trunc() == x && x.abs() <= MAX_SAFE_INTEGER {
        // Exact: the value is integral and |x| <= 2^53 < i64::MAX.
        return Some(Number::from(x as i64));
    }
    Number::from_f64(x)
}

// ---------------------------------------------------------------------------------------
// Encoding.
// ---------------------------------------------------------------------------------------

/// Serializes a JSON object as a `google.protobuf.Struct`.
///
/// Every number becomes a double (`number_value`), as in protobuf's JSON mapping; integers
/// beyond ±2^53 lose precision.
pub fn encode_struct(v: &Value) -> Result<Vec<u8>, StructPbError> {
    let Value::Object(map) = v else {
        return Err(StructPbError::NotAnObject);
    };
    let mut out = Vec::new();
    write_struct(&mut out, map, 1)?;
    Ok(out)
}

fn write_struct(
    out: &mut Vec<u8>,
    map: &Map<String, Value>,
    depth: usize,
) -> Result<(), StructPbError> {
    check_depth(depth)?;
    for (key, value) in map {
        let mut entry = Vec::new();
        put_bytes(&mut entry, 1, key.as_bytes());
        let mut encoded = Vec::new();
        write_value(&mut encoded, value, depth)?;
        put_bytes(&mut entry, 2, &encoded);
        put_bytes(out, 1, &entry);
    }
    Ok(())
}

/// Writes the fields of a `Value` held by a message at `depth`.
fn write_value(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<(), StructPbError> {
    match value {
        Value::Null => {
            put_tag(out, 1, WT_VARINT);
            put_varint(out, 0);
        }
        Value::Number(n) => {
            let x = n
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or(StructPbError::NonFiniteNumber { offset: out.len() })?;
            put_tag(out, 2, WT_FIXED64);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::String(s) => put_bytes(out, 3, s.as_bytes()),
        Value::Bool(b) => {
            put_tag(out, 4, WT_VARINT);
            put_varint(out, u64::from(*b));
        }
        Value::Object(map) => {
            let mut inner = Vec::new();
            write_struct(&mut inner, map, depth + 1)?;
            put_bytes(out, 5, &inner);
        }
        Value::Array(items) => {
            check_depth(depth + 1)?;
            let mut inner = Vec::new();
            for item in items {
                let mut encoded = Vec::new();
                write_value(&mut encoded, item, depth + 1)?;
                put_bytes(&mut inner, 1, &encoded);
            }
            put_bytes(out, 6, &inner);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
