//! The filter's side of the issuance ledger (`ledger/`, docs/LEDGER.md), without I/O:
//!
//! - [`record`]: an [`Audit`] as one record of `POST /v1/ingest` (the wire type of
//!   `registry_token_ledger_wire`, which the ledger parses), cleaned so that the ledger
//!   never refuses it (a refused record would refuse its whole batch);
//! - [`ingest_body`]: a batch of records as the POST body;
//! - the process-wide buffer's shared-data values ([`Meta`], [`Segment`], [`FlushLease`])
//!   and the retry [`backoff`]. The glue (`filter/wasm/src/ledger.rs`) drives them.
//!
//! The buffer is a ring of segments in Envoy shared data: `meta` holds the oldest
//! unacknowledged segment (`head`) and the one being filled (`tail`); each segment holds at
//! most `batchSize` records, in order. Request paths append to the tail segment with
//! compare-and-swap; one VM at a time (the [`FlushLease`]) POSTs the head segment and
//! removes it only after a 2xx.

use std::borrow::Cow;

use registry_token_ledger_wire::{
    self as wire, BindingKind, Decision, MAX_ID_BYTES, MAX_SCOPES, MAX_SECONDS, MAX_TEXT_BYTES,
};

use crate::handler::{Audit, Grant};

/// The core's grants are the wire's, word for word (a test checks the labels).
impl From<Grant> for wire::Grant {
    fn from(g: Grant) -> wire::Grant {
        match g {
            Grant::Get => wire::Grant::Get,
            Grant::Password => wire::Grant::Password,
            Grant::RefreshToken => wire::Grant::RefreshToken,
        }
    }
}

/// `text` without control characters (and, for scopes, spaces), at most `max` bytes cut at
/// a character boundary; `None` when nothing is left. Borrowed when already clean (the
/// usual case: no copy on the request path).
fn clean(text: &str, max: usize, no_space: bool) -> Option<Cow<'_, str>> {
    let bad = |c: char| c.is_control() || (no_space && c == ' ');
    if text.len() <= max && !text.chars().any(bad) {
        return (!text.is_empty()).then_some(Cow::Borrowed(text));
    }
    let mut out = String::new();
    for c in text.chars() {
        if bad(c) {
            continue;
        }
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    (!out.is_empty()).then_some(Cow::Owned(out))
}

fn text(value: Option<&str>, max: usize) -> Option<Cow<'_, str>> {
    value.and_then(|v| clean(v, max, false))
}

fn scopes(list: &[String]) -> Vec<Cow<'_, str>> {
    list.iter()
        .filter_map(|s| clean(s, MAX_TEXT_BYTES, true))
        .take(MAX_SCOPES)
        .collect()
}

/// The ledger's id of a decision: the minted token's `jti`, else the audit's `id`.
pub fn record_id(audit: &Audit) -> Option<&str> {
    audit.jti.as_deref().or(audit.id.as_deref())
}

/// The audit's decision and grant words as the wire's: anything but `issued` is a
/// refusal; a grant word the core does not know is left out.
fn words(audit: &Audit) -> (Decision, Option<wire::Grant>) {
    let decision = if audit.decision == Decision::Issued.as_str() {
        Decision::Issued
    } else {
        Decision::Rejected
    };
    let grant = Grant::ALL
        .iter()
        .find(|g| g.label() == audit.grant)
        .map(|&g| wire::Grant::from(g));
    (decision, grant)
}

/// The audit record as a ledger ingest record, or `None` without an id. Only the fields
/// the ledger knows are kept (it refuses unknown ones); every text is stripped of control
/// characters and cut to the ledger's bounds, times are capped at its range, and a
/// binding of a kind it does not know is left out: the result always passes
/// [`wire::Record::validate`].
pub fn wire_record(audit: &Audit) -> Option<wire::Record<'_>> {
    let (decision, grant) = words(audit);
    let seconds = |t: u64| t.min(MAX_SECONDS);
    Some(wire::Record {
        id: clean(record_id(audit)?, MAX_ID_BYTES, false)?,
        time: seconds(audit.time),
        decision,
        reason: text(Some(audit.reason), MAX_TEXT_BYTES),
        subject: text(audit.subject.as_deref(), MAX_TEXT_BYTES),
        client_id: text(audit.client_id.as_deref(), MAX_TEXT_BYTES),
        plan: text(audit.plan.as_deref(), MAX_TEXT_BYTES),
        tenant: text(audit.tenant.as_deref(), MAX_TEXT_BYTES),
        license: text(audit.license.as_deref(), MAX_TEXT_BYTES),
        service: text(audit.service.as_deref(), MAX_TEXT_BYTES),
        requested: scopes(&audit.requested),
        granted: scopes(&audit.granted),
        iat: audit.iat.map(seconds),
        exp: audit.exp.map(seconds),
        kid: text(audit.kid.as_deref(), MAX_ID_BYTES),
        binding: text(audit.binding.as_deref(), MAX_TEXT_BYTES)
            .filter(|b| BindingKind::of(b).is_some()),
        grant,
        refresh_token_id: text(audit.refresh_token_id.as_deref(), MAX_ID_BYTES),
        gateway: text(audit.gateway.as_deref(), MAX_TEXT_BYTES),
        issuer: text(audit.issuer.as_deref(), MAX_TEXT_BYTES),
        policy: text(audit.policy.as_deref(), MAX_TEXT_BYTES),
    })
}

/// The audit record as one ledger ingest record (JSON text: [`wire_record`] serialised),
/// or `None` without an id.
pub fn record(audit: &Audit) -> Option<String> {
    wire_record(audit)?.to_json()
}

/// The body of `POST /v1/ingest` for records given as JSON texts.
pub fn ingest_body<'a>(records: impl IntoIterator<Item = &'a str>) -> String {
    let mut body = String::from("{\"records\":[");
    for (i, r) in records.into_iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(r);
    }
    body.push_str("]}");
    body
}

/// The body of `POST /v1/ingest` for the records of a segment as it holds them (each
/// preceded by a newline, the rest of [`SegmentHead::read`]): the same bytes as
/// [`ingest_body`] of those records, without splitting them into strings.
pub fn ingest_body_from_lines(lines: &[u8]) -> Vec<u8> {
    let records = lines.strip_prefix(b"\n").unwrap_or(lines);
    let mut body = Vec::with_capacity(records.len() + 14);
    body.extend_from_slice(b"{\"records\":[");
    body.extend(records.iter().map(|&b| if b == b'\n' { b',' } else { b }));
    body.extend_from_slice(b"]}");
    body
}

/// The buffer's bookkeeping: segments `head..=tail` hold the records not yet acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Oldest segment not acknowledged by the ledger.
    pub head: u64,
    /// Segment being filled.
    pub tail: u64,
}

impl Meta {
    /// `head tail` as text.
    pub fn to_bytes(self) -> Vec<u8> {
        format!("{} {}", self.head, self.tail).into_bytes()
    }

    /// Parses [`Meta::to_bytes`]; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Meta> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (h, t) = text.split_once(' ')?;
        let meta = Meta {
            head: h.parse().ok()?,
            tail: t.parse().ok()?,
        };
        (meta.head <= meta.tail).then_some(meta)
    }
}

/// One segment of the ring: its sequence number, when its oldest record was added
/// (milliseconds) and its records (JSON texts, never holding a raw newline).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Segment {
    /// Sequence number (the ring slot is `seq % slots`).
    pub seq: u64,
    /// Unix milliseconds of the oldest record (0 when empty).
    pub first_ms: u64,
    /// No record may be added any more: the next segment is (being) opened. Sealing
    /// changes the slot's CAS, so an appender that read the segment before cannot write
    /// to it; a sealed, emptied segment can be stepped over safely.
    pub sealed: bool,
    /// The records, oldest first.
    pub records: Vec<String>,
}

impl Segment {
    /// `seq first_ms sealed count` then one record per line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let head = SegmentHead {
            seq: self.seq,
            first_ms: self.first_ms,
            sealed: self.sealed,
            count: self.records.len(),
        };
        let mut out = head.line().into_bytes();
        for r in &self.records {
            out.push(b'\n');
            out.extend_from_slice(r.as_bytes());
        }
        out
    }

    /// Parses [`Segment::to_bytes`]; `None` for anything else (a count that is not the
    /// number of records included).
    pub fn from_bytes(bytes: &[u8]) -> Option<Segment> {
        let (head, body) = SegmentHead::read(bytes)?;
        let text = std::str::from_utf8(body).ok()?;
        let records: Vec<String> = match text.strip_prefix('\n') {
            Some(rest) => rest.split('\n').map(str::to_string).collect(),
            None if text.is_empty() => Vec::new(),
            None => return None,
        };
        (records.len() == head.count).then_some(Segment {
            seq: head.seq,
            first_ms: head.first_ms,
            sealed: head.sealed,
            records,
        })
    }
}

/// The first line of a [`Segment`]'s bytes, read and rewritten without touching the
/// records: the request path appends one record, or seals the segment, in O(1) work
/// beyond copying the bytes (parsing and re-serialising every record of the segment on
/// every append made the ledger cost each `/token` answer tens of microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHead {
    /// [`Segment::seq`].
    pub seq: u64,
    /// [`Segment::first_ms`].
    pub first_ms: u64,
    /// [`Segment::sealed`].
    pub sealed: bool,
    /// Number of records.
    pub count: usize,
}

impl SegmentHead {
    /// The head line: `seq first_ms sealed count`.
    fn line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.seq,
            self.first_ms,
            u8::from(self.sealed),
            self.count
        )
    }

    /// Splits a segment's bytes into its head and the rest (`\n`-prefixed records).
    pub fn read(bytes: &[u8]) -> Option<(SegmentHead, &[u8])> {
        let end = bytes
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(bytes.len());
        let line = std::str::from_utf8(&bytes[..end]).ok()?;
        let mut f = line.split(' ');
        let (seq, first, sealed, count) = (f.next()?, f.next()?, f.next()?, f.next()?);
        if f.next().is_some() {
            return None;
        }
        let head = SegmentHead {
            seq: seq.parse().ok()?,
            first_ms: first.parse().ok()?,
            sealed: match sealed {
                "0" => false,
                "1" => true,
                _ => return None,
            },
            count: count.parse().ok()?,
        };
        // An empty segment has nothing after its head; records start with a newline.
        ((head.count == 0) == (end == bytes.len())).then_some((head, &bytes[end..]))
    }

    /// This head followed by `records` (the rest of [`SegmentHead::read`]) and, when
    /// given, one more record (which must not hold a newline).
    pub fn write(&self, records: &[u8], more: Option<&str>) -> Vec<u8> {
        let line = self.line();
        let extra = more.map_or(0, |m| m.len() + 1);
        let mut out = Vec::with_capacity(line.len() + records.len() + extra);
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(records);
        if let Some(m) = more {
            out.push(b'\n');
            out.extend_from_slice(m.as_bytes());
        }
        out
    }
}

/// Who may POST now: at most one VM of the process holds the lease until `until_ms`; after
/// a failure nobody takes it before the backoff ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushLease {
    /// Unix milliseconds until which the lease is held (or the backoff lasts).
    pub until_ms: u64,
    /// Consecutive failed POSTs (0 after a success).
    pub failures: u32,
}

impl FlushLease {
    /// `until_ms failures` as text.
    pub fn to_bytes(self) -> Vec<u8> {
        format!("{} {}", self.until_ms, self.failures).into_bytes()
    }

    /// Parses [`FlushLease::to_bytes`]; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<FlushLease> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (u, f) = text.split_once(' ')?;
        Some(FlushLease {
            until_ms: u.parse().ok()?,
            failures: f.parse().ok()?,
        })
    }

    /// Whether someone holds it (or a backoff runs) at `now_ms`.
    pub fn held(self, now_ms: u64) -> bool {
        now_ms < self.until_ms
    }
}

/// Delay before the next POST after `failures` consecutive failures (≥ 1): doubling from
/// `initial`, capped at `max`.
pub fn backoff(failures: u32, initial_ms: u64, max_ms: u64) -> u64 {
    let shift = failures.saturating_sub(1).min(32);
    initial_ms.saturating_mul(1u64 << shift).min(max_ms)
}

/// The shared-data keys of one ledger buffer (per cluster and path, so that two
/// configurations naming the same ledger share one buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferKeys {
    /// [`Meta`].
    pub meta: String,
    /// [`FlushLease`].
    pub lease: String,
    prefix: String,
}

impl BufferKeys {
    /// The keys under `prefix` for a ledger reached through `cluster` at `path`, with
    /// batches of `batch` records and segments of `segment` records. Both are in the keys:
    /// a configuration (or a module) with another layout starts a buffer of its own rather
    /// than misreading the slots of the old one (whose waiting records then stay there).
    pub fn new(
        prefix: &str,
        cluster: &str,
        path: &str,
        batch: usize,
        segment: usize,
    ) -> BufferKeys {
        let base = format!("{prefix}ledger/{cluster}{path}/batch-{batch}-segment-{segment}/");
        BufferKeys {
            meta: format!("{base}meta"),
            lease: format!("{base}lease"),
            prefix: format!("{base}segment/"),
        }
    }

    /// The key of ring slot `slot`.
    pub fn segment(&self, slot: u64) -> String {
        format!("{}{slot}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn records_are_clean_and_carry_only_ledger_fields() {
        let mut audit = Audit::new(1_700_000_000);
        audit.id = Some("req-1".into());
        audit.reason = "plan_denied";
        audit.subject = Some("al\u{0}ice\n".into());
        audit.request_client_id = Some("not a ledger field".into());
        audit.requested = vec!["repository:a b:pull".into(), "\u{1}".into()];
        audit.grant = "get";
        audit.tenant = Some("acme".into());
        let text = record(&audit).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(v["id"], "req-1");
        assert_eq!(v["decision"], "rejected");
        assert_eq!(v["subject"], "alice");
        assert_eq!(v["tenant"], "acme", "the ledger stores the tenant");
        assert_eq!(v["requested"], json!(["repository:ab:pull"]));
        assert!(v.get("request_client_id").is_none(), "{text}");
        assert!(!text.contains('\n'));
        audit.jti = Some("jti-9".into());
        audit.decision = "issued";
        let v: Value = serde_json::from_str(&record(&audit).unwrap_or_default()).unwrap();
        assert_eq!(v["id"], "jti-9", "a minted token's jti is the id");
        assert!(record(&Audit::new(1)).is_none(), "no id, no record");
    }

    #[test]
    fn a_full_record_names_every_ledger_field_once() {
        let mut audit = Audit::new(1_700_000_000);
        audit.jti = Some("j".into());
        audit.decision = "issued";
        audit.reason = "issued";
        audit.grant = "password";
        for field in [
            &mut audit.subject,
            &mut audit.client_id,
            &mut audit.plan,
            &mut audit.tenant,
            &mut audit.license,
            &mut audit.service,
            &mut audit.kid,
            &mut audit.binding,
            &mut audit.refresh_token_id,
            &mut audit.gateway,
        ] {
            *field = Some("x".into());
        }
        // A binding the ledger takes names its kind (a bare "x" would be left out).
        audit.binding = Some("jkt:x".into());
        audit.requested = vec!["repository:a:pull".into()];
        audit.granted = vec!["repository:a:pull".into()];
        (audit.iat, audit.exp) = (Some(1), Some(2));
        let v: Value = serde_json::from_str(&record(&audit).unwrap_or_default()).unwrap();
        let mut keys: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "binding",
                "client_id",
                "decision",
                "exp",
                "gateway",
                "grant",
                "granted",
                "iat",
                "id",
                "kid",
                "license",
                "plan",
                "reason",
                "refresh_token_id",
                "requested",
                "service",
                "subject",
                "tenant",
                "time"
            ]
        );
        assert_eq!(v["grant"], "password");
        assert_eq!(v["exp"], 2);
    }

    /// The exact bytes of a full record: the ledger's database holds records sent this
    /// way and older gateways keep sending them, so field order and spelling are fixed.
    #[test]
    fn a_full_record_has_pinned_bytes() {
        let mut audit = Audit::new(1_700_000_000);
        audit.jti = Some("jti-1".into());
        audit.id = Some("req-1".into());
        audit.decision = "issued";
        audit.reason = "issued";
        audit.grant = "refresh_token";
        audit.subject = Some("alice".into());
        audit.client_id = Some("cli".into());
        audit.plan = Some("gold".into());
        audit.tenant = Some("acme".into());
        audit.license = Some("lic-1 lic-2".into());
        audit.service = Some("registry.example".into());
        audit.requested = vec!["repository:a/b:pull,push".into()];
        audit.granted = vec!["repository:a/b:pull".into()];
        (audit.iat, audit.exp) = (Some(1_700_000_000), Some(1_700_000_300));
        audit.kid = Some("k1".into());
        audit.binding = Some("jkt:abc".into());
        audit.refresh_token_id = Some("rt-1".into());
        audit.gateway = Some("gw-1".into());
        assert_eq!(
            record(&audit).as_deref(),
            Some(concat!(
                r#"{"id":"jti-1","time":1700000000,"decision":"issued","reason":"issued","#,
                r#""subject":"alice","client_id":"cli","plan":"gold","tenant":"acme","#,
                r#""license":"lic-1 lic-2","service":"registry.example","#,
                r#""requested":["repository:a/b:pull,push"],"granted":["repository:a/b:pull"],"#,
                r#""iat":1700000000,"exp":1700000300,"kid":"k1","binding":"jkt:abc","#,
                r#""grant":"refresh_token","refresh_token_id":"rt-1","gateway":"gw-1"}"#
            ))
        );
        let minimal = Audit {
            id: Some("req-2".into()),
            ..Audit::new(5)
        };
        assert_eq!(
            record(&minimal).as_deref(),
            Some(r#"{"id":"req-2","time":5,"decision":"rejected","requested":[],"granted":[]}"#)
        );
    }

    #[test]
    fn grants_map_word_for_word_and_odd_values_are_dropped() {
        for &g in Grant::ALL {
            assert_eq!(wire::Grant::from(g).as_str(), g.label());
            let audit = Audit {
                id: Some("a".into()),
                grant: g.label(),
                ..Audit::new(1)
            };
            assert_eq!(wire_record(&audit).and_then(|r| r.grant), Some(g.into()));
        }
        let audit = Audit {
            id: Some("a".into()),
            grant: "implicit",
            decision: "maybe",
            binding: Some("mtls:abc".into()),
            time: u64::MAX,
            iat: Some(u64::MAX),
            ..Audit::new(1)
        };
        let r = wire_record(&audit).unwrap();
        assert_eq!(
            (r.grant, r.decision, r.binding.clone()),
            (None, Decision::Rejected, None)
        );
        assert_eq!((r.time, r.iat), (MAX_SECONDS, Some(MAX_SECONDS)));
        assert_eq!(r.validate(), Ok(()));
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let mut audit = Audit::new(1);
        audit.id = Some("é".repeat(300));
        let v: Value = serde_json::from_str(&record(&audit).unwrap_or_default()).unwrap();
        assert_eq!(v["id"].as_str().map(str::len), Some(256));
    }

    /// Appending and sealing through [`SegmentHead`] give exactly the bytes of the
    /// parsed [`Segment`] changed the same way.
    #[test]
    fn head_rewrites_match_the_parsed_segment() {
        let mut seg = Segment {
            seq: 9,
            first_ms: 0,
            sealed: false,
            records: vec![],
        };
        let mut bytes = seg.to_bytes();
        for (i, record) in ["{\"id\":\"a\"}", "{}", "{\"s\":\"x y\"}"]
            .iter()
            .enumerate()
        {
            let (head, rest) = SegmentHead::read(&bytes).unwrap();
            assert_eq!(head.count, i);
            let next = SegmentHead {
                count: head.count + 1,
                first_ms: if head.count == 0 { 1000 } else { head.first_ms },
                ..head
            };
            bytes = next.write(rest, Some(record));
            seg.records.push((*record).to_string());
            seg.first_ms = 1000;
            assert_eq!(bytes, seg.to_bytes());
            assert_eq!(Segment::from_bytes(&bytes).as_ref(), Some(&seg));
        }
        let (head, rest) = SegmentHead::read(&bytes).unwrap();
        let sealed = SegmentHead {
            sealed: true,
            ..head
        }
        .write(rest, None);
        seg.sealed = true;
        assert_eq!(sealed, seg.to_bytes());
        // A slot reused by a newer segment: a fresh head and no records.
        let fresh = SegmentHead {
            seq: 10,
            first_ms: 5,
            sealed: false,
            count: 1,
        }
        .write(&[], Some("{}"));
        assert_eq!(
            Segment::from_bytes(&fresh),
            Some(Segment {
                seq: 10,
                first_ms: 5,
                sealed: false,
                records: vec!["{}".into()],
            })
        );
    }

    #[test]
    fn codecs_round_trip_and_refuse_garbage() {
        let m = Meta { head: 3, tail: 7 };
        assert_eq!(Meta::from_bytes(&m.to_bytes()), Some(m));
        assert_eq!(Meta::from_bytes(b"7 3"), None);
        assert_eq!(Meta::from_bytes(b"x"), None);
        let s = Segment {
            seq: 4,
            first_ms: 99,
            sealed: true,
            records: vec!["{\"a\":1}".into(), "{}".into()],
        };
        assert_eq!(Segment::from_bytes(&s.to_bytes()), Some(s));
        let empty = Segment {
            seq: 1,
            first_ms: 0,
            sealed: false,
            records: vec![],
        };
        assert_eq!(Segment::from_bytes(b"1 0"), None);
        assert_eq!(Segment::from_bytes(&empty.to_bytes()), Some(empty));
        // The count must be the number of records; the old three-field head is refused.
        assert_eq!(Segment::from_bytes(b"1 0 0 2\n{}"), None);
        assert_eq!(Segment::from_bytes(b"1 0 0 0\n{}"), None);
        assert_eq!(Segment::from_bytes(b"1 0 0\n{}"), None);
        assert_eq!(SegmentHead::read(b"1 0 0 1"), None);
        let l = FlushLease {
            until_ms: 5,
            failures: 2,
        };
        assert_eq!(FlushLease::from_bytes(&l.to_bytes()), Some(l));
        assert!(l.held(4) && !l.held(5));
        assert_eq!(
            ingest_body(["{}", "{\"b\":2}"]),
            "{\"records\":[{},{\"b\":2}]}"
        );
        assert_eq!(
            ingest_body_from_lines(b"\n{}\n{\"b\":2}"),
            ingest_body(["{}", "{\"b\":2}"]).into_bytes()
        );
        assert_eq!(ingest_body_from_lines(b""), b"{\"records\":[]}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1, 500, 30_000), 500);
        assert_eq!(backoff(2, 500, 30_000), 1000);
        assert_eq!(backoff(7, 500, 30_000), 30_000);
        assert_eq!(backoff(u32::MAX, 500, 30_000), 30_000);
    }
}
