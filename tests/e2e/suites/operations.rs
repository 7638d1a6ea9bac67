//! Operations against real processes: the Istio `WasmPlugin`'s `pluginConfig` in a real
//! Envoy (the same decisions as the shipped configuration), and a key rotation under a
//! stable CA that a real docker-registry 2.8 keeps accepting.

use std::collections::BTreeSet;

use registry_token_e2e::authority::{now, AuthorityKey};
use registry_token_e2e::dpop::DpopKey;
use registry_token_e2e::gateway::{
    decode_unverified, filter_config, optok, start_gateway, token_path, verify_registry_token,
    ConfigForm, GatewaySpec, KeyKind, TestKeys, KEYPEM_ENV, SERVICE, SIGNING_ISSUER,
};
use registry_token_e2e::registry::{self, OciImage, Registry, RegistryAuth};
use registry_token_e2e::{repo_root, Envoy, EnvoyOptions, Reply};
use serde_json::{json, Value};

use super::common::{problem_type, PRIVATE_PUSH, REALM};

/// The reply is a refusal with `status` and the problem type of `reason`.
pub(crate) fn assert_refused(reply: &Reply, status: u16, reason: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {reply:?}");
    assert_eq!(
        problem_type(reply),
        format!("urn:registry-token-filter:error:{reason}"),
        "{what}: {reply:?}"
    );
}

/// The dotted paths of every leaf (scalar, empty array/object) where `a` and `b` differ,
/// sorted. Arrays are compared element by element (`plans[1].name`).
fn differing_paths(a: &Value, b: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let child = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if !x.is_empty() || !y.is_empty() => {
            for k in x.keys().chain(y.keys()) {
                let (va, vb) = (x.get(k), y.get(k));
                match (va, vb) {
                    (Some(va), Some(vb)) => differing_paths(va, vb, &child(k), out),
                    _ => {
                        out.insert(child(k));
                    }
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() && !x.is_empty() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differing_paths(va, vb, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {
            if a != b {
                out.insert(prefix.to_owned());
            }
        }
    }
}

/// `deploy/istio/wasmplugin/wasmplugin.yaml` as istiod would hand it to Envoy: its `pluginConfig`
/// turned into the JSON text of a `google.protobuf.StringValue`, loaded into a real
/// Envoy with the signing key from the host environment (what `vmConfig.env` with
/// `valueFrom: HOST` becomes: `environment_variables.host_env_keys`).
///
/// Replaced, because it cannot work here, and nothing else (asserted): the Authority's
/// `metadataUrl` and `cluster` (Istio's `outbound|443||authority.example`, which does not
/// exist in this Envoy) → an inline `jwks` of the test Authority. The realm
/// (`https://registry-auth.example/token`) stays as shipped: the filter answers on its
/// path (`/token`) whatever the listener's address, and compares DPoP `htu` with it, so
/// the client proves for the public URL exactly as it would behind the ingress gateway.
///
/// `requireSenderConstraint: true` stays too: the OpTok is DPoP-bound (`cnf.jkt`) and the
/// request carries a proof; the same OpTok without a binding is refused.
#[test]
fn istio_plugin_config_runs_in_a_real_envoy() {
    let path = repo_root().join("deploy/istio/wasmplugin/wasmplugin.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: Value = serde_yaml::from_str::<serde_yaml::Value>(&text)
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
    assert_eq!(manifest["kind"], "WasmPlugin", "{manifest}");
    assert!(
        manifest["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("extensions.istio.io/")),
        "{manifest}"
    );
    let spec = &manifest["spec"];
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE", "fail closed: {spec}");
    assert_eq!(spec["phase"], "AUTHN", "{spec}");
    assert!(
        !text.contains("-----BEGIN"),
        "a PEM in the manifest: secrets belong in the gateway's environment"
    );

    // vmConfig.env with valueFrom: HOST → host_env_keys; the signing key comes from there.
    let host_env: Vec<String> = spec["vmConfig"]["env"]
        .as_array()
        .unwrap_or_else(|| panic!("no vmConfig.env: {spec}"))
        .iter()
        .filter(|e| e["valueFrom"] == "HOST")
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(host_env, [KEYPEM_ENV], "{spec}");

    // What istiod hands to Envoy: the pluginConfig Struct as JSON text.
    let shipped = spec["pluginConfig"].clone();
    assert!(shipped.is_object(), "no pluginConfig: {spec}");
    let plugin_json = serde_json::to_string(&shipped).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        shipped["signing"].get("keyPem").is_none(),
        "the signing key must not be in the manifest"
    );

    let keys = TestKeys::generate();
    let mut config: Value = serde_json::from_str(&plugin_json).unwrap_or_else(|e| panic!("{e}"));
    {
        let authority = config["authority"]
            .as_object_mut()
            .unwrap_or_else(|| panic!("pluginConfig.authority: {shipped}"));
        assert!(authority.remove("metadataUrl").is_some(), "{shipped}");
        assert!(authority.remove("cluster").is_some(), "{shipped}");
        authority.insert("jwks".to_owned(), keys.authority_jwks());
    }
    let mut replaced = BTreeSet::new();
    differing_paths(&shipped, &config, "", &mut replaced);
    assert_eq!(
        replaced.into_iter().collect::<Vec<_>>(),
        [
            "authority.cluster",
            "authority.jwks",
            "authority.metadataUrl"
        ],
        "only what cannot work here may differ from the manifest"
    );
    assert_eq!(config["authority"]["requireSenderConstraint"], true);
    let realm = config["registry"]["realm"]
        .as_str()
        .unwrap_or_else(|| panic!("no registry.realm: {shipped}"))
        .to_owned();
    let service = config["registry"]["allowedServices"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no registry.allowedServices: {shipped}"))
        .to_owned();
    let realm_path = realm
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
        .unwrap_or_else(|| panic!("realm {realm:?} has no path"));
    let revoked = config["revokedLicenses"][0].as_str().map(str::to_owned);

    let mut gateway = GatewaySpec::new(&config).form(ConfigForm::StringValue);
    for name in &host_env {
        gateway = gateway.host_env_key(name);
    }
    let yaml = gateway.yaml();
    assert!(yaml.contains("failure_policy: FAIL_CLOSED"), "{yaml}");
    assert!(!yaml.contains("-----BEGIN"), "a PEM in the Envoy YAML");
    let envoy = gateway.start(
        &keys,
        EnvoyOptions::new().env(KEYPEM_ENV, keys.signing_key_pem()),
    );

    let health = envoy.get("/healthz", &[]);
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.json()["status"], "ok");

    // An enterprise OpTok bound to a DPoP key, with a proof for the shipped realm.
    let dpop = DpopKey::generate(&keys, "dpop");
    let op = optok(&keys, |s| {
        s.subject = "istio-user".into();
        s.plan = Some("enterprise".into());
        s.jkt = Some(dpop.jkt.clone());
    });
    let path = registry_token_e2e::gateway::token_path_at(&realm_path, &service, &[PRIVATE_PUSH]);
    let proof = dpop.proof("GET", &realm, &op);
    let reply = envoy.get(
        &path,
        &[("authorization", &format!("DPoP {op}")), ("dpop", &proof)],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = reply.json();
    let token = body["token"].as_str().unwrap_or_default();
    assert_eq!(body["access_token"], token);
    let (header, claims) = verify_registry_token(token, &keys.signing_public_pem())
        .unwrap_or_else(|e| panic!("minted token: {e}"));
    assert_eq!(header["alg"], shipped["signing"]["algorithm"]);
    assert_eq!(claims["iss"], shipped["signing"]["issuer"]);
    assert_eq!(claims["aud"], service.as_str());
    assert_eq!(claims["sub"], "istio-user");
    assert_eq!(
        claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0),
        shipped["signing"]["lifetimeSeconds"].as_i64().unwrap_or(-1),
        "{claims}"
    );
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "stella-ops/private/app", "actions": ["pull", "push"]}])
    );

    // The rest of the manifest, as shipped: an unbound OpTok is refused (sender
    // constraint), the same proof again is a replay, a revoked licence is refused, and
    // the default plan (community) grants no push.
    let unbound = optok(&keys, |s| s.plan = Some("enterprise".into()));
    let r = envoy.get(&path, &[("authorization", &format!("Bearer {unbound}"))]);
    assert_refused(&r, 401, "unbound_token", "unbound OpTok");
    let r = envoy.get(
        &path,
        &[("authorization", &format!("DPoP {op}")), ("dpop", &proof)],
    );
    assert_refused(&r, 401, "dpop_replay", "replayed proof");
    if let Some(lic) = revoked {
        let op = optok(&keys, |s| {
            s.plan = Some("enterprise".into());
            s.license = Some(lic.clone());
            s.jkt = Some(dpop.jkt.clone());
        });
        let r = envoy.get(
            &path,
            &[
                ("authorization", &format!("DPoP {op}")),
                ("dpop", &dpop.proof("GET", &realm, &op)),
            ],
        );
        assert_refused(&r, 403, "license_revoked", "revoked licence");
    }
    let community = optok(&keys, |s| s.jkt = Some(dpop.jkt.clone()));
    let r = envoy.get(
        &path,
        &[
            ("authorization", &format!("DPoP {community}")),
            ("dpop", &dpop.proof("GET", &realm, &community)),
        ],
    );
    assert_refused(&r, 403, "plan_denied", "default plan asking for push");
}

/// `GET http://127.0.0.1:<port><path>`.
fn get_at(port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    registry_token_e2e::get(&format!("http://127.0.0.1:{port}{path}"), headers)
}

/// The base64 DER of the first certificate in `pem` (its `x5c` entry).
fn x5c_entry(pem: &str) -> String {
    pem.lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect()
}

/// A gateway on `port` (the stable realm) signing with `leaf` (chain leaf + CA) and
/// publishing `published` on `/jwks`.
fn rotation_gateway(
    keys: &TestKeys,
    port: u16,
    leaf: &registry_token_e2e::gateway::SigningKey,
    published: Value,
) -> Envoy {
    let mut config = filter_config(keys, REALM);
    config["signing"]["certificateChainPem"] = json!(leaf.chain_pem);
    config["signing"]["publishedKeys"] = published;
    start_gateway(
        &config,
        ConfigForm::StringValue,
        keys,
        EnvoyOptions::new()
            .env(KEYPEM_ENV, &leaf.key_pem)
            .var("LISTEN_PORT", port),
    )
}

/// Mints a registry token for `scope` from the gateway on `port`.
fn mint_at(port: u16, op: &str, scope: &str) -> String {
    let reply = get_at(
        port,
        &token_path(SERVICE, &[scope]),
        &[("authorization", &format!("Bearer {op}"))],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {}", reply.body))
        .to_owned()
}

/// `GET /jwks` of the gateway on `port`: the `kid`s in order, and the keys.
fn jwks_at(port: u16) -> (Vec<String>, Vec<Value>) {
    let reply = get_at(port, "/jwks", &[]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let keys = reply.json()["keys"].as_array().cloned().unwrap_or_default();
    let kids = keys
        .iter()
        .map(|k| k["kid"].as_str().unwrap_or_default().to_owned())
        .collect();
    (kids, keys)
}

/// Verifies `token` with the JWK of its `kid` in `jwks` (as a JWKS-configured verifier
/// does), independently of the filter.
fn verify_with_jwks(token: &str, jwks: &[Value]) -> Result<Value, String> {
    let (header, _) = decode_unverified(token)?;
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let jwk = jwks
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or_else(|| format!("kid {kid} not in the JWKS"))?;
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwk.clone()).map_err(|e| format!("JWK {jwk}: {e}"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[SERVICE]);
    validation.set_issuer(&[SIGNING_ISSUER]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

/// Calls the registry directly with `Authorization: Bearer <token>`: `GET /v2/` and
/// `GET /v2/<repo>/tags/list`; returns both statuses and the tag list reply.
fn registry_calls(registry: &Registry, repo: &str, token: &str) -> (u16, Reply) {
    let auth = format!("Bearer {token}");
    let base = registry_token_e2e::get(
        &format!("{}/v2/", registry.url()),
        &[("authorization", &auth)],
    );
    let tags = registry_token_e2e::get(
        &format!("{}/v2/{repo}/tags/list", registry.url()),
        &[("authorization", &auth)],
    );
    (base.status, tags)
}

/// The stable-CA rotation of docs/DEPLOY.md against a real docker-registry 2.8 whose
/// `rootcertbundle` is the CA alone, never restarted nor reconfigured:
///
/// 1. gateway A signs with leaf1 (`x5c = [leaf1, CA]`) and already publishes leaf2 (as a
///    certificate PEM); skopeo pushes an image through it; a token T1 is minted;
/// 2. A is replaced, on the same realm, by gateway B signing with leaf2 and publishing
///    leaf1 (as a public key PEM); a token T2 is minted; skopeo pulls the image back;
/// 3. T1 (still within its lifetime) and T2 are both accepted by the registry
///    (`/v2/` 200, `tags/list` 200 with the pushed tag); a tampered token, or one signed
///    outside the CA, is not (401);
/// 4. `GET /jwks` lists both keys during the overlap, with the `kid`s T1 and T2 carry,
///    and each token verifies with the JWK of its `kid`.
#[test]
fn key_rotation_under_a_stable_ca_keeps_the_registry_accepting_tokens() {
    const REPO: &str = "stella-ops/app";
    let scope = format!("repository:{REPO}:pull,push");
    let keys = TestKeys::generate();
    let ca = keys.ca("token-ca");
    let leaf1 = ca.leaf("leaf1", KeyKind::Rsa2048);
    let leaf2 = ca.leaf("leaf2", KeyKind::Rsa2048);
    // The kids the filter derives by default: RFC 7638 thumbprints, computed here.
    let thumbprint = |pem: &str| {
        AuthorityKey::from_pem(pem)
            .unwrap_or_else(|e| panic!("{e}"))
            .kid()
            .to_owned()
    };
    let (kid1, kid2) = (thumbprint(&leaf1.key_pem), thumbprint(&leaf2.key_pem));
    assert_ne!(kid1, kid2);

    let port = registry_token_e2e::free_port();
    let realm = format!("http://127.0.0.1:{port}/token");
    let registry =
        Registry::start(&RegistryAuth::new(&realm, &ca.cert_pem)).unwrap_or_else(|e| panic!("{e}"));
    let op = optok(&keys, |s| s.plan = Some("enterprise".into()));
    let image = OciImage::build("v1");

    // 1. Gateway A: leaf1 active, leaf2 published ahead of the switch.
    let mut gateway_a = rotation_gateway(&keys, port, &leaf1, json!([{ "pem": leaf2.cert_pem }]));
    let (kids_a, _) = jwks_at(port);
    assert_eq!(
        kids_a,
        [kid1.clone(), kid2.clone()],
        "JWKS before the switch"
    );
    let push = registry::copy(
        &image.reference(),
        &registry.docker_ref(REPO, "v1"),
        None,
        Some(&registry::creds(&op)),
    );
    assert!(push.success, "push through gateway A: {push}");
    let t1 = mint_at(port, &op, &scope);
    gateway_a.stop();
    drop(gateway_a);

    // 2. Gateway B on the same realm: leaf2 active, leaf1 still published.
    let gateway_b = rotation_gateway(&keys, port, &leaf2, json!([{ "pem": leaf1.public_pem }]));
    let t2 = mint_at(port, &op, &scope);
    let pulled = registry::empty_oci_dir();
    let pull = registry::copy(
        &registry.docker_ref(REPO, "v1"),
        &registry::oci_ref(pulled.path(), "v1"),
        Some(&registry::creds(&op)),
        None,
    );
    assert!(pull.success, "pull through gateway B: {pull}");
    assert_eq!(
        registry::oci_manifest_digest(pulled.path(), "v1").as_deref(),
        Ok(image.manifest_digest.as_str())
    );

    // What the tokens carry: their leaf's kid, x5c = [leaf, CA].
    let ca_der = x5c_entry(&ca.cert_pem);
    for (name, token, kid, leaf) in [("T1", &t1, &kid1, &leaf1), ("T2", &t2, &kid2, &leaf2)] {
        let (header, claims) = verify_registry_token(token, &leaf.public_pem)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(header["kid"], kid.as_str(), "{name}: {header}");
        assert_eq!(
            header["x5c"],
            json!([x5c_entry(&leaf.cert_pem), ca_der]),
            "{name}: {header}"
        );
        assert!(
            claims["exp"].as_i64().unwrap_or(0) > now() + 60,
            "{name}: {claims}"
        );
    }

    // 3. The registry (same process, same CA bundle) accepts both tokens.
    for (name, token) in [("T1 (before the switch)", &t1), ("T2 (after)", &t2)] {
        let (base, tags) = registry_calls(&registry, REPO, token);
        assert_eq!(base, 200, "{name}: GET /v2/");
        assert_eq!(tags.status, 200, "{name}: tags/list {tags:?}");
        assert_eq!(tags.json()["tags"], json!(["v1"]), "{name}");
    }
    // Control: the registry does check signatures.
    // (One signature character changed, not the last one: its low bits are padding that
    // lenient base64 decoders ignore.)
    let sig_start = t1.rfind('.').unwrap_or(0) + 1;
    let flipped = if t1[sig_start..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let tampered = format!("{}{flipped}{}", &t1[..sig_start], &t1[sig_start + 1..]);
    assert_ne!(tampered, t1);
    let (base, tags) = registry_calls(&registry, REPO, &tampered);
    assert_eq!(
        (base, tags.status),
        (401, 401),
        "a tampered token: {tags:?}"
    );
    // Control: the trust comes from the CA. T1's claims, well signed by a key whose
    // self-signed certificate is in x5c but not under the CA, are refused.
    let (_, t1_claims) = decode_unverified(&t1).unwrap_or_else(|e| panic!("{e}"));
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(thumbprint(keys.signing_key_pem()));
    header.x5c = Some(vec![x5c_entry(keys.signing_cert_pem())]);
    let outsider = jsonwebtoken::encode(
        &header,
        &t1_claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(keys.signing_key_pem().as_bytes())
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (base, tags) = registry_calls(&registry, REPO, &outsider);
    assert_eq!(
        (base, tags.status),
        (401, 401),
        "a token outside the CA: {tags:?}"
    );

    // 4. The overlap JWKS: both keys, the active one first, with the tokens' kids.
    let (kids_b, jwks_b) = jwks_at(port);
    assert_eq!(
        kids_b,
        [kid2.clone(), kid1.clone()],
        "JWKS after the switch"
    );
    for (name, token) in [("T1", &t1), ("T2", &t2)] {
        let claims = verify_with_jwks(token, &jwks_b).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(claims["aud"], SERVICE);
    }
    drop(gateway_b);
}
