//! Shared end-to-end helpers for the registry token gateway: test keys made with the
//! `openssl` CLI, a full filter configuration, the Envoy YAML **derived from
//! `envoy/quickstart.yaml`** (so the shipped configuration is what the tests run), starting
//! the gateway, minting OpToks and checking the registry tokens it mints.
//!
//! ```no_run
//! use registry_token_e2e::gateway::{
//!     filter_config, optok, start_gateway, token_path, verify_registry_token, ConfigForm,
//!     TestKeys,
//! };
//! use registry_token_e2e::EnvoyOptions;
//!
//! let keys = TestKeys::generate();
//! // `{{LISTEN_PORT}}` inside the configuration is filled in by the harness too.
//! let config = filter_config(&keys, "http://127.0.0.1:{{LISTEN_PORT}}/token");
//! let envoy = start_gateway(&config, ConfigForm::StringValue, &keys, EnvoyOptions::new());
//! let op = optok(&keys, |s| s.plan = Some("enterprise".into()));
//! let reply = envoy.get(
//!     &token_path("registry.example", &["repository:stella-ops/app:pull,push"]),
//!     &[("authorization", &format!("Bearer {op}"))],
//! );
//! assert_eq!(reply.status, 200);
//! let (_header, claims) =
//!     verify_registry_token(reply.json()["token"].as_str().unwrap(), &keys.signing_public_pem())
//!         .unwrap();
//! assert_eq!(claims["aud"], "registry.example");
//! ```
//!
//! Everything secret lives in a [`TestKeys`]' own temporary directory, removed when the
//! value is dropped; nothing is committed. The keys are in [`keys`], the YAML derivation
//! from quickstart in [`yaml`].

pub mod keys;
pub mod yaml;

use std::path::PathBuf;

use serde_json::{json, Value};

pub use keys::{fixture_key, openssl, KeyKind, SigningKey, TestCa, TestKeys};
pub use yaml::{quickstart_filter_config, quickstart_yaml};

use crate::authority::OpTokSpec;
use crate::guard::RegistryRoute;
use crate::{percent_encode, repo_root, Envoy, EnvoyOptions};
use keys::read;
use yaml::{derive_gateway_yaml, quickstart_host_env_keys};

/// `iss` the test Authority puts in OpToks (and the configuration expects).
pub const AUTHORITY_ISSUER: &str = "https://authority.example";
/// `aud` of OpToks.
pub const OPTOK_AUDIENCE: &str = "registry-token";
/// The only `service` [`filter_config`] allows.
pub const SERVICE: &str = "registry.example";
/// `iss` of the minted registry tokens (the filter's default, written out in the config).
pub const SIGNING_ISSUER: &str = "registry-token-service";
/// The licence [`filter_config`] revokes.
pub const REVOKED_LICENSE: &str = "lic-0042";
/// The environment variable carrying the signing key, as users pass it.
pub const KEYPEM_ENV: &str = "REGISTRY_TOKEN_SIGNING__KEYPEM";
/// Subject of the test certificates.
pub const CERT_SUBJECT: &str = "/CN=registry-token-test";

/// The shipped quick start configuration the gateway YAML is derived from.
pub fn quickstart_path() -> PathBuf {
    repo_root().join("envoy/quickstart.yaml")
}

// ---------------------------------------------------------------------------------------
// Configuration.
// ---------------------------------------------------------------------------------------

/// A full valid filter configuration like quickstart's: issuer
/// `https://authority.example`, audience `registry-token`, the Authority key inline as
/// JWKS, `requireSenderConstraint: false`, plans `community` (`stella-ops/public/*` pull),
/// `enterprise` (`stella-ops/**` pull+push, `registry:catalog:*`) and `pullonly` (`**`
/// pull), `defaultPlan: community`, `revokedLicenses: [lic-0042]`, `allowedServices:
/// [registry.example]`, `lifetimeSeconds: 300`.
///
/// It has **no `signing.keyPem`**: [`start_gateway`] passes the key in
/// `REGISTRY_TOKEN_SIGNING__KEYPEM`, as users do. `realm` may hold `{{LISTEN_PORT}}`
/// (e.g. `http://127.0.0.1:{{LISTEN_PORT}}/token`); the filter answers on its path.
/// Adjust fields with `config["signing"]["lifetimeSeconds"] = json!(120)` and the like.
pub fn filter_config(keys: &TestKeys, realm: &str) -> Value {
    json!({
        "authority": {
            "issuer": AUTHORITY_ISSUER,
            "audiences": [OPTOK_AUDIENCE],
            "requiredScopes": ["registry.token.issue"],
            "jwks": keys.authority_jwks(),
            "clockSkewSeconds": 60,
            "requireSenderConstraint": false
        },
        "signing": {
            "issuer": SIGNING_ISSUER,
            "algorithm": "RS256",
            "lifetimeSeconds": 300
        },
        "registry": {
            "realm": realm,
            "allowedServices": [SERVICE]
        },
        "plans": [
            {
                "name": "community",
                "repositories": [
                    { "pattern": "stella-ops/public/*", "actions": ["pull"] }
                ]
            },
            {
                "name": "enterprise",
                "repositories": [
                    { "pattern": "stella-ops/**", "actions": ["pull", "push"] },
                    { "type": "registry", "pattern": "catalog", "actions": ["*"] }
                ]
            },
            {
                "name": "pullonly",
                "repositories": [
                    { "pattern": "**", "actions": ["pull"] }
                ]
            }
        ],
        "defaultPlan": "community",
        "revokedLicenses": [REVOKED_LICENSE]
    })
}

/// How the configuration is written in the Envoy YAML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigForm {
    /// `google.protobuf.StringValue` holding the JSON text (quickstart's form).
    StringValue,
    /// `google.protobuf.Struct` written as native block YAML; Envoy hands the filter the
    /// serialized protobuf Struct.
    Struct,
}

/// The Envoy YAML of a gateway, derived from `envoy/quickstart.yaml`: see [`GatewaySpec`].
#[derive(Clone, Debug)]
pub struct GatewaySpec {
    /// The filter configuration.
    pub config: Value,
    /// How it is written.
    pub form: ConfigForm,
    /// YAML sequence items (`- name: …`, written at column 0) appended under
    /// `static_resources.clusters`.
    pub extra_clusters: String,
    /// Names added to `vm_config.environment_variables.host_env_keys` (after quickstart's
    /// own; duplicates are skipped).
    pub host_env_keys: Vec<String>,
    /// `vm_config.environment_variables.key_values` (fixed values written in the YAML).
    pub key_values: Vec<(String, String)>,
    /// The registry behind the gateway (guard mode's shape): `/v2` and `/v2/…` routed to
    /// a `registry` cluster, with its rate limits; `None` (the default): quickstart's
    /// catch-all 404 only.
    pub registry_route: Option<RegistryRoute>,
}

impl GatewaySpec {
    /// A spec for `config` in [`ConfigForm::StringValue`], nothing extra.
    pub fn new(config: &Value) -> GatewaySpec {
        GatewaySpec {
            config: config.clone(),
            form: ConfigForm::StringValue,
            extra_clusters: String::new(),
            host_env_keys: Vec::new(),
            key_values: Vec::new(),
            registry_route: None,
        }
    }

    /// Puts the registry behind the gateway (see [`GatewaySpec::registry_route`]).
    pub fn registry_route(mut self, route: RegistryRoute) -> Self {
        self.registry_route = Some(route);
        self
    }

    /// Sets the form.
    pub fn form(mut self, form: ConfigForm) -> Self {
        self.form = form;
        self
    }

    /// Sets the extra clusters (see [`GatewaySpec::extra_clusters`]).
    pub fn extra_clusters(mut self, yaml: &str) -> Self {
        yaml.clone_into(&mut self.extra_clusters);
        self
    }

    /// Adds a name to `host_env_keys`.
    pub fn host_env_key(mut self, name: &str) -> Self {
        self.host_env_keys.push(name.to_owned());
        self
    }

    /// Adds a `key_values` entry.
    pub fn key_value(mut self, name: &str, value: &str) -> Self {
        self.key_values.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Renders the Envoy YAML template (placeholders `{{LISTEN_PORT}}`, `{{ADMIN_PORT}}`,
    /// `{{WASM_PATH}}` left for [`Envoy::start`]).
    ///
    /// # Panics
    /// When `envoy/quickstart.yaml` no longer has the shape this derivation relies on
    /// (listener port 8085, admin port 9901, the wasm file name, one `configuration:`
    /// block, `host_env_keys:`); the message says what is missing.
    pub fn yaml(&self) -> String {
        let quickstart = read(&quickstart_path());
        let yaml = derive_gateway_yaml(&quickstart, self);
        match &self.registry_route {
            Some(route) => route.apply(&yaml),
            None => yaml,
        }
    }

    /// The names of every variable the gateway's VM may receive from Envoy's environment:
    /// quickstart's `host_env_keys` plus [`GatewaySpec::host_env_keys`].
    pub fn all_host_env_keys(&self) -> Vec<String> {
        let mut keys = quickstart_host_env_keys(&read(&quickstart_path()));
        for k in &self.host_env_keys {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        keys
    }

    /// Starts the gateway: see [`start_gateway`].
    pub fn start(&self, keys: &TestKeys, opts: EnvoyOptions) -> Envoy {
        let (spec, opts) = self.with_env(keys, opts);
        let yaml = spec.yaml();
        Envoy::start(&yaml, opts).unwrap_or_else(|e| panic!("the gateway did not start: {e}"))
    }

    /// Starts the gateway expecting Envoy to refuse it: see [`gateway_failure`].
    pub fn failure(&self, keys: &TestKeys, opts: EnvoyOptions) -> String {
        let (spec, opts) = self.with_env(keys, opts);
        let yaml = spec.yaml();
        Envoy::start_expect_failure(&yaml, opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Adds the signing key variable, lists every `REGISTRY_TOKEN_*` of `opts.env` in
    /// `host_env_keys`, and blanks the listed variables the caller did not set (an empty
    /// value counts as unset) so that nothing leaks in from the test runner's environment.
    fn with_env(&self, keys: &TestKeys, mut opts: EnvoyOptions) -> (GatewaySpec, EnvoyOptions) {
        let mut spec = self.clone();
        if !opts.env.iter().any(|(k, _)| k == KEYPEM_ENV) {
            opts.env
                .push((KEYPEM_ENV.to_owned(), keys.signing_key_pem().to_owned()));
        }
        for (k, _) in &opts.env {
            if k.starts_with("REGISTRY_TOKEN_") && !spec.host_env_keys.contains(k) {
                spec.host_env_keys.push(k.clone());
            }
        }
        for k in spec.all_host_env_keys() {
            if !opts.env.iter().any(|(n, _)| *n == k) {
                opts.env.push((k, String::new()));
            }
        }
        (spec, opts)
    }
}

/// The Envoy YAML of a gateway: `envoy/quickstart.yaml` with the listener port
/// (`8085` → `{{LISTEN_PORT}}`), the admin port (`9901` → `{{ADMIN_PORT}}`), the wasm
/// file (→ `{{WASM_PATH}}`) and the `configuration:` block (→ `filter_config` in `form`)
/// replaced, and `extra_clusters` (YAML sequence items at column 0, may be empty) under
/// `static_resources.clusters`. `host_env_keys` stays quickstart's
/// (`REGISTRY_TOKEN_SIGNING__KEYPEM`, `REGISTRY_TOKEN_AUTHORITY__JWKS`); use
/// [`GatewaySpec`] for more keys or `key_values`. [`start_gateway`] adds every
/// `REGISTRY_TOKEN_*` of `EnvoyOptions::env` to `host_env_keys` by itself; when you
/// start the YAML with [`Envoy::start`] directly, pass `REGISTRY_TOKEN_SIGNING__KEYPEM` in
/// `EnvoyOptions::env` yourself (the configuration has no key).
pub fn gateway_yaml(filter_config: &Value, form: ConfigForm, extra_clusters: &str) -> String {
    GatewaySpec::new(filter_config)
        .form(form)
        .extra_clusters(extra_clusters)
        .yaml()
}

/// Starts the gateway from [`gateway_yaml`]`(filter_config, form, "")` and waits until it
/// is ready. Sets `REGISTRY_TOKEN_SIGNING__KEYPEM` to `keys`' signing key unless
/// `opts.env` already has it, adds every `REGISTRY_TOKEN_*` of `opts.env` to
/// `host_env_keys`, and sets the other listed variables to "" (unset for the filter) so
/// the test runner's environment cannot leak in.
///
/// # Panics
/// When Envoy does not get ready (the message holds the log tail).
pub fn start_gateway(
    filter_config: &Value,
    form: ConfigForm,
    keys: &TestKeys,
    opts: EnvoyOptions,
) -> Envoy {
    GatewaySpec::new(filter_config).form(form).start(keys, opts)
}

/// Like [`start_gateway`] for a configuration Envoy must refuse: returns Envoy's log.
///
/// # Panics
/// When Envoy starts (becomes ready) with it.
pub fn gateway_failure(
    filter_config: &Value,
    form: ConfigForm,
    keys: &TestKeys,
    opts: EnvoyOptions,
) -> String {
    GatewaySpec::new(filter_config)
        .form(form)
        .failure(keys, opts)
}

/// Lines of `log` holding `registry-token-filter: configuration refused:`.
pub fn refusal_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("registry-token-filter: configuration refused:"))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------
// OpToks, requests and minted tokens.
// ---------------------------------------------------------------------------------------

/// An OpTok from the test Authority: [`OpTokSpec::default`] (issuer, audience, subject
/// `dev-user`, scope `registry.token.issue`, 600 s) changed by `f`, signed with `keys`'
/// Authority key (`RS256`, `kid` = its thumbprint).
pub fn optok(keys: &TestKeys, f: impl FnOnce(&mut OpTokSpec)) -> String {
    let mut spec = OpTokSpec::default();
    f(&mut spec);
    spec.mint(&keys.authority)
}

/// The `Authorization` value `Bearer <optok>`.
pub fn bearer(optok: &str) -> String {
    format!("Bearer {optok}")
}

/// `/token?service=<service>&scope=<scope>&scope=…`, percent-encoded.
pub fn token_path(service: &str, scopes: &[&str]) -> String {
    token_path_at("/token", service, scopes)
}

/// Like [`token_path`] for a realm path other than `/token`.
pub fn token_path_at(realm_path: &str, service: &str, scopes: &[&str]) -> String {
    let mut p = format!("{realm_path}?service={}", percent_encode(service));
    for s in scopes {
        p.push_str("&scope=");
        p.push_str(&percent_encode(s));
    }
    p
}

/// Splits a JWT and decodes its header and claims **without verifying** it.
pub fn decode_unverified(token: &str) -> Result<(Value, Value), String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("not a compact JWS: {token:?}"));
    };
    let dec = |s: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| format!("base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("JSON: {e}"))
    };
    Ok((dec(h)?, dec(c)?))
}

/// Verifies a minted registry token with the independent `jsonwebtoken` crate against
/// `public_pem` (SPKI `PUBLIC KEY` PEM, RSA or P-256; the algorithm is taken from the
/// key type), checking the signature, `exp` and `nbf` (no leeway on `nbf`, 5 s on `exp`);
/// `aud` and `iss` are left to the caller. Returns the header and claims as JSON.
pub fn verify_registry_token(token: &str, public_pem: &str) -> Result<(Value, Value), String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let (header, _) = decode_unverified(token)?;
    let (alg, key) = match header["alg"].as_str() {
        Some("RS256") => (
            Algorithm::RS256,
            DecodingKey::from_rsa_pem(public_pem.as_bytes()),
        ),
        Some("ES256") => (
            Algorithm::ES256,
            DecodingKey::from_ec_pem(public_pem.as_bytes()),
        ),
        other => return Err(format!("unexpected alg {other:?}")),
    };
    let key = key.map_err(|e| format!("public key: {e}"))?;
    let mut validation = Validation::new(alg);
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|e| format!("jsonwebtoken rejects the token: {e}"))?;
    Ok((header, data.claims))
}
