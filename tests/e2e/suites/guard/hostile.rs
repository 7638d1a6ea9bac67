//! Hostile requests on the registry's route: registry tokens from another signer with the
//! same `kid`, `alg` tricks (`none`, HS256 keyed with the public key), another service,
//! expired, not yet valid, another issuer, altered, not a JWT — each 401
//! `guard_invalid_token`, counted once; requests the guard has no rule for (Basic,
//! another repository's token) passed to the registry, which refuses them itself. Path
//! tricks (`%2F`, percent-encoded names, tags and digests, `..`, `.`, double slashes,
//! case) on manifest writes, deletes and the catalogue, sent as written: none overwrites an
//! immutable tag, pushes a protected one, deletes, or shows another tenant's repository,
//! whether the guard refuses it (its label counted) or passes it to a registry that
//! refuses it. A manifest PUT without a body is refused or answered by the registry, and
//! never hangs. After each, the next honest request is served, and the VM never traps.

use std::time::Instant;

use registry_token_e2e::authority::now;
use registry_token_e2e::gateway::{bearer, KeyKind};
use registry_token_e2e::guard::{alg_none, guard_reason, hs256, jws_parts, raw_request, sign_jws};
use registry_token_e2e::registry::{sha256_digest, OCI_MANIFEST};
use registry_token_e2e::Reply;
use serde_json::json;

use super::{community, refused, Guarded, Setup};

#[test]
fn forged_and_foreign_registry_tokens_are_refused_and_the_next_request_is_served() {
    let started = Instant::now();
    let g = Guarded::start(&Setup::default());
    let carl = community("carl", "acme");
    let x = g.push(&carl, "acme/app", "v1");
    g.push(&community("gil", "globex"), "globex/app", "v1");
    let path = "/v2/acme/app/manifests/v1";
    let token = g.token(&carl, &["repository:acme/app:pull"]);
    let honest = |after: &str| {
        let r = g.v2("GET", path, &token, None);
        assert_eq!(r.status, 200, "the honest request after {after}: {r:?}");
        assert_eq!(
            r.header("docker-content-digest"),
            Some(x.manifest_digest.as_str())
        );
    };
    honest("nothing");
    let (header, claims) = jws_parts(&token);
    let signing = g.keys.signing_key_pem().to_owned();
    let other = g.keys.extra_signing_key("other-signer", KeyKind::Rsa2048);
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims.clone();
        f(&mut c);
        sign_jws(&header, &c, &signing)
    };
    let t = now();
    let altered = {
        let mut c = claims.clone();
        c["access"][0]["name"] = json!("globex/app");
        let sig = token.rsplit('.').next().unwrap_or_default();
        let head = token.split('.').next().unwrap_or_default();
        use base64::Engine;
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string());
        format!("{head}.{body}.{sig}")
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "another signer, the same kid",
            sign_jws(&header, &claims, &other.key_pem),
        ),
        ("alg none", alg_none(&header, &claims)),
        (
            "HS256 keyed with the public key",
            hs256(&header, &claims, g.keys.signing_public_pem().as_bytes()),
        ),
        (
            "HS256 keyed with the certificate",
            hs256(&header, &claims, g.keys.signing_cert_pem().as_bytes()),
        ),
        (
            "another service (aud)",
            with(&|c| c["aud"] = json!("other.example")),
        ),
        (
            "expired",
            with(&|c| {
                c["exp"] = json!(t - 3600);
                c["iat"] = json!(t - 3900);
                c["nbf"] = json!(t - 3900);
            }),
        ),
        ("not yet valid", with(&|c| c["nbf"] = json!(t + 3600))),
        (
            "another issuer",
            with(&|c| c["iss"] = json!("someone-else")),
        ),
        ("altered after signing", altered),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    for (what, forged) in &cases {
        let before = g.rejected();
        let r = g.v2("GET", path, forged, None);
        refused(&g, what, &r, 401, "UNAUTHORIZED", "guard_invalid_token");
        assert_eq!(
            g.rejected_since(&before, &[("guard_invalid_token", 1)]),
            [("guard_invalid_token".to_owned(), 1)].into(),
            "{what}"
        );
        honest(what);
    }
    // What the guard has no rule for goes to the registry, which answers it.
    let globex = g.token(&community("gil", "globex"), &["repository:globex/app:pull"]);
    let before = g.rejected();
    for (what, auth) in [
        ("Basic", "Basic ZGV2LXVzZXI6eA==".to_owned()),
        ("another repository's token", bearer(&globex)),
    ] {
        let r = g
            .envoy
            .request("GET", path, &[("authorization", &auth)], None);
        assert_eq!(r.status, 401, "{what}: {r:?}");
        assert_eq!(
            guard_reason(&r),
            "",
            "{what}: the registry's own answer: {r:?}"
        );
        honest(what);
    }
    let moved = g.rejected_since(&before, &[]);
    assert!(moved.is_empty(), "{moved:?}");
    g.assert_no_trap();
    eprintln!("test took {:.2?}", started.elapsed());
}

/// One path trick's outcome: refused by the guard (its label counted once) or passed to
/// the registry (nothing counted); never a 2xx unless `may_pass`.
fn trick(
    g: &Guarded,
    method: &str,
    target: &str,
    token: &str,
    body: Option<&[u8]>,
    may_pass: bool,
) -> Reply {
    let before = g.rejected();
    let auth = bearer(token);
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", OCI_MANIFEST));
    }
    let r = raw_request(&g.host(), method, target, &headers, body)
        .unwrap_or_else(|e| panic!("{method} {target}: {e} (a hang or a reset)"));
    let label = guard_reason(&r);
    eprintln!("{method} {target} -> {} {label}", r.status);
    if !may_pass {
        assert!(
            !(200..300).contains(&r.status),
            "{method} {target} passed: {r:?}"
        );
    }
    let want: Vec<(&str, u64)> = if label.is_empty() {
        vec![]
    } else {
        vec![(label.as_str(), 1)]
    };
    let moved = g.rejected_since(&before, &want);
    let want: std::collections::BTreeMap<String, u64> =
        want.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    assert_eq!(moved, want, "{method} {target}: {r:?}");
    r
}

#[test]
fn path_tricks_and_empty_manifests_neither_bypass_the_rules_nor_trap() {
    let started = Instant::now();
    let g = Guarded::start(&Setup::default());
    let carl = community("carl", "acme");
    let x = g.push(&carl, "acme/app", "v1");
    let y = g.push(&carl, "acme/app", "y");
    g.push(&community("gil", "globex"), "globex/db", "v1");
    let file = y
        .path()
        .join("blobs/sha256")
        .join(y.manifest_digest.trim_start_matches("sha256:"));
    let y_manifest = std::fs::read(file).unwrap_or_default();
    assert_eq!(sha256_digest(&y_manifest), y.manifest_digest);
    let token = g.token(&carl, &["repository:acme/app:pull,push,delete"]);
    let catalog = g.token(&carl, &["registry:catalog:*"]);
    // What no trick may change, read from the registry directly.
    let intact = |after: &str| {
        let head = |reference: &str| {
            g.direct(
                "HEAD",
                &format!("/v2/acme/app/manifests/{reference}"),
                &token,
            )
        };
        let v1 = head("v1");
        assert_eq!(
            v1.header("docker-content-digest"),
            Some(x.manifest_digest.as_str()),
            "v1 after {after}"
        );
        assert_eq!(head("latest").status, 404, "latest after {after}");
        assert_eq!(
            head(&x.manifest_digest).status,
            200,
            "x deleted after {after}"
        );
        let r = g.v2("GET", "/v2/acme/app/manifests/v1", &token, None);
        assert_eq!(r.status, 200, "the honest request after {after}: {r:?}");
        let r = g.v2("GET", "/v2/_catalog", &catalog, None);
        assert_eq!(
            r.json()["repositories"],
            json!(["acme/app"]),
            "after {after}"
        );
    };
    intact("nothing");
    let hex = x.manifest_digest.trim_start_matches("sha256:");
    let body = Some(y_manifest.as_slice());
    let puts = [
        "/v2/acme%2Fapp/manifests/v1",
        "/v2/acme%2fapp/manifests/v1",
        "/v2/%61cme/app/manifests/v1",
        "/v2/acme/app/manifests/v%31",
        "/v2/acme/app/manifests/%6Catest",
        "/v2/acme%2Fapp/manifests/latest",
        "/v2/acme//app/manifests/v1",
        "/v2//acme/app/manifests/v1",
        "/v2/acme/app/manifests//v1",
        "/v2/acme/./app/manifests/v1",
        "/v2/acme/x/../app/manifests/v1",
        "/v2/acme/app/manifests/../manifests/v1",
        "/v2/acme/app/manifests/%2E%2E/manifests/latest",
        "/v2/acme/app/blobs/../manifests/v1",
        "/v2/ACME/app/manifests/v1",
        "/v2/acme/app/MANIFESTS/v1",
        "/V2/acme/app/manifests/v1",
        "//v2/acme/app/manifests/v1",
    ];
    for target in puts {
        trick(&g, "PUT", target, &token, body, false);
        intact(target);
    }
    // Another case of a tag is another tag (`v*` is not `V*`): passes, v1 untouched.
    let r = trick(&g, "PUT", "/v2/acme/app/manifests/V1", &token, body, true);
    assert_eq!(r.status, 201, "{r:?}");
    intact("V1");
    for target in [
        format!("/v2/acme%2Fapp/manifests/{}", x.manifest_digest),
        format!("/v2/acme//app/manifests/{}", x.manifest_digest),
        format!("/v2/acme/app/manifests/sha256%3A{hex}"),
        format!("/v2/acme/app/manifests/sha256%3a{hex}"),
        format!("/v2/acme/./app/manifests/{}", x.manifest_digest),
        format!("/v2/acme/x/../app/manifests/{}", x.manifest_digest),
        format!("/v2/acme/app/MANIFESTS/{}", x.manifest_digest),
    ] {
        trick(&g, "DELETE", &target, &token, None, false);
        intact(&target);
    }
    // The catalogue under other spellings: never another tenant's names.
    for target in [
        "/v2/%5Fcatalog",
        "/v2/%5fcatalog",
        "/v2/_catalo%67",
        "/v2//_catalog",
        "/v2/_catalog/",
        "/v2/./_catalog",
        "/v2/x/../_catalog",
        "/v2/_CATALOG",
        "/v2/_catalog%3Fn=10",
        "/v2/_catalog?n=1000&last=",
        "/v2/_catalog?n=1&n=1000",
        "//v2/_catalog",
    ] {
        let r = trick(&g, "GET", target, &catalog, None, true);
        assert!(
            !r.body.contains("globex"),
            "GET {target} shows globex's: {r:?}"
        );
        if r.status == 200 {
            let names = r.json()["repositories"].clone();
            assert!(
                names == json!(["acme/app"]) || names == json!([]),
                "GET {target}: {r:?}"
            );
        }
        intact(target);
    }
    // A manifest PUT without a body: to an existing immutable tag, to a new tag; with
    // `Content-Length: 0` and with no length at all.
    for target in ["/v2/acme/app/manifests/v1", "/v2/acme/app/manifests/empty"] {
        let r = trick(&g, "PUT", target, &token, Some(b""), false);
        assert!((400..500).contains(&r.status), "{target}: {r:?}");
        let auth = bearer(&token);
        let r = raw_request(&g.host(), "PUT", target, &[("Authorization", &auth)], None)
            .unwrap_or_else(|e| panic!("PUT {target} without a length: {e}"));
        assert!(
            (400..500).contains(&r.status) || r.status == 411,
            "{target}: {r:?}"
        );
        intact(target);
        let head = g.direct("HEAD", "/v2/acme/app/manifests/empty", &token);
        assert_eq!(head.status, 404, "an empty manifest was stored");
    }
    g.assert_no_trap();
    eprintln!("test took {:.2?}", started.elapsed());
}
