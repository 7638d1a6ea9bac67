//! The TLS gateway: the shipped `envoy/gateway.yaml` with only what a user replaces
//! substituted, started with the test PKI's files; HTTPS requests to it with `curl`
//! (client certificates, repeated headers, one fresh connection per request).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Authority, ClientCert, Pki, JWKS_TIMEOUT, SERVICE};
use crate::{percent_encode, repo_root, Envoy, EnvoyOptions, Reply};

/// The shipped TLS example.
pub fn gateway_yaml_path() -> PathBuf {
    repo_root().join("envoy/gateway.yaml")
}

/// Replaces `from` by `to`, requiring exactly `count` occurrences (so an edit of the
/// shipped file that the tests would silently stop covering fails loudly).
fn substitute(text: &str, from: &str, to: &str, count: usize) -> String {
    let found = text.matches(from).count();
    assert_eq!(
        found, count,
        "envoy/gateway.yaml holds {from:?} {found} time(s), tests/e2e/src/oidc/tls.rs expects {count}: \
         update gateway_yaml() to the file's new shape"
    );
    text.replace(from, to)
}

/// `envoy/gateway.yaml` with only what a user replaces substituted, for the harness:
/// ports (`{{LISTEN_PORT}}`, `{{ADMIN_PORT}}`, listener on 127.0.0.1), the wasm file
/// (`{{WASM_PATH}}`), the certificate directory (`{{TMPDIR}}/tls/`, see
/// [`Pki::gateway_files`]), the realm (`https://127.0.0.1:{{LISTEN_PORT}}/token`), the
/// Authority (issuer and metadata URL of `authority`, the cluster a STATIC
/// `127.0.0.1:<port>`). The filter configuration, TLS settings, access log and stats tags
/// are the shipped ones.
pub fn gateway_yaml(authority: &Authority) -> String {
    let text = fs::read_to_string(gateway_yaml_path())
        .unwrap_or_else(|e| panic!("{}: {e}", gateway_yaml_path().display()));
    let t = substitute(&text, "/etc/envoy/tls/", "{{TMPDIR}}/tls/", 5);
    let t = substitute(
        &t,
        "/etc/envoy/registry_token_filter.wasm",
        "{{WASM_PATH}}",
        2,
    );
    let t = substitute(&t, "port_value: 8443", "port_value: {{LISTEN_PORT}}", 1);
    let t = substitute(&t, "port_value: 9901", "port_value: {{ADMIN_PORT}}", 1);
    let t = substitute(&t, "address: 0.0.0.0", "address: 127.0.0.1", 1);
    let t = substitute(
        &t,
        "https://gateway.example/token",
        "https://127.0.0.1:{{LISTEN_PORT}}/token",
        2,
    );
    let t = substitute(&t, "https://authority.example", authority.issuer(), 2);
    let t = substitute(
        &t,
        "{ address: authority.example, port_value: 443 }",
        &format!("{{ address: 127.0.0.1, port_value: {} }}", authority.port()),
        1,
    );
    substitute(&t, "type: LOGICAL_DNS", "type: STATIC", 1)
}

/// Starts Envoy with [`gateway_yaml`], the PKI's files, the signing key in
/// `REGISTRY_TOKEN_SIGNING__KEYPEM`, and `opts` (add
/// `.env("REGISTRY_TOKEN_DPOP__NONCESECRET", …)` for nonce mode); waits until the filter
/// has fetched the Authority's keys (log line `JWKS refreshed`, up to [`JWKS_TIMEOUT`]).
///
/// # Panics
/// When Envoy does not start or never gets the keys.
pub fn start_tls_gateway(pki: &Pki, authority: &Authority, opts: EnvoyOptions) -> Envoy {
    let envoy = start_tls_gateway_no_wait(pki, authority, opts);
    if !envoy.wait_for_log(JWKS_TIMEOUT, |l| l.contains("JWKS refreshed")) {
        panic!(
            "the filter did not fetch the Authority's JWKS within {JWKS_TIMEOUT:?}; \
             Authority log:\n{}",
            authority.log()
        );
    }
    envoy
}

/// [`start_tls_gateway`] without waiting for the JWKS.
pub fn start_tls_gateway_no_wait(pki: &Pki, authority: &Authority, opts: EnvoyOptions) -> Envoy {
    let mut opts = opts.env("REGISTRY_TOKEN_SIGNING__KEYPEM", &pki.signing_key_pem);
    for (name, bytes) in pki.gateway_files() {
        opts = opts.file(&name, bytes);
    }
    Envoy::start(&gateway_yaml(authority), opts).unwrap_or_else(|e| panic!("{e}"))
}

/// The realm (DPoP `htu`) of a gateway from [`start_tls_gateway`].
pub fn realm(envoy: &Envoy) -> String {
    format!("https://127.0.0.1:{}/token", envoy.listen_port())
}

/// `/token?service=registry.example&scope=…`.
pub fn token_query(scopes: &[&str]) -> String {
    let mut p = format!("/token?service={}", percent_encode(SERVICE));
    for s in scopes {
        p.push_str("&scope=");
        p.push_str(&percent_encode(s));
    }
    p
}

// ---------------------------------------------------------------------------------------
// HTTPS with curl.
// ---------------------------------------------------------------------------------------

/// Sends one request with `curl` over a new TLS connection, trusting `ca`, presenting
/// `client` when given. Headers are sent as given, repeats included. 4xx/5xx are a
/// [`Reply`]; errors are transport failures (curl's exit status and message).
pub fn https_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    ca: &Path,
    client: Option<&ClientCert>,
) -> Result<Reply, String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "15", "-X", method, "--cacert"])
        .arg(ca);
    if let Some(c) = client {
        cmd.arg("--cert")
            .arg(&c.cert_path)
            .arg("--key")
            .arg(&c.key_path);
    }
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(url).stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run curl (apt-get install curl): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "curl {method} {url}: {} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        ));
    }
    parse_curl_output(&out.stdout)
}

/// Parses `curl -i` output: the status line, headers, a blank line, the body.
pub(super) fn parse_curl_output(raw: &[u8]) -> Result<Reply, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("curl output without a header block: {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// `GET <gateway><path_and_query>` with curl (see [`https_request`]).
///
/// # Panics
/// On transport failures.
pub fn https_get(
    pki: &Pki,
    envoy: &Envoy,
    path_and_query: &str,
    headers: &[(&str, &str)],
    client: Option<&ClientCert>,
) -> Reply {
    let url = format!("https://127.0.0.1:{}{path_and_query}", envoy.listen_port());
    https_request("GET", &url, headers, &pki.ca_cert, client).unwrap_or_else(|e| panic!("{e}"))
}
