//! The remote licence revocation list in the decision, and its configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use registry_token_core::handler::{self, Context, Decision, Outcome, RequestView};
use registry_token_core::policy::revocation::{
    parse_remote, DigestLists, OnStale, RemoteList, RevokedLists,
};
use registry_token_core::token::crypto::RustCrypto;
use registry_token_ledger_wire::{DigestFeed, Feed};
use serde_json::json;

const Q: &str = "service=registry.example&scope=repository:stella-ops/public/base:pull";

fn config(on_stale: &str) -> registry_token_core::config::Config {
    let mut c = base_config();
    c["revocation"] = json!({
        "url": "https://licensing.example/revoked.json?tenant=a",
        "cluster": "licensing",
        "refreshSeconds": 30,
        "maxStaleSeconds": 300,
        "onStale": on_stale
    });
    config_from(c)
}

fn decide_with(
    config: &registry_token_core::config::Config,
    license: &str,
    list: RemoteList<'_>,
    now: u64,
) -> Decision {
    let mut claims = default_claims();
    claims["stellaops:license"] = json!(license);
    claims["iat"] = json!(now - 10);
    claims["nbf"] = json!(now - 10);
    claims["exp"] = json!(now + 600);
    let headers = vec![("authorization".to_string(), bearer(&optok(&claims)))];
    let path = format!("/token?{Q}");
    let view = RequestView {
        method: "GET",
        path: &path,
        headers: &headers,
        peer_certificate: registry_token_core::handler::PeerCertificate::Known(None),
        body: None,
    };
    let keys = match &config.authority.keys {
        registry_token_core::config::KeySource::Inline(k) => Some(k),
        _ => None,
    };
    let ctx = Context {
        config,
        keys: keys.into(),
        crypto: &RustCrypto,
        now,
        replay: replay_cache(),
        cache: None,
        revocation: list,
    };
    handler::handle_token(&view, &ctx)
}

fn reason(d: &Decision) -> &'static str {
    match d.outcome {
        Outcome::Rejected(r) => r.label(),
        Outcome::Issued(_) => "issued",
        Outcome::Other => "other",
    }
}

#[test]
fn a_licence_on_the_remote_list_is_refused() {
    let c = config("serve");
    let list = RevokedLists {
        licenses: ["lic-remote".to_string()].into(),
        ..RevokedLists::default()
    };
    let known = RemoteList::Known {
        lists: &list,
        fetched_at: NOW - 10,
    };
    let d = decide_with(&c, "lic-remote", known, NOW);
    assert_eq!(d.status, 403);
    assert_eq!(reason(&d), "license_revoked");
    assert_eq!(decide_with(&c, "lic-ok", known, NOW).status, 200);
    // The inline list still applies.
    assert_eq!(
        reason(&decide_with(&c, "lic-0042", known, NOW)),
        "license_revoked"
    );
}

#[test]
fn stale_or_missing_list_fails_closed_when_configured() {
    let c = config("refuse");
    let list = RevokedLists::default();
    let fresh = RemoteList::Known {
        lists: &list,
        fetched_at: NOW - 300,
    };
    assert_eq!(decide_with(&c, "lic-ok", fresh, NOW).status, 200);
    let stale = RemoteList::Known {
        lists: &list,
        fetched_at: NOW - 301,
    };
    let d = decide_with(&c, "lic-ok", stale, NOW);
    assert_eq!(d.status, 503);
    assert_eq!(reason(&d), "revocation_stale");
    assert_eq!(header(&d, "retry-after"), Some("5"));
    let d = decide_with(&c, "lic-ok", RemoteList::NeverFetched, NOW);
    assert_eq!(d.status, 503);
    assert_eq!(reason(&d), "revocation_unavailable");
}

#[test]
fn stale_list_keeps_serving_when_configured() {
    let c = config("serve");
    let list = RevokedLists {
        licenses: ["lic-remote".to_string()].into(),
        ..RevokedLists::default()
    };
    let stale = RemoteList::Known {
        lists: &list,
        fetched_at: NOW - 10_000,
    };
    assert_eq!(decide_with(&c, "lic-ok", stale, NOW).status, 200);
    assert_eq!(
        decide_with(&c, "lic-remote", stale, NOW).status,
        403,
        "the last good list still revokes"
    );
    assert_eq!(
        decide_with(&c, "lic-ok", RemoteList::NeverFetched, NOW).status,
        200
    );
}

#[test]
fn revocation_config_is_validated() {
    let c = config("refuse");
    let r = c.revocation.as_ref().unwrap();
    assert_eq!(r.on_stale, OnStale::Refuse);
    assert_eq!(r.url.path_and_query(), "/revoked.json?tenant=a");
    assert_eq!(r.cluster, "licensing");
    for (field, value, needle) in [
        ("onStale", json!("maybe"), "revocation.onStale"),
        ("refreshSeconds", json!(5), "revocation.refreshSeconds"),
        ("maxStaleSeconds", json!(10), "revocation.maxStaleSeconds"),
        ("url", json!("ftp://x/list"), "revocation.url"),
        ("cluster", json!(""), "revocation.cluster"),
        ("extra", json!(1), "extra"),
    ] {
        let mut v = base_config();
        v["revocation"] = json!({"url": "https://l.example/r", "cluster": "licensing"});
        v["revocation"][field] = value;
        let e = registry_token_core::config::Config::from_value(v)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{field}: {e}");
    }
    let defaults = {
        let mut v = base_config();
        v["revocation"] = json!({"url": "https://l.example/r", "cluster": "licensing"});
        config_from(v)
    };
    let r = defaults.revocation.clone().unwrap();
    // Fail closed by default once no list was taken for ten refresh periods (at least
    // five minutes).
    assert_eq!(
        (r.refresh_seconds, r.max_stale_seconds, r.on_stale),
        (60, 600, OnStale::RefuseWhenStale)
    );
    let mut v = base_config();
    v["revocation"] =
        json!({"url": "https://l.example/r", "cluster": "l", "onStale": "refuseWhenStale"});
    assert_eq!(
        config_from(v).revocation.unwrap().on_stale,
        OnStale::RefuseWhenStale
    );
    assert!(defaults.warnings().is_empty(), "{:?}", defaults.warnings());
    for (refresh, max_stale) in [(10, 300), (30, 300), (120, 1200), (86_400, 864_000)] {
        let mut v = base_config();
        v["revocation"] =
            json!({"url": "https://l.example/r", "cluster": "l", "refreshSeconds": refresh});
        let r = config_from(v).revocation.unwrap();
        assert_eq!(r.max_stale_seconds, max_stale, "refreshSeconds {refresh}");
    }
    // Serving without a fresh list is an explicit choice, and a logged one.
    let serve = config("serve");
    assert!(
        serve
            .warnings()
            .iter()
            .any(|w| w.contains("revocation.onStale is serve")),
        "{:?}",
        serve.warnings()
    );
}

/// The gateway keeps a remote list as digests, whichever form it came in: a licence on a
/// digest feed of 50,000 entries (the ledger's `?form=digests`) is refused like one on a
/// value list, and one not on it is served.
#[test]
fn a_licence_on_a_digest_list_of_50_000_is_refused() {
    let c = config("refuse");
    let feed = Feed {
        revoked_licenses: (0..50_000).map(|i| format!("lic-{i:06}")).collect(),
        revoked_subjects: vec!["mallory".into()],
        ..Feed::default()
    };
    let body = serde_json::to_vec(&DigestFeed::from_feed(&feed)).unwrap();
    assert!(body.len() < 1024 * 1024, "{} bytes", body.len());
    let digests = parse_remote(&body).unwrap();
    assert_eq!(digests.len(), 50_001);
    // The value form of the same list gives the same digests.
    let values = serde_json::to_vec(&feed).unwrap();
    assert!(values.len() < registry_token_core::policy::revocation::MAX_LIST_BYTES);
    assert_eq!(parse_remote(&values).unwrap(), digests);
    let known = RemoteList::Known {
        lists: &digests,
        fetched_at: NOW - 10,
    };
    for lic in ["lic-000000", "lic-049999", "lic-031337"] {
        let d = decide_with(&c, lic, known, NOW);
        assert_eq!((d.status, reason(&d)), (403, "license_revoked"), "{lic}");
    }
    for lic in ["lic-050000", "LIC-000001", "lic-00000"] {
        assert_eq!(decide_with(&c, lic, known, NOW).status, 200, "{lic}");
    }
    // An empty digest list is a good list too.
    let empty = DigestLists::default();
    let known = RemoteList::Known {
        lists: &empty,
        fetched_at: NOW - 10,
    };
    assert_eq!(decide_with(&c, "lic-000000", known, NOW).status, 200);
}
