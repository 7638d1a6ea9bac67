//! `wire::der` readers on arbitrary bytes: a recursive walk with `read_any`, the typed
//! readers, `parse_single`, `unsigned_integer`, `spki_parts`, `certificate_spki`.
//! Invariants: a TLV re-encodes (`write_tlv`) to its own raw bytes; `encode_spki` of the
//! parts read by `spki_parts` reads back to the same parts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_token_core::wire::der::{
    certificate_spki, encode_spki, parse_single, spki_parts, tag, unsigned_integer, write_tlv,
    write_unsigned_integer, Reader,
};

fn walk(mut r: Reader<'_>, depth: usize) {
    if depth > 32 {
        return;
    }
    while !r.is_empty() {
        let _ = r.peek_tag();
        let Ok(tlv) = r.read_any() else { return };
        let mut out = Vec::new();
        write_tlv(tlv.tag, tlv.value, &mut out);
        assert_eq!(
            out, tlv.raw,
            "write_tlv does not reproduce a TLV the reader accepted"
        );
        if tlv.tag == tag::INTEGER {
            if let Ok(mag) = unsigned_integer(&tlv) {
                let mut enc = Vec::new();
                write_unsigned_integer(mag, &mut enc);
                let back = parse_single(&enc, tag::INTEGER).expect("re-encoded INTEGER");
                assert_eq!(unsigned_integer(&back), Ok(mag));
            }
        }
        if tlv.tag & 0x20 != 0 {
            walk(tlv.reader(), depth + 1);
        }
    }
    let _ = r.finish();
}

fuzz_target!(|data: &[u8]| {
    walk(Reader::new(data), 0);
    let mut r = Reader::new(data);
    let _ = r.read_optional(tag::CONTEXT_0);
    let _ = r.read(tag::SEQUENCE);
    let _ = r.finish();
    for t in [tag::SEQUENCE, tag::INTEGER, tag::BIT_STRING] {
        let _ = parse_single(data, t);
    }
    if let Ok(parts) = spki_parts(data) {
        let enc = encode_spki(
            parts.algorithm,
            parts.parameters.map(|p| p.raw),
            parts.public_key,
        );
        assert_eq!(
            spki_parts(&enc),
            Ok(parts),
            "encode_spki(spki_parts(x)) reads back differently"
        );
    }
    let _ = certificate_spki(data);
});
