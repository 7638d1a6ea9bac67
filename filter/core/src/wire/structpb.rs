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

/// Deepest nesting of `Struct`/`ListValue` messages (the top Struct is level 1) accepted by
/// [`decode_struct`] and [`encode_struct`]; skipped groups count as levels too.
pub const MAX_DEPTH: usize = 64;

/// Largest magnitude at which every integer is exactly representable as an `f64` (2^53).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Protobuf wire types.
const WT_VARINT: u8 = 0;
const WT_FIXED64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_START_GROUP: u8 = 3;
const WT_END_GROUP: u8 = 4;
const WT_FIXED32: u8 = 5;

/// Why bytes are not a valid serialized `google.protobuf.Struct` (or why a JSON value cannot
/// be encoded as one). Offsets are byte offsets into the whole input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StructPbError {
    /// The input ends inside a tag, a value or a length-delimited field.
    Truncated {
        /// Where the incomplete item starts.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// A varint longer than 10 bytes or exceeding 64 bits.
    VarintOverflow {
        /// Where the varint starts.
        offset: usize,
    },
    /// A length that does not fit in the remaining input of its message.
    LengthOverflow {
        /// Where the length-delimited field's payload would start.
        offset: usize,
        /// The declared length.
        length: u64,
        /// Bytes left in the enclosing message.
        available: usize,
    },
    /// A tag with field number 0 or above 2^29 - 1.
    InvalidFieldNumber {
        /// Where the tag starts.
        offset: usize,
        /// The field number found.
        field: u64,
    },
    /// A tag whose wire type is 6 or 7 (not defined by protobuf).
    InvalidWireType {
        /// Where the tag starts.
        offset: usize,
        /// The wire type found.
        wire_type: u8,
    },
    /// A known field encoded with the wrong wire type.
    UnexpectedWireType {
        /// Where the tag starts.
        offset: usize,
        /// Message and field, e.g. `Value.number_value`.
        field: &'static str,
        /// Wire type the field requires.
        expected: u8,
        /// Wire type found.
        found: u8,
    },
    /// An end-group tag without a matching start-group tag.
    UnmatchedEndGroup {
        /// Where the tag starts.
        offset: usize,
        /// Its field number.
        field: u32,
    },
    /// A string (map key or `string_value`) that is not UTF-8.
    InvalidUtf8 {
        /// Where the string's bytes start.
        offset: usize,
    },
    /// `number_value` is NaN or infinite, which JSON cannot represent.
    NonFiniteNumber {
        /// Where the 8 bytes of the double start.
        offset: usize,
    },
    /// Messages nested deeper than [`MAX_DEPTH`].
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// [`encode_struct`] was given something other than a JSON object.
    NotAnObject,
}

impl fmt::Display for StructPbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { offset, what } => {
                write!(f, "truncated input: {what} at byte {offset} is incomplete")
            }
            Self::VarintOverflow { offset } => {
                write!(f, "varint at byte {offset} is longer than 64 bits")
            }
            Self::LengthOverflow {
                offset,
                length,
                available,
            } => write!(
                f,
                "length-delimited field at byte {offset} declares {length} bytes \
                 but only {available} remain in its message"
            ),
            Self::InvalidFieldNumber { offset, field } => {
                write!(
                    f,
                    "invalid field number {field} in the tag at byte {offset}"
                )
            }
            Self::InvalidWireType { offset, wire_type } => {
                write!(
                    f,
                    "invalid wire type {wire_type} in the tag at byte {offset}"
                )
            }
            Self::UnexpectedWireType {
                offset,
                field,
                expected,
                found,
            } => write!(
                f,
                "{field} at byte {offset} has wire type {found}, expected {expected}"
            ),
            Self::UnmatchedEndGroup { offset, field } => write!(
                f,
                "end-group tag for field {field} at byte {offset} has no matching start-group"
            ),
            Self::InvalidUtf8 { offset } => {
                write!(f, "string at byte {offset} is not valid UTF-8")
            }
            Self::NonFiniteNumber { offset } => write!(
                f,
                "number_value at byte {offset} is NaN or infinite (not representable in JSON)"
            ),
            Self::TooDeep { limit } => {
                write!(f, "messages are nested deeper than {limit} levels")
            }
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
    let mut r = Reader::new(bytes, 0);
    read_struct(&mut r, 1).map(Value::Object)
}

/// A bounds-checked cursor over one message's bytes; `base` is the offset of `buf[0]` in
/// the whole input, for error messages.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

/// A decoded tag.
struct Tag {
    /// Offset of the tag in the whole input.
    offset: usize,
    field: u32,
    wire_type: u8,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, StructPbError> {
        let start = self.offset();
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(StructPbError::Truncated {
                    offset: start,
                    what,
                });
            };
            self.pos += 1;
            let bits = u64::from(byte & 0x7f);
            // The 10th byte may only contribute the 64th bit.
            if i == 9 && bits > 1 {
                return Err(StructPbError::VarintOverflow { offset: start });
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(StructPbError::VarintOverflow { offset: start })
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], StructPbError> {
        let start = self.offset();
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e).map(|s| (e, s))) {
            Some((e, slice)) => {
                self.pos = e;
                Ok(slice)
            }
            None => Err(StructPbError::Truncated {
                offset: start,
                what,
            }),
        }
    }

    fn tag(&mut self) -> Result<Tag, StructPbError> {
        let offset = self.offset();
        let raw = self.varint("a tag")?;
        let field = raw >> 3;
        if field == 0 || field > 0x1fff_ffff {
            return Err(StructPbError::InvalidFieldNumber { offset, field });
        }
        // Both conversions are lossless: field < 2^29 and the wire type is 3 bits.
        let field = u32::try_from(field)
            .map_err(|_| StructPbError::InvalidFieldNumber { offset, field })?;
        let wire_type = (raw & 7) as u8;
        if wire_type > WT_FIXED32 {
            return Err(StructPbError::InvalidWireType { offset, wire_type });
        }
        Ok(Tag {
            offset,
            field,
            wire_type,
        })
    }

    /// Reads the payload of a length-delimited field as a sub-reader.
    fn len_delimited(&mut self, what: &'static str) -> Result<Reader<'a>, StructPbError> {
        let length = self.varint(what)?;
        let offset = self.offset();
        let available = self.remaining();
        let n = usize::try_from(length)
            .ok()
            .filter(|&n| n <= available)
            .ok_or(StructPbError::LengthOverflow {
                offset,
                length,
                available,
            })?;
        let buf = self.take(n, what)?;
        Ok(Reader::new(buf, offset))
    }

    fn string(&mut self, what: &'static str) -> Result<String, StructPbError> {
        let sub = self.len_delimited(what)?;
        core::str::from_utf8(sub.buf)
            .map(str::to_owned)
            .map_err(|_| StructPbError::InvalidUtf8 { offset: sub.base })
    }

    /// Skips the value of an unknown field. `depth` is the nesting level of the message
    /// holding the field (groups nest one level further).
    fn skip(&mut self, tag: &Tag, depth: usize) -> Result<(), StructPbError> {
        match tag.wire_type {
            WT_VARINT => self.varint("a varint").map(drop),
            WT_FIXED64 => self.take(8, "a fixed64").map(drop),
            WT_LEN => self.len_delimited("a length-delimited field").map(drop),
            WT_FIXED32 => self.take(4, "a fixed32").map(drop),
            WT_START_GROUP => self.skip_group(tag, depth + 1),
            WT_END_GROUP => Err(StructPbError::UnmatchedEndGroup {
                offset: tag.offset,
                field: tag.field,
            }),
            wire_type => Err(StructPbError::InvalidWireType {
                offset: tag.offset,
                wire_type,
            }),
        }
    }

    fn skip_group(&mut self, start: &Tag, depth: usize) -> Result<(), StructPbError> {
        check_depth(depth)?;
        loop {
            if self.at_end() {
                return Err(StructPbError::Truncated {
                    offset: start.offset,
                    what: "a group",
                });
            }
            let tag = self.tag()?;
            if tag.wire_type == WT_END_GROUP {
                return if tag.field == start.field {
                    Ok(())
                } else {
                    Err(StructPbError::UnmatchedEndGroup {
                        offset: tag.offset,
                        field: tag.field,
                    })
                };
            }
            self.skip(&tag, depth)?;
        }
    }
}

fn check_depth(depth: usize) -> Result<(), StructPbError> {
    if depth > MAX_DEPTH {
        Err(StructPbError::TooDeep { limit: MAX_DEPTH })
    } else {
        Ok(())
    }
}

fn expect_wire_type(tag: &Tag, field: &'static str, expected: u8) -> Result<(), StructPbError> {
    if tag.wire_type == expected {
        Ok(())
    } else {
        Err(StructPbError::UnexpectedWireType {
            offset: tag.offset,
            field,
            expected,
            found: tag.wire_type,
        })
    }
}

/// Reads the fields of a `Struct` until the end of `r`.
fn read_struct(r: &mut Reader<'_>, depth: usize) -> Result<Map<String, Value>, StructPbError> {
    check_depth(depth)?;
    let mut map = Map::new();
    while !r.at_end() {
        let tag = r.tag()?;
        if tag.field == 1 {
            expect_wire_type(&tag, "Struct.fields", WT_LEN)?;
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
                expect_wire_type(&tag, "Struct.fields key", WT_LEN)?;
                key = Some(r.string("a map key")?);
            }
            2 => {
                expect_wire_type(&tag, "Struct.fields value", WT_LEN)?;
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
                expect_wire_type(&tag, "Value.null_value", WT_VARINT)?;
                // NullValue has a single member; open enums accept any number.
                r.varint("Value.null_value")?;
                kind = Some(Value::Null);
            }
            2 => {
                expect_wire_type(&tag, "Value.number_value", WT_FIXED64)?;
                let offset = r.offset();
                let raw = r.take(8, "Value.number_value")?;
                let mut le = [0u8; 8];
                le.copy_from_slice(raw);
                let number = number_to_json(f64::from_le_bytes(le))
                    .ok_or(StructPbError::NonFiniteNumber { offset })?;
                kind = Some(Value::Number(number));
            }
            3 => {
                expect_wire_type(&tag, "Value.string_value", WT_LEN)?;
                kind = Some(Value::String(r.string("Value.string_value")?));
            }
            4 => {
                expect_wire_type(&tag, "Value.bool_value", WT_VARINT)?;
                kind = Some(Value::Bool(r.varint("Value.bool_value")? != 0));
            }
            5 => {
                expect_wire_type(&tag, "Value.struct_value", WT_LEN)?;
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
                expect_wire_type(&tag, "Value.list_value", WT_LEN)?;
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
            expect_wire_type(&tag, "ListValue.values", WT_LEN)?;
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

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, payload: &[u8]) {
    put_tag(out, field, WT_LEN);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
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
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Wraps `value_bytes` (the fields of a Value) as the Struct `{ key: <value> }`.
    fn one_field(key: &str, value_bytes: &[u8]) -> Vec<u8> {
        let mut entry = Vec::new();
        put_bytes(&mut entry, 1, key.as_bytes());
        put_bytes(&mut entry, 2, value_bytes);
        let mut out = Vec::new();
        put_bytes(&mut out, 1, &entry);
        out
    }

    fn nested_config() -> Value {
        json!({
            "authority": {
                "issuer": "https://authority.example",
                "audiences": ["registry", "ops"],
                "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "abc", "y": "def"}]},
                "clockSkewSeconds": 60,
                "requireSenderConstraint": true
            },
            "signing": {"lifetimeSeconds": 300, "keyPem": null, "ratio": 0.5},
            "registry": {"realm": "https://r.example/token", "allowedServices": []},
            "plans": [
                {"name": "free", "limits": [[1, 2], [], [{"x": null}]], "weight": -12.75},
                {"name": "ünïcødé ✓", "empty": {}}
            ],
            "": "empty key",
            "big": 1e300,
            "small": -4.9e-324,
            "maxSafe": 9007199254740992_i64,
            "minSafe": -9007199254740992_i64
        })
    }

    #[test]
    fn round_trips_nested_config() {
        let v = nested_config();
        let bytes = encode_struct(&v).unwrap();
        assert_eq!(decode_struct(&bytes).unwrap(), v);
    }

    #[test]
    fn round_trips_empty_and_edge_objects() {
        for v in [
            json!({}),
            json!({"a": {}}),
            json!({"a": []}),
            json!({"a": [null, true, false, 0, "", [], {}]}),
            json!({"n": 0}),
        ] {
            let bytes = encode_struct(&v).unwrap();
            assert_eq!(decode_struct(&bytes).unwrap(), v, "{v}");
        }
        assert_eq!(decode_struct(&[]).unwrap(), json!({}));
    }

    #[test]
    fn integral_numbers_become_integers() {
        let v = decode_struct(&encode_struct(&json!({"lifetimeSeconds": 300})).unwrap()).unwrap();
        assert!(v["lifetimeSeconds"].is_u64());
        assert_eq!(v["lifetimeSeconds"].as_u64(), Some(300));

        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct S {
            lifetime_seconds: u64,
        }
        let s: S = serde_json::from_value(v).unwrap();
        assert_eq!(s.lifetime_seconds, 300);

        let cases: [(f64, Value); 7] = [
            (-7.0, json!(-7)),
            (-0.0, json!(0)),
            (1.5, json!(1.5)),
            (MAX_SAFE_INTEGER, json!(9007199254740992_i64)),
            (-MAX_SAFE_INTEGER, json!(-9007199254740992_i64)),
            (MAX_SAFE_INTEGER * 2.0, json!(18014398509481984.0)),
            (1e300, json!(1e300)),
        ];
        for (x, expected) in cases {
            let mut value = vec![0x11];
            value.extend_from_slice(&x.to_le_bytes());
            let got = decode_struct(&one_field("n", &value)).unwrap();
            assert_eq!(got["n"], expected, "{x}");
            assert_eq!(got["n"].is_f64(), expected.is_f64(), "{x}");
        }
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut value = vec![0x11];
            value.extend_from_slice(&x.to_le_bytes());
            let bytes = one_field("n", &value);
            let err = decode_struct(&bytes).unwrap_err();
            assert!(
                matches!(err, StructPbError::NonFiniteNumber { offset: 8 }),
                "{err:?}"
            );
            assert!(err.to_string().contains("NaN or infinite"));
        }
    }

    /// Bytes produced by Python's `google.protobuf` 7.36.2:
    ///
    /// ```python
    /// from google.protobuf import struct_pb2
    /// s = struct_pb2.Struct()
    /// s.update({
    ///   "authority": {"issuer": "https://authority.example", "audiences": ["registry", "ops"],
    ///                 "requireSenderConstraint": False, "clockSkewSeconds": 60},
    ///   "signing": {"lifetimeSeconds": 300, "keyPem": None, "ratio": 1.5, "neg": -7},
    ///   "registry": {"realm": "https://r.example/token", "allowedServices": []},
    ///   "plans": [{"name": "free", "rate": 0.25, "tags": ["a", "ü"]}],
    ///   "big": 1e300,
    /// })
    /// print(s.SerializeToString(deterministic=True).hex())
    /// ```
    const PYTHON_PROTOBUF_HEX: &str = "\
        0a9a010a09617574686f72697479128c012a89010a220a0961756469656e636573121532130a0a1a08\
        72656769737472790a051a036f70730a1d0a10636c6f636b536b65775365636f6e64731209110000\
        000000004e400a250a06697373756572121b1a1968747470733a2f2f617574686f726974792e6578\
        616d706c650a1d0a177265717569726553656e646572436f6e73747261696e74120220000a100a03\
        6269671209119c7500883ce4377e0a490a05706c616e731240323e0a3c2a3a0a0e0a046e616d6512\
        061a04667265650a110a0472617465120911000000000000d03f0a150a0474616773120d320b0a03\
        1a01610a041a02c3bc0a490a087265676973747279123d2a3b0a150a0f616c6c6f77656453657276\
        69636573120232000a220a057265616c6d12191a1768747470733a2f2f722e6578616d706c652f74\
        6f6b656e0a5f0a077369676e696e6712542a520a0c0a066b657950656d120208000a1c0a0f6c6966\
        6574696d655365636f6e64731209110000000000c072400a100a036e65671209110000000000001c\
        c00a120a05726174696f120911000000000000f83f";

    #[test]
    fn decodes_bytes_from_real_protobuf() {
        let bytes = hex(PYTHON_PROTOBUF_HEX);
        assert_eq!(bytes.len(), 422);
        let expected = json!({
            "authority": {
                "issuer": "https://authority.example",
                "audiences": ["registry", "ops"],
                "requireSenderConstraint": false,
                "clockSkewSeconds": 60
            },
            "signing": {"lifetimeSeconds": 300, "keyPem": null, "ratio": 1.5, "neg": -7},
            "registry": {"realm": "https://r.example/token", "allowedServices": []},
            "plans": [{"name": "free", "rate": 0.25, "tags": ["a", "ü"]}],
            "big": 1e300
        });
        let got = decode_struct(&bytes).unwrap();
        assert_eq!(got, expected);
        assert!(got["signing"]["lifetimeSeconds"].is_u64());
        assert!(got["authority"]["clockSkewSeconds"].is_u64());
        // Our encoder writes keys in the same (sorted) order and the same field layout as
        // deterministic protobuf serialization, so it reproduces the bytes exactly.
        assert_eq!(encode_struct(&expected).unwrap(), bytes);
    }

    #[test]
    fn hand_built_value_kinds() {
        // null_value (field 1, varint)
        assert_eq!(
            decode_struct(&hex("0a07 0a0161 1202 0800")).unwrap(),
            json!({"a": null})
        );
        // null_value with a non-zero enum number (open enum) still decodes as null
        assert_eq!(
            decode_struct(&hex("0a07 0a0161 1202 0805")).unwrap(),
            json!({"a": null})
        );
        // number_value (field 2, fixed64): 2.5
        assert_eq!(
            decode_struct(&hex("0a0e 0a0161 1209 11 0000000000000440")).unwrap(),
            json!({"a": 2.5})
        );
        // string_value (field 3, length-delimited)
        assert_eq!(
            decode_struct(&hex("0a09 0a0161 1204 1a026869")).unwrap(),
            json!({"a": "hi"})
        );
        // bool_value (field 4, varint); any non-zero varint is true
        assert_eq!(
            decode_struct(&hex("0a07 0a0161 1202 2001")).unwrap(),
            json!({"a": true})
        );
        assert_eq!(
            decode_struct(&hex("0a08 0a0161 1203 208001")).unwrap(),
            json!({"a": true})
        );
        assert_eq!(
            decode_struct(&hex("0a07 0a0161 1202 2000")).unwrap(),
            json!({"a": false})
        );
        // struct_value (field 5): {"a": {"b": true}}
        assert_eq!(
            decode_struct(&hex("0a10 0a0161 120b 2a09 0a07 0a0162 1202 2001")).unwrap(),
            json!({"a": {"b": true}})
        );
        // list_value (field 6): {"a": [true, "x"]}
        assert_eq!(
            decode_struct(&hex("0a10 0a0161 120b 3209 0a02 2001 0a03 1a0178")).unwrap(),
            json!({"a": [true, "x"]})
        );
        // Value with no kind, and an entry with neither key nor value
        assert_eq!(
            decode_struct(&hex("0a05 0a0161 1200")).unwrap(),
            json!({"a": null})
        );
        assert_eq!(decode_struct(&hex("0a00")).unwrap(), json!({"": null}));
    }

    #[test]
    fn protobuf_merge_semantics() {
        // Duplicate key: the last entry wins.
        assert_eq!(
            decode_struct(&hex("0a07 0a0161 1202 2001  0a09 0a0161 1204 1a026869")).unwrap(),
            json!({"a": "hi"})
        );
        // Last member of the oneof wins within one Value.
        assert_eq!(
            decode_struct(&hex("0a0b 0a0161 1206 2001 1a026869")).unwrap(),
            json!({"a": "hi"})
        );
        // Repeated list_value appends; repeated struct_value merges.
        assert_eq!(
            decode_struct(&hex("0a11 0a0161 120c 3204 0a022001 3204 0a022000")).unwrap(),
            json!({"a": [true, false]})
        );
        assert_eq!(
            decode_struct(&hex(
                "0a1c 0a0161 1217 2a09 0a070a0162 12022001  2a0a 0a080a0163 1203 1a0178"
            ))
            .unwrap(),
            json!({"a": {"b": true, "c": "x"}})
        );
        // The value field appearing twice in one entry merges (here: list appends).
        assert_eq!(
            decode_struct(&hex("0a13 0a0161 1206 3204 0a022001 1206 3204 0a022000")).unwrap(),
            json!({"a": [true, false]})
        );
    }

    #[test]
    fn unknown_fields_are_skipped_per_wire_type() {
        // In the Struct: varint (f2), fixed64 (f3), length-delimited (f4), fixed32 (f5),
        // group (f6) containing a varint and a nested group, then the real entry.
        let mut bytes = hex("10 ffffffffffffffffff01\
             19 0102030405060708\
             22 03 616263\
             2d 01020304\
             33 0801 3b 4001 3c 34");
        bytes.extend(hex("0a07 0a0161 1202 2001"));
        // In the entry, in the Value and in a ListValue.
        bytes.extend(hex("0a10 1801 0a0162 2500000000 1204 3802 2001"));
        bytes.extend(hex("0a0d 0a0163 1208 3206 1002 0a02 3801"));
        assert_eq!(
            decode_struct(&bytes).unwrap(),
            json!({"a": true, "b": true, "c": [null]})
        );
        // Large field numbers are fine.
        assert_eq!(
            decode_struct(&hex("f8ffffff0f 00  0a07 0a0161 1202 2001")).unwrap(),
            json!({"a": true})
        );
    }

    #[test]
    fn truncated_input_is_an_error() {
        // A single top-level entry, so that no proper prefix ends on an entry boundary
        // (a prefix ending between entries is itself a valid, smaller Struct).
        let full = encode_struct(&json!({ "config": nested_config() })).unwrap();
        for n in 1..full.len() {
            match decode_struct(&full[..n]) {
                Err(
                    StructPbError::Truncated { .. }
                    | StructPbError::LengthOverflow { .. }
                    | StructPbError::InvalidUtf8 { .. },
                ) => {}
                other => panic!("prefix of {n} bytes: {other:?}"),
            }
        }
        // Specific shapes.
        assert_eq!(
            decode_struct(&hex("0a")).unwrap_err(),
            StructPbError::Truncated {
                offset: 1,
                what: "a Struct.fields entry"
            }
        );
        assert_eq!(
            decode_struct(&hex("0a05 0a01")).unwrap_err(),
            StructPbError::LengthOverflow {
                offset: 2,
                length: 5,
                available: 2
            }
        );
        assert!(matches!(
            decode_struct(&hex("0a0b 0a0161 1206 11 0000000000")).unwrap_err(),
            StructPbError::Truncated {
                what: "Value.number_value",
                ..
            }
        ));
        assert!(matches!(
            decode_struct(&hex("0a05 0a0161 1280")).unwrap_err(),
            StructPbError::Truncated { .. }
        ));
        assert!(matches!(
            decode_struct(&hex("33 0801")).unwrap_err(),
            StructPbError::Truncated {
                what: "a group",
                ..
            }
        ));
        let err = decode_struct(&hex("0a")).unwrap_err();
        assert!(err.to_string().starts_with("truncated input"), "{err}");
    }

    #[test]
    fn bad_wire_types_are_errors() {
        // Wire types 6 and 7 do not exist.
        assert_eq!(
            decode_struct(&hex("0e")).unwrap_err(),
            StructPbError::InvalidWireType {
                offset: 0,
                wire_type: 6
            }
        );
        assert_eq!(
            decode_struct(&hex("0f")).unwrap_err(),
            StructPbError::InvalidWireType {
                offset: 0,
                wire_type: 7
            }
        );
        // Struct.fields as a varint.
        let err = decode_struct(&hex("0801")).unwrap_err();
        assert_eq!(
            err,
            StructPbError::UnexpectedWireType {
                offset: 0,
                field: "Struct.fields",
                expected: 2,
                found: 0
            }
        );
        assert_eq!(
            err.to_string(),
            "Struct.fields at byte 0 has wire type 0, expected 2"
        );
        // number_value as a varint, string_value as fixed32, bool_value as length-delimited.
        for (value, field) in [
            ("1001", "Value.number_value"),
            ("1d00000000", "Value.string_value"),
            ("2200", "Value.bool_value"),
            ("0900000000 00000000", "Value.null_value"),
            ("2801", "Value.struct_value"),
            ("3001", "Value.list_value"),
        ] {
            let bytes = one_field("a", &hex(value));
            match decode_struct(&bytes).unwrap_err() {
                StructPbError::UnexpectedWireType { field: f, .. } => assert_eq!(f, field),
                other => panic!("{value}: {other:?}"),
            }
        }
        // Unmatched end group; mismatched end group.
        assert_eq!(
            decode_struct(&hex("14")).unwrap_err(),
            StructPbError::UnmatchedEndGroup {
                offset: 0,
                field: 2
            }
        );
        assert!(matches!(
            decode_struct(&hex("13 1c")).unwrap_err(),
            StructPbError::UnmatchedEndGroup { field: 3, .. }
        ));
        // Field number 0.
        assert_eq!(
            decode_struct(&hex("0201")).unwrap_err(),
            StructPbError::InvalidFieldNumber {
                offset: 0,
                field: 0
            }
        );
        // Field number above 2^29 - 1.
        assert!(matches!(
            decode_struct(&hex("8080808080 01")).unwrap_err(),
            StructPbError::InvalidFieldNumber { .. }
        ));
    }

    #[test]
    fn varint_overflow_is_an_error() {
        assert_eq!(
            decode_struct(&hex("10 ffffffffffffffffff7f")).unwrap_err(),
            StructPbError::VarintOverflow { offset: 1 }
        );
        assert_eq!(
            decode_struct(&hex("10 ffffffffffffffffff8001")).unwrap_err(),
            StructPbError::VarintOverflow { offset: 1 }
        );
        // A length of u64::MAX.
        assert!(matches!(
            decode_struct(&hex("0a ffffffffffffffffff01")).unwrap_err(),
            StructPbError::LengthOverflow {
                length: u64::MAX,
                ..
            }
        ));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert_eq!(
            decode_struct(&hex("0a07 0a01ff 1202 2001")).unwrap_err(),
            StructPbError::InvalidUtf8 { offset: 4 }
        );
        let err = decode_struct(&one_field("a", &hex("1a02 c328"))).unwrap_err();
        assert!(matches!(err, StructPbError::InvalidUtf8 { .. }), "{err:?}");
        assert!(err.to_string().contains("not valid UTF-8"));
    }

    fn nest_objects(levels: usize) -> Value {
        let mut v = json!(true);
        for _ in 1..levels {
            v = json!({ "k": v });
        }
        json!({ "k": v })
    }

    fn nest_lists(levels: usize) -> Value {
        // The top Struct is one level; each list adds one.
        let mut v = json!(1);
        for _ in 1..levels {
            v = json!([v]);
        }
        json!({ "k": v })
    }

    #[test]
    fn nesting_is_limited() {
        for nest in [nest_objects, nest_lists] {
            let ok = nest(MAX_DEPTH);
            let bytes = encode_struct(&ok).unwrap();
            assert_eq!(decode_struct(&bytes).unwrap(), ok);

            let deep = nest(MAX_DEPTH + 1);
            assert_eq!(
                encode_struct(&deep).unwrap_err(),
                StructPbError::TooDeep { limit: MAX_DEPTH }
            );
        }
        // Hand-build a Struct nested 65 deep (beyond what the encoder will write).
        let mut inner: Vec<u8> = Vec::new(); // empty innermost Struct
        for _ in 1..=MAX_DEPTH {
            let mut value = Vec::new();
            put_bytes(&mut value, 5, &inner);
            let mut entry = Vec::new();
            put_bytes(&mut entry, 1, b"k");
            put_bytes(&mut entry, 2, &value);
            inner = Vec::new();
            put_bytes(&mut inner, 1, &entry);
        }
        let err = decode_struct(&inner).unwrap_err();
        assert_eq!(err, StructPbError::TooDeep { limit: MAX_DEPTH });
        assert_eq!(err.to_string(), "messages are nested deeper than 64 levels");
        // Deeply nested groups in an unknown field do not overflow the stack.
        let groups = vec![0x13u8; 100_000];
        assert_eq!(
            decode_struct(&groups).unwrap_err(),
            StructPbError::TooDeep { limit: MAX_DEPTH }
        );
    }

    #[test]
    fn encode_requires_an_object() {
        for v in [json!(null), json!([]), json!("x"), json!(1), json!(true)] {
            assert_eq!(encode_struct(&v).unwrap_err(), StructPbError::NotAnObject);
        }
        assert!(StructPbError::NotAnObject.to_string().contains("object"));
    }

    /// xorshift64*: deterministic, dependency-free pseudo-random bytes.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut ok = 0;
        for _ in 0..20_000 {
            let len = rng.below(64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Ok(v) = decode_struct(&bytes) {
                assert!(v.is_object());
                ok += 1;
            }
        }
        // Bias towards plausible tags (0x0a, 0x12, ...) to reach deeper code paths.
        let alphabet = [
            0x0a, 0x12, 0x08, 0x11, 0x1a, 0x20, 0x2a, 0x32, 0x00, 0x01, 0x02, 0x04, 0x13, 0x14,
            0x80, 0xff, 0x61, 0xc3,
        ];
        for _ in 0..20_000 {
            let len = rng.below(48);
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            if decode_struct(&bytes).is_ok() {
                ok += 1;
            }
        }
        assert!(ok > 0);
    }

    #[test]
    fn mutated_valid_encodings_never_panic() {
        let mut rng = Rng(42);
        let base = hex(PYTHON_PROTOBUF_HEX);
        for _ in 0..20_000 {
            let mut bytes = base.clone();
            for _ in 0..=rng.below(4) {
                let i = rng.below(bytes.len());
                match rng.below(3) {
                    0 => bytes[i] ^= 1 << rng.below(8),
                    1 => bytes[i] = rng.next() as u8,
                    _ => bytes.truncate(i.max(1)),
                }
            }
            if let Ok(v) = decode_struct(&bytes) {
                // Whatever decodes re-encodes and decodes to the same value.
                let again = encode_struct(&v).unwrap();
                assert_eq!(decode_struct(&again).unwrap(), v);
            }
        }
    }
}
