//! Tests of the Struct codec: known bytes from real protobuf, round trips, merge semantics,
//! unknown fields, limits, and garbage that must never panic.

use super::*;
use crate::wire::testrng::Rng;
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
                StructPbError::Wire(ProtoError::Truncated { .. })
                | StructPbError::Wire(ProtoError::LengthOverflow { .. })
                | StructPbError::Wire(ProtoError::InvalidUtf8 { .. }),
            ) => {}
            other => panic!("prefix of {n} bytes: {other:?}"),
        }
    }
    // Specific shapes.
    assert_eq!(
        decode_struct(&hex("0a")).unwrap_err(),
        StructPbError::Wire(ProtoError::Truncated {
            offset: 1,
            what: "a Struct.fields entry"
        })
    );
    assert_eq!(
        decode_struct(&hex("0a05 0a01")).unwrap_err(),
        StructPbError::Wire(ProtoError::LengthOverflow {
            offset: 2,
            length: 5,
            available: 2
        })
    );
    assert!(matches!(
        decode_struct(&hex("0a0b 0a0161 1206 11 0000000000")).unwrap_err(),
        StructPbError::Wire(ProtoError::Truncated {
            what: "Value.number_value",
            ..
        })
    ));
    assert!(matches!(
        decode_struct(&hex("0a05 0a0161 1280")).unwrap_err(),
        StructPbError::Wire(ProtoError::Truncated { .. })
    ));
    assert!(matches!(
        decode_struct(&hex("33 0801")).unwrap_err(),
        StructPbError::Wire(ProtoError::Truncated {
            what: "a group",
            ..
        })
    ));
    let err = decode_struct(&hex("0a")).unwrap_err();
    assert!(err.to_string().starts_with("truncated input"), "{err}");
}

#[test]
fn bad_wire_types_are_errors() {
    // Wire types 6 and 7 do not exist.
    assert_eq!(
        decode_struct(&hex("0e")).unwrap_err(),
        StructPbError::Wire(ProtoError::InvalidWireType {
            offset: 0,
            wire_type: 6
        })
    );
    assert_eq!(
        decode_struct(&hex("0f")).unwrap_err(),
        StructPbError::Wire(ProtoError::InvalidWireType {
            offset: 0,
            wire_type: 7
        })
    );
    // Struct.fields as a varint.
    let err = decode_struct(&hex("0801")).unwrap_err();
    assert_eq!(
        err,
        StructPbError::Wire(ProtoError::UnexpectedWireType {
            offset: 0,
            field: "Struct.fields",
            expected: 2,
            found: 0
        })
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
            StructPbError::Wire(ProtoError::UnexpectedWireType { field: f, .. }) => {
                assert_eq!(f, field)
            }
            other => panic!("{value}: {other:?}"),
        }
    }
    // Unmatched end group; mismatched end group.
    assert_eq!(
        decode_struct(&hex("14")).unwrap_err(),
        StructPbError::Wire(ProtoError::UnmatchedEndGroup {
            offset: 0,
            field: 2
        })
    );
    assert!(matches!(
        decode_struct(&hex("13 1c")).unwrap_err(),
        StructPbError::Wire(ProtoError::UnmatchedEndGroup { field: 3, .. })
    ));
    // Field number 0.
    assert_eq!(
        decode_struct(&hex("0201")).unwrap_err(),
        StructPbError::Wire(ProtoError::InvalidFieldNumber {
            offset: 0,
            field: 0
        })
    );
    // Field number above 2^29 - 1.
    assert!(matches!(
        decode_struct(&hex("8080808080 01")).unwrap_err(),
        StructPbError::Wire(ProtoError::InvalidFieldNumber { .. })
    ));
}

#[test]
fn varint_overflow_is_an_error() {
    assert_eq!(
        decode_struct(&hex("10 ffffffffffffffffff7f")).unwrap_err(),
        StructPbError::Wire(ProtoError::VarintOverflow { offset: 1 })
    );
    assert_eq!(
        decode_struct(&hex("10 ffffffffffffffffff8001")).unwrap_err(),
        StructPbError::Wire(ProtoError::VarintOverflow { offset: 1 })
    );
    // A length of u64::MAX.
    assert!(matches!(
        decode_struct(&hex("0a ffffffffffffffffff01")).unwrap_err(),
        StructPbError::Wire(ProtoError::LengthOverflow {
            length: u64::MAX,
            ..
        })
    ));
}

#[test]
fn invalid_utf8_is_an_error() {
    assert_eq!(
        decode_struct(&hex("0a07 0a01ff 1202 2001")).unwrap_err(),
        StructPbError::Wire(ProtoError::InvalidUtf8 { offset: 4 })
    );
    let err = decode_struct(&one_field("a", &hex("1a02 c328"))).unwrap_err();
    assert!(
        matches!(err, StructPbError::Wire(ProtoError::InvalidUtf8 { .. })),
        "{err:?}"
    );
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
            StructPbError::Wire(ProtoError::TooDeep { limit: MAX_DEPTH })
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
    assert_eq!(
        err,
        StructPbError::Wire(ProtoError::TooDeep { limit: MAX_DEPTH })
    );
    assert_eq!(err.to_string(), "messages are nested deeper than 64 levels");
    // Deeply nested groups in an unknown field do not overflow the stack.
    let groups = vec![0x13u8; 100_000];
    assert_eq!(
        decode_struct(&groups).unwrap_err(),
        StructPbError::Wire(ProtoError::TooDeep { limit: MAX_DEPTH })
    );
}

#[test]
fn encode_requires_an_object() {
    for v in [json!(null), json!([]), json!("x"), json!(1), json!(true)] {
        assert_eq!(encode_struct(&v).unwrap_err(), StructPbError::NotAnObject);
    }
    assert!(StructPbError::NotAnObject.to_string().contains("object"));
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
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
        0x0a, 0x12, 0x08, 0x11, 0x1a, 0x20, 0x2a, 0x32, 0x00, 0x01, 0x02, 0x04, 0x13, 0x14, 0x80,
        0xff, 0x61, 0xc3,
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
    let mut rng = Rng::new(42);
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
