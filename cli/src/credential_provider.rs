//! `registry-token credential-provider`: a kubelet image credential provider
//! (credentialprovider.kubelet.k8s.io/v1) for Kubernetes without pull secrets. The kubelet
//! runs it for every image its `CredentialProviderConfig` matches, with the pod's
//! service-account token in the request (KEP-4412, `tokenAttributes`); the answer gives
//! the image's registry that token as the Basic password, which the container runtime sends
//! to the gateway's realm, where a Kubernetes trust policy (docs/TRUST.md) maps it to a
//! plan. Nothing is fetched and nothing is signed here: the gateway checks the token.
//!
//! The token's `exp` (read, not verified) bounds how long the kubelet may cache the answer.

use serde::Deserialize;
use serde_json::{json, Value};

use registry_token_core::wire::b64;

/// The only API version spoken (the kubelet sends the one its configuration names).
pub const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// Largest request read from standard input.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// What is kept off the token's remaining lifetime when telling the kubelet how long to
/// cache: a pull that starts just before `exp` must not send an expired token.
pub const EXPIRY_MARGIN_SECONDS: u64 = 60;

/// The request the kubelet writes on standard input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    api_version: String,
    kind: String,
    image: String,
    #[serde(default)]
    service_account_token: Option<String>,
    // serviceAccountAnnotations and later members are accepted and not used.
}

/// How the answer is made.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Basic user name (the gateway reads only the password).
    pub username: String,
    /// Longest cache duration given to the kubelet, seconds.
    pub max_cache_seconds: u64,
}

/// The registry of an image reference (`host[:port]`), as the kubelet's `auth` keys name
/// it: the first path component when it looks like a host (a `.` or `:`, or
/// `localhost`), else Docker Hub's.
pub fn registry_of(image: &str) -> Result<&str, String> {
    let image = image.trim();
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the request's image is empty or holds spaces".into());
    }
    Ok(match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    })
}

/// The `exp` of a JWT's payload, unverified.
fn token_exp(token: &str) -> Result<u64, String> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the service-account token is not a JWT".into());
    };
    let bytes = b64::url_decode(payload)
        .map_err(|_| "the service-account token's payload is not base64url".to_string())?;
    let claims: Value = serde_json::from_slice(&bytes)
        .map_err(|_| "the service-account token's payload is not JSON".to_string())?;
    claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or_else(|| "the service-account token has no numeric exp".to_string())
}

/// A Go duration (`1h2m3s`) as the kubelet parses it.
pub fn go_duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

/// The `CredentialProviderResponse` for the request `input` at unix time `now`. A request
/// without a service-account token gets an answer with no credentials (the kubelet then
/// tries the pod's pull secrets, or pulls anonymously); a malformed request, or a token
/// that is not a JWT or has expired, is an error.
pub fn answer(input: &[u8], opts: &Options, now: u64) -> Result<Value, String> {
    if input.len() > MAX_REQUEST_BYTES {
        return Err(format!(
            "the request is larger than {MAX_REQUEST_BYTES} bytes"
        ));
    }
    let req: Request = serde_json::from_slice(input)
        .map_err(|e| format!("the request is not a CredentialProviderRequest: {e}"))?;
    if req.api_version != API_VERSION || req.kind != "CredentialProviderRequest" {
        return Err(format!(
            "unsupported request {} {} (this provider speaks {API_VERSION} \
             CredentialProviderRequest)",
            req.api_version, req.kind
        ));
    }
    let registry = registry_of(&req.image)?;
    let Some(token) = req.service_account_token.filter(|t| !t.is_empty()) else {
        return Ok(json!({
            "apiVersion": API_VERSION,
            "kind": "CredentialProviderResponse",
            "cacheKeyType": "Registry",
            "cacheDuration": "0s",
            "auth": {},
        }));
    };
    let exp = token_exp(&token)?;
    if exp <= now {
        return Err("the service-account token has expired".into());
    }
    let cache = (exp - now)
        .saturating_sub(EXPIRY_MARGIN_SECONDS)
        .min(opts.max_cache_seconds);
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "cacheDuration": go_duration(cache),
        "auth": { registry: {"username": opts.username, "password": token} },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: Value) -> String {
        format!(
            "{}.{}.c2ln",
            b64::url_encode(br#"{"alg":"RS256","kid":"k"}"#),
            b64::url_encode(claims.to_string().as_bytes())
        )
    }

    fn opts() -> Options {
        Options {
            username: "serviceaccount".into(),
            max_cache_seconds: 3600,
        }
    }

    /// The request a kubelet 1.34 sends with `tokenAttributes` configured.
    fn request(image: &str, token: Option<&str>) -> Vec<u8> {
        let mut r = json!({
            "kind": "CredentialProviderRequest",
            "apiVersion": API_VERSION,
            "image": image,
            "serviceAccountAnnotations": {"registry.example/plan": "ci"},
        });
        if let Some(t) = token {
            r["serviceAccountToken"] = json!(t);
        }
        r.to_string().into_bytes()
    }

    #[test]
    fn the_pods_token_is_the_registrys_basic_password() {
        let token = jwt(
            json!({"iss": "https://kubernetes.default.svc", "exp": 10_000,
            "sub": "system:serviceaccount:ci:builder"}),
        );
        let a = answer(
            &request("registry.example:5000/acme/app:1.0", Some(&token)),
            &opts(),
            1_000,
        )
        .unwrap();
        assert_eq!(a["kind"], "CredentialProviderResponse");
        assert_eq!(a["apiVersion"], API_VERSION);
        assert_eq!(a["cacheKeyType"], "Registry");
        assert_eq!(a["cacheDuration"], "1h0m0s");
        let auth = &a["auth"]["registry.example:5000"];
        assert_eq!(auth["password"], token.as_str());
        assert_eq!(auth["username"], "serviceaccount");
        assert_eq!(a["auth"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn the_cache_ends_before_the_token_does() {
        let token = jwt(json!({"exp": 1_000 + 600}));
        let a = answer(&request("r.example/a", Some(&token)), &opts(), 1_000).unwrap();
        assert_eq!(a["cacheDuration"], "9m0s");
        let token = jwt(json!({"exp": 1_000 + 30}));
        let a = answer(&request("r.example/a", Some(&token)), &opts(), 1_000).unwrap();
        assert_eq!(a["cacheDuration"], "0s", "not cached at all");
    }

    #[test]
    fn no_token_means_no_credentials() {
        for req in [
            request("r.example/a", None),
            request("r.example/a", Some("")),
        ] {
            let a = answer(&req, &opts(), 1).unwrap();
            assert_eq!(a["auth"], json!({}));
        }
    }

    #[test]
    fn bad_requests_and_tokens_are_errors() {
        let good = jwt(json!({"exp": 5000}));
        let err = |input: Vec<u8>| answer(&input, &opts(), 1_000).unwrap_err();
        assert!(err(b"not json".to_vec()).contains("CredentialProviderRequest"));
        assert!(err(b"{}".to_vec()).contains("CredentialProviderRequest"));
        let v1alpha = String::from_utf8(request("r.example/a", Some(&good)))
            .unwrap()
            .replace("/v1\"", "/v1alpha1\"");
        assert!(err(v1alpha.into_bytes()).contains("unsupported"));
        assert!(err(request("", Some(&good))).contains("image"));
        assert!(err(request("r.example/a b", Some(&good))).contains("image"));
        assert!(err(request("r.example/a", Some("opaque"))).contains("not a JWT"));
        assert!(err(request("r.example/a", Some("a.!!!.c"))).contains("base64url"));
        assert!(err(request("r.example/a", Some(&jwt(json!({"exp": "soon"}))))).contains("exp"));
        assert!(err(request("r.example/a", Some(&jwt(json!({"exp": 999}))))).contains("expired"));
        assert!(err(vec![b' '; MAX_REQUEST_BYTES + 1]).contains("larger"));
    }

    #[test]
    fn registries_as_the_kubelet_names_them() {
        assert_eq!(
            registry_of("registry.example/acme/app:1"),
            Ok("registry.example")
        );
        assert_eq!(
            registry_of("localhost:5000/a@sha256:00"),
            Ok("localhost:5000")
        );
        assert_eq!(registry_of("localhost/a"), Ok("localhost"));
        assert_eq!(registry_of("library/busybox"), Ok("docker.io"));
        assert_eq!(registry_of("busybox"), Ok("docker.io"));
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(59), "59s");
        assert_eq!(go_duration(61), "1m1s");
        assert_eq!(go_duration(7322), "2h2m2s");
    }
}
