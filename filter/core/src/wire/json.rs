//! A small JSON object writer for the per-request outputs whose shape is fixed (the minted
//! token's header and claims, the token reply): the same bytes `serde_json` writes for a
//! `Value` object (keys in sorted order, strings escaped alike), without building the
//! `Value` tree first. Callers must add members in sorted key order, as `serde_json`'s
//! map (a `BTreeMap`) would write them; the tests compare against `serde_json`.

use std::fmt::Write as _;

/// Appends `s` as a JSON string, escaped exactly as `serde_json` does: `"` and `\\`, the
/// short escapes `\b \f \n \r \t`, other C0 controls as `\u00XX`; everything else raw.
/// A string needing no escape (the usual case: tokens, names) is checked eight bytes at
/// a time and copied whole.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    // The clean prefix, eight bytes at a time, then byte by byte from the first word
    // that holds a byte to escape (or the short tail).
    let clean = bytes
        .chunks_exact(8)
        .take_while(|c| {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            !word_needs_escape(u64::from_le_bytes(word))
        })
        .count()
        * 8;
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so a char boundary.
        out.push_str(s.get(start..i).unwrap_or(""));
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or(""));
    out.push('"');
}

/// Whether any of the eight bytes of `w` is below 0x20, `"` or `\\` (exact, not an
/// estimate: the classic has-less-than and has-zero-byte bit tricks).
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0;
    below_space || has_zero(w ^ (ONES * u64::from(b'"'))) || has_zero(w ^ (ONES * u64::from(b'\\')))
}

/// An object being written: `{`, then members, then [`Object::end`].
pub struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    /// Opens an object at the end of `out`.
    pub fn begin(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, first: true }
    }

    /// Writes the key and returns the buffer for its value.
    pub fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_str(self.out, key);
        self.out.push(':');
        self.out
    }

    /// A string member.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        push_str(self.key(key), value);
        self
    }

    /// An unsigned integer member.
    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        let _ = write!(self.key(key), "{value}");
        self
    }

    /// A boolean member.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    /// An array of strings.
    pub fn strs<'s>(&mut self, key: &str, values: impl IntoIterator<Item = &'s str>) -> &mut Self {
        let out = self.key(key);
        out.push('[');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(out, v);
        }
        out.push(']');
        self
    }

    /// Closes the object.
    pub fn end(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        let mut every: String = (0u32..0x80).filter_map(char::from_u32).collect();
        every.push_str("é\u{7f}\u{85}\u{2028}\u{2029}😀 \"\\/ end");
        let long = format!(
            "{}\"{}\u{1}{}\\",
            "x".repeat(17),
            "é".repeat(9),
            "y".repeat(8)
        );
        for s in [
            every.as_str(),
            "",
            "plain",
            "\"",
            "\\",
            "\u{0}",
            "a\u{1f}b",
            &long,
        ] {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn the_eight_byte_check_is_exact() {
        // Every byte value in every position, among bytes that need no escape.
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut word = *b"abcdefgh";
                word[pos] = b;
                let expected = b < 0x20 || b == b'"' || b == b'\\';
                assert_eq!(
                    word_needs_escape(u64::from_le_bytes(word)),
                    expected,
                    "{b:#x} at {pos}"
                );
            }
        }
        assert!(!word_needs_escape(u64::from_le_bytes([
            0x20, 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'
        ])));
    }

    #[test]
    fn objects_match_serde_json() {
        let mut out = String::new();
        let mut o = Object::begin(&mut out);
        o.strs("a", ["x", "y\n"])
            .u64("b", u64::MAX)
            .str("c", "z\"")
            .strs("d", []);
        o.end();
        let v = json!({"c": "z\"", "a": ["x", "y\n"], "b": u64::MAX, "d": []});
        assert_eq!(out, v.to_string());
    }
}
