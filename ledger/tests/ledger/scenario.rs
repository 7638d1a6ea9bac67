//! The end-to-end scenario, run against each database.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::harness::*;

const BASE_OFFSET: i64 = 100_000;
const SUBJECTS: [&str; 3] = ["alice", "bob", "carol"];

/// The test batch: 30 decisions with shared times (ties ordered by id), several subjects,
/// licences, services, repositories and both decisions.
pub fn records() -> Vec<Value> {
    let base = now() - BASE_OFFSET;
    (0..30)
        .map(|i: i64| {
            let issued = i % 4 != 3;
            let repo = format!("team/app{}", i % 3);
            let mut requested = vec![format!("repository:{repo}:pull,push")];
            if i % 5 == 1 {
                requested.push("repository:shared/base:pull".to_string());
            }
            let granted: Vec<String> = if issued {
                requested.iter().map(|s| s.replace(":pull,push", ":pull")).collect()
            } else {
                vec![]
            };
            let mut r = json!({
                "id": format!("r{:02}", (i * 7) % 30),
                "time": base + (i / 3) * 60,
                "decision": if issued { "issued" } else { "rejected" },
                "reason": if i == 3 { "said \"no\", twice" } else if issued { "issued" } else { "plan_denied" },
                "subject": SUBJECTS[(i % 3) as usize],
                "service": if i % 4 == 0 { "other.registry" } else { "registry.test" },
                "requested": requested,
                "granted": granted,
                "grant": "get",
                "gateway": "gw-1",
            });
            if i % 5 != 0 {
                r["license"] = json!(if i % 2 == 0 { "lic-1" } else { "lic-2" });
            }
            if i % 2 == 1 {
                r["binding"] = json!("jkt:thumb");
            }
            if issued {
                r["iat"] = r["time"].clone();
                r["exp"] = json!(r["time"].as_i64().unwrap() + 300);
                r["kid"] = json!("signing-1");
            }
            r
        })
        .collect()
}

/// Ids of `records` matching `pred`, newest first (time DESC, id DESC).
fn expected(records: &[Value], pred: impl Fn(&Value) -> bool) -> Vec<String> {
    let mut v: Vec<(i64, String)> = records
        .iter()
        .filter(|r| pred(r))
        .map(|r| {
            (
                r["time"].as_i64().unwrap(),
                r["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v.into_iter().map(|(_, id)| id).collect()
}

async fn ingest(c: &Client, s: &Server, secret: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut req = c.post(s.url("/v1/ingest")).json(body);
    if let Some(secret) = secret {
        req = req.bearer_auth(secret);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn admin_get(c: &Client, s: &Server, path: &str) -> (StatusCode, Value) {
    let resp = c
        .get(s.url(path))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Every page of `/v1/issuances?{query}` with page size `limit`: the ids in order.
async fn all_pages(c: &Client, s: &Server, query: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/v1/issuances?limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = admin_get(c, s, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        ids.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_string()));
        match body["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(items.len(), limit, "a page before the last is full");
                cursor = Some(next.to_string());
            }
            None => return ids,
        }
    }
    panic!("pagination did not end");
}

fn assert_problem(status: StatusCode, body: &Value, want: u16, what: &str) {
    assert_eq!(status.as_u16(), want, "{what}: {body}");
    assert!(
        body["error"].is_string() && body["detail"].is_string(),
        "{what}: problem body {body}"
    );
}

pub async fn run(database: &str) {
    let s = Server::start(database);
    let c = Client::new();

    // Health.
    let resp = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // --- ingest ------------------------------------------------------------------------
    let recs = records();
    let batch = json!({ "records": recs });
    let (st, body) = ingest(&c, &s, None, &batch).await;
    assert_problem(st, &body, 401, "ingest without a secret");
    let (st, body) = ingest(
        &c,
        &s,
        Some("wrong-secret-0123456789abcdef-0123456789"),
        &batch,
    )
    .await;
    assert_problem(st, &body, 401, "ingest with a wrong secret");
    let (st, body) = ingest(&c, &s, Some(FEED_SECRET), &batch).await;
    assert_problem(st, &body, 401, "ingest with the feed secret");
    let resp = c
        .post(s.url("/v1/ingest"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));

    let (st, body) = ingest(&c, &s, Some(INGEST_SECRET), &batch).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body, json!({"accepted": 30, "duplicates": 0}));
    // Idempotent: the same batch again stores nothing.
    let (st, body) = ingest(&c, &s, Some(INGEST_SECRET), &batch).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body, json!({"accepted": 0, "duplicates": 30}));
    let everything = expected(&recs, |_| true);
    assert_eq!(
        all_pages(&c, &s, "", 10_000).await,
        everything,
        "one row per id"
    );

    // Bad batches: 400 naming the record and field, and nothing stored.
    let fresh = json!({"id": "fresh-1", "time": now(), "decision": "issued"});
    let bad_cases: Vec<(Value, Option<(u64, &str)>)> = vec![
        (
            json!({"records": [fresh, fresh, {"id": "x", "time": 1}]}),
            Some((2, "decision")),
        ),
        (
            json!({"records": [fresh, {"time": 1, "decision": "issued"}]}),
            Some((1, "id")),
        ),
        (
            json!({"records": [fresh, {"id": "x", "decision": "issued"}]}),
            Some((1, "time")),
        ),
        (
            json!({"records": [{"id": "x", "time": 1, "decision": "granted"}]}),
            Some((0, "decision")),
        ),
        (
            json!({"records": [fresh, {"id": "x", "time": -5, "decision": "issued"}]}),
            Some((1, "time")),
        ),
        (
            json!({"records": [fresh, {"id": "x", "time": 1, "decision": "issued", "access_token": "t"}]}),
            Some((1, "access_token")),
        ),
        (
            json!({"records": [fresh, {"id": "x", "time": 1, "decision": "issued", "requested": "repository:a:pull"}]}),
            Some((1, "requested")),
        ),
        (
            json!({"records": [fresh, {"id": "x", "time": 1, "decision": "issued", "grant": "implicit"}]}),
            Some((1, "grant")),
        ),
        (
            json!({"records": [fresh, {"id": "x", "time": 1, "decision": "issued", "binding": "mtls"}]}),
            Some((1, "binding")),
        ),
        (
            json!({"records": [fresh, {"id": "x", "time": 1, "decision": "issued", "subject": 7}]}),
            Some((1, "subject")),
        ),
        (json!({"records": [fresh, "not an object"]}), Some((1, "."))),
        (json!({"records": fresh}), None),
        (json!({"records": [fresh], "extra": 1}), None),
        (json!([fresh]), None),
        (json!({"records": vec![fresh.clone(); 1001]}), None),
    ];
    for (body_in, want) in &bad_cases {
        let (st, body) = ingest(&c, &s, Some(INGEST_SECRET), body_in).await;
        assert_problem(st, &body, 400, &format!("bad batch {body_in}"));
        if let Some((index, field)) = want {
            assert_eq!(body["index"], json!(index), "{body}");
            assert_eq!(body["field"], json!(field), "{body}");
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("records[{index}]")),
                "{body}"
            );
        }
    }
    let resp = c
        .post(s.url("/v1/ingest"))
        .bearer_auth(INGEST_SECRET)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (st, _) = admin_get(&c, &s, "/v1/issuances/fresh-1").await;
    assert_eq!(st, 404, "nothing of a refused batch is stored");
    assert_eq!(all_pages(&c, &s, "", 10_000).await, everything);

    // --- queries -----------------------------------------------------------------------
    let base = now() - BASE_OFFSET;
    let rfc = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let has_repo = |r: &Value, repo: &str| {
        let needle = format!("repository:{repo}:");
        ["requested", "granted"].iter().any(|k| {
            r[*k]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s.as_str().unwrap().starts_with(&needle))
        })
    };
    let since = base + 3 * 60;
    let until = base + 7 * 60;
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "subject=bob".into(),
            expected(&recs, |r| r["subject"] == "bob"),
        ),
        (
            "license=lic-1".into(),
            expected(&recs, |r| r["license"] == "lic-1"),
        ),
        (
            "service=other.registry".into(),
            expected(&recs, |r| r["service"] == "other.registry"),
        ),
        (
            "decision=rejected".into(),
            expected(&recs, |r| r["decision"] == "rejected"),
        ),
        (
            "decision=issued".into(),
            expected(&recs, |r| r["decision"] == "issued"),
        ),
        (
            "repository=team/app1".into(),
            expected(&recs, |r| has_repo(r, "team/app1")),
        ),
        (
            "repository=shared/base".into(),
            expected(&recs, |r| has_repo(r, "shared/base")),
        ),
        ("repository=team/app".into(), vec![]),
        (
            format!("since={}", rfc(since)),
            expected(&recs, |r| r["time"].as_i64().unwrap() >= since),
        ),
        (
            format!("until={}", rfc(until)),
            expected(&recs, |r| r["time"].as_i64().unwrap() < until),
        ),
        (
            format!(
                "since={}&until={}&subject=alice&decision=issued",
                rfc(since),
                rfc(until)
            ),
            expected(&recs, |r| {
                let t = r["time"].as_i64().unwrap();
                t >= since && t < until && r["subject"] == "alice" && r["decision"] == "issued"
            }),
        ),
        ("subject=nobody".into(), vec![]),
    ];
    for (query, want) in &cases {
        assert!(
            !want.is_empty() || query.contains("nobody") || query.ends_with("team/app"),
            "test data covers {query}"
        );
        let got = all_pages(&c, &s, &query.replace('+', "%2B"), 10_000).await;
        assert_eq!(&got, want, "filter {query}");
    }
    // Pagination: every page size gives the same ids, no duplicate, no gap.
    for limit in [1, 3, 4, 7, 29, 30, 31] {
        assert_eq!(
            all_pages(&c, &s, "", limit).await,
            everything,
            "limit {limit}"
        );
    }
    assert_eq!(
        all_pages(&c, &s, "subject=carol", 2).await,
        expected(&recs, |r| r["subject"] == "carol")
    );
    let (st, body) = admin_get(&c, &s, "/v1/issuances").await;
    assert_eq!(st, 200);
    assert_eq!(
        body["items"].as_array().unwrap().len(),
        30,
        "default limit 100"
    );
    assert!(body["next_cursor"].is_null());
    let first = &body["items"][0];
    assert_eq!(first["id"], json!(everything[0]));
    assert!(
        first["requested"].is_array() && first["received_at"].is_i64(),
        "{first}"
    );

    // Bad parameters.
    let bad_queries = [
        "limit=0",
        "limit=10001",
        "limit=ten",
        "decision=granted",
        "since=yesterday",
        "until=2025-13-01T00:00:00Z",
        "since=1700000000",
        "cursor=!!notbase64!!",
        &format!("cursor={}", URL_SAFE_NO_PAD.encode("garbage")),
        &format!("cursor={}", URL_SAFE_NO_PAD.encode("12:")),
        "colour=red",
        "subject=a&subject=b",
        "repository=a:b",
    ];
    for q in bad_queries {
        let (st, body) = admin_get(&c, &s, &format!("/v1/issuances?{q}")).await;
        assert_problem(st, &body, 400, q);
    }

    // One issuance, and 404.
    let (st, body) = admin_get(&c, &s, "/v1/issuances/r07").await;
    assert_eq!(st, 200);
    assert_eq!(body["id"], "r07");
    assert_eq!(body["grant"], "get");
    let (st, body) = admin_get(&c, &s, "/v1/issuances/absent").await;
    assert_problem(st, &body, 404, "absent issuance");

    // CSV.
    let resp = c
        .get(s.url("/v1/issuances?limit=30"))
        .bearer_auth(admin_token())
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "id,time,decision,reason,subject,client_id,plan,license,tenant,service,requested,granted,iat,exp,kid,binding,grant,refresh_token_id,gateway,received_at,issuer,policy");
    assert_eq!(lines.len(), 32, "header, 30 rows, final empty after CRLF");
    assert!(
        text.contains(",\"said \"\"no\"\", twice\","),
        "RFC 4180 quoting: {text}"
    );
    let resp = c
        .get(s.url("/v1/issuances?limit=2"))
        .bearer_auth(admin_token())
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("x-next-cursor"));

    // --- admin authentication ----------------------------------------------------------
    let resp = c.get(s.url("/v1/issuances")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let wrong_scope = token_with(
        admin_key(),
        Algorithm::RS256,
        json!({"scope": "openid registry.token.issue"}),
    );
    let no_scope = token_with(admin_key(), Algorithm::RS256, json!({"scope": null}));
    let scp_array = token_with(
        admin_key(),
        Algorithm::RS256,
        json!({"scope": null, "scp": ["x", ADMIN_SCOPE]}),
    );
    let ps256 = token_with(admin_key(), Algorithm::PS256, json!({}));
    let es256 = token_with(ec_key(), Algorithm::ES256, json!({}));
    // The EC key's JWK says alg ES256: an RSA-family alg naming it is refused.
    let mut rs_on_ec = Header::new(Algorithm::RS256);
    rs_on_ec.kid = Some("admin-ec".into());
    let rs_on_ec = jsonwebtoken::encode(
        &rs_on_ec,
        &json!({"iss": ISSUER, "sub": "x", "exp": now() + 60, "scope": ADMIN_SCOPE}),
        &admin_key().encoding,
    )
    .unwrap();
    let expired = token_with(admin_key(), Algorithm::RS256, json!({"exp": now() - 600}));
    let within_skew = token_with(admin_key(), Algorithm::RS256, json!({"exp": now() - 10}));
    let not_yet = token_with(admin_key(), Algorithm::RS256, json!({"nbf": now() + 600}));
    let wrong_iss = token_with(
        admin_key(),
        Algorithm::RS256,
        json!({"iss": "https://evil.test"}),
    );
    let no_sub = token_with(admin_key(), Algorithm::RS256, json!({"sub": null}));
    let rogue = token_with(rogue_key(), Algorithm::RS256, json!({}));
    let hs256 = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("admin-1".into());
        jsonwebtoken::encode(
            &h,
            &json!({"iss": ISSUER, "sub": "x", "exp": now() + 60, "scope": ADMIN_SCOPE}),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap()
    };
    for (name, tok, want) in [
        ("wrong scope", &wrong_scope, 403),
        ("no scope", &no_scope, 403),
        ("scp array", &scp_array, 200),
        ("PS256", &ps256, 200),
        ("ES256", &es256, 200),
        ("RS256 with the EC key's kid", &rs_on_ec, 401),
        ("expired", &expired, 401),
        ("expired within the skew", &within_skew, 200),
        ("nbf in the future", &not_yet, 401),
        ("wrong issuer", &wrong_iss, 401),
        ("no sub", &no_sub, 401),
        ("unknown key", &rogue, 401),
        ("HS256", &hs256, 401),
        ("garbage", &"not.a.jwt".to_string(), 401),
    ] {
        let resp = c
            .get(s.url("/v1/issuances?limit=1"))
            .bearer_auth(tok)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{name}");
        if want != 200 {
            assert!(
                resp.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer"),
                "{name}"
            );
        }
        if want == 403 {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "forbidden");
        }
    }
    // The revocation API needs the admin token too.
    let resp = c
        .post(s.url("/v1/revocations"))
        .json(&json!({"kind": "license", "value": "x", "reason": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .post(s.url("/v1/revocations"))
        .bearer_auth(&wrong_scope)
        .json(&json!({"kind": "license", "value": "x", "reason": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = c.delete(s.url("/v1/revocations/x")).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    // --- revocations -------------------------------------------------------------------
    let post = |body: String| {
        let c = c.clone();
        let url = s.url("/v1/revocations");
        async move {
            let resp = c
                .post(url)
                .bearer_auth(admin_token())
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let st = resp.status();
            (st, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, created) =
        post(json!({"kind": "license", "value": "lic-2", "reason": "chargeback"}).to_string())
            .await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["kind"], "license");
    assert_eq!(created["created_by"], "security-alice");
    let lic_id = created["id"].as_str().unwrap().to_string();
    for (kind, value) in [
        ("subject", "mallory"),
        ("refreshToken", "rt-123"),
        ("tenant", "acme"),
    ] {
        let (st, body) =
            post(json!({"kind": kind, "value": value, "reason": "test"}).to_string()).await;
        assert_eq!(st, 201, "{body}");
    }
    let (st, body) =
        post(json!({"kind": "license", "value": "lic-2", "reason": "again"}).to_string()).await;
    assert_problem(st, &body, 409, "duplicate active revocation");

    let (_, before) = admin_get(&c, &s, "/v1/revocations?all=true").await;
    let (_, events_before) = admin_get(&c, &s, "/v1/revocations/events").await;
    assert_eq!(before["items"].as_array().unwrap().len(), 4);
    let long = "x".repeat(257);
    let bad_revocations = [
        json!({"kind": "licence", "value": "a", "reason": "r"}).to_string(),
        json!({"kind": "LICENSE", "value": "a", "reason": "r"}).to_string(),
        json!({"kind": "license", "value": "", "reason": "r"}).to_string(),
        json!({"kind": "license", "value": long, "reason": "r"}).to_string(),
        json!({"kind": "license", "value": "a\nb", "reason": "r"}).to_string(),
        json!({"kind": "license", "value": " a", "reason": "r"}).to_string(),
        json!({"kind": "license", "value": "a"}).to_string(),
        json!({"kind": "license", "value": "a", "reason": ""}).to_string(),
        json!({"kind": "license", "value": "a", "reason": "   "}).to_string(),
        json!({"kind": "license", "value": 5, "reason": "r"}).to_string(),
        json!({"value": "a", "reason": "r"}).to_string(),
        json!({"kind": "license", "value": "a", "reason": "r", "expires": 5}).to_string(),
        json!(["license", "a", "r"]).to_string(),
        "{\"kind\": \"license\", ".to_string(),
        String::new(),
    ];
    for body_in in bad_revocations {
        let (st, body) = post(body_in.clone()).await;
        assert_problem(st, &body, 400, &format!("bad revocation {body_in:?}"));
    }
    let (_, after) = admin_get(&c, &s, "/v1/revocations?all=true").await;
    let (_, events_after) = admin_get(&c, &s, "/v1/revocations/events").await;
    assert_eq!(before, after, "refused inputs change nothing");
    assert_eq!(
        events_before, events_after,
        "refused inputs record no event"
    );

    // The feed, for gateways.
    let resp = c.get(s.url("/v1/revocations/feed")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .get(s.url("/v1/revocations/feed"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "an admin token is not the gateway secret"
    );
    let resp = c
        .get(s.url("/v1/revocations/feed"))
        .bearer_auth(FEED_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let feed_bytes = resp.bytes().await.unwrap();
    let feed: Value = serde_json::from_slice(&feed_bytes).unwrap();
    assert_eq!(feed["revokedLicenses"], json!(["lic-2"]));
    assert_eq!(feed["revokedSubjects"], json!(["mallory"]));
    assert_eq!(feed["revokedRefreshTokens"], json!(["rt-123"]));
    assert_eq!(feed["revokedTenants"], json!(["acme"]));
    assert!((feed["generatedAt"].as_i64().unwrap() - now()).abs() < 60);
    // The filter reads this document as it is.
    let parsed = registry_token_core::policy::revocation::parse_lists(&feed_bytes).unwrap();
    let one = |v: &str| std::collections::HashSet::from([v.to_string()]);
    assert_eq!(parsed.licenses, one("lic-2"));
    assert_eq!(parsed.subjects, one("mallory"));
    assert_eq!(parsed.refresh_tokens, one("rt-123"));
    assert_eq!(parsed.tenants, one("acme"));

    // Delete.
    let resp = c
        .delete(s.url(&format!("/v1/revocations/{lic_id}?reason=resolved")))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = c
        .delete(s.url(&format!("/v1/revocations/{lic_id}")))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "already lifted");
    let resp = c
        .delete(s.url("/v1/revocations/unknown"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let (st, active) = admin_get(&c, &s, "/v1/revocations").await;
    assert_eq!(st, 200);
    assert_eq!(active["items"].as_array().unwrap().len(), 3);
    assert!(active["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["id"] != json!(lic_id)));
    let (_, all) = admin_get(&c, &s, "/v1/revocations?all=true").await;
    let lifted = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(lic_id))
        .unwrap()
        .clone();
    assert_eq!(lifted["deleted_by"], "security-alice");
    assert!(lifted["deleted_at"].is_i64());
    let (st, body) = admin_get(&c, &s, "/v1/revocations?all=maybe").await;
    assert_problem(st, &body, 400, "all=maybe");
    let resp = c
        .get(s.url("/v1/revocations/feed"))
        .bearer_auth(FEED_SECRET)
        .send()
        .await
        .unwrap();
    let feed: Value = resp.json().await.unwrap();
    assert_eq!(feed["revokedLicenses"], json!([]));
    // A lifted licence can be revoked again.
    let (st, _) =
        post(json!({"kind": "license", "value": "lic-2", "reason": "again"}).to_string()).await;
    assert_eq!(st, 201);

    // The audit trail: who, when, why, what.
    let (_, events) = admin_get(&c, &s, "/v1/revocations/events").await;
    let events = events["items"].as_array().unwrap().clone();
    assert_eq!(events.len(), 6, "5 creates + 1 delete: {events:?}");
    let del = events.iter().find(|e| e["action"] == "delete").unwrap();
    assert_eq!(del["revocation_id"], json!(lic_id));
    assert_eq!(del["actor"], "security-alice");
    assert_eq!(del["reason"], "resolved");
    assert!(events
        .iter()
        .all(|e| e["at"].is_i64() && e["actor"] == "security-alice"));

    // --- metrics -----------------------------------------------------------------------
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "ledger_ingested_records_total 30\n",
        "ledger_ingest_duplicates_total 30\n",
        "ledger_ingest_batches_total 2\n",
        "ledger_active_revocations 4\n",
        "ledger_http_requests_total{route=\"/v1/ingest\",status=\"400\"}",
        "ledger_http_requests_total{route=\"/v1/issuances\",status=\"200\"}",
    ] {
        assert!(text.contains(line), "metrics lack {line:?}:\n{text}");
    }
    let lag_line = text
        .lines()
        .find(|l| l.starts_with("ledger_ingest_lag_seconds "))
        .unwrap();
    let lag: i64 = lag_line.split(' ').nth(1).unwrap().parse().unwrap();
    let newest_offset = BASE_OFFSET - 9 * 60;
    assert!(
        lag >= newest_offset && lag < newest_offset + 120,
        "{lag_line}"
    );
}
