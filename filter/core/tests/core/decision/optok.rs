//! The OpToken checks, shown on the whole decision: malformed and tampered tokens, the
//! algorithm allow-list and algorithm confusion (`none`, HS256 with the public key, a key
//! of the wrong type), issuer, audience, times and clock skew, scopes, the subject, and an
//! unknown `kid` asking for a key refresh. Tokens are signed by `jsonwebtoken`.

use super::*;

#[test]
fn bad_tokens_are_401_with_invalid_token() {
    let config = cfg();
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            with_claims(|c| {
                c.insert("exp".into(), json!(NOW - 61));
            }),
        ),
        (
            "not_yet_valid",
            with_claims(|c| {
                c.insert("nbf".into(), json!(NOW + 61));
            }),
        ),
        (
            "issued_in_future",
            with_claims(|c| {
                c.insert("iat".into(), json!(NOW + 61));
            }),
        ),
        (
            "expired",
            with_claims(|c| {
                c.remove("exp");
            }),
        ),
        (
            "wrong_issuer",
            with_claims(|c| {
                c.insert("iss".into(), json!("https://evil.example"));
            }),
        ),
        (
            "wrong_issuer",
            with_claims(|c| {
                c.remove("iss");
            }),
        ),
        (
            "wrong_audience",
            with_claims(|c| {
                c.insert("aud".into(), json!("other"));
            }),
        ),
        (
            "wrong_audience",
            with_claims(|c| {
                c.insert("aud".into(), json!(["a", "b"]));
            }),
        ),
        (
            "wrong_audience",
            with_claims(|c| {
                c.remove("aud");
            }),
        ),
        ("malformed_token", "not-a-jwt".to_string()),
        ("malformed_token", "a.b.c".to_string()),
        (
            "unknown_key",
            sign_rsa(&default_claims(), Algorithm::RS256, Some("nope")),
        ),
    ];
    for (want, tok) in cases {
        let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
        assert_eq!(d.status, 401, "{want}: {}", d.body);
        assert_eq!(reason(&d), want);
        let challenge = header(&d, "www-authenticate").unwrap();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(!d.body.contains(&tok), "the body must never echo the token");
    }
}

#[test]
fn clock_skew_is_honoured_at_the_edges() {
    let config = cfg();
    let inside = [
        with_claims(|c| {
            c.insert("exp".into(), json!(NOW - 59));
        }),
        with_claims(|c| {
            c.insert("nbf".into(), json!(NOW + 60));
        }),
        with_claims(|c| {
            c.insert("iat".into(), json!(NOW + 60));
        }),
    ];
    for tok in inside {
        let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
        assert_eq!(d.status, 200, "{}", d.body);
    }
}

#[test]
fn audience_array_with_one_match_is_accepted() {
    let config = cfg();
    let tok = with_claims(|c| {
        c.insert("aud".into(), json!(["x", AUDIENCE]));
    });
    assert_eq!(
        decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]).status,
        200
    );
}

#[test]
fn scp_array_form_of_scopes_is_accepted() {
    let config = cfg();
    let tok = with_claims(|c| {
        c.remove("scope");
        c.insert("scp".into(), json!(["registry.token.issue"]));
    });
    assert_eq!(
        decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]).status,
        200
    );
}

#[test]
fn missing_required_scope_is_403_insufficient_scope() {
    let config = cfg();
    let tok = with_claims(|c| {
        c.insert("scope".into(), json!("openid registry.token"));
    });
    let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
    assert_eq!(d.status, 403);
    assert_eq!(reason(&d), "insufficient_scope");
    let challenge = header(&d, "www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"registry.token.issue\""),
        "{challenge}"
    );
}

fn b64json(v: &Value) -> String {
    b64(v.to_string().as_bytes())
}

#[test]
fn alg_none_is_refused() {
    let config = cfg();
    let tok = format!(
        "{}.{}.",
        b64json(&json!({"alg":"none","kid":AUTH_KID})),
        b64json(&default_claims())
    );
    let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
    assert_eq!(d.status, 401);
    let tok = format!(
        "{}.{}.AAAA",
        b64json(&json!({"alg":"none","kid":AUTH_KID})),
        b64json(&default_claims())
    );
    let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
    assert_eq!(d.status, 401);
    assert_eq!(reason(&d), "disallowed_alg");
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let config = cfg();
    // The classic confusion attack: HMAC keyed with the RSA public key's PEM / JWK bytes.
    use rsa::pkcs8::EncodePublicKey;
    let pem = authority_rsa()
        .public
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    for secret in [
        pem.as_bytes().to_vec(),
        authority_rsa().jwk(AUTH_KID).to_string().into_bytes(),
    ] {
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some(AUTH_KID.into());
        let tok = jsonwebtoken::encode(
            &header,
            &default_claims(),
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
        assert_eq!(d.status, 401);
        assert_eq!(reason(&d), "disallowed_alg");
    }
}

#[test]
fn rsa_key_cannot_be_used_with_an_ec_alg_and_vice_versa() {
    let config = cfg();
    // ES256 header naming the RSA key's kid: no candidate key fits.
    let tok = sign_ec(&default_claims(), Some(AUTH_KID));
    let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
    assert_eq!(d.status, 401);
    assert_eq!(reason(&d), "unknown_key");
    let tok = sign_rsa(&default_claims(), Algorithm::RS256, Some(AUTH_EC_KID));
    assert_eq!(
        decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]).status,
        401
    );
}

#[test]
fn every_allowed_algorithm_family_verifies() {
    let config = cfg();
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        let mut c = base_config();
        // The JWK's alg hint must not pin RS256 for this test.
        c["authority"]["jwks"]["keys"][0]
            .as_object_mut()
            .unwrap()
            .remove("alg");
        let config = config_from(c);
        let tok = sign_rsa(&default_claims(), alg, Some(AUTH_KID));
        let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
        assert_eq!(d.status, 200, "{alg:?}: {}", d.body);
    }
    let tok = sign_ec(&default_claims(), Some(AUTH_EC_KID));
    assert_eq!(
        decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]).status,
        200
    );
    // Without kid: every key that fits the alg is tried.
    let tok = sign_ec(&default_claims(), None);
    assert_eq!(
        decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]).status,
        200
    );
}

#[test]
fn jwk_alg_hint_pins_the_algorithm() {
    let config = cfg();
    let tok = sign_rsa(&default_claims(), Algorithm::PS256, Some(AUTH_KID));
    let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
    assert_eq!(
        d.status, 401,
        "the JWK says RS256: PS256 must not be accepted"
    );
}

#[test]
fn algorithm_allow_list_is_enforced() {
    let mut c = base_config();
    c["authority"]["algorithms"] = json!(["ES256"]);
    let config = config_from(c);
    let d = decide(
        &config,
        PULL_PUBLIC,
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(d.status, 401);
    assert_eq!(reason(&d), "disallowed_alg");
    let tok = sign_ec(&default_claims(), Some(AUTH_EC_KID));
    assert_eq!(
        decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]).status,
        200
    );
}

#[test]
fn tampered_tokens_fail_the_signature() {
    let config = cfg();
    let tok = optok(&default_claims());
    let parts: Vec<&str> = tok.split('.').collect();
    let mut claims = default_claims();
    claims["sub"] = json!("mallory");
    let forged = format!("{}.{}.{}", parts[0], b64json(&claims), parts[2]);
    let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&forged))]);
    assert_eq!(d.status, 401);
    assert_eq!(reason(&d), "bad_signature");
    let other = {
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some(AUTH_KID.into());
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(other_rsa().pkcs8_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &default_claims(), &key).unwrap()
    };
    let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&other))]);
    assert_eq!(reason(&d), "bad_signature");
}

#[test]
fn unknown_kid_asks_for_a_key_refresh() {
    let config = cfg();
    let tok = sign_rsa(&default_claims(), Algorithm::RS256, Some("rotated"));
    let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
    assert!(d.unknown_kid);
    let d = decide(
        &config,
        PULL_PUBLIC,
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert!(!d.unknown_kid);
}

/// Hardening: an OpTok without a usable `sub` used to get a token whose `sub` came from
/// `client_id`/`azp` or was empty. It is refused now, whatever else it carries.
#[test]
fn an_optok_without_a_subject_is_refused() {
    let config = cfg();
    for sub in [
        None,
        Some(json!("")),
        Some(json!(42)),
        Some(json!(["alice"])),
    ] {
        let tok = with_claims(|c| match &sub {
            None => {
                c.remove("sub");
            }
            Some(v) => {
                c.insert("sub".into(), v.clone());
            }
        });
        let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
        assert_eq!(d.status, 401, "{sub:?}: {}", d.body);
        let want = if matches!(&sub, Some(v) if !v.is_string()) {
            "invalid_claim"
        } else {
            "missing_subject"
        };
        assert_eq!(reason(&d), want, "{sub:?}");
    }
}
