//! Robot tokens (docs/LEDGER.md, "Robots"): long-lived registry credentials for machines
//! that hold no identity of their own, the personal/robot access tokens of registry-auth
//! and Harbor. The ledger signs each one with its own P-256 key (ES256) and publishes the
//! public key, so a gateway that trusts the ledger as an issuer checks a robot token
//! in-process, with no database call; a deleted robot is a `subject` revocation in the
//! feed every gateway fetches. The token is shown once and never stored: the ledger keeps
//! what it needs to list and revoke (name, tenant, plans, rules, expiry).
//!
//! Signed here with RustCrypto's `p256` (RFC 6979 deterministic ECDSA) rather than
//! `jsonwebtoken`, which cannot derive the public JWK the ledger must publish.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use registry_token_ledger_wire::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The scope every robot token carries: what the gateways require to issue registry tokens.
pub const ROBOT_SCOPE: &str = "registry.token.issue";
/// A robot's subject is this prefix and its id (`robot:<32 hex>`), so a deleted robot's
/// revocation never hits a new robot of the same name.
pub const SUBJECT_PREFIX: &str = "robot:";
/// The claim holding a robot's own rules, one string each (`type:pattern:actions`), a
/// list of strings the gateways read through a trust policy's `rulesClaim`.
pub const RULES_CLAIM: &str = "registry_rules";
/// Most plans of one robot.
pub const MAX_PLANS: usize = 16;
/// Most repository rules of one robot.
pub const MAX_RULES: usize = 64;
/// Longest repository pattern (a registry repository name is at most 255 bytes).
pub const MAX_PATTERN_BYTES: usize = 255;
/// Longest name, tenant or plan.
pub const MAX_WORD_BYTES: usize = 64;

/// The ledger's robot signing key and what the gateways need to trust it.
pub struct RobotSigner {
    key: SigningKey,
    kid: String,
    jwk: Value,
    /// `iss` of every robot token.
    pub issuer: String,
    /// `aud` of every robot token (the gateways' `audiences`).
    pub audience: String,
    /// Longest lifetime a robot may be given, days.
    pub max_days: u32,
}

impl std::fmt::Debug for RobotSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobotSigner")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl RobotSigner {
    /// Reads a PKCS#8 PEM P-256 private key (`openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`).
    pub fn from_pem_file(
        path: &Path,
        issuer: String,
        audience: String,
        max_days: u32,
    ) -> Result<RobotSigner, String> {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("--robot-key-file {}: {e}", path.display()))?;
        RobotSigner::from_pem(&pem, issuer, audience, max_days)
            .map_err(|e| format!("--robot-key-file {}: {e}", path.display()))
    }

    /// The same from the PEM text.
    pub fn from_pem(
        pem: &str,
        issuer: String,
        audience: String,
        max_days: u32,
    ) -> Result<RobotSigner, String> {
        let key = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| format!("not a PKCS#8 PEM P-256 private key ({e})"))?;
        let point = key.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err("the public key is the identity point".into());
        };
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        // RFC 7638: the required members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "alg": "ES256", "use": "sig",
        });
        Ok(RobotSigner {
            key,
            kid,
            jwk,
            issuer,
            audience,
            max_days,
        })
    }

    /// The public key set (`{"keys": [jwk]}`).
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// The key's RFC 7638 thumbprint, its `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A compact JWS (ES256) over `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    /// The claims of robot `robot`'s token, issued at `now`.
    pub fn claims(&self, robot: &Robot, now: i64) -> Value {
        let mut claims = json!({
            "iss": self.issuer,
            "sub": robot.subject(),
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": robot.expires_at,
            "jti": robot.id,
            "scope": ROBOT_SCOPE,
            "plans": robot.plans,
            RULES_CLAIM: robot.repositories.iter().map(RobotRule::claim).collect::<Vec<_>>(),
            "robot": {"name": robot.name},
        });
        if let (Some(tenant), Some(map)) = (&robot.tenant, claims.as_object_mut()) {
            map.insert("stellaops:tenant".into(), json!(tenant));
        }
        claims
    }
}

/// One repository rule of a robot, in the shape of a plan's rule in the filter's
/// configuration: what the robot may do at most; the gateway grants the intersection with
/// its plans' rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotRule {
    /// `repository` (default) or `registry`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The pattern (`*` one segment, `**` any number).
    pub pattern: String,
    /// `pull`, `push`, `delete` or `*`.
    pub actions: Vec<String>,
}

/// The body of `POST /v1/robots`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewRobot {
    /// A name people recognise (`ci-pull`), unique among the robots not deleted.
    pub name: String,
    /// The tenant its tokens carry (`stellaops:tenant`), if any.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The plans it is granted (union, as for group plans).
    pub plans: Vec<String>,
    /// Its own rules: the most it may do, whatever its plans allow.
    pub repositories: Vec<RobotRule>,
    /// Lifetime, days (default 30, at most `--robot-max-days`).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// Lowercase letters, digits, `.`, `_` and `-`, starting with a letter or a digit.
fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

fn word(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() || value.len() > MAX_WORD_BYTES || !is_word(value) {
        return Err(FieldError::new(
            field,
            format!(
                "must be 1..={MAX_WORD_BYTES} lowercase letters, digits, '.', '_' or '-', \
                 starting with a letter or a digit"
            ),
        ));
    }
    Ok(())
}

impl NewRobot {
    /// Checks every field; the lifetime against `max_days`. The lifetime in days.
    pub fn validate(&self, max_days: u32) -> Result<u32, FieldError> {
        word("name", &self.name)?;
        if let Some(t) = &self.tenant {
            word("tenant", t)?;
        }
        if self.plans.is_empty() || self.plans.len() > MAX_PLANS {
            return Err(FieldError::new(
                "plans",
                format!("must hold 1..={MAX_PLANS} plans"),
            ));
        }
        for (i, p) in self.plans.iter().enumerate() {
            let ok = !p.is_empty()
                && p.len() <= MAX_WORD_BYTES
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return Err(FieldError::new(
                    &format!("plans[{i}]"),
                    format!("must be 1..={MAX_WORD_BYTES} letters, digits, '.', '_' or '-'"),
                ));
            }
        }
        if self.repositories.is_empty() || self.repositories.len() > MAX_RULES {
            return Err(FieldError::new(
                "repositories",
                format!("must hold 1..={MAX_RULES} rules"),
            ));
        }
        for (i, r) in self.repositories.iter().enumerate() {
            r.validate(i)?;
        }
        // The gateways read the rules with the core's own compiler (`rulesClaim`): compiled
        // here too, so the ledger never signs a token every gateway refuses.
        let claims: Vec<String> = self.repositories.iter().map(RobotRule::claim).collect();
        registry_token_core::policy::trust::TokenRules::compile(&claims).map_err(|why| {
            FieldError::new(
                "repositories",
                format!("the gateways would refuse them: {why}"),
            )
        })?;
        let days = self.expires_in_days.unwrap_or(30.min(max_days));
        if days == 0 || days > max_days {
            return Err(FieldError::new(
                "expiresInDays",
                format!("must be within 1..={max_days} (--robot-max-days)"),
            ));
        }
        Ok(days)
    }
}

impl RobotRule {
    /// The rule as its token carries it: `repository:acme/app/*:pull,push` (the type,
    /// `repository` when none, the pattern, the actions comma-separated). Validated
    /// patterns hold no `:` and actions no `,`, so the string reads back unambiguously.
    pub fn claim(&self) -> String {
        format!(
            "{}:{}:{}",
            self.kind.as_deref().unwrap_or("repository"),
            self.pattern,
            self.actions.join(",")
        )
    }

    fn validate(&self, i: usize) -> Result<(), FieldError> {
        let field = |f: &str| format!("repositories[{i}].{f}");
        match self.kind.as_deref() {
            None | Some("repository") | Some("registry") => {}
            Some(_) => {
                return Err(FieldError::new(
                    &field("type"),
                    "must be repository or registry",
                ))
            }
        }
        let p = &self.pattern;
        let chars_ok = p.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/' | '*')
        });
        let segments_ok = p.split('/').all(|s| {
            !s.is_empty() && s != "." && s != ".." && (!s.contains('*') || s == "*" || s == "**")
        });
        if p.is_empty() || p.len() > MAX_PATTERN_BYTES || !chars_ok || !segments_ok {
            return Err(FieldError::new(
                &field("pattern"),
                format!(
                    "must be 1..={MAX_PATTERN_BYTES} bytes of repository path segments \
                     (lowercase letters, digits, '.', '_', '-'), '*' or '**' segments"
                ),
            ));
        }
        if self.actions.is_empty()
            || self
                .actions
                .iter()
                .any(|a| !matches!(a.as_str(), "pull" | "push" | "delete" | "*"))
        {
            return Err(FieldError::new(
                &field("actions"),
                "must be a non-empty list of pull, push, delete or *",
            ));
        }
        Ok(())
    }
}

/// A stored robot (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Robot {
    /// 32 hex digits.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its tenant, if any.
    pub tenant: Option<String>,
    /// Its plans.
    pub plans: Vec<String>,
    /// Its own rules.
    pub repositories: Vec<RobotRule>,
    /// Unix seconds.
    pub created_at: i64,
    /// The admin token's `sub`.
    pub created_by: String,
    /// When its token expires, unix seconds.
    pub expires_at: i64,
    /// When it was deleted, if it was.
    pub deleted_at: Option<i64>,
    /// Who deleted it.
    pub deleted_by: Option<String>,
    /// The time of the last token a gateway issued to it (the ledger's own records).
    pub last_used: Option<i64>,
}

impl Robot {
    /// `robot:<id>`: the `sub` of its tokens, the subject of its records and revocation.
    pub fn subject(&self) -> String {
        format!("{SUBJECT_PREFIX}{}", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;
    use p256::pkcs8::{EncodePrivateKey, LineEnding};

    fn signer() -> RobotSigner {
        let secret = p256::SecretKey::random(&mut rand_core::OsRng);
        let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
        RobotSigner::from_pem(&pem, "https://ledger.test".into(), "registry".into(), 90).unwrap()
    }

    fn robot() -> Robot {
        Robot {
            id: "0123456789abcdef0123456789abcdef".into(),
            name: "ci-pull".into(),
            tenant: Some("acme".into()),
            plans: vec!["community".into()],
            repositories: vec![RobotRule {
                kind: None,
                pattern: "acme/**".into(),
                actions: vec!["pull".into()],
            }],
            created_at: 10,
            created_by: "alice".into(),
            expires_at: 1000,
            deleted_at: None,
            deleted_by: None,
            last_used: None,
        }
    }

    #[test]
    fn tokens_verify_with_the_published_key_and_carry_the_robot() {
        let s = signer();
        let token = s.sign(&s.claims(&robot(), 5));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let jwk = &s.jwks()["keys"][0];
        let mut sec1 = vec![4u8];
        for c in ["x", "y"] {
            sec1.extend(URL_SAFE_NO_PAD.decode(jwk[c].as_str().unwrap()).unwrap());
        }
        let vk = VerifyingKey::from_sec1_bytes(&sec1).unwrap();
        let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        vk.verify(input.as_bytes(), &sig).unwrap();
        assert!(vk.verify(b"other", &sig).is_err(), "the check can fail");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["kid"], json!(s.kid()));
        assert_eq!(header["alg"], "ES256");
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "robot:0123456789abcdef0123456789abcdef");
        assert_eq!(claims["scope"], ROBOT_SCOPE);
        assert_eq!(claims["stellaops:tenant"], "acme");
        assert_eq!(claims["exp"], 1000);
        assert_eq!(claims["registry_rules"], json!(["repository:acme/**:pull"]));
        assert_eq!(claims["robot"], json!({"name": "ci-pull"}));
    }

    #[test]
    fn rules_are_carried_as_type_pattern_actions_strings() {
        let mut r = robot();
        r.repositories = vec![
            RobotRule {
                kind: None,
                pattern: "acme/app/*".into(),
                actions: vec!["pull".into(), "push".into()],
            },
            RobotRule {
                kind: Some("registry".into()),
                pattern: "catalog".into(),
                actions: vec!["*".into()],
            },
        ];
        let claims = signer().claims(&r, 5);
        assert_eq!(
            claims[RULES_CLAIM],
            json!(["repository:acme/app/*:pull,push", "registry:catalog:*"])
        );
    }

    #[test]
    fn the_kid_is_the_rfc7638_thumbprint() {
        // RFC 7638's members in order; a P-256 key's coordinates are always 32 bytes.
        let s = signer();
        let jwk = &s.jwks()["keys"][0];
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        assert_eq!(
            s.kid(),
            URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
    }

    #[test]
    fn keys_that_are_not_pkcs8_p256_are_refused() {
        let rsa_like = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
        for pem in ["", "not pem", rsa_like] {
            let e = RobotSigner::from_pem(pem, "i".into(), "a".into(), 1).unwrap_err();
            assert!(e.contains("PKCS#8"), "{e}");
        }
    }

    fn new_robot(v: Value) -> NewRobot {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn robot_requests_are_checked_field_by_field() {
        let good = json!({"name": "ci-pull", "plans": ["community"],
            "repositories": [{"pattern": "acme/app/*", "actions": ["pull"]}]});
        assert_eq!(new_robot(good.clone()).validate(90), Ok(30));
        assert_eq!(new_robot(good.clone()).validate(7), Ok(7));
        let bad = |patch: Value, field: &str| {
            let mut v = good.clone();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            let e = new_robot(v).validate(90).unwrap_err();
            assert_eq!(e.field, field, "{patch}: {}", e.message);
        };
        bad(json!({"name": ""}), "name");
        bad(json!({"name": "CI"}), "name");
        bad(json!({"name": "-x"}), "name");
        bad(json!({"name": "a/b"}), "name");
        bad(json!({"name": "x".repeat(65)}), "name");
        bad(json!({"tenant": "a b"}), "tenant");
        bad(json!({"tenant": "../x"}), "tenant");
        bad(json!({"plans": []}), "plans");
        bad(json!({"plans": vec!["p"; 17]}), "plans");
        bad(json!({"plans": ["a b"]}), "plans[0]");
        bad(json!({"repositories": []}), "repositories");
        for p in [
            "",
            "acme//x",
            "acme/../x",
            "./x",
            "acme/a*",
            "Acme/x",
            "acme/%2F",
            "a?b",
        ] {
            bad(
                json!({"repositories": [{"pattern": p, "actions": ["pull"]}]}),
                "repositories[0].pattern",
            );
        }
        bad(
            json!({"repositories": [{"pattern": "a".repeat(256), "actions": ["pull"]}]}),
            "repositories[0].pattern",
        );
        bad(
            json!({"repositories": [{"pattern": "a", "actions": []}]}),
            "repositories[0].actions",
        );
        bad(
            json!({"repositories": [{"pattern": "a", "actions": ["admin"]}]}),
            "repositories[0].actions",
        );
        bad(
            json!({"repositories": [{"type": "blob", "pattern": "a", "actions": ["pull"]}]}),
            "repositories[0].type",
        );
        // What every gateway would refuse (its rules compiler: a registry rule names only
        // `catalog` or `*`) is refused here, not signed into a token no gateway takes.
        bad(
            json!({"repositories": [{"type": "registry", "pattern": "acme", "actions": ["pull"]}]}),
            "repositories",
        );
        assert!(new_robot(json!({"name": "ci", "plans": ["p"],
            "repositories": [{"type": "registry", "pattern": "catalog", "actions": ["*"]}]}))
        .validate(90)
        .is_ok());
        bad(json!({"expiresInDays": 0}), "expiresInDays");
        bad(json!({"expiresInDays": 91}), "expiresInDays");
        let unknown: Result<NewRobot, _> = serde_json::from_value(
            json!({"name": "a", "plans": ["p"], "repositories": [], "secret": 1}),
        );
        assert!(unknown.is_err(), "unknown members are refused");
    }
}
