//! Delivery of the audit records to the issuance ledger (`ledger.*`), written against the
//! [`Host`] traits so that it runs natively against the fake host in tests.
//!
//! - [`LedgerBuffer`]: the bounded buffer, one per Envoy process (Envoy shared data of the
//!   `vm_id`): a ring of segments of at most [`SEGMENT_RECORDS`] records (or `batchSize`,
//!   when smaller; see [`registry_token_core::ledger`]). The request path appends with
//!   compare-and-swap ([`LedgerBuffer::append`]), which copies the tail segment in and out
//!   of shared data: small segments keep that copy short whatever the batch size. When
//!   every segment is full the append answers [`Append::Full`] and `onBacklogFull` decides.
//! - [`Shipper`] (one per VM, driven by the root context's tick and its HTTP call
//!   answers): takes the process-wide flush lease, POSTs the oldest segments (up to
//!   `batchSize` records) to the ledger's cluster, and removes exactly the records it sent
//!   only after a 2xx. A failure keeps the records and backs off (doubling, shared by every
//!   VM through the lease). So delivery is at-least-once, in order, and a ledger that is
//!   down, slow or failing costs requests nothing while the buffer has room.

use std::cell::Cell;
use std::time::Duration;

use registry_token_core::config::LedgerConfig;
use registry_token_core::ledger::{self, BufferKeys, FlushLease, Meta, Segment, SegmentHead};
use registry_token_core::remote;

use crate::host::{Host, SharedData, SharedError};

/// Attempts at a contended compare-and-swap before giving up.
const CAS_ATTEMPTS: usize = 64;
/// Lease margin beyond the call timeout: Envoy answers every call by its timeout, so a
/// lease outliving it means its VM is gone.
const LEASE_MARGIN_MS: u64 = 2000;
/// Most bytes of an ingest answer read (it is a small JSON object).
const ANSWER_LIMIT: usize = 4096;
/// Most records in one segment. Every append copies its tail segment out of shared data
/// and back: at 16 records of about 600 bytes that is about 10 KB at most, where a
/// segment of a whole default batch (100) would be 60 KB per request.
pub const SEGMENT_RECORDS: usize = 16;
/// [`LedgerBuffer::segment`] of a sequence number whose slot holds a newer segment.
const STALE: &str = "stale";

/// What became of a record handed to [`LedgerBuffer::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Append {
    /// In the buffer; it will be delivered.
    Queued,
    /// The buffer is full.
    Full,
    /// Shared data failed (or stayed contended): treated as full.
    Failed(String),
}

/// The process-wide bounded buffer of one ledger.
#[derive(Debug, Clone)]
pub struct LedgerBuffer {
    keys: BufferKeys,
    /// Records per POST (`batchSize`).
    batch: usize,
    /// Records per segment: `batch`, at most [`SEGMENT_RECORDS`].
    segment_records: usize,
    /// Segments that may hold records at once.
    max_segments: u64,
    /// Ring slots (one more than `max_segments`, so a slot is reused only once its
    /// segment was acknowledged).
    slots: u64,
    /// The tail segment this VM last read from the bookkeeping: appends try it first and
    /// read the bookkeeping only when its slot says it is no longer the tail (each
    /// shared-data read costs Envoy a call into the module's allocator, ~5 µs).
    tail_hint: Cell<Option<u64>>,
}

fn now_ms(host: &impl Host) -> Result<u64, String> {
    host.now()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl LedgerBuffer {
    /// The buffer of `config`; creates its missing shared-data keys (existing ones are
    /// left alone: every VM of the process shares them).
    pub fn new(host: &impl SharedData, config: &LedgerConfig) -> LedgerBuffer {
        let batch = config.batch_size.max(1);
        let segment_records = batch.min(SEGMENT_RECORDS);
        let max_segments = u64::try_from(config.buffer_records.div_ceil(segment_records).max(1))
            .unwrap_or(u64::MAX / 2);
        let buffer = LedgerBuffer {
            keys: BufferKeys::new(
                remote::SHARED_PREFIX,
                &config.cluster,
                &config.path,
                batch,
                segment_records,
            ),
            batch,
            segment_records,
            max_segments,
            slots: max_segments + 1,
            tail_hint: Cell::new(None),
        };
        buffer.create_missing_keys(host);
        buffer
    }

    fn create_missing_keys(&self, host: &impl SharedData) {
        let create = |key: &str, value: &[u8]| {
            if let Ok((None, _)) = host.get_shared(key) {
                let _ = host.set_shared(key, value, None);
            }
        };
        create(&self.keys.meta, &Meta::default().to_bytes());
        create(&self.keys.lease, &FlushLease::default().to_bytes());
        for slot in 0..self.slots {
            create(&self.keys.segment(slot), &Segment::default().to_bytes());
        }
    }

    /// Capacity in records.
    pub fn capacity(&self) -> u64 {
        self.max_segments
            .saturating_mul(u64::try_from(self.segment_records).unwrap_or(u64::MAX))
    }

    fn meta(&self, host: &impl SharedData) -> Result<(Meta, u32), String> {
        match host.get_shared(&self.keys.meta) {
            Ok((Some(b), Some(cas))) => Meta::from_bytes(&b)
                .map(|m| (m, cas))
                .ok_or_else(|| "ledger buffer bookkeeping unreadable".to_string()),
            Ok(_) => Err("ledger buffer bookkeeping missing".to_string()),
            Err(e) => Err(format!("{e:?}")),
        }
    }

    /// The bytes in the slot of segment `seq`, split as [`SegmentHead::read`] does (a
    /// fresh empty head when the slot holds an older segment), and the slot's CAS; the
    /// records are not parsed.
    fn raw_segment(
        &self,
        host: &impl SharedData,
        seq: u64,
    ) -> Result<(SegmentHead, Vec<u8>, usize, u32), String> {
        match host.get_shared(&self.keys.segment(seq % self.slots)) {
            Ok((Some(b), Some(cas))) => {
                let (head, rest) = SegmentHead::read(&b)
                    .ok_or_else(|| "ledger buffer segment unreadable".to_string())?;
                let at = b.len() - rest.len();
                if head.seq == seq {
                    Ok((head, b, at, cas))
                } else if head.seq > seq {
                    // Our bookkeeping was read before the ring moved on.
                    Err(STALE.to_string())
                } else {
                    let fresh = SegmentHead {
                        seq,
                        first_ms: 0,
                        sealed: false,
                        count: 0,
                    };
                    let at = b.len();
                    Ok((fresh, b, at, cas))
                }
            }
            Ok(_) => Err("ledger buffer segment missing".to_string()),
            Err(e) => Err(format!("{e:?}")),
        }
    }

    /// Appends one record (JSON text without a newline) at `now_ms`: the tail segment's
    /// bytes gain one line and a new head, without parsing the records already there.
    ///
    /// The segment of the tail hint is tried first, without reading the bookkeeping: a
    /// segment is sealed before the tail moves past it, and its slot is reused only after
    /// that, so an unsealed segment of the hint's number (or its slot still holding an
    /// older segment) is the tail.
    pub fn append(&self, host: &impl SharedData, record: &str, now_ms: u64) -> Append {
        for _ in 0..CAS_ATTEMPTS {
            if let Some(tail) = self.tail_hint.get() {
                match self.raw_segment(host, tail) {
                    Ok((head, bytes, at, cas)) if self.has_room(&head) => {
                        match self.put(host, tail, head, &bytes[at..], record, now_ms, cas) {
                            Ok(()) => return Append::Queued,
                            Err(SharedError::CasMismatch) => continue,
                            Err(SharedError::Host(why)) => return Append::Failed(why),
                        }
                    }
                    Err(why) if why != STALE => return Append::Failed(why),
                    // Sealed, full or reused: ask the bookkeeping.
                    _ => {}
                }
            }
            let (meta, meta_cas) = match self.meta(host) {
                Ok(m) => m,
                Err(why) => return Append::Failed(why),
            };
            self.tail_hint.set(Some(meta.tail));
            let (head, bytes, at, seg_cas) = match self.raw_segment(host, meta.tail) {
                Ok(s) => s,
                Err(why) if why == STALE => continue,
                Err(why) => return Append::Failed(why),
            };
            let records = &bytes[at..];
            if self.has_room(&head) {
                match self.put(host, meta.tail, head, records, record, now_ms, seg_cas) {
                    Ok(()) => return Append::Queued,
                    Err(SharedError::CasMismatch) => continue,
                    Err(SharedError::Host(why)) => return Append::Failed(why),
                }
            }
            // The tail segment is full: open the next one if the ring has room, sealing
            // this one first (so that no appender holding an older view writes to it
            // once it is no longer the tail).
            if meta.tail + 2 - meta.head > self.max_segments {
                return Append::Full;
            }
            let key = self.keys.segment(meta.tail % self.slots);
            if !head.sealed {
                let sealed = SegmentHead {
                    sealed: true,
                    ..head
                };
                match host.set_shared(&key, &sealed.write(records, None), Some(seg_cas)) {
                    Ok(()) => {}
                    Err(SharedError::CasMismatch) => continue,
                    Err(SharedError::Host(why)) => return Append::Failed(why),
                }
            }
            let next = Meta {
                head: meta.head,
                tail: meta.tail + 1,
            };
            match host.set_shared(&self.keys.meta, &next.to_bytes(), Some(meta_cas)) {
                Ok(()) => self.tail_hint.set(Some(next.tail)),
                Err(SharedError::CasMismatch) => {}
                Err(SharedError::Host(why)) => return Append::Failed(why),
            }
        }
        Append::Failed("ledger buffer contended".to_string())
    }

    /// Whether a segment takes another record.
    fn has_room(&self, head: &SegmentHead) -> bool {
        !head.sealed && head.count < self.segment_records
    }

    /// Writes segment `seq` (whose head and records were read with `cas`) with `record`
    /// appended.
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        host: &impl SharedData,
        seq: u64,
        head: SegmentHead,
        records: &[u8],
        record: &str,
        now_ms: u64,
        cas: u32,
    ) -> Result<(), SharedError> {
        let next = SegmentHead {
            first_ms: if head.count == 0 {
                now_ms
            } else {
                head.first_ms
            },
            count: head.count + 1,
            ..head
        };
        let key = self.keys.segment(seq % self.slots);
        host.set_shared(&key, &next.write(records, Some(record)), Some(cas))
    }

    /// Records waiting: exact for the head and tail segments, the ones between counted
    /// full (they are, unless a partial flush raced with them filling up).
    pub fn backlog(&self, host: &impl SharedData) -> u64 {
        let Ok((meta, _)) = self.meta(host) else {
            return 0;
        };
        let len = |seq| {
            self.raw_segment(host, seq)
                .map(|(h, ..)| h.count as u64)
                .unwrap_or(0)
        };
        if meta.head == meta.tail {
            return len(meta.head);
        }
        let middle = (meta.tail - meta.head - 1).saturating_mul(self.segment_records as u64);
        len(meta.head) + middle + len(meta.tail)
    }

    /// Removes the first `count` records of segment `seq` if they are still the records
    /// `sent` (their bytes as the segment holds them, each preceded by its newline); else
    /// someone already did: nothing to do. True when it left the segment empty and sealed
    /// (done with: the head may move past it).
    fn acknowledge(&self, host: &impl SharedData, seq: u64, count: usize, sent: &[u8]) -> bool {
        for _ in 0..CAS_ATTEMPTS {
            let Ok((head, bytes, at, cas)) = self.raw_segment(host, seq) else {
                return false;
            };
            let records = &bytes[at..];
            let whole = records.len() == sent.len() || records.get(sent.len()) == Some(&b'\n');
            // A slot that holds an older segment reads as an empty head of `seq`.
            if head.count < count || !records.starts_with(sent) || !whole {
                return false;
            }
            let left = head.count - count;
            let rest = SegmentHead {
                count: left,
                first_ms: if left == 0 { 0 } else { head.first_ms },
                ..head
            };
            let key = self.keys.segment(seq % self.slots);
            match host.set_shared(&key, &rest.write(&records[sent.len()..], None), Some(cas)) {
                Ok(()) => return left == 0 && head.sealed,
                Err(SharedError::CasMismatch) => continue,
                Err(SharedError::Host(_)) => return false,
            }
        }
        false
    }

    /// Moves `head` past segments `first..=last`, which this VM emptied and which are
    /// sealed, in one write; anything else (the head not among them) is left to
    /// [`LedgerBuffer::advance_head`], which looks at each segment.
    fn advance_head_past(&self, host: &impl SharedData, first: u64, last: u64) {
        for _ in 0..CAS_ATTEMPTS {
            let Ok((meta, cas)) = self.meta(host) else {
                return;
            };
            if meta.head < first {
                return self.advance_head(host);
            }
            // Never past the tail: a sealed tail is about to be left by its appender.
            let next = (last + 1).min(meta.tail);
            if meta.head >= next {
                return;
            }
            let moved = Meta {
                head: next,
                tail: meta.tail,
            };
            match host.set_shared(&self.keys.meta, &moved.to_bytes(), Some(cas)) {
                Ok(()) => return,
                Err(SharedError::CasMismatch) => continue,
                Err(SharedError::Host(_)) => return,
            }
        }
    }

    /// Moves `head` past empty segments that are no longer being filled.
    fn advance_head(&self, host: &impl SharedData) {
        for _ in 0..CAS_ATTEMPTS {
            let Ok((meta, cas)) = self.meta(host) else {
                return;
            };
            if meta.head >= meta.tail {
                return;
            }
            let Ok((seg, ..)) = self.raw_segment(host, meta.head) else {
                return;
            };
            // Only a sealed segment takes no more records: an empty one can be left.
            if seg.count > 0 || !seg.sealed {
                return;
            }
            let next = Meta {
                head: meta.head + 1,
                tail: meta.tail,
            };
            match host.set_shared(&self.keys.meta, &next.to_bytes(), Some(cas)) {
                Ok(()) | Err(SharedError::CasMismatch) => continue,
                Err(SharedError::Host(_)) => return,
            }
        }
    }
}

/// The records of one segment in a POST.
#[derive(Debug, Clone)]
struct SentPart {
    seq: u64,
    /// Records sent.
    count: usize,
    /// Their bytes as the segment held them (each preceded by its newline).
    sent: Vec<u8>,
}

/// A POST waiting for its answer.
#[derive(Debug, Clone)]
struct InFlight {
    token: u32,
    /// The segments it carries, oldest first.
    parts: Vec<SentPart>,
}

impl InFlight {
    fn count(&self) -> usize {
        self.parts.iter().map(|p| p.count).sum()
    }

    /// Acknowledges every part, then moves the head past the leading segments it left
    /// empty and sealed, in one write.
    fn acknowledge(&self, buffer: &LedgerBuffer, host: &impl SharedData) {
        let mut emptied: Option<(u64, u64)> = None;
        let mut leading = true;
        for p in &self.parts {
            let done = buffer.acknowledge(host, p.seq, p.count, &p.sent);
            leading &= done;
            if leading {
                emptied = Some((emptied.map_or(p.seq, |(first, _)| first), p.seq));
            }
        }
        match emptied {
            Some((first, last)) => buffer.advance_head_past(host, first, last),
            None => buffer.advance_head(host),
        }
    }
}

/// What one answer (or a failed dispatch) did, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shipped {
    /// A batch of this many records was stored by the ledger (2xx).
    Sent(u64),
    /// The POST failed (no answer, timeout, 401, 5xx…): the records stay and are retried.
    Failed,
    /// The ledger refused the batch as invalid (400/413): retrying cannot succeed, so the
    /// records are dropped (and counted).
    Rejected(u64),
}

/// One VM's delivery schedule.
#[derive(Debug)]
pub struct Shipper {
    buffer: LedgerBuffer,
    cluster: String,
    path: String,
    authority: String,
    headers: Vec<(String, String)>,
    flush_ms: u64,
    timeout_ms: u64,
    initial_backoff_ms: u64,
    max_backoff_ms: u64,
    in_flight: Option<InFlight>,
}

impl Shipper {
    /// The schedule of `config` over `buffer`.
    pub fn new(buffer: LedgerBuffer, config: &LedgerConfig) -> Shipper {
        Shipper {
            buffer,
            cluster: config.cluster.clone(),
            path: config.path.clone(),
            authority: config.authority.clone(),
            headers: config.headers.clone(),
            flush_ms: config.flush_millis,
            timeout_ms: config.timeout_millis,
            initial_backoff_ms: config.initial_backoff_millis,
            max_backoff_ms: config.max_backoff_millis,
            in_flight: None,
        }
    }

    /// The buffer it drains.
    pub fn buffer(&self) -> &LedgerBuffer {
        &self.buffer
    }

    /// Whether this VM waits for an answer.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// On every tick: POSTs the oldest records when a batch is due (`batchSize` records
    /// waiting, or records older than `flushMillis`) and this VM takes the lease. A dispatch that
    /// fails is a failure like any other ([`Shipped::Failed`]).
    pub fn tick(&mut self, host: &impl Host) -> Option<Shipped> {
        if self.in_flight.is_some() {
            return None;
        }
        let now = match now_ms(host) {
            Ok(n) => n,
            Err(why) => {
                log::warn!("registry-token-filter: ledger flush skipped: {why}");
                return None;
            }
        };
        let (meta, _) = self.buffer.meta(host).ok()?;
        // The oldest segments, up to a batch of records.
        let mut parts: Vec<SentPart> = Vec::new();
        let mut total = 0;
        let mut oldest_ms = u64::MAX;
        let mut more = false;
        for seq in meta.head..=meta.tail {
            let (seg, bytes, at, _) = self.buffer.raw_segment(host, seq).ok()?;
            if seg.count == 0 {
                if seq == meta.head && meta.head < meta.tail {
                    // An emptied head segment left behind (e.g. a partial acknowledgement
                    // raced with it filling up): step over it.
                    self.buffer.advance_head(host);
                    return None;
                }
                break;
            }
            if total + seg.count > self.buffer.batch {
                more = true;
                break;
            }
            total += seg.count;
            oldest_ms = oldest_ms.min(seg.first_ms);
            let sent = bytes.get(at..).unwrap_or_default().to_vec();
            parts.push(SentPart {
                seq,
                count: seg.count,
                sent,
            });
        }
        if parts.is_empty() {
            return None;
        }
        let due =
            more || total >= self.buffer.batch || now.saturating_sub(oldest_ms) >= self.flush_ms;
        if !due || !self.take_lease(host, now) {
            return None;
        }
        let lines: Vec<u8> = parts.iter().flat_map(|p| p.sent.iter().copied()).collect();
        let body = ledger::ingest_body_from_lines(&lines);
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":path", &self.path),
            (":authority", &self.authority),
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("user-agent", "registry-token-filter"),
        ];
        headers.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        match host.dispatch(
            &self.cluster,
            &headers,
            Some(&body),
            Duration::from_millis(self.timeout_ms),
        ) {
            Ok(token) => {
                self.in_flight = Some(InFlight { token, parts });
                None
            }
            Err(why) => {
                log::warn!("registry-token-filter: ledger POST not sent: {why}");
                self.release(host, now, false);
                Some(Shipped::Failed)
            }
        }
    }

    /// An HTTP call answered (`on_http_call_response`); `None` when it was not ours.
    pub fn on_response(
        &mut self,
        host: &impl Host,
        token: u32,
        body_size: usize,
    ) -> Option<Shipped> {
        if self.in_flight.as_ref().map(|f| f.token) != Some(token) {
            return None;
        }
        let flight = self.in_flight.take()?;
        let now = now_ms(host).unwrap_or(0);
        let (status, body) = host.call_response(body_size, ANSWER_LIMIT);
        let n = flight.count() as u64;
        let code: u16 = status.parse().unwrap_or(0);
        if (200..300).contains(&code) {
            flight.acknowledge(&self.buffer, host);
            self.release(host, now, true);
            return Some(Shipped::Sent(n));
        }
        let detail: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        if code == 400 || code == 413 {
            log::error!(
                "registry-token-filter: the ledger refused a batch of {n} record(s) as invalid \
                 (HTTP {code}: {detail}); they are dropped, since retrying cannot succeed"
            );
            flight.acknowledge(&self.buffer, host);
            self.release(host, now, true);
            return Some(Shipped::Rejected(n));
        }
        let status = if status.is_empty() {
            "no answer (timeout or connection failure)".to_string()
        } else {
            format!("HTTP {status} {detail}")
        };
        log::warn!(
            "registry-token-filter: ledger POST of {n} record(s) failed, kept for a retry: {status}"
        );
        self.release(host, now, false);
        Some(Shipped::Failed)
    }

    /// Takes the flush lease with compare-and-swap (nobody holds it and no backoff runs).
    fn take_lease(&self, host: &impl SharedData, now: u64) -> bool {
        let Ok((Some(bytes), Some(cas))) = host.get_shared(&self.buffer.keys.lease) else {
            return false;
        };
        let lease = FlushLease::from_bytes(&bytes).unwrap_or_default();
        if lease.held(now) {
            return false;
        }
        let taken = FlushLease {
            until_ms: now + self.timeout_ms + LEASE_MARGIN_MS,
            failures: lease.failures,
        };
        host.set_shared(&self.buffer.keys.lease, &taken.to_bytes(), Some(cas))
            .is_ok()
    }

    /// Releases the lease: at once after a success, after the backoff after a failure.
    fn release(&self, host: &impl SharedData, now: u64, success: bool) {
        let key = &self.buffer.keys.lease;
        let failures = host
            .get_shared(key)
            .ok()
            .and_then(|(b, _)| b)
            .and_then(|b| FlushLease::from_bytes(&b))
            .map_or(0, |l| l.failures);
        let lease = if success {
            FlushLease {
                until_ms: 0,
                failures: 0,
            }
        } else {
            let failures = failures.saturating_add(1);
            FlushLease {
                until_ms: now
                    + ledger::backoff(failures, self.initial_backoff_ms, self.max_backoff_ms),
                failures,
            }
        };
        let _ = host.set_shared(key, &lease.to_bytes(), None);
    }
}
