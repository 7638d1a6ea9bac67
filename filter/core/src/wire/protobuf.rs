//! The protobuf wire format: the one reader and writer behind [`super::structpb`]
//! (`google.protobuf.Struct`) and [`super::envoy_crypto`] (Envoy's `sign` and
//! `verify_signature` messages).
//!
//! Every read is bounds-checked and reports where it failed (byte offsets into the whole
//! input); varints are at most 10 bytes and 64 bits; field numbers are 1 to 2^29 - 1;
//! wire types 6 and 7 are refused; a length-delimited field must fit in its message.
//! Unknown fields are skipped by wire type, groups included ([`Reader::skip`], nesting
//! limited to [`MAX_DEPTH`]); a message that takes no groups uses [`Reader::skip_flat`].

use core::fmt;

/// Deepest nesting of messages (the top one is level 1) and of skipped groups accepted by
/// [`Reader::skip`] and [`check_depth`].
pub const MAX_DEPTH: usize = 64;

/// Wire type of varints (int32, int64, uint32, uint64, sint*, bool, enum).
pub const WT_VARINT: u8 = 0;
/// Wire type of 8-byte little-endian values (fixed64, sfixed64, double).
pub const WT_FIXED64: u8 = 1;
/// Wire type of length-delimited values (string, bytes, messages, packed repeated).
pub const WT_LEN: u8 = 2;
/// Wire type of a group's start tag (deprecated).
pub const WT_START_GROUP: u8 = 3;
/// Wire type of a group's end tag (deprecated).
pub const WT_END_GROUP: u8 = 4;
/// Wire type of 4-byte little-endian values (fixed32, sfixed32, float).
pub const WT_FIXED32: u8 = 5;

/// Why bytes are not a well-formed protobuf message. Offsets are byte offsets into the
/// whole input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
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
    /// A group in a message read with [`Reader::skip_flat`], which takes none.
    UnsupportedGroup {
        /// Where the tag starts.
        offset: usize,
    },
    /// A string that is not UTF-8.
    InvalidUtf8 {
        /// Where the string's bytes start.
        offset: usize,
    },
    /// Messages (or groups) nested deeper than [`MAX_DEPTH`].
    TooDeep {
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for ProtoError {
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
            Self::UnsupportedGroup { offset } => {
                write!(f, "group at byte {offset} in a message that takes none")
            }
            Self::InvalidUtf8 { offset } => {
                write!(f, "string at byte {offset} is not valid UTF-8")
            }
            Self::TooDeep { limit } => {
                write!(f, "messages are nested deeper than {limit} levels")
            }
        }
    }
}

impl std::error::Error for ProtoError {}

// ---------------------------------------------------------------------------------------
// Reading.
// ---------------------------------------------------------------------------------------

/// A decoded tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    /// Offset of the tag in the whole input.
    pub offset: usize,
    /// Field number, 1 to 2^29 - 1.
    pub field: u32,
    /// Wire type, 0 to 5.
    pub wire_type: u8,
}

impl Tag {
    /// `Ok` when the tag has wire type `expected`; `field` names it in the error.
    pub fn expect(&self, field: &'static str, expected: u8) -> Result<(), ProtoError> {
        if self.wire_type == expected {
            Ok(())
        } else {
            Err(ProtoError::UnexpectedWireType {
                offset: self.offset,
                field,
                expected,
                found: self.wire_type,
            })
        }
    }
}

/// `Ok` while `depth` is within [`MAX_DEPTH`].
pub fn check_depth(depth: usize) -> Result<(), ProtoError> {
    if depth > MAX_DEPTH {
        Err(ProtoError::TooDeep { limit: MAX_DEPTH })
    } else {
        Ok(())
    }
}

/// A bounds-checked cursor over one message's bytes; `base` is the offset of `buf[0]` in
/// the whole input, for error messages.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a whole input.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
        }
    }

    /// True when everything has been read.
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Offset of the next byte in the whole input.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// The bytes of this message (all of them, read or not).
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Offset of this message's first byte in the whole input.
    pub fn base(&self) -> usize {
        self.base
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// A varint (at most 10 bytes, at most 64 bits).
    pub fn varint(&mut self, what: &'static str) -> Result<u64, ProtoError> {
        let start = self.offset();
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(ProtoError::Truncated {
                    offset: start,
                    what,
                });
            };
            self.pos += 1;
            let bits = u64::from(byte & 0x7f);
            // The 10th byte may only contribute the 64th bit.
            if i == 9 && bits > 1 {
                return Err(ProtoError::VarintOverflow { offset: start });
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtoError::VarintOverflow { offset: start })
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtoError> {
        let start = self.offset();
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e).map(|s| (e, s))) {
            Some((e, slice)) => {
                self.pos = e;
                Ok(slice)
            }
            None => Err(ProtoError::Truncated {
                offset: start,
                what,
            }),
        }
    }

    /// The next tag: field number 1 to 2^29 - 1, wire type 0 to 5.
    pub fn tag(&mut self) -> Result<Tag, ProtoError> {
        let offset = self.offset();
        let raw = self.varint("a tag")?;
        let field = raw >> 3;
        if field == 0 || field > 0x1fff_ffff {
            return Err(ProtoError::InvalidFieldNumber { offset, field });
        }
        // Both conversions are lossless: field < 2^29 and the wire type is 3 bits.
        let field =
            u32::try_from(field).map_err(|_| ProtoError::InvalidFieldNumber { offset, field })?;
        let wire_type = (raw & 7) as u8;
        if wire_type > WT_FIXED32 {
            return Err(ProtoError::InvalidWireType { offset, wire_type });
        }
        Ok(Tag {
            offset,
            field,
            wire_type,
        })
    }

    /// The payload of a length-delimited field (its length must fit in this message), as a
    /// sub-reader.
    pub fn len_delimited(&mut self, what: &'static str) -> Result<Reader<'a>, ProtoError> {
        let length = self.varint(what)?;
        let offset = self.offset();
        let available = self.remaining();
        let n = usize::try_from(length)
            .ok()
            .filter(|&n| n <= available)
            .ok_or(ProtoError::LengthOverflow {
                offset,
                length,
                available,
            })?;
        let buf = self.take(n, what)?;
        Ok(Reader {
            buf,
            pos: 0,
            base: offset,
        })
    }

    /// A length-delimited field that must be UTF-8.
    pub fn string(&mut self, what: &'static str) -> Result<String, ProtoError> {
        let sub = self.len_delimited(what)?;
        core::str::from_utf8(sub.buf)
            .map(str::to_owned)
            .map_err(|_| ProtoError::InvalidUtf8 { offset: sub.base })
    }

    /// Skips the value of an unknown field. `depth` is the nesting level of the message
    /// holding the field (groups nest one level further).
    pub fn skip(&mut self, tag: &Tag, depth: usize) -> Result<(), ProtoError> {
        match tag.wire_type {
            WT_START_GROUP => self.skip_group(tag, depth + 1),
            _ => self.skip_flat(tag),
        }
    }

    /// Skips the value of an unknown field of a message that takes no groups: a group's
    /// tag is an error.
    pub fn skip_flat(&mut self, tag: &Tag) -> Result<(), ProtoError> {
        match tag.wire_type {
            WT_VARINT => self.varint("a varint").map(drop),
            WT_FIXED64 => self.take(8, "a fixed64").map(drop),
            WT_LEN => self.len_delimited("a length-delimited field").map(drop),
            WT_FIXED32 => self.take(4, "a fixed32").map(drop),
            WT_START_GROUP => Err(ProtoError::UnsupportedGroup { offset: tag.offset }),
            WT_END_GROUP => Err(ProtoError::UnmatchedEndGroup {
                offset: tag.offset,
                field: tag.field,
            }),
            wire_type => Err(ProtoError::InvalidWireType {
                offset: tag.offset,
                wire_type,
            }),
        }
    }

    fn skip_group(&mut self, start: &Tag, depth: usize) -> Result<(), ProtoError> {
        check_depth(depth)?;
        loop {
            if self.at_end() {
                return Err(ProtoError::Truncated {
                    offset: start.offset,
                    what: "a group",
                });
            }
            let tag = self.tag()?;
            if tag.wire_type == WT_END_GROUP {
                return if tag.field == start.field {
                    Ok(())
                } else {
                    Err(ProtoError::UnmatchedEndGroup {
                        offset: tag.offset,
                        field: tag.field,
                    })
                };
            }
            self.skip(&tag, depth)?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writing.
// ---------------------------------------------------------------------------------------

/// Append a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Append a tag.
pub fn put_tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

/// Append a length-delimited field (even when empty).
pub fn put_bytes(out: &mut Vec<u8>, field: u32, payload: &[u8]) {
    put_tag(out, field, WT_LEN);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_encoding() {
        for (value, bytes) in [
            (0u64, vec![0u8]),
            (1, vec![1]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes);
            assert_eq!(Reader::new(&bytes).varint("v").unwrap(), value);
        }
        // 11 bytes, and a 10th byte above 1.
        assert!(Reader::new(&[0xff; 11]).varint("v").is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint("v")
                .is_err()
        );
        assert!(Reader::new(&[0x80]).varint("v").is_err());
    }

    #[test]
    fn skip_flat_refuses_groups_and_skip_takes_them() {
        // Field 9 group { field 1 varint 1 } end.
        let data = [0x4b, 0x08, 0x01, 0x4c];
        let mut r = Reader::new(&data);
        let tag = r.tag().unwrap();
        assert_eq!(
            r.clone().skip_flat(&tag),
            Err(ProtoError::UnsupportedGroup { offset: 0 })
        );
        r.skip(&tag, 1).unwrap();
        assert!(r.at_end());
        // Sub-readers report offsets into the whole input.
        let mut r = Reader::new(&[0x0a, 0x02, 0xc3, 0x28]);
        r.tag().unwrap();
        assert_eq!(r.string("s"), Err(ProtoError::InvalidUtf8 { offset: 2 }));
    }
}
