//! The revocation feed's digest form (`GET /v1/revocations/feed?form=digests`): each active
//! revocation as the first 96 bits of SHA-256 over its kind and value, packed per kind into
//! one base64url string, so that the gateway's document stays small at the ledger's bound
//! ([`MAX_ACTIVE_REVOCATIONS`] entries fit [`MAX_FEED_DOCUMENT_BYTES`]) and every worker VM
//! holds fixed-size digests instead of strings.
//!
//! Why 96 bits: a caller's value is refused by mistake only if its digest equals one of the
//! N listed ones, about N / 2^96 per check (1.3e-24 at 100,000 entries), and the values
//! checked come from tokens the Authority signed, not from the caller; a listed value always
//! matches its own digest, so a collision can only refuse, never let a revoked one through.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::words::RevocationKind;
use crate::Feed;

/// The `digest` member of a digest feed: the hash and its truncation.
pub const DIGEST_NAME: &str = "sha256-96";
/// Bytes of one revocation digest.
pub const DIGEST_BYTES: usize = 12;
/// base64url characters of one digest (12 bytes are 16 characters, no padding).
pub const DIGEST_CHARS: usize = 16;
/// The query that asks the feed for its digest form.
pub const DIGEST_FORM_QUERY: &str = "form=digests";
/// Most active revocations the ledger keeps (the ceiling and default of its
/// `--max-revocations`): the API refuses a create beyond it, so the digest feed never
/// outgrows [`MAX_FEED_DOCUMENT_BYTES`].
pub const MAX_ACTIVE_REVOCATIONS: usize = 100_000;
/// Longest revocation list document a gateway takes, bytes, in any form: the digest feed at
/// [`MAX_ACTIVE_REVOCATIONS`] entries plus 4 KiB for its other members (1,604,096 bytes).
pub const MAX_FEED_DOCUMENT_BYTES: usize = MAX_ACTIVE_REVOCATIONS * DIGEST_CHARS + 4096;

/// One revocation's digest: the first [`DIGEST_BYTES`] of SHA-256(kind word, 0x00, value).
pub type RevocationDigest = [u8; DIGEST_BYTES];

/// The digest of the revocation of `value` as `kind` (the kind's word, e.g. `license`,
/// keeps a subject and a licence of the same text apart).
pub fn revocation_digest(kind: RevocationKind, value: &str) -> RevocationDigest {
    let mut h = Sha256::new();
    h.update(kind.as_str().as_bytes());
    h.update([0u8]);
    h.update(value.as_bytes());
    let full = h.finalize();
    let mut out = [0u8; DIGEST_BYTES];
    out.copy_from_slice(&full[..DIGEST_BYTES]);
    out
}

/// The document of `GET /v1/revocations/feed?form=digests`: every active revocation as its
/// [`revocation_digest`], per kind sorted ascending without repeats and packed into one
/// base64url string (no padding, [`DIGEST_CHARS`] characters each). A document with a
/// `digest` member is this form; the filter reads both this and the value [`Feed`].
///
/// Keys in byte order (what serde_json writes for a map); reading ignores unknown members
/// and takes a missing list as empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestFeed {
    /// [`DIGEST_NAME`].
    pub digest: String,
    /// When the ledger built it, unix seconds.
    #[serde(default)]
    pub generated_at: u64,
    /// Revoked licences.
    #[serde(default)]
    pub revoked_licenses: String,
    /// Revoked refresh token ids.
    #[serde(default)]
    pub revoked_refresh_tokens: String,
    /// Revoked subjects.
    #[serde(default)]
    pub revoked_subjects: String,
    /// Revoked tenants.
    #[serde(default)]
    pub revoked_tenants: String,
}

impl DigestFeed {
    /// The digest form of `feed` (same `generatedAt`).
    pub fn from_feed(feed: &Feed) -> DigestFeed {
        let mut out = DigestFeed {
            digest: DIGEST_NAME.to_string(),
            generated_at: feed.generated_at,
            ..DigestFeed::default()
        };
        for kind in RevocationKind::ALL {
            let mut digests: Vec<RevocationDigest> = feed
                .list(kind)
                .iter()
                .map(|v| revocation_digest(kind, v))
                .collect();
            digests.sort_unstable();
            digests.dedup();
            *out.list_mut(kind) = encode(&digests);
        }
        out
    }

    /// The packed list of `kind`.
    pub fn list(&self, kind: RevocationKind) -> &str {
        match kind {
            RevocationKind::License => &self.revoked_licenses,
            RevocationKind::Subject => &self.revoked_subjects,
            RevocationKind::RefreshToken => &self.revoked_refresh_tokens,
            RevocationKind::Tenant => &self.revoked_tenants,
        }
    }

    /// The packed list of `kind`, to fill.
    pub fn list_mut(&mut self, kind: RevocationKind) -> &mut String {
        match kind {
            RevocationKind::License => &mut self.revoked_licenses,
            RevocationKind::Subject => &mut self.revoked_subjects,
            RevocationKind::RefreshToken => &mut self.revoked_refresh_tokens,
            RevocationKind::Tenant => &mut self.revoked_tenants,
        }
    }

    /// Sets the list of `kind` to `digests` (ascending without repeats).
    pub fn set_digests(&mut self, kind: RevocationKind, digests: &[RevocationDigest]) {
        *self.list_mut(kind) = encode(digests);
    }

    /// The digests of `kind`, checked: a multiple of [`DIGEST_CHARS`] characters of strict
    /// base64url, ascending without repeats.
    pub fn digests(&self, kind: RevocationKind) -> Result<Vec<RevocationDigest>, String> {
        decode(self.list(kind)).map_err(|e| format!("{}: {e}", kind.feed_key()))
    }

    /// Entries of every kind (from the packed lengths).
    pub fn len(&self) -> usize {
        RevocationKind::ALL
            .iter()
            .map(|k| self.list(*k).len() / DIGEST_CHARS)
            .sum()
    }

    /// No entry at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Packs sorted digests into one base64url string.
pub fn encode(digests: &[RevocationDigest]) -> String {
    URL_SAFE_NO_PAD.encode(digests.concat())
}

/// Unpacks one list of a [`DigestFeed`] (see [`DigestFeed::digests`]).
pub fn decode(packed: &str) -> Result<Vec<RevocationDigest>, String> {
    if !packed.len().is_multiple_of(DIGEST_CHARS) {
        return Err(format!(
            "{} characters is not a whole number of {DIGEST_CHARS}-character digests",
            packed.len()
        ));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(packed)
        .map_err(|e| format!("not base64url: {e}"))?;
    let mut out: Vec<RevocationDigest> = Vec::with_capacity(bytes.len() / DIGEST_BYTES);
    for chunk in bytes.chunks_exact(DIGEST_BYTES) {
        let mut d = [0u8; DIGEST_BYTES];
        d.copy_from_slice(chunk);
        if out.last().is_some_and(|last| *last >= d) {
            return Err("digests are not in ascending order without repeats".into());
        }
        out.push(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn feed_of(n: usize, kind: RevocationKind, width: usize) -> Feed {
        let mut feed = Feed {
            generated_at: 1_767_225_700,
            ..Feed::default()
        };
        *feed.list_mut(kind) = (0..n).map(|i| format!("{i:0width$}")).collect();
        feed
    }

    #[test]
    fn the_digest_is_sha256_of_kind_nul_value_cut_to_96_bits() {
        // printf 'license\0lic-9' | sha256sum → d944d7a0fe1a42306792d489 91f5…: 12 bytes.
        assert_eq!(
            revocation_digest(RevocationKind::License, "lic-9"),
            [0xd9, 0x44, 0xd7, 0xa0, 0xfe, 0x1a, 0x42, 0x30, 0x67, 0x92, 0xd4, 0x89]
        );
        // The kind is part of it: a subject and a licence of one text differ.
        assert_ne!(
            revocation_digest(RevocationKind::License, "x"),
            revocation_digest(RevocationKind::Subject, "x")
        );
    }

    #[test]
    fn a_feed_round_trips_through_its_digest_form() {
        let feed = Feed {
            revoked_licenses: vec!["lic-9".into(), "lic-1".into()],
            revoked_subjects: vec!["mallory".into()],
            ..Feed::default()
        };
        let d = DigestFeed::from_feed(&feed);
        assert_eq!(d.digest, DIGEST_NAME);
        assert_eq!(d.len(), 3);
        assert_eq!(d.revoked_licenses.len(), 2 * DIGEST_CHARS);
        let lic = d.digests(RevocationKind::License).unwrap();
        let mut want = vec![
            revocation_digest(RevocationKind::License, "lic-1"),
            revocation_digest(RevocationKind::License, "lic-9"),
        ];
        want.sort();
        assert_eq!(lic, want);
        assert!(d.digests(RevocationKind::Tenant).unwrap().is_empty());
        // Keys in byte order, as a map would be written; it reads back.
        let text = serde_json::to_string(&d).unwrap();
        let sorted = serde_json::to_string(&serde_json::from_str::<Value>(&text).unwrap()).unwrap();
        assert_eq!(text, sorted);
        assert_eq!(serde_json::from_str::<DigestFeed>(&text).unwrap(), d);
    }

    #[test]
    fn bad_packed_lists_are_refused() {
        let a = revocation_digest(RevocationKind::License, "a");
        let b = revocation_digest(RevocationKind::License, "b");
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        assert_eq!(decode(&encode(&[lo, hi])).unwrap(), vec![lo, hi]);
        assert!(decode(&encode(&[hi, lo])).is_err(), "descending");
        assert!(decode(&encode(&[lo, lo])).is_err(), "repeated");
        assert!(decode("AAAAAAAAAAAAAAA").is_err(), "15 characters");
        assert!(decode("AAAAAAAAAAAAAAA=").is_err(), "padding");
        assert!(decode("AAAAAAAAAAAAAAA+").is_err(), "standard alphabet");
        assert!(decode("").unwrap().is_empty());
    }

    /// The ledger's bound fits the gateway's, with the longest values, whatever the kinds;
    /// and the gateway's bound is no larger than that needs.
    #[test]
    fn the_feed_at_the_ledgers_bound_fits_the_gateways_bound() {
        for kind in RevocationKind::ALL {
            let feed = feed_of(
                MAX_ACTIVE_REVOCATIONS,
                kind,
                crate::MAX_REVOCATION_VALUE_BYTES,
            );
            let bytes = serde_json::to_vec(&DigestFeed::from_feed(&feed)).unwrap();
            assert!(bytes.len() <= MAX_FEED_DOCUMENT_BYTES, "{}", bytes.len());
            assert!(MAX_FEED_DOCUMENT_BYTES - bytes.len() <= 4096);
        }
        let mut all = Feed::default();
        for kind in RevocationKind::ALL {
            *all.list_mut(kind) = (0..MAX_ACTIVE_REVOCATIONS / 4)
                .map(|i| format!("{}-{i:08}", kind.as_str()))
                .collect();
        }
        let bytes = serde_json::to_vec(&DigestFeed::from_feed(&all)).unwrap();
        assert!(bytes.len() <= MAX_FEED_DOCUMENT_BYTES);
        // The value form of the same list (values of 15 to 21 characters) outgrows 1 MiB.
        assert!(serde_json::to_vec(&all).unwrap().len() > 1024 * 1024);
    }
}
