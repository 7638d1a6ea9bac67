//! The ledger's documents for gateways besides the record: its answer to a stored batch
//! and the revocation feed.

use serde::{Deserialize, Serialize};

use crate::words::RevocationKind;

/// The answer to a stored `POST /v1/ingest` batch: `{"accepted":N,"duplicates":M}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IngestReply {
    /// Records newly stored.
    pub accepted: u64,
    /// Records whose id was stored already (or repeated in the batch).
    pub duplicates: u64,
}

/// The document of `GET /v1/revocations/feed`: every active revocation by kind, each list
/// sorted. It is what the filter's remote revocation list reads (`parse_lists` in the
/// core takes the four `revoked*` lists).
///
/// Fields in the order the ledger has always written them (a JSON object's keys sorted).
/// Reading ignores unknown fields, so a newer ledger can add one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Feed {
    /// When the ledger wrote it, unix seconds.
    pub generated_at: u64,
    /// Revoked licences.
    pub revoked_licenses: Vec<String>,
    /// Revoked refresh token ids.
    pub revoked_refresh_tokens: Vec<String>,
    /// Revoked subjects.
    pub revoked_subjects: Vec<String>,
    /// Revoked tenants.
    pub revoked_tenants: Vec<String>,
}

impl Feed {
    /// The list of `kind`.
    pub fn list(&self, kind: RevocationKind) -> &[String] {
        match kind {
            RevocationKind::License => &self.revoked_licenses,
            RevocationKind::Subject => &self.revoked_subjects,
            RevocationKind::RefreshToken => &self.revoked_refresh_tokens,
            RevocationKind::Tenant => &self.revoked_tenants,
        }
    }

    /// The list of `kind`, to fill.
    pub fn list_mut(&mut self, kind: RevocationKind) -> &mut Vec<String> {
        match kind {
            RevocationKind::License => &mut self.revoked_licenses,
            RevocationKind::Subject => &mut self.revoked_subjects,
            RevocationKind::RefreshToken => &mut self.revoked_refresh_tokens,
            RevocationKind::Tenant => &mut self.revoked_tenants,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn feed_keys_are_the_kinds_feed_keys_in_the_ledger_byte_order() {
        let mut feed = Feed {
            generated_at: 7,
            ..Feed::default()
        };
        for k in RevocationKind::ALL {
            feed.list_mut(k).push(k.as_str().to_string());
        }
        let v = serde_json::to_value(&feed).unwrap();
        for k in RevocationKind::ALL {
            assert_eq!(v[k.feed_key()], json!([k.as_str()]), "{k:?}");
            assert_eq!(feed.list(k), [k.as_str()]);
        }
        // The bytes of a serde_json object with these keys (sorted), as served before.
        let sorted = serde_json::to_string(&serde_json::from_value::<Value>(v).unwrap()).unwrap();
        assert_eq!(serde_json::to_string(&feed).unwrap(), sorted);
        let back: Feed = serde_json::from_str(&sorted).unwrap();
        assert_eq!(back, feed);
    }

    #[test]
    fn the_ingest_reply_is_two_counts() {
        let r = IngestReply {
            accepted: 2,
            duplicates: 1,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"accepted":2,"duplicates":1}"#
        );
    }
}
