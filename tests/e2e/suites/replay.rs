//! The DPoP replay record against the real Envoy: it belongs to one configuration. Two
//! listeners whose filter configurations share a `vm_id` but differ in
//! `dpop.iatWindowSeconds` cannot wipe each other's entries, and a reconfiguration of the
//! window (a listener update through LDS) keeps them, so a proof accepted once stays
//! refused.

use std::time::{Duration, Instant};

use registry_token_e2e::authority::now;
use registry_token_e2e::dpop::DpopKey;
use registry_token_e2e::gateway::{
    bearer, filter_config, optok, token_path, TestKeys, KEYPEM_ENV, SERVICE,
};
use registry_token_e2e::{free_port, get, stat_from_json, wasm_path, Envoy, EnvoyOptions, Reply};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::common::REALM;

fn rejected(envoy: &Envoy, reason: &str) -> f64 {
    registry_token_e2e::oidc::rejected_by_reason(envoy)
        .get(reason)
        .copied()
        .unwrap_or(0) as f64
}

/// Shard of a replay entry, as the filter computes it (`filter/core/src/sender/dpop.rs`:
/// SHA-256 over thumbprint, 0, jti; `filter/core/src/sender/replay.rs`: the first two
/// bytes modulo 1,024 shards).
fn replay_shard(jkt: &str, jti: &str) -> usize {
    let mut h = Sha256::new();
    h.update(jkt.as_bytes());
    h.update([0u8]);
    h.update(jti.as_bytes());
    let d = h.finalize();
    usize::from(u16::from_be_bytes([d[0], d[1]])) % 1024
}

/// Slot of a replay entry at `t` for a window (`epoch % 3`).
fn replay_slot(t: i64, window: i64) -> i64 {
    (t / window) % 3
}

/// Two different windows (≤ 300 s, the maximum) whose slot numbers agree for the next
/// 30 seconds: before the record was keyed per configuration, both configurations then
/// wrote the same shared-data keys with different epochs, and each write of one emptied
/// the other's entries.
fn colliding_windows(t: i64) -> (i64, i64) {
    (30..=300)
        .flat_map(|a| (a + 1..=300).map(move |b| (a, b)))
        .find(|&(a, b)| (t..t + 30).all(|s| replay_slot(s, a) == replay_slot(s, b)))
        .expect("two windows whose slots agree for 30 s")
}

/// A listener with the filter (`config`) on `port` (a number, or a placeholder string
/// replaced later), the module at `wasm`.
fn listener(name: &str, port: Value, wasm: &str, config: &Value) -> Value {
    json!({
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": {"virtual_hosts": [{
                    "name": "gateway", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"},
                                "direct_response": {"status": 404}}]
                }]},
                "http_filters": [
                    {
                        "name": "registry_token",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                            "config": {
                                "name": "registry_token",
                                "root_id": "registry_token",
                                "failure_policy": "FAIL_CLOSED",
                                "vm_config": {
                                    // The same vm_id and code: one VM per worker serves both
                                    // listeners, and shared data is per vm_id.
                                    "vm_id": "registry_token",
                                    "runtime": "envoy.wasm.runtime.v8",
                                    "code": {"local": {"filename": wasm}},
                                    "environment_variables": {"host_env_keys": [KEYPEM_ENV]}
                                },
                                "configuration": {
                                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                                    "value": config.to_string()
                                }
                            }
                        }
                    },
                    {
                        "name": "envoy.filters.http.router",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                    }
                ]
            }
        }]}]
    })
}

fn assert_replay_refused(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {reply:?}");
    assert_eq!(
        reply.json()["type"],
        "urn:registry-token-filter:error:dpop_replay",
        "{what}: {reply:?}"
    );
}

/// Two listeners, one `vm_id`, two configurations whose `iatWindowSeconds` differ but
/// number their slots alike for the length of the test. A proof accepted on the first listener, then a
/// proof on the second whose entry lands in the same shard and slot: the first proof,
/// replayed, is still refused; so is the second; fresh proofs still pass on both.
#[test]
fn replay_record_is_kept_per_configuration_on_a_shared_vm_id() {
    let keys = TestKeys::generate();
    let dpop = DpopKey::generate(&keys, "client");
    let port_b = free_port();
    let realm_b = format!("http://127.0.0.1:{port_b}/token");
    let (window_a, window_b) = colliding_windows(now());
    let mut config_a = filter_config(&keys, &REALM.replace("{{LISTEN_PORT}}", "__PORT_A__"));
    config_a["dpop"] = json!({"iatWindowSeconds": window_a});
    let mut config_b = filter_config(&keys, &realm_b);
    config_b["dpop"] = json!({"iatWindowSeconds": window_b});
    for c in [&mut config_a, &mut config_b] {
        c["authority"]["requireSenderConstraint"] = json!(true);
    }
    let bootstrap = json!({
        "static_resources": {"listeners": [
            listener("registry_token_a", json!("__PORT_A__"), "{{WASM_PATH}}", &config_a),
            listener("registry_token_b", json!("__PORT_B__"), "{{WASM_PATH}}", &config_b),
        ]},
        "stats_config": {"stats_tags": [{
            "tag_name": "reason",
            "regex": "^wasmcustom\\.registry_token_rejected_total(\\.reason\\.([a-z0-9_]+))$"
        }]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "__ADMIN__"}}}
    });
    // JSON is YAML; the ports become numbers once the placeholders are rendered.
    let yaml = serde_json::to_string_pretty(&bootstrap)
        .unwrap()
        .replace("\"__PORT_A__\"", "{{LISTEN_PORT}}")
        .replace("__PORT_A__", "{{LISTEN_PORT}}")
        .replace("\"__PORT_B__\"", "{{PORT_B}}")
        .replace("\"__ADMIN__\"", "{{ADMIN_PORT}}");
    let envoy = Envoy::start(
        &yaml,
        EnvoyOptions::new()
            .concurrency(1)
            .var("PORT_B", port_b)
            .env(KEYPEM_ENV, keys.signing_key_pem()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let realm_a = format!("{}/token", envoy.base_url());
    let op = optok(&keys, |s| s.jkt = Some(dpop.jkt.clone()));
    let auth = format!("DPoP {op}");
    let path = token_path(SERVICE, &["repository:stella-ops/public/base:pull"]);
    let on_b = |proof: &str| {
        get(
            &format!("http://127.0.0.1:{port_b}{path}"),
            &[("authorization", &auth), ("dpop", proof)],
        )
    };
    let on_a = |proof: &str| envoy.get(&path, &[("authorization", &auth), ("dpop", proof)]);

    // P on A.
    let jti_p = format!("p-{}", now());
    let proof_p = dpop.proof_with("GET", &realm_a, &op, |c| c["jti"] = json!(jti_p));
    let reply = on_a(&proof_p);
    assert_eq!(reply.status, 200, "first use of P on A: {reply:?}");
    // Q on B, in P's shard (and, by the choice of window, in P's slot number).
    let shard = replay_shard(&dpop.jkt, &jti_p);
    let jti_q = (0..)
        .map(|i| format!("q-{i}"))
        .find(|j| replay_shard(&dpop.jkt, j) == shard)
        .unwrap();
    let proof_q = dpop.proof_with("GET", &realm_b, &op, |c| c["jti"] = json!(jti_q));
    let reply = on_b(&proof_q);
    assert_eq!(reply.status, 200, "first use of Q on B: {reply:?}");

    let before = rejected(&envoy, "dpop_replay");
    assert_replay_refused(&on_a(&proof_p), "P replayed on A after B wrote its shard");
    assert_replay_refused(&on_b(&proof_q), "Q replayed on B");
    let deadline = Instant::now() + Duration::from_secs(5);
    while rejected(&envoy, "dpop_replay") < before + 2.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(rejected(&envoy, "dpop_replay"), before + 2.0);

    // Fresh proofs still pass on both listeners.
    let reply = on_a(&dpop.proof("GET", &realm_a, &op));
    assert_eq!(reply.status, 200, "a fresh proof on A: {reply:?}");
    let reply = on_b(&dpop.proof("GET", &realm_b, &op));
    assert_eq!(reply.status, 200, "a fresh proof on B: {reply:?}");
    let log = envoy.full_log();
    assert!(
        !log.contains("panicked") && !log.contains("wasm trap"),
        "the VM trapped"
    );
}

/// The LDS file of [`replay_record_survives_a_reconfiguration_of_the_window`]: one
/// listener on `port` with `config`.
fn lds(port: u16, config: &Value) -> Vec<u8> {
    let wasm = wasm_path().display().to_string();
    let mut l = listener("registry_token", json!(port), &wasm, config);
    l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    serde_json::to_vec_pretty(&json!({ "resources": [l] })).unwrap()
}

/// One listener from a watched LDS file, reconfigured with another `iatWindowSeconds`
/// (slots numbered alike by the old scheme, as above) while the VM stays: a proof accepted
/// before the change is refused after it, even once the new configuration has written
/// into the proof's shard; fresh proofs pass.
#[test]
fn replay_record_survives_a_reconfiguration_of_the_window() {
    let keys = TestKeys::generate();
    let dpop = DpopKey::generate(&keys, "client");
    let port = free_port();
    let realm = format!("http://127.0.0.1:{port}/token");
    let (window_1, window_2) = colliding_windows(now());
    let mut config_1 = filter_config(&keys, &realm);
    config_1["dpop"] = json!({"iatWindowSeconds": window_1});
    // The second configuration also says so in its answers (expires_in 301).
    let mut config_2 = filter_config(&keys, &realm);
    config_2["dpop"] = json!({"iatWindowSeconds": window_2});
    config_2["signing"]["lifetimeSeconds"] = json!(301);
    let bootstrap = json!({
        "node": {"id": "bounds-test", "cluster": "bounds-test"},
        "dynamic_resources": {"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {
                "path": "{{TMPDIR}}/lds/lds.json",
                "watched_directory": {"path": "{{TMPDIR}}/lds"}
            }
        }},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "__ADMIN__"}}}
    });
    let yaml = serde_json::to_string_pretty(&bootstrap)
        .unwrap()
        .replace("\"__ADMIN__\"", "{{ADMIN_PORT}}");
    let envoy = Envoy::start(
        &yaml,
        EnvoyOptions::new()
            .concurrency(2)
            .file("lds/lds.json", lds(port, &config_1))
            .env(KEYPEM_ENV, keys.signing_key_pem()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let op = optok(&keys, |s| s.jkt = Some(dpop.jkt.clone()));
    let auth = format!("DPoP {op}");
    let path = token_path(SERVICE, &["repository:stella-ops/public/base:pull"]);
    let url = format!("http://127.0.0.1:{port}{path}");
    // Each request on a new connection: a kept-alive one stays on the listener it was
    // accepted by, which keeps the first configuration while Envoy drains it.
    let close = ("connection", "close");
    let with_proof = |proof: &str| get(&url, &[("authorization", &auth), ("dpop", proof), close]);
    let plain = bearer(&optok(&keys, |_| {}));
    let lifetime = || get(&url, &[("authorization", &plain), close]).json()["expires_in"].clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lifetime() != json!(300) {
        assert!(
            Instant::now() < deadline,
            "the first configuration never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let jti_p = format!("p-{}", now());
    let proof_p = dpop.proof_with("GET", &realm, &op, |c| c["jti"] = json!(jti_p));
    let reply = with_proof(&proof_p);
    assert_eq!(
        reply.status, 200,
        "P under the first configuration: {reply:?}"
    );

    // Reconfigure: a new file moved into the watched directory.
    let dir = envoy.dir().join("lds");
    std::fs::write(dir.join("lds.json.new"), lds(port, &config_2)).unwrap();
    std::fs::rename(dir.join("lds.json.new"), dir.join("lds.json")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lifetime() != json!(301) {
        assert!(
            Instant::now() < deadline,
            "the second configuration never answered; lds stats: {:?}",
            stat_from_json(
                &envoy.admin_get("/stats?format=json").json(),
                "listener_manager.lds.update_success"
            )
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let shard = replay_shard(&dpop.jkt, &jti_p);
    let jti_q = (0..)
        .map(|i| format!("q-{i}"))
        .find(|j| replay_shard(&dpop.jkt, j) == shard)
        .unwrap();
    let reply = with_proof(&dpop.proof_with("GET", &realm, &op, |c| c["jti"] = json!(jti_q)));
    assert_eq!(
        reply.status, 200,
        "Q under the second configuration: {reply:?}"
    );
    assert_replay_refused(
        &with_proof(&proof_p),
        "P replayed after the reconfiguration",
    );
    let reply = with_proof(&dpop.proof("GET", &realm, &op));
    assert_eq!(reply.status, 200, "a fresh proof: {reply:?}");
    let log = envoy.full_log();
    assert!(
        !log.contains("panicked") && !log.contains("wasm trap"),
        "the VM trapped"
    );
}
