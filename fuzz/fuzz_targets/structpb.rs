//! `wire::structpb::decode_struct` on arbitrary bytes. Invariant: a decoded value encodes
//! and decodes back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_token_core::wire::structpb::{decode_struct, encode_struct};

fuzz_target!(|data: &[u8]| {
    match decode_struct(data) {
        Ok(v) => {
            let bytes = encode_struct(&v).expect("a decoded Struct encodes");
            let back = decode_struct(&bytes).expect("an encoded Struct decodes");
            assert_eq!(back, v, "decode(encode(v)) != v");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
