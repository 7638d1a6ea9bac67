//! The issuance ledger's wire contract, defined once for both sides: the filter
//! (`registry_token_core::ledger` builds records, linked into the Wasm module) and the
//! ledger service (`registry-token-ledger` parses, validates and stores them).
//!
//! - [`Record`]: one decision as `POST /v1/ingest` carries it in `{"records": [...]}`,
//!   serialised exactly as the filter has always sent it (field names and order, absent
//!   fields omitted) and parsed strictly (unknown fields refused, `jti` an alias of `id`);
//!   [`Record::validate`] is the ledger's check of every value;
//! - the vocabularies [`Decision`], [`Grant`], [`BindingKind`] and [`RevocationKind`];
//! - the limits ([`MAX_ID_BYTES`], [`MAX_TEXT_BYTES`], [`MAX_SCOPES`], [`MAX_SECONDS`],
//!   [`MAX_BATCH_RECORDS`], [`MAX_BATCH_BYTES`], [`MAX_REVOCATION_VALUE_BYTES`]);
//! - [`IngestReply`], the ledger's answer to a stored batch, and [`Feed`], the revocation
//!   document of `GET /v1/revocations/feed`, with its digest form [`DigestFeed`]
//!   (`?form=digests`), [`revocation_digest`] and the bounds [`MAX_ACTIVE_REVOCATIONS`]
//!   (the ledger's) and [`MAX_FEED_DOCUMENT_BYTES`] (the gateway's).
//!
//! docs/LEDGER.md describes the fields; this crate is authoritative.

mod digest;
mod feed;
mod record;
mod words;

pub use digest::{
    decode as unpack_digests, revocation_digest, DigestFeed, RevocationDigest, DIGEST_BYTES,
    DIGEST_CHARS, DIGEST_FORM_QUERY, DIGEST_NAME, MAX_ACTIVE_REVOCATIONS, MAX_FEED_DOCUMENT_BYTES,
};
pub use feed::{Feed, IngestReply};
pub use record::{check_text, FieldError, Record};
pub use words::{BindingKind, Decision, Grant, RevocationKind};

/// Path of the ingest endpoint (the filter's default `ledger.path`).
pub const INGEST_PATH: &str = "/v1/ingest";
/// Path of the revocation feed.
pub const FEED_PATH: &str = "/v1/revocations/feed";

/// Longest identifier (`id`, `kid`, `refresh_token_id`), bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest free text (`reason`, `subject`, a scope, …), bytes.
pub const MAX_TEXT_BYTES: usize = 1024;
/// Most scopes in `requested` or in `granted`.
pub const MAX_SCOPES: usize = 64;
/// Latest time (`time`, `iat`, `exp`), unix seconds: the database stores a signed 64-bit
/// integer.
pub const MAX_SECONDS: u64 = i64::MAX as u64;
/// Most records in one ingest batch.
pub const MAX_BATCH_RECORDS: usize = 1_000;
/// Largest ingest body, bytes.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Longest revocation value, bytes (the filter refuses longer licence entries).
pub const MAX_REVOCATION_VALUE_BYTES: usize = 256;
