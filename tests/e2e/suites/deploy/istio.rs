//! `deploy/istio/envoyfilter` in a real Envoy, through file-based ECDS as istiod sends
//! it, the module pulled and verified as istio-agent does; and an `https://` module
//! fetched by Envoy itself with its sha256.

use super::*;

/// The EnvoyFilter's two patches: the extension configuration, the HTTP filter.
fn envoyfilter_patches() -> (Value, Value) {
    let ef = yaml_file("deploy/istio/envoyfilter/envoyfilter.yaml");
    assert_eq!(ef["kind"], "EnvoyFilter");
    let patches = ef["spec"]["configPatches"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |apply: &str, op: &str| {
        let found: Vec<&Value> = patches.iter().filter(|p| p["applyTo"] == apply).collect();
        assert_eq!(found.len(), 1, "one {apply} patch: {ef}");
        // istiod applies only ADD to extension configurations.
        assert_eq!(found[0]["patch"]["operation"], op, "{ef}");
        found[0]["patch"]["value"].clone()
    };
    (
        find("EXTENSION_CONFIG", "ADD"),
        find("HTTP_FILTER", "INSERT_FIRST"),
    )
}

/// The extension configuration as istio-agent hands it to Envoy: the module fetched and
/// verified (`code.local`), the agent's ISTIO_META_* variables removed; on a refusal
/// the deny-all RBAC filter FAIL_CLOSED puts in its place. `keys` replaces the
/// Authority's discovery (cannot work here) by an inline JWKS, and nothing else.
fn agent_convert(ext: &Value, p: &Published, keys: &TestKeys, dir: &Path) -> Value {
    let mut ext = ext.clone();
    let name = ext["name"].clone();
    let config = &mut ext["typed_config"]["config"];
    let remote = config["vm_config"]["code"]["remote"].clone();
    let uri = remote["http_uri"]["uri"].as_str().unwrap_or_default();
    assert_eq!(uri, p.oci_uri(), "the overlay sets the uri");
    let sha256 = remote["sha256"].as_str().unwrap_or_default();
    let mut plugin: Value =
        serde_json::from_str(config["configuration"]["value"].as_str().unwrap_or(""))
            .unwrap_or_else(|e| panic!("configuration: {e}"));
    let shown = plugin.to_string();
    let authority = plugin["authority"]
        .as_object_mut()
        .unwrap_or_else(|| panic!("no authority: {shown}"));
    assert!(authority.remove("metadataUrl").is_some() && authority.remove("cluster").is_some());
    authority.insert("jwks".into(), keys.authority_jwks());
    config["configuration"]["value"] = Value::String(plugin.to_string());
    match agent_pull(p, sha256, dir) {
        Ok(file) => {
            config["vm_config"]["code"] = json!({"local": {"filename": file}});
            let env = &mut config["vm_config"]["environment_variables"];
            if let Some(kv) = env["key_values"].as_object_mut() {
                kv.retain(|k, _| !k.starts_with("ISTIO_META_"));
                if kv.is_empty() {
                    env.as_object_mut().map(|e| e.remove("key_values"));
                }
            }
            ext
        }
        Err(e) => {
            eprintln!("istio-agent (emulated) refuses the module: {e}");
            assert_eq!(config["failure_policy"], "FAIL_CLOSED");
            json!({"name": name, "typed_config": {
                "@type": RBAC_TYPE, "rules": {}, "rules_stat_prefix": "wasm-default-deny"}})
        }
    }
}

/// Writes `ext` as the ECDS file `path` (atomically: Envoy watches for moves).
fn write_ecds(path: &Path, ext: &Value) {
    let mut resource = ext.clone();
    resource["@type"] = json!("type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig");
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, json!({"resources": [resource]}).to_string()).unwrap_or_else(|e| panic!("{e}"));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("{e}"));
}

/// A gateway bootstrap in Istio's shape: node id and cluster, the HTTP filter `filter`
/// first with its configuration from `{{TMPDIR}}/ecds.json`, a route that answers
/// "upstream" (anything the filter lets through), and the stats of deploy/istio: Istio's
/// inclusion list with the gateway patch's proxyStatsMatcher, its stats tags appended.
fn gateway_bootstrap(filter: &Value, clusters: Value) -> String {
    let mut filter = filter.clone();
    filter["config_discovery"]["config_source"] =
        json!({"path_config_source": {"path": "@TMPDIR@/ecds.json"}, "resource_api_version": "V3"});
    let stats = yaml_file("deploy/istio/base/stats-bootstrap.yaml");
    let custom: Value = serde_json::from_str(
        stats["data"]["custom_bootstrap.json"]
            .as_str()
            .unwrap_or(""),
    )
    .unwrap_or_else(|e| panic!("custom_bootstrap.json: {e}"));
    let patch = yaml_file("deploy/istio/gateway-patch.yaml");
    let ann = &patch["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        ann["sidecar.istio.io/bootstrapOverride"],
        stats["metadata"]["name"]
    );
    let proxy: serde_yaml::Value =
        serde_yaml::from_str(ann["proxy.istio.io/config"].as_str().unwrap_or(""))
            .unwrap_or_else(|e| panic!("proxy.istio.io/config: {e}"));
    let proxy = serde_json::to_value(proxy).unwrap_or_default();
    let mut patterns = vec![
        json!({"prefix": "reporter="}),
        json!({"prefix": "component"}),
        json!({"prefix": "istio"}),
    ];
    for p in proxy["proxyStatsMatcher"]["inclusionPrefixes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        patterns.push(json!({"prefix": p}));
    }
    let hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "upstream"}}}]}]},
        "http_filters": [filter, {"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]});
    json!({
        "node": {"id": "istio-ingressgateway-1.istio-ingress", "cluster": "istio-ingressgateway.istio-ingress"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "@ADMIN_PORT@"}}},
        "stats_config": {"use_all_default_tags": false, "stats_tags": custom["stats_config"]["stats_tags"],
                         "stats_matcher": {"inclusion_list": {"patterns": patterns}}},
        "static_resources": {"clusters": clusters, "listeners": [{"name": "gateway",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": "@LISTEN_PORT@"}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}]}
    })
    .to_string()
    .replace("\"@ADMIN_PORT@\"", "{{ADMIN_PORT}}")
    .replace("\"@LISTEN_PORT@\"", "{{LISTEN_PORT}}")
    .replace("@TMPDIR@", "{{TMPDIR}}")
}

/// `POST /token` with the password grant (containerd's), the OpToken DPoP-bound as the
/// shipped configuration requires. None when no answer comes within `wait`.
fn post_password(envoy: &Envoy, keys: &TestKeys, realm: &str, wait: Duration) -> Option<Reply> {
    let dpop = DpopKey::generate(keys, "dpop");
    let op = optok(keys, |s| s.jkt = Some(dpop.jkt.clone()));
    let proof = dpop.proof("POST", realm, &op);
    let body = format!(
        "grant_type=password&username=u&password={op}&service={SERVICE}&scope={}",
        PULL.replace(':', "%3A").replace('/', "%2F")
    );
    let url = format!("{}/token", envoy.base_url());
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(try_request(
            "POST",
            &url,
            &[FORM, ("dpop", &proof)],
            Some(body.as_bytes()),
        ));
    });
    rx.recv_timeout(wait)
        .ok()
        .map(|r| r.unwrap_or_else(|e| panic!("POST /token: {e}")))
}

/// Polls `GET path` until `want` holds (or 15 s pass); the last reply.
fn wait_reply(envoy: &Envoy, path: &str, want: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = envoy.get(path, &[]);
        if want(&reply) || Instant::now() >= deadline {
            return reply;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_envoyfilter_through_ecds_answers_post_and_a_wrong_digest_fails_closed() {
    let p = publish();
    let keys = TestKeys::generate();
    let (ext, filter) = envoyfilter_patches();
    let config = &ext["typed_config"]["config"];
    assert_eq!(ext["name"], EXTENSION);
    assert_eq!(filter["name"], EXTENSION);
    assert_eq!(ext["typed_config"]["@type"], WASM_TYPE);
    assert_eq!(config["failure_policy"], "FAIL_CLOSED");
    assert_eq!(config["allow_on_headers_stop_iteration"], true);
    assert_eq!(
        config["vm_config"]["environment_variables"]["host_env_keys"],
        json!([KEYPEM_ENV])
    );
    assert_eq!(
        filter["config_discovery"]["type_urls"],
        json!([WASM_TYPE, RBAC_TYPE])
    );
    // The same filter configuration as the WasmPlugin's.
    let plugin: Value =
        serde_json::from_str(config["configuration"]["value"].as_str().unwrap_or(""))
            .unwrap_or_else(|e| panic!("the EnvoyFilter's configuration: {e}"));
    let wasmplugin = yaml_file("deploy/istio/wasmplugin/wasmplugin.yaml");
    assert_eq!(
        plugin, wasmplugin["spec"]["pluginConfig"],
        "EnvoyFilter and WasmPlugin differ"
    );
    assert_eq!(wasmplugin["spec"]["failStrategy"], "FAIL_CLOSE");
    let realm = plugin["registry"]["realm"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // What the operator's overlay sets (docs/DEPLOY.md): the pushed image and its digest.
    let with = |sha256: &str| {
        let mut e = ext.clone();
        let remote = &mut e["typed_config"]["config"]["vm_config"]["code"]["remote"];
        remote["http_uri"]["uri"] = json!(p.oci_uri());
        remote["sha256"] = json!(sha256);
        e
    };
    let right = p.digest.trim_start_matches("sha256:").to_owned();
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let good = agent_convert(&with(&right), &p, &keys, work.path());
    assert_eq!(
        good["typed_config"]["@type"], WASM_TYPE,
        "the right digest was refused"
    );
    let initial = json!({"resources": [{"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                                         "name": good["name"], "typed_config": good["typed_config"]}]});
    let envoy = Envoy::start(
        &gateway_bootstrap(&filter, json!([])),
        EnvoyOptions::new()
            .concurrency(2)
            .env(KEYPEM_ENV, keys.signing_key_pem())
            .file("ecds.json", initial.to_string()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ecds = envoy.dir().join("ecds.json");

    assert_eq!(envoy.get("/healthz", &[]).status, 200);
    let reply =
        post_password(&envoy, &keys, &realm, Duration::from_secs(10)).unwrap_or_else(|| {
            panic!("POST /token got no answer with the EnvoyFilter's configuration")
        });
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.json()["access_token"].is_string(), "{reply:?}");
    assert_eq!(envoy.get("/v2/", &[]).body, "upstream");
    assert!(
        envoy.wait_counter(
            "wasmcustom.registry_token_issued_total.grant.password",
            1,
            Duration::from_secs(5)
        ) >= 1
    );
    // The stats the dashboard and the alert rules read, labelled by deploy/istio's tags.
    let deadline = Instant::now() + Duration::from_secs(10);
    let expo = loop {
        let expo = envoy.stats_prometheus();
        if expo.contains("registry_token_issued_total{grant=\"password\"} 1")
            || Instant::now() > deadline
        {
            break expo;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert!(
        expo.contains("registry_token_issued_total{grant=\"password\"} 1"),
        "{expo}"
    );
    assert!(
        expo.contains("registry_token_rejected_total{reason=\"missing_credentials\"}"),
        "{expo}"
    );
    dashboard_names_in(&expo, "registry_token_");

    // A wrong digest: istio-agent refuses the module; FAIL_CLOSE puts a deny-all filter in
    // its place, which Envoy accepts (RBAC is among the type_urls): nothing passes.
    write_ecds(
        &ecds,
        &agent_convert(&with(&"0".repeat(64)), &p, &keys, work.path()),
    );
    let denied = wait_reply(&envoy, "/v2/", |r| r.status == 403);
    assert_eq!(
        denied.status, 403,
        "a wrong digest let requests through: {denied:?}"
    );
    assert_eq!(
        envoy.get("/token?service=registry.example", &[]).status,
        403
    );
    let reply = post_password(&envoy, &keys, &realm, Duration::from_secs(10));
    assert_eq!(reply.map(|r| r.status), Some(403));
    // What a WasmPlugin produces (no allow_on_headers_stop_iteration), applied from the
    // deny-all state (a GET answered by the filter shows it took effect): GET answers,
    // POST /token hangs. This is why the EnvoyFilter replaces the WasmPlugin.
    let mut wasmplugin_shape = good.clone();
    if let Some(c) = wasmplugin_shape["typed_config"]["config"].as_object_mut() {
        c.remove("allow_on_headers_stop_iteration");
    }
    write_ecds(&ecds, &wasmplugin_shape);
    let reply = wait_reply(&envoy, "/token?service=registry.example", |r| {
        r.status == 401
    });
    assert_eq!(reply.status, 401, "{reply:?}");
    let post = post_password(&envoy, &keys, &realm, Duration::from_secs(3));
    assert!(
        post.is_none(),
        "POST /token was answered without allow_on_headers_stop_iteration: {post:?}"
    );

    // Deny again, then the right digest: applied hot, POST answered again.
    write_ecds(
        &ecds,
        &agent_convert(&with(&"f".repeat(64)), &p, &keys, work.path()),
    );
    assert_eq!(wait_reply(&envoy, "/v2/", |r| r.status == 403).status, 403);
    write_ecds(&ecds, &good);
    let back = wait_reply(&envoy, "/v2/", |r| r.body == "upstream");
    assert_eq!(back.body, "upstream", "{back:?}");
    let reply = post_password(&envoy, &keys, &realm, Duration::from_secs(10));
    assert_eq!(reply.map(|r| r.status), Some(200));
}

/// `python3 -m http.server` on a free port serving `dir`: the https:// origin of a module
/// (plain HTTP here). Stopped when dropped.
struct FileServer {
    child: Child,
    port: u16,
}

impl FileServer {
    fn start(dir: &Path) -> FileServer {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 -m http.server: {e}"));
        let server = FileServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while try_request("GET", &format!("http://127.0.0.1:{port}/"), &[], None).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_https_module_loads_with_its_sha256_and_a_wrong_one_fails_closed() {
    let wasm_path = try_wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    build_image("wasm-image.sh", &wasm_path, out.path(), &pin());
    let sums = fs::read_to_string(out.path().join("registry_token_filter.wasm.sha256"))
        .unwrap_or_default();
    let sha256 = sums
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let server = FileServer::start(out.path());
    let keys = TestKeys::generate();
    let (ext, filter) = envoyfilter_patches();
    let start = |sha256: &str| {
        let mut e = ext.clone();
        let config = &mut e["typed_config"]["config"];
        let mut plugin: Value =
            serde_json::from_str(config["configuration"]["value"].as_str().unwrap_or(""))
                .unwrap_or_default();
        plugin["authority"] = json!({"issuer": plugin["authority"]["issuer"], "audiences": plugin["authority"]["audiences"],
                                     "jwks": keys.authority_jwks(), "requireSenderConstraint": true});
        config["configuration"]["value"] = json!(plugin.to_string());
        // Envoy's own fetch (for https:// istio-agent does the same check, on the file).
        config["vm_config"]["code"] = json!({"remote": {"sha256": sha256, "http_uri": {
            "uri": format!("http://127.0.0.1:{}/registry_token_filter.wasm", server.port),
            "cluster": "module_origin", "timeout": "10s"}}});
        config["vm_config"]["environment_variables"] = json!({"host_env_keys": [KEYPEM_ENV]});
        let ecds = json!({"resources": [{"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                                          "name": e["name"], "typed_config": e["typed_config"]}]});
        let origin = json!([{"name": "module_origin", "type": "STATIC", "load_assignment": {
            "cluster_name": "module_origin", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": server.port}}}}]}]}}]);
        let yaml = gateway_bootstrap(&filter, origin);
        Envoy::start(
            &yaml,
            EnvoyOptions::new()
                .env(KEYPEM_ENV, keys.signing_key_pem())
                .file("ecds.json", ecds.to_string()),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let envoy = start(&sha256);
    let reply = wait_reply(&envoy, "/token?service=registry.example", |r| {
        r.status == 401
    });
    assert_eq!(
        reply.status, 401,
        "the module over http(s) with its sha256: {reply:?}"
    );
    assert_eq!(envoy.get("/v2/", &[]).body, "upstream");
    drop(envoy);

    let envoy = start(&"0".repeat(64));
    for path in ["/token?service=registry.example", "/v2/"] {
        let reply = envoy.get(path, &[]);
        assert_eq!(
            reply.status, 503,
            "a wrong sha256 must fail closed: {path}: {reply:?}"
        );
        assert_ne!(reply.body, "upstream");
    }
}
