//! The remote list as the gateway keeps it, whatever form it came in: per kind, the sorted
//! 96-bit digests of the revoked values ([`DigestLists`]), read from the ledger's digest
//! feed or made from a value list, and looked up by hashing the caller's value once.

use std::fmt;

use registry_token_ledger_wire::{
    revocation_digest, unpack_digests, DigestFeed, RevocationDigest, DIGEST_NAME,
};
use serde_json::{Map, Value};

use super::{RevocationKind, RevocationSet, RevokedLists};

/// A remote list as the gateway keeps it: per kind, the sorted digests of the revoked
/// values ([`revocation_digest`], 12 bytes each), whichever form the list came in. A
/// lookup hashes the caller's value once, and only when that kind's list is not empty.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DigestLists {
    /// In the order of [`RevocationKind::ALL`], each ascending without repeats.
    lists: [Vec<RevocationDigest>; 4],
}

impl fmt::Debug for DigestLists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("DigestLists");
        for kind in RevocationKind::ALL {
            d.field(kind.as_str(), &self.count(kind));
        }
        d.finish()
    }
}

fn kind_index(kind: RevocationKind) -> usize {
    match kind {
        RevocationKind::License => 0,
        RevocationKind::Subject => 1,
        RevocationKind::RefreshToken => 2,
        RevocationKind::Tenant => 3,
    }
}

impl DigestLists {
    /// The digests of value lists.
    pub fn from_values(values: &RevokedLists) -> DigestLists {
        let mut out = DigestLists::default();
        for kind in RevocationKind::ALL {
            let mut list: Vec<RevocationDigest> = values
                .set(kind)
                .iter()
                .map(|v| revocation_digest(kind, v))
                .collect();
            sort_digests(&mut list);
            list.dedup();
            out.lists[kind_index(kind)] = list;
        }
        out
    }

    /// The lists of a digest feed (each checked: whole digests, ascending, no repeats).
    pub fn from_feed(feed: &DigestFeed) -> Result<DigestLists, String> {
        DigestLists::from_packed(&feed.digest, |kind| Some(feed.list(kind)))
    }

    /// The lists of a digest document: its `digest` member and each kind's packed list
    /// (`None`: absent, empty).
    fn from_packed<'a>(
        digest: &str,
        packed: impl Fn(RevocationKind) -> Option<&'a str>,
    ) -> Result<DigestLists, String> {
        if digest != DIGEST_NAME {
            return Err(format!(
                "revocation list digest {:?} is not {DIGEST_NAME}",
                digest.chars().take(32).collect::<String>()
            ));
        }
        let mut out = DigestLists::default();
        for kind in RevocationKind::ALL {
            if let Some(text) = packed(kind) {
                out.lists[kind_index(kind)] = unpack_digests(text)
                    .map_err(|e| format!("revocation list {}: {e}", kind.feed_key()))?;
            }
        }
        Ok(out)
    }

    /// The digest feed of these lists (what the gateway keeps in shared data).
    pub fn to_feed(&self, generated_at: u64) -> DigestFeed {
        let mut feed = DigestFeed {
            digest: DIGEST_NAME.to_string(),
            generated_at,
            ..DigestFeed::default()
        };
        for kind in RevocationKind::ALL {
            feed.set_digests(kind, &self.lists[kind_index(kind)]);
        }
        feed
    }

    /// Entries of every kind.
    pub fn len(&self) -> usize {
        self.lists.iter().map(Vec::len).sum()
    }

    /// No entry at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the digests take (what a VM holds for the list).
    pub fn heap_bytes(&self) -> usize {
        self.lists
            .iter()
            .map(|l| l.capacity() * std::mem::size_of::<RevocationDigest>())
            .sum()
    }
}

/// Sorts digests ascending in place (heapsort, no allocation). Our own because std's
/// `sort_unstable` for this element type adds about 19 KB to the Wasm module, for a sort
/// run once per fetched value list; nothing is lost but speed (O(n log n) all the same).
fn sort_digests(v: &mut [RevocationDigest]) {
    fn sift_down(v: &mut [RevocationDigest], mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v[child] < v[child + 1] {
                child += 1;
            }
            if v[root] >= v[child] {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    let n = v.len();
    for start in (0..n / 2).rev() {
        sift_down(v, start, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

impl RevocationSet for DigestLists {
    fn contains(&self, kind: RevocationKind, value: &str) -> bool {
        let list = &self.lists[kind_index(kind)];
        !list.is_empty() && list.binary_search(&revocation_digest(kind, value)).is_ok()
    }

    fn count(&self, kind: RevocationKind) -> usize {
        self.lists[kind_index(kind)].len()
    }
}

/// The digest form's members, read from the object (unknown ones ignored, a missing list
/// empty). By hand rather than serde's `Deserialize`, which would add its code for the
/// `Value` deserializer to the module.
pub(super) fn digest_lists(o: &Map<String, Value>) -> Result<DigestLists, String> {
    let Some(digest) = o.get("digest").and_then(Value::as_str) else {
        return Err("revocation list digest is not a string".into());
    };
    for kind in RevocationKind::ALL {
        if o.get(kind.feed_key()).is_some_and(|v| !v.is_string()) {
            return Err(format!(
                "revocation list {} is not a string of digests",
                kind.feed_key()
            ));
        }
    }
    DigestLists::from_packed(digest, |kind| {
        o.get(kind.feed_key()).and_then(Value::as_str)
    })
}

#[cfg(test)]
mod tests {
    use super::super::{parse_lists, parse_remote, MAX_LIST_BYTES};
    use super::*;

    #[test]
    fn digests_sort_as_std_sorts_them() {
        for n in [0usize, 1, 2, 3, 7, 64, 1000] {
            let mut v: Vec<RevocationDigest> = (0..n)
                .map(|i| revocation_digest(RevocationKind::Subject, &format!("s-{}", i % 700)))
                .collect();
            let mut want = v.clone();
            want.sort();
            sort_digests(&mut v);
            assert_eq!(v, want, "{n}");
        }
    }

    #[test]
    fn the_digest_form_is_told_by_its_digest_member() {
        let values = br#"{"revokedLicenses":["lic-1"],"revokedTenants":["acme"]}"#;
        let from_values = parse_remote(values).unwrap();
        let lists = parse_lists(values).unwrap();
        assert_eq!(from_values, DigestLists::from_values(&lists));
        let doc = serde_json::to_vec(&from_values.to_feed(7)).unwrap();
        let text = String::from_utf8(doc.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"digest":"sha256-96","generatedAt":7,"#),
            "{text}"
        );
        let back = parse_remote(&doc).unwrap();
        assert_eq!(back, from_values);
        assert!(back.contains(RevocationKind::License, "lic-1"));
        assert!(back.contains(RevocationKind::Tenant, "acme"));
        assert!(!back.contains(RevocationKind::Subject, "acme"));
        assert!(!back.contains(RevocationKind::License, "lic-2"));
        assert_eq!(back.count(RevocationKind::License), 1);
        // The value parser names what it was given.
        let e = parse_lists(&doc).unwrap_err();
        assert!(e.contains("digest form"), "{e}");
        // A digest document is checked like any other.
        for bad in [
            r#"{"digest":"sha1","revokedLicenses":""}"#,
            r#"{"digest":"sha256-96","revokedLicenses":"AAAA"}"#,
            r#"{"digest":"sha256-96","revokedLicenses":["AAAAAAAAAAAAAAAA"]}"#,
            r#"{"digest":1}"#,
        ] {
            assert!(parse_remote(bad.as_bytes()).is_err(), "{bad}");
        }
        // Missing lists are empty; unknown members are ignored.
        let sparse = parse_remote(br#"{"digest":"sha256-96","next":1}"#).unwrap();
        assert!(sparse.is_empty());
        assert!(parse_remote(&vec![b' '; MAX_LIST_BYTES + 1]).is_err());
    }
}
