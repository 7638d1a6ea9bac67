//! The wire contract end to end, without a server: every record the filter's
//! `registry_token_core::ledger::record` can make from any audit passes the ledger's batch
//! parser and validator and comes back with the same fields; and docs/LEDGER.md's
//! examples and field table agree with `registry_token_ledger_wire`.

use std::borrow::Cow;

use proptest::prelude::*;
use registry_token_core::handler::Audit;
use registry_token_core::ledger::{
    ingest_body, ingest_body_from_lines, record, wire_record, Segment, SegmentHead,
};
use registry_token_ledger::api::ingest::{parse_batch, parse_record};
use registry_token_ledger::model::ISSUANCE_COLUMNS;
use registry_token_ledger_wire::{
    Decision, Feed, Record, MAX_ID_BYTES, MAX_SECONDS, MAX_TEXT_BYTES,
};

/// Any text: control characters, spaces, multi-byte characters, up to `max` characters
/// (past the ledger's byte bounds when `max` is large).
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<char>(), 0..max),
        proptest::collection::vec(
            prop::sample::select(vec!['a', ' ', '\n', 'é', '\u{85}', ':']),
            0..max
        ),
    ]
    .prop_map(|chars| chars.into_iter().collect())
}

fn opt_text(max: usize) -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text(max))
}

/// A `&'static str` audit field: the usual words, or anything.
fn word(words: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop_oneof![
        prop::sample::select(words),
        text(40).prop_map(|s| &*Box::leak(s.into_boxed_str())),
    ]
}

fn seconds() -> impl Strategy<Value = u64> {
    prop_oneof![0..4_000_000_000u64, any::<u64>()]
}

prop_compose! {
    fn binding()(kind in prop::sample::select(vec!["jkt:", "x5t#S256:", "none", "mtls:", "", "jkt"]),
                 rest in text(60)) -> String {
        format!("{kind}{rest}")
    }
}

prop_compose! {
    fn audit()(
        ids in (opt_text(300), opt_text(300)),
        time in seconds(),
        decision in word(&["issued", "rejected"]),
        reason in word(&["issued", "plan_denied", "license_revoked", ""]),
        grant in word(&["get", "password", "refresh_token", ""]),
        who in (opt_text(1100), opt_text(40), opt_text(40), opt_text(40), opt_text(40)),
        more in (opt_text(1100), opt_text(40), opt_text(300), opt_text(300), opt_text(40)),
        binding in proptest::option::of(binding()),
        requested in proptest::collection::vec(text(50), 0..80),
        granted in proptest::collection::vec(text(1100), 0..3),
        times in (proptest::option::of(seconds()), proptest::option::of(seconds())),
        trust in (opt_text(1100), opt_text(80)),
    ) -> Audit {
        let (subject, client_id, plan, tenant, request_client_id) = who;
        let (license, service, kid, refresh_token_id, gateway) = more;
        Audit {
            id: ids.0,
            jti: ids.1,
            time,
            decision,
            reason,
            grant,
            subject,
            client_id,
            plan,
            tenant,
            request_client_id,
            license,
            service,
            kid,
            refresh_token_id,
            gateway,
            binding,
            requested,
            granted,
            iat: times.0,
            exp: times.1,
            issuer: trust.0,
            policy: trust.1,
        }
    }
}

/// A text the filter sends as it is: already within the ledger's rules.
fn clean(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && !value.chars().any(char::is_control)
}

/// The record keeps what the audit says wherever the audit's text was clean already.
fn same_fields(audit: &Audit, r: &Record<'_>) {
    let id = audit.jti.as_deref().or(audit.id.as_deref()).unwrap();
    if clean(id, MAX_ID_BYTES) {
        assert_eq!(r.id, id);
    }
    assert_eq!(r.time, audit.time.min(MAX_SECONDS));
    assert_eq!(r.iat, audit.iat.map(|t| t.min(MAX_SECONDS)));
    assert_eq!(r.exp, audit.exp.map(|t| t.min(MAX_SECONDS)));
    let issued = audit.decision == "issued";
    assert_eq!(
        r.decision,
        if issued {
            Decision::Issued
        } else {
            Decision::Rejected
        }
    );
    assert_eq!(
        r.grant.map(|g| g.as_str()),
        ["get", "password", "refresh_token"]
            .contains(&audit.grant)
            .then_some(audit.grant)
    );
    for (sent, had, max) in [
        (&r.subject, &audit.subject, MAX_TEXT_BYTES),
        (&r.client_id, &audit.client_id, MAX_TEXT_BYTES),
        (&r.plan, &audit.plan, MAX_TEXT_BYTES),
        (&r.tenant, &audit.tenant, MAX_TEXT_BYTES),
        (&r.issuer, &audit.issuer, MAX_TEXT_BYTES),
        (&r.policy, &audit.policy, MAX_TEXT_BYTES),
        (&r.license, &audit.license, MAX_TEXT_BYTES),
        (&r.service, &audit.service, MAX_TEXT_BYTES),
        (&r.kid, &audit.kid, MAX_ID_BYTES),
        (&r.refresh_token_id, &audit.refresh_token_id, MAX_ID_BYTES),
        (&r.gateway, &audit.gateway, MAX_TEXT_BYTES),
    ] {
        match had.as_deref() {
            Some(v) if clean(v, max) => assert_eq!(sent.as_deref(), Some(v)),
            None => assert_eq!(sent, &None),
            Some(_) => {}
        }
    }
    fn clean_scopes(list: &[String]) -> Option<Vec<&str>> {
        list.iter()
            .map(|s| (clean(s, MAX_TEXT_BYTES) && !s.contains(' ')).then_some(s.as_str()))
            .collect()
    }
    for (sent, had) in [
        (&r.requested, &audit.requested),
        (&r.granted, &audit.granted),
    ] {
        if let Some(list) = clean_scopes(had).filter(|l| l.len() <= 64) {
            assert_eq!(sent.iter().map(Cow::as_ref).collect::<Vec<_>>(), list);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every record the filter makes is one the ledger stores, unchanged, whether parsed
    /// alone, in a batch built by `ingest_body`, or in the body a buffer segment becomes.
    #[test]
    fn every_record_the_filter_emits_is_accepted_and_round_trips(
        audits in proptest::collection::vec(audit(), 1..5)
    ) {
        let mut built = Vec::new();
        let mut texts = Vec::new();
        for audit in &audits {
            let Some(r) = wire_record(audit) else {
                // No record only without an id the ledger could take.
                let id = audit.jti.as_deref().or(audit.id.as_deref()).unwrap_or("");
                prop_assert!(!id.chars().any(|c| !c.is_control()), "{id:?}");
                continue;
            };
            let text = record(audit).unwrap();
            prop_assert_eq!(Some(text.clone()), r.to_json());
            prop_assert!(!text.contains('\n'));
            let parsed = parse_record(serde_json::from_str(&text).unwrap());
            prop_assert_eq!(parsed.as_ref(), Ok(&r), "{}", text);
            same_fields(audit, &r);
            built.push(r);
            texts.push(text);
        }
        let body = ingest_body(texts.iter().map(String::as_str));
        let parsed = parse_batch(body.as_bytes()).map_err(|e| format!("{e:?}"));
        prop_assert_eq!(parsed.as_ref(), Ok(&built));
        let segment = Segment { seq: 1, first_ms: 1, sealed: false, records: texts };
        let bytes = segment.to_bytes();
        let (_, lines) = SegmentHead::read(&bytes).unwrap();
        let posted = ingest_body_from_lines(lines);
        prop_assert_eq!(parse_batch(&posted).map_err(|e| format!("{e:?}")), Ok(built));
    }
}

fn ledger_md() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/LEDGER.md")).unwrap()
}

/// The `POST /v1/ingest` example of docs/LEDGER.md is a batch the ledger takes, and its
/// feed example a feed document.
#[test]
fn the_documented_examples_parse_with_the_wire_types() {
    let doc = ledger_md();
    let start = doc.find("-d '{\"records\":[").unwrap() + 4;
    let end = start + doc[start..].find('\'').unwrap();
    let records = parse_batch(&doc.as_bytes()[start..end]).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].decision, Decision::Issued);
    assert_eq!(records[1].id, "req-77");
    let feed_line = doc
        .lines()
        .find(|l| l.starts_with("# {\"generatedAt\""))
        .unwrap();
    let feed: Feed = serde_json::from_str(&feed_line[2..]).unwrap();
    assert_eq!(feed.revoked_licenses, ["lic-9"]);
    // Written in the bytes the ledger serves.
    assert_eq!(serde_json::to_string(&feed).unwrap(), feed_line[2..]);
}

/// docs/LEDGER.md's table of `issuances` names every column, and the columns are the wire
/// record's fields plus `received_at`.
#[test]
fn the_documented_table_lists_every_field() {
    let doc = ledger_md();
    let table = &doc[doc.find("| column | meaning |").unwrap()..];
    let table = &table[..table.find("\n\n").unwrap()];
    let mut documented: Vec<&str> = table
        .lines()
        .skip(2)
        .flat_map(|row| row.split('|').nth(1).unwrap().split('`').skip(1).step_by(2))
        .collect();
    documented.sort_unstable();
    let mut columns = ISSUANCE_COLUMNS.to_vec();
    columns.sort_unstable();
    assert_eq!(documented, columns);

    let full: Record<'static> = serde_json::from_value(serde_json::json!({
        "id": "a", "time": 1, "decision": "issued", "reason": "r", "subject": "s",
        "client_id": "c", "plan": "p", "tenant": "t", "license": "l", "service": "v",
        "requested": [], "granted": [], "iat": 1, "exp": 2, "kid": "k", "binding": "none",
        "grant": "get", "refresh_token_id": "x", "gateway": "g", "issuer": "i",
        "policy": "q"
    }))
    .unwrap();
    let value = serde_json::to_value(&full).unwrap();
    let mut fields: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.push("received_at");
    fields.sort_unstable();
    assert_eq!(
        fields, columns,
        "a full record names every column but received_at"
    );
}
