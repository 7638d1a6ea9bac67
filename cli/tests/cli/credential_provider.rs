//! `registry-token credential-provider` as the kubelet runs it: the request on standard
//! input, the answer on standard output, a refusal as one line on standard error with
//! exit status 1.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::bin;

fn run(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(bin())
        .arg("credential-provider")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refusal by clap exits before reading: a broken pipe is not the test's failure.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[test]
fn answers_the_kubelets_request_with_the_pods_token() {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = format!(
        "{}.{}.c2ln",
        b64url(br#"{"alg":"RS256"}"#),
        b64url(
            json!({"iss": "https://kubernetes.default.svc", "exp": exp})
                .to_string()
                .as_bytes()
        )
    );
    // The request exactly as kubelet 1.34 writes it (tokenAttributes configured).
    let request = format!(
        r#"{{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"registry.example:5443/acme/app:1.0","serviceAccountToken":"{token}","serviceAccountAnnotations":{{}}}}"#
    );
    let (code, out, err) = run(&["--max-cache-seconds", "600"], request.as_bytes());
    assert_eq!(code, 0, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        answer,
        json!({
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "kind": "CredentialProviderResponse",
            "cacheKeyType": "Registry",
            "cacheDuration": "10m0s",
            "auth": {"registry.example:5443": {"username": "serviceaccount", "password": token}},
        })
    );
}

#[test]
fn a_bad_request_is_one_line_and_status_1() {
    for input in [&b"{"[..], br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"r.example/a","serviceAccountToken":"opaque"}"#] {
        let (code, out, err) = run(&[], input);
        assert_eq!(code, 1, "{err}");
        assert!(out.is_empty());
        assert!(err.starts_with("registry-token: ") && err.trim_end().lines().count() == 1, "{err}");
    }
    let (code, _, err) = run(&["--max-cache-seconds", "90000"], b"{}");
    assert_eq!(code, 2, "clap refuses the flag: {err}");
}

/// deploy/kubelet/credential-provider-config.yaml names this binary and arguments it takes.
#[test]
fn the_shipped_kubelet_configuration_runs_this_binary() {
    let path = crate::common::repo_root().join("deploy/kubelet/credential-provider-config.yaml");
    let config: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(config["kind"], "CredentialProviderConfig");
    let provider = &config["providers"][0];
    assert_eq!(provider["name"], "registry-token");
    assert_eq!(
        provider["apiVersion"],
        "credentialprovider.kubelet.k8s.io/v1"
    );
    assert_eq!(provider["tokenAttributes"]["cacheType"], "Token");
    let args: Vec<&str> = provider["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "credential-provider");
    let registry = provider["matchImages"][0].as_str().unwrap();
    let request = json!({
        "kind": "CredentialProviderRequest",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "image": format!("{registry}/acme/app:1"),
        "serviceAccountAnnotations": {},
    });
    let (code, out, err) = run(&args[1..], request.to_string().as_bytes());
    assert_eq!(code, 0, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["auth"], json!({}), "no token: no credentials");
}
