//! What the guard limits by plan and tenant: each tenant's `GET /v2/_catalog` lists its own
//! repositories only (pages of `?n=1` followed by their `Link` headers, which are the
//! registry's own), and Envoy's `local_ratelimit` keyed on the plan the guard sets: a
//! community caller over its bucket gets 429 with `Retry-After` while an enterprise caller
//! is served, and a forged `x-registry-plan: enterprise` does not lift the limit.

use std::collections::BTreeSet;
use std::time::Instant;

use registry_token_e2e::guard::PLAN_HEADER;
use registry_token_e2e::Reply;
use serde_json::Value;

use super::{community, enterprise, Guarded, Setup, Who};

const CATALOG: &str = "registry:catalog:*";

/// Every page of the catalogue from `first`, following `Link: <…>; rel="next"`; the
/// pages' names and their `Link` headers.
fn pages(get: impl Fn(&str) -> Reply, first: &str) -> Vec<(Vec<String>, Option<String>)> {
    let mut out = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(path) = next.take() {
        let r = get(&path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let names: Vec<String> = r.json()["repositories"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: {}", r.body))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect();
        let link = r.header("link").map(str::to_owned);
        next = link.as_deref().and_then(|l| {
            let (start, end) = (l.find('<')?, l.find('>')?);
            Some(l[start + 1..end].to_owned())
        });
        out.push((names, link));
        assert!(out.len() < 20, "the Link chain does not end: {out:?}");
    }
    out
}

#[test]
fn each_tenants_catalog_lists_only_its_own_repositories_page_by_page() {
    let started = Instant::now();
    let g = Guarded::start(&Setup::default());
    let acme = community("ann", "acme");
    let globex = community("gil", "globex");
    let acmex = community("axel", "acmex");
    let owned: [(&Who, &[&str]); 3] = [
        (&acme, &["acme/app", "acme/base"]),
        (&globex, &["globex/db", "globex/web"]),
        (&acmex, &["acmex/app"]),
    ];
    for (who, repos) in owned {
        for repo in repos {
            g.push(who, repo, "v1");
        }
    }
    let all: BTreeSet<&str> = owned.iter().flat_map(|(_, r)| r.iter().copied()).collect();
    let before = g.rejected();
    for (who, repos) in owned {
        let token = g.token(who, &[CATALOG]);
        let mine: Vec<String> = repos.iter().map(|r| (*r).to_owned()).collect();
        // One page: only the caller's, in the registry's order.
        let r = g.v2("GET", "/v2/_catalog", &token, None);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.json()["repositories"],
            Value::from(mine.clone()),
            "{who:?}"
        );
        // The registry itself, with the same token, lists everyone's: the guard cut it.
        let direct = g.direct("GET", "/v2/_catalog", &token);
        let listed = direct.json();
        let names: BTreeSet<&str> = listed["repositories"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(names, all, "{direct:?}");
        // Pages of one: the same Link chain as the registry's, each page cut.
        let through = pages(|p| g.v2("GET", p, &token, None), "/v2/_catalog?n=1");
        let straight = pages(|p| g.direct("GET", p, &token), "/v2/_catalog?n=1");
        assert_eq!(through.len(), straight.len(), "{through:?}\n{straight:?}");
        let mut seen = Vec::new();
        for ((names, link), (raw, raw_link)) in through.iter().zip(&straight) {
            assert_eq!(link, raw_link, "the Link header changed");
            let kept: Vec<String> = raw.iter().filter(|n| mine.contains(n)).cloned().collect();
            assert_eq!(names, &kept, "a page of {who:?}");
            seen.extend(names.iter().cloned());
        }
        assert_eq!(seen, mine, "{who:?}: {through:?}");
        assert!(through.iter().any(|(n, _)| n.is_empty()), "{through:?}");
    }
    let refused = registry_token_e2e::oidc::rejected_delta(&before, &g.rejected());
    assert!(refused.is_empty(), "{refused:?}");
    g.assert_no_trap();
    eprintln!("test took {:.2?}", started.elapsed());
}

/// Community: a bucket of 3 requests a minute; enterprise: the default bucket.
const COMMUNITY_BUCKET: u32 = 3;
const FILL_SECONDS: u32 = 60;

#[test]
fn a_community_caller_over_its_rate_gets_429_while_enterprise_is_served() {
    let started = Instant::now();
    let g = Guarded::start(&Setup {
        limits: vec![("community", COMMUNITY_BUCKET, FILL_SECONDS)],
        ..Setup::default()
    });
    let carl = community("carl", "acme");
    let emma = enterprise("emma", "acme");
    // Pushed by enterprise: community's bucket is full when the test starts.
    g.push(&emma, "acme/app", "v1");
    let path = "/v2/acme/app/manifests/v1";
    let pull = "repository:acme/app:pull";
    let carl_token = g.token(&carl, &[pull]);
    let emma_token = g.token(&emma, &[pull]);
    let mut community_statuses = Vec::new();
    for _ in 0..COMMUNITY_BUCKET + 3 {
        let r = g.v2("GET", path, &carl_token, None);
        if r.status == 429 {
            assert_eq!(
                r.header("retry-after"),
                Some(FILL_SECONDS.to_string().as_str()),
                "{r:?}"
            );
        }
        community_statuses.push(r.status);
        let r = g.v2("GET", path, &emma_token, None);
        assert_eq!(r.status, 200, "enterprise at the same time: {r:?}");
    }
    let served = community_statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        (served, community_statuses.len() - served),
        (COMMUNITY_BUCKET as usize, 3),
        "community: {community_statuses:?}"
    );
    assert!(community_statuses.iter().all(|s| *s == 200 || *s == 429));
    // A forged plan header does not lift the limit (the guard replaces it).
    let auth = registry_token_e2e::gateway::bearer(&carl_token);
    for forged in ["enterprise", "community, enterprise", ""] {
        let r = g.envoy.request(
            "GET",
            path,
            &[("authorization", &auth), (PLAN_HEADER, forged)],
            None,
        );
        assert_eq!(r.status, 429, "x-registry-plan: {forged:?}: {r:?}");
    }
    let r = g.envoy.request(
        "GET",
        path,
        &[
            ("authorization", &auth),
            ("X-Registry-Plan", "enterprise"),
            ("x-registry-tenant", "globex"),
        ],
        None,
    );
    assert_eq!(r.status, 429, "{r:?}");
    // Nor does a forged header put an anonymous caller in community's (empty) bucket:
    // removed, the request goes on to the registry's own 401.
    let r = g
        .envoy
        .request("GET", path, &[(PLAN_HEADER, "community")], None);
    assert_eq!(
        r.status, 401,
        "anonymous with x-registry-plan: community: {r:?}"
    );
    for _ in 0..5 {
        assert_eq!(g.v2("GET", path, &emma_token, None).status, 200);
    }
    let limited = g
        .envoy
        .counter("registry_rate_limit.http_local_rate_limit.rate_limited");
    assert!(limited >= 7, "rate_limited {limited}");
    g.assert_no_trap();
    eprintln!("test took {:.2?}", started.elapsed());
}
