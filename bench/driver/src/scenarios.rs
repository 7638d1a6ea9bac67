//! The scenarios of `make bench`: the `/token` loads (mode, minting key, catalogue,
//! ledger), the plugin configuration each one's Envoy gets, the request each one sends,
//! and the in-Envoy crypto ceilings (the probe module's work) they are compared to.

use registry_token_loadgen::load::Mode;
use serde_json::{json, Value};

use crate::results::{Figures, Outcome, ScenarioResult};
use crate::setup::Material;

/// The bench Authority's issuer.
pub const ISSUER: &str = "https://authority.bench";
/// The audience of the bench OpToks.
pub const AUDIENCE: &str = "registry-token";
/// The registry service of the bench requests.
pub const SERVICE: &str = "registry.bench";
/// The token endpoint's realm (and DPoP `htu`).
pub const REALM: &str = "https://gateway.bench/token";
/// OpToks cycled by the refusal scenarios (`hostile`, `cheap`): few enough that the OpTok
/// cache holds them all after the warm-up, so what differs is the proof alone.
pub const REFUSAL_OPTOKS: usize = 200;
/// Rules in the ordinary catalogue.
pub const BASE_RULES: usize = 10;
/// Rules in the big one.
pub const BIG_RULES: usize = 10_000;
/// The gateways' ingest secret of the bench ledger (a bench-only value).
pub const LEDGER_SECRET: &str = "bench-ledger-ingest-secret-0123456789abcdef";
/// The refresh-token secret of the `refresh` scenario (a bench-only value).
pub const REFRESH_SECRET: &str = "bench-refresh-token-secret-0123456789abcdef";

/// The in-Envoy crypto ceilings: the probe module (`bench/probe`) doing only the
/// signature work of a path through Envoy's `sign`/`verify_signature`, per request.
pub const CRYPTO_CEILINGS: [(&str, &[&str], &str); 8] = [
    (
        "crypto-rs",
        &["verify:RS256", "sign:RS256"],
        "verify RS256 (OpToken) + sign RS256 (token)",
    ),
    (
        "crypto-es",
        &["verify:RS256", "sign:ES256"],
        "verify RS256 (OpToken) + sign ES256 (token)",
    ),
    (
        "crypto-dpop-rs",
        &["verify:RS256", "verify:ES256", "sign:RS256"],
        "verify RS256 (OpToken) + verify ES256 (proof) + sign RS256 (token)",
    ),
    (
        "crypto-dpop-es",
        &["verify:RS256", "verify:ES256", "sign:ES256"],
        "verify RS256 (OpToken) + verify ES256 (proof) + sign ES256 (token)",
    ),
    (
        "crypto-sign-rs",
        &["sign:RS256"],
        "sign RS256 (token) only: the refresh grant (its HMAC is not signature work)",
    ),
    (
        "crypto-es-shared",
        &["verify:RS256", "sign:ES256", "shared:cas"],
        "`crypto-es` + one shared-data read and compare-and-swap write of 512 bytes (not a ceiling: what one such pair costs, as the ledger's append or the DPoP replay record does per request)",
    ),
    (
        "crypto-es-host",
        &[
            "verify:RS256",
            "sign:ES256",
            "host:header",
            "host:time",
            "host:headers",
            "host:time",
            "host:random",
            "host:counter",
            "host:counter",
            "host:set-property",
            "host:time",
            "host:histogram",
        ],
        "`crypto-es` + the other hostcalls an `es256` request made before this issue's cuts: `:path`, every header, the clock 3 times, 16 random bytes, 2 counters, the audit as filter state, a histogram sample (not a ceiling: Envoy's share of the filter's per-request work)",
    ),
    (
        "crypto-dpop-es-host",
        &[
            "verify:RS256",
            "verify:ES256",
            "sign:ES256",
            "host:header",
            "host:time",
            "host:headers",
            "host:time",
            "shared:cas",
            "host:random",
            "host:counter",
            "host:counter",
            "host:set-property",
            "host:time",
            "host:histogram",
        ],
        "`crypto-dpop-es` + the hostcalls of `crypto-es-host` and the replay record's shared-data read and compare-and-swap write (not a ceiling: as `crypto-es-host`, for a DPoP request)",
    ),
];

/// The pairs of the hostcalls part (`--only hostcalls`): a crypto ceiling (`base`) and the
/// same signature work with the filter's other hostcalls (`test`), both [`CRYPTO_CEILINGS`]
/// keys, measured side by side.
pub const HOSTCALL_PAIRS: [(&str, &str); 2] = [
    ("crypto-es", "crypto-es-host"),
    ("crypto-dpop-es", "crypto-dpop-es-host"),
];

/// The probe's operations and description of the crypto ceiling `key`.
pub fn probe_ops(key: &str) -> Option<(&'static [&'static str], &'static str)> {
    CRYPTO_CEILINGS
        .iter()
        .find(|(k, ..)| *k == key)
        .map(|(_, ops, work)| (*ops, *work))
}

/// The key the filter mints with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mint {
    /// RS256 (RSA-2048).
    Rs256,
    /// ES256 (P-256).
    Es256,
}

/// One `/token` load.
#[derive(Clone)]
pub struct Scenario {
    /// Its name (`rs256`, …), also the name of its Envoy's files.
    pub key: &'static str,
    /// What it does, for the report.
    pub title: &'static str,
    /// How the load generator asks.
    pub mode: Mode,
    /// The filter's minting key.
    pub mint: Mint,
    /// `signing.reuseSeconds`.
    pub reuse_seconds: u64,
    /// Rules in the catalogue.
    pub rules: usize,
    /// OpToks of the pool cycled through (0 = the whole pool).
    pub optoks: usize,
    /// A placeholder-heavy catalogue: every rule holds `{tenant}` (the tenant is the
    /// OpToks' `client_id`, `loadgen`, through `authority.tenantClaim`, so the shared
    /// OpTok pool needs no extra claim).
    pub tenant: bool,
    /// Every decision delivered to a real ledger (SQLite) through an Envoy cluster.
    pub ledger: bool,
    /// Several issuers with trust policies ([`TRUST_ISSUERS`], [`TRUST_POLICIES`]): the
    /// OpToks' issuer is the last, and its last policy matches.
    pub trust: bool,
}

/// Issuers of the trust scenario (the OpToks' own last).
pub const TRUST_ISSUERS: usize = 3;
/// Trust policies of the OpToks' issuer (the last matches); the others hold one each.
pub const TRUST_POLICIES: usize = 100;

/// The Envoy cluster of the bench ledger.
pub const LEDGER_CLUSTER: &str = "ledger";

/// The tenant every OpTok of the pool names (its `client_id`).
const BENCH_TENANT: &str = "loadgen";

/// Every scenario, in the order measured.
pub fn scenarios() -> Vec<Scenario> {
    let s = |key, title, mode, mint, reuse_seconds, rules, optoks| Scenario {
        key,
        title,
        mode,
        mint,
        reuse_seconds,
        rules,
        optoks,
        tenant: false,
        ledger: false,
        trust: false,
    };
    vec![
        s(
            "rs256",
            "RS256 mint (Bearer, unbound RS256 OpTok)",
            Mode::Bearer,
            Mint::Rs256,
            0,
            BASE_RULES,
            0,
        ),
        s(
            "es256",
            "ES256 mint (Bearer, unbound RS256 OpTok)",
            Mode::Bearer,
            Mint::Es256,
            0,
            BASE_RULES,
            0,
        ),
        Scenario {
            ledger: true,
            ..s(
                "es256-ledger",
                "ES256 mint (Bearer, unbound RS256 OpTok), ledger on: every decision delivered to the ledger (SQLite)",
                Mode::Bearer,
                Mint::Es256,
                0,
                BASE_RULES,
                0,
            )
        },
        Scenario {
            trust: true,
            ..s(
                "trust-3x100",
                "ES256 mint (Bearer, unbound RS256 OpTok) through trust policies: 3 issuers, the OpToks' issuer with 100 policies (the last matches)",
                Mode::Bearer,
                Mint::Es256,
                0,
                BASE_RULES,
                0,
            )
        },
        s(
            "dpop-rs256",
            "DPoP-bound, RS256 mint (RS256 OpTok + ES256 proof + RS256 mint)",
            Mode::Dpop,
            Mint::Rs256,
            0,
            BASE_RULES,
            0,
        ),
        s(
            "dpop-es256",
            "DPoP-bound, ES256 mint (RS256 OpTok + ES256 proof + ES256 mint)",
            Mode::Dpop,
            Mint::Es256,
            0,
            BASE_RULES,
            0,
        ),
        s(
            "reuse",
            "DPoP-bound, RS256 mint, mint reuse on (reuseSeconds 60, 100 clients)",
            Mode::Dpop,
            Mint::Rs256,
            60,
            BASE_RULES,
            100,
        ),
        s(
            "mtls",
            "mTLS-bound, RS256 mint (TLS + client certificate)",
            Mode::Mtls,
            Mint::Rs256,
            0,
            BASE_RULES,
            0,
        ),
        s(
            "password",
            "OAuth2 password grant, RS256 mint (POST form, unbound RS256 OpTok as password)",
            Mode::Password,
            Mint::Rs256,
            0,
            BASE_RULES,
            0,
        ),
        s(
            "refresh",
            "OAuth2 refresh grant, RS256 mint (POST form, refresh token; no OpToken signature)",
            Mode::Refresh,
            Mint::Rs256,
            0,
            BASE_RULES,
            0,
        ),
        s(
            "rules-10k",
            "DPoP-bound, ES256 mint, 10,000-rule catalogue (last rule matches)",
            Mode::Dpop,
            Mint::Es256,
            0,
            BIG_RULES,
            0,
        ),
        Scenario {
            tenant: true,
            ..s(
                "rules-10k-tenant",
                "DPoP-bound, ES256 mint, 10,000 `{tenant}` rules (placeholder-heavy; last rule matches)",
                Mode::Dpop,
                Mint::Es256,
                0,
                BIG_RULES,
                0,
            )
        },
        s(
            "hostile",
            "hostile DPoP proofs, refused (8192-bit RSA jwk with 34-bit e / e = AQAB, PS512, garbage signature; ES256 by another key; wrong ath), 200 OpToks",
            Mode::HostileDpop,
            Mint::Es256,
            0,
            BASE_RULES,
            REFUSAL_OPTOKS,
        ),
        s(
            "cheap",
            "cheap refusal: `DPoP: x` (401 dpop_malformed), 200 OpToks",
            Mode::MalformedDpop,
            Mint::Es256,
            0,
            BASE_RULES,
            REFUSAL_OPTOKS,
        ),
    ]
}

/// The request of the ordinary catalogue with `rules` rules: the last rule matches.
pub fn request_path(rules: usize) -> String {
    format!(
        "/token?service={SERVICE}&scope=repository:bench/r{}/app:pull",
        rules - 1
    )
}

/// The request of a scenario: [`request_path`], or for the placeholder catalogue the
/// caller's own namespace under the last rule (an odd index).
pub fn scenario_path(sc: &Scenario) -> String {
    if !sc.tenant {
        return request_path(sc.rules);
    }
    let last = sc.rules - 1 - usize::from(sc.rules % 2 == 1);
    format!("/token?service={SERVICE}&scope=repository:tenants/{BENCH_TENANT}/r{last}/app:pull")
}

/// The filter's configuration for scenario `sc`.
pub fn plugin_config(m: &Material, sc: &Scenario) -> Value {
    let (key, alg) = match sc.mint {
        Mint::Rs256 => (&m.signing_rs, "RS256"),
        Mint::Es256 => (&m.signing_es, "ES256"),
    };
    let rules: Vec<Value> = (0..sc.rules)
        .map(|i| {
            let pattern = match (sc.tenant, i % 2) {
                (false, _) => format!("bench/r{i}/*"),
                // Half behind a shared `tenants/{tenant}` prefix, half with the
                // placeholder under a distinct literal.
                (true, 0) => format!("bench/r{i}/{{tenant}}/*"),
                (true, _) => format!("tenants/{{tenant}}/r{i}/*"),
            };
            json!({"pattern": pattern, "actions": ["pull"]})
        })
        .collect();
    let mut authority = json!({
        "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": m.jwks,
        "requireSenderConstraint": matches!(sc.mode.binding(), Mode::Dpop | Mode::Mtls)
    });
    if sc.tenant {
        authority["tenantClaim"] = json!("client_id");
        authority["requireTenant"] = json!(true);
    }
    let mut config = json!({
        "authority": authority,
        "signing": {"keyPem": key, "algorithm": alg, "lifetimeSeconds": 300,
                    "reuseSeconds": sc.reuse_seconds},
        "registry": {"realm": REALM, "allowedServices": [SERVICE]},
        "plans": [{"name": "bench", "repositories": rules}],
        "defaultPlan": "bench"
    });
    if sc.trust {
        trust_issuers(&mut config, m);
    }
    if sc.ledger {
        config["ledger"] = json!({
            "cluster": LEDGER_CLUSTER,
            "headers": {"authorization": format!("Bearer {LEDGER_SECRET}")},
            "gateway": "bench"
        });
    }
    if sc.mode == Mode::Refresh {
        config["refreshTokens"] = json!({"lifetimeSeconds": 86_400, "secrets": [REFRESH_SECRET]});
    }
    config
}

/// Moves the OpToks' issuer from `authority` to the last of [`TRUST_ISSUERS`] `issuers`
/// (the others, and `authority`, name issuers no OpTok comes from), with
/// [`TRUST_POLICIES`] policies on `client_id` of which only the last matches the pool's.
fn trust_issuers(config: &mut Value, m: &Material) {
    config["authority"]["issuer"] = json!("https://authority.decoy");
    let policy = |i: usize, client: &str| json!({"name": format!("p{i}"), "claims": {"client_id": client}, "plans": ["bench"]});
    let mut issuers: Vec<Value> = (1..TRUST_ISSUERS)
        .map(|i| {
            json!({"issuer": format!("https://issuer-{i}.decoy"), "audiences": [AUDIENCE],
                   "jwks": m.jwks, "requireSenderConstraint": false,
                   "policies": [policy(0, "someone-else")]})
        })
        .collect();
    let policies: Vec<Value> = (0..TRUST_POLICIES)
        .map(|i| {
            let client = if i + 1 == TRUST_POLICIES {
                BENCH_TENANT.to_string()
            } else {
                format!("client-{i}")
            };
            policy(i, &client)
        })
        .collect();
    issuers.push(
        json!({"issuer": ISSUER, "audiences": [AUDIENCE], "jwks": m.jwks,
                        "requireSenderConstraint": false, "policies": policies}),
    );
    config["issuers"] = json!(issuers);
}

/// The crypto ceiling a scenario is compared to (none for mint reuse and refusals).
pub fn crypto_ceiling_of(sc: &Scenario) -> Option<&'static str> {
    if sc.reuse_seconds > 0 || sc.mode.expected_refusals().is_some() {
        return None;
    }
    Some(match (sc.mode, sc.mint) {
        (Mode::Refresh, Mint::Rs256) => "crypto-sign-rs",
        (Mode::Dpop, Mint::Rs256) => "crypto-dpop-rs",
        (Mode::Dpop, Mint::Es256) => "crypto-dpop-es",
        (_, Mint::Rs256) => "crypto-rs",
        (_, Mint::Es256) => "crypto-es",
    })
}

/// Scenario `key`.
pub fn scenario(key: &str) -> Result<Scenario, String> {
    scenarios()
        .into_iter()
        .find(|s| s.key == key)
        .ok_or_else(|| format!("no scenario {key}"))
}

/// Scenario `key` under the name `renamed` (its Envoy's files are named after it).
pub fn scenario_as(key: &str, renamed: &'static str) -> Result<Scenario, String> {
    scenario(key).map(|s| Scenario { key: renamed, ..s })
}

impl Scenario {
    /// Its entry in the results, with its median round.
    pub fn result(&self, outcome: Outcome<Figures>) -> ScenarioResult {
        ScenarioResult {
            key: self.key.to_string(),
            title: self.title.to_string(),
            mode: self.mode.name().to_string(),
            refusing: self.mode.expected_refusals().is_some(),
            ceiling: crypto_ceiling_of(self).map(str::to_string),
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ceiling_a_scenario_names_is_measured() {
        for sc in scenarios() {
            if let Some(c) = crypto_ceiling_of(&sc) {
                assert!(CRYPTO_CEILINGS.iter().any(|(k, ..)| *k == c), "{c}");
            }
        }
        assert_eq!(
            crypto_ceiling_of(&scenario("refresh").expect("refresh")),
            Some("crypto-sign-rs")
        );
        assert_eq!(crypto_ceiling_of(&scenario("reuse").expect("reuse")), None);
        assert_eq!(
            crypto_ceiling_of(&scenario("hostile").expect("hostile")),
            None
        );
    }

    /// Every scenario's configuration is one the filter takes (the same parser and checks
    /// as in Envoy), with keys made as `make bench` makes them; the trust scenario's has
    /// its issuers and policies.
    #[test]
    fn each_hostcall_pair_adds_only_hostcalls_to_its_base() {
        for (base, test) in HOSTCALL_PAIRS {
            let (base_ops, _) = probe_ops(base).expect(base);
            let (test_ops, _) = probe_ops(test).expect(test);
            // The same signature work, in the same order, and nothing else but hostcalls
            // and shared data.
            let crypto: Vec<_> = test_ops
                .iter()
                .filter(|op| !op.starts_with("host:") && !op.starts_with("shared:"))
                .collect();
            assert_eq!(crypto, base_ops.iter().collect::<Vec<_>>(), "{test}");
            assert!(test_ops.len() > base_ops.len(), "{test}");
        }
        assert!(probe_ops("crypto-nope").is_none());
    }

    #[test]
    fn every_configuration_is_valid() {
        use registry_token_core::config::Config;
        let work = tempfile::tempdir().expect("tempdir");
        let m = crate::setup::make_material(work.path()).expect("keys (openssl)");
        for sc in scenarios() {
            let config = plugin_config(&m, &sc);
            let loaded = Config::load(
                config.to_string().as_bytes(),
                Vec::<(String, String)>::new(),
            );
            assert!(loaded.is_ok(), "{}: {:?}", sc.key, loaded.err());
            if sc.trust {
                let c = loaded.expect("checked");
                assert_eq!(c.issuers.len(), TRUST_ISSUERS);
                assert_eq!(
                    config["issuers"][TRUST_ISSUERS - 1]["policies"]
                        .as_array()
                        .map(Vec::len),
                    Some(TRUST_POLICIES)
                );
                assert_eq!(config["issuers"][TRUST_ISSUERS - 1]["issuer"], ISSUER);
            }
        }
    }

    #[test]
    fn requests_name_the_last_rule() {
        assert_eq!(
            request_path(BASE_RULES),
            "/token?service=registry.bench&scope=repository:bench/r9/app:pull"
        );
        let tenant = scenario("rules-10k-tenant").expect("tenant");
        assert_eq!(
            scenario_path(&tenant),
            "/token?service=registry.bench&scope=repository:tenants/loadgen/r9999/app:pull"
        );
        let keys: Vec<&str> = scenarios().iter().map(|s| s.key).collect();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(keys.len(), unique.len(), "scenario keys are unique");
    }
}
