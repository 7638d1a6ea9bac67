//! Guard mode's harness (issue 22): the registry **behind** the gateway. The gateway's
//! listener routes `/v2` and `/v2/…` to a `registry` cluster (registry 2.8 on 127.0.0.1),
//! with Envoy's `local_ratelimit` after the Wasm filter (descriptors from the
//! `x-registry-plan` request header the guard sets, one bucket per limited plan, 429 with
//! `Retry-After`); clients use Envoy's address as the registry host, and the registry's
//! realm stays the gateway's `/token`. Plus what the suite sends by hand: raw HTTP/1.1
//! requests whose path no client library normalises (`..`, `%2F`, `//`), the registry
//! error body the guard answers with, and registry tokens re-signed or forged.
//!
//! ```no_run
//! use registry_token_e2e::free_port;
//! use registry_token_e2e::gateway::{filter_config, GatewaySpec, TestKeys};
//! use registry_token_e2e::guard::RegistryRoute;
//! use registry_token_e2e::registry::{Registry, RegistryAuth};
//! use registry_token_e2e::EnvoyOptions;
//!
//! let keys = TestKeys::generate();
//! let config = filter_config(&keys, "http://127.0.0.1:{{LISTEN_PORT}}/token");
//! let port = free_port();
//! let envoy = GatewaySpec::new(&config)
//!     .registry_route(RegistryRoute::new(port).limit("community", 5, 60))
//!     .start(&keys, EnvoyOptions::new());
//! let realm = format!("{}/token", envoy.base_url());
//! let registry = Registry::start_on(&RegistryAuth::new(&realm, keys.signing_cert_pem()), port)
//!     .unwrap_or_else(|e| panic!("{e}"));
//! let reply = envoy.get("/v2/", &[]);
//! assert_eq!(reply.status, 401); // the registry's own challenge, through Envoy
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use crate::Reply;

/// The Envoy cluster of the registry (the guard's `registryCluster`).
pub const REGISTRY_CLUSTER: &str = "registry";

/// The request header the guard sets to the caller's plan, read by the rate limit.
pub const PLAN_HEADER: &str = "x-registry-plan";

/// One `local_ratelimit` descriptor: requests whose `x-registry-plan` is `plan` share a
/// bucket of `max_tokens`, refilled whole every `fill_seconds` (also the `Retry-After`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    /// The plan (`x-registry-plan` value).
    pub plan: String,
    /// Bucket size and refill.
    pub max_tokens: u32,
    /// Refill period, seconds.
    pub fill_seconds: u32,
}

/// The registry's route on the gateway's listener: see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRoute {
    /// The registry's port on 127.0.0.1.
    pub port: u16,
    /// Per-plan buckets; empty: no `local_ratelimit` filter at all. Plans not listed (and
    /// requests without the header) share a default bucket of 100,000 a second.
    pub limits: Vec<Limit>,
}

impl RegistryRoute {
    /// The route to the registry on `port`, no rate limit.
    pub fn new(port: u16) -> RegistryRoute {
        RegistryRoute {
            port,
            limits: Vec::new(),
        }
    }

    /// Adds a bucket for `plan`.
    pub fn limit(mut self, plan: &str, max_tokens: u32, fill_seconds: u32) -> Self {
        self.limits.push(Limit {
            plan: plan.to_owned(),
            max_tokens,
            fill_seconds,
        });
        self
    }

    /// The `registry` cluster, a YAML sequence item at column 0.
    pub fn cluster_yaml(&self) -> String {
        format!(
            "- name: {REGISTRY_CLUSTER}\n  type: STATIC\n  connect_timeout: 1s\n  \
             load_assignment:\n    cluster_name: {REGISTRY_CLUSTER}\n    endpoints:\n    \
             - lb_endpoints:\n      - endpoint:\n          address:\n            \
             socket_address: {{ address: 127.0.0.1, port_value: {} }}\n",
            self.port
        )
    }

    /// The two routes (`/v2` exactly, `/v2/` as a prefix) at the indentation of
    /// quickstart's route list, each with the plan descriptor when there are limits.
    fn routes_yaml(&self) -> String {
        let pad = " ".repeat(14);
        let mut out = String::new();
        for m in ["path: \"/v2\"", "prefix: \"/v2/\""] {
            out.push_str(&format!(
                "{pad}- match: {{ {m} }}\n{pad}  route:\n{pad}    cluster: {REGISTRY_CLUSTER}\n\
                 {pad}    timeout: 0s\n"
            ));
            if !self.limits.is_empty() {
                out.push_str(&format!(
                    "{pad}    rate_limits:\n{pad}    - actions:\n{pad}      - request_headers: \
                     {{ header_name: {PLAN_HEADER}, descriptor_key: plan }}\n"
                ));
            }
        }
        out
    }

    /// `envoy.filters.http.local_ratelimit`, an item of `http_filters`.
    fn rate_limit_filter_yaml(&self) -> String {
        let pad = " ".repeat(10);
        let retry_after = self
            .limits
            .iter()
            .map(|l| l.fill_seconds)
            .max()
            .unwrap_or(1);
        let mut out = format!(
            "{pad}- name: envoy.filters.http.local_ratelimit\n\
             {pad}  typed_config:\n\
             {pad}    \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit\n\
             {pad}    stat_prefix: registry_rate_limit\n\
             {pad}    token_bucket: {{ max_tokens: 100000, tokens_per_fill: 100000, fill_interval: 1s }}\n\
             {pad}    filter_enabled:\n\
             {pad}      runtime_key: registry_rate_limit_enabled\n\
             {pad}      default_value: {{ numerator: 100, denominator: HUNDRED }}\n\
             {pad}    filter_enforced:\n\
             {pad}      runtime_key: registry_rate_limit_enforced\n\
             {pad}      default_value: {{ numerator: 100, denominator: HUNDRED }}\n\
             {pad}    response_headers_to_add:\n\
             {pad}    - append_action: OVERWRITE_IF_EXISTS_OR_ADD\n\
             {pad}      header: {{ key: retry-after, value: \"{retry_after}\" }}\n\
             {pad}    descriptors:\n"
        );
        for l in &self.limits {
            out.push_str(&format!(
                "{pad}    - entries: [ {{ key: plan, value: {} }} ]\n\
                 {pad}      token_bucket: {{ max_tokens: {m}, tokens_per_fill: {m}, fill_interval: {}s }}\n",
                Value::String(l.plan.clone()),
                l.fill_seconds,
                m = l.max_tokens,
            ));
        }
        out
    }

    /// `yaml` (the gateway's YAML derived from quickstart) with the registry's routes
    /// before quickstart's catch-all 404, the rate-limit filter before the router, and
    /// the `registry` cluster.
    ///
    /// # Panics
    /// When quickstart's shape changed (the message names the missing anchor).
    pub fn apply(&self, yaml: &str) -> String {
        let once = |text: &str, anchor: &str, with: &str| -> String {
            let n = text.matches(anchor).count();
            assert_eq!(
                n, 1,
                "the gateway YAML: expected exactly one {anchor:?} (quickstart's shape), \
                 found {n}; update tests/e2e/src/guard.rs"
            );
            text.replacen(anchor, with, 1)
        };
        let catch_all = "              - match: { prefix: \"/\" }\n";
        let text = once(
            yaml,
            catch_all,
            &format!("{}{catch_all}", self.routes_yaml()),
        );
        let router = "          - name: envoy.filters.http.router\n";
        let text = if self.limits.is_empty() {
            text
        } else {
            once(
                &text,
                router,
                &format!("{}{router}", self.rate_limit_filter_yaml()),
            )
        };
        let clusters = "\n  clusters:\n";
        let cluster: String = self
            .cluster_yaml()
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect();
        once(&text, clusters, &format!("{clusters}{cluster}"))
    }
}

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1.
// ---------------------------------------------------------------------------------------

/// Sends `method target` to `host_port` as written (no normalisation of `..`, `%2F`,
/// `//`, case), HTTP/1.1 with `Connection: close`, `Host: host_port` and, with a body,
/// its `Content-Length`; reads the whole answer (chunked bodies decoded). Times out after
/// 15 s. Errors are transport failures and unreadable answers.
pub fn raw_request(
    host_port: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Reply, String> {
    let what = format!("{method} {target}");
    let mut stream =
        TcpStream::connect(host_port).map_err(|e| format!("{what}: connect {host_port}: {e}"))?;
    let timeout = Some(Duration::from_secs(15));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| format!("{what}: {e}"))?;
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    stream
        .write_all(&out)
        .map_err(|e| format!("{what}: write: {e}"))?;
    // Read until the answer is complete rather than to the end: Envoy keeps the
    // connection open up to its delayed-close timeout (1 s) after a local reply.
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if complete(&answer, method == "HEAD") {
            break;
        }
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("{what}: read: {e} (after {} bytes)", answer.len()))?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    parse_response(&answer).map_err(|e| format!("{what}: {e}"))
}

/// Whether `answer` holds a whole response: its headers and the body they announce
/// (`Content-Length`, the last chunk, or none for HEAD, 1xx, 204 and 304).
fn complete(answer: &[u8], head: bool) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let Ok((status, headers)) = parse_head(&answer[..end]) else {
        return false;
    };
    let body = &answer[end + 4..];
    if head || status < 200 || status == 204 || status == 304 {
        return true;
    }
    if is_chunked(&headers) {
        return dechunk(body).is_ok();
    }
    match header(&headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => body.len() >= len,
        None => false,
    }
}

/// The status and headers (names lowercased) of `head`, the bytes before `\r\n\r\n`.
fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), String> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
}

/// Parses one HTTP/1.1 response (status line, headers, a body by `Content-Length`, by
/// chunks, or to the end).
pub fn parse_response(answer: &[u8]) -> Result<Reply, String> {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(answer)))?;
    let (status, headers) = parse_head(&answer[..end])?;
    let raw = &answer[end + 4..];
    let body = if is_chunked(&headers) {
        dechunk(raw)?
    } else {
        match header(&headers, "content-length") {
            Some(v) => {
                let len: usize = v.parse().map_err(|_| format!("content-length {v:?}"))?;
                raw.get(..len)
                    .ok_or_else(|| format!("body shorter than {len}"))?
                    .to_vec()
            }
            None => raw.to_vec(),
        }
    };
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk without its size line")?;
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("chunk size {size_text:?}"))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(raw.get(..size).ok_or("a chunk cut short")?);
        raw = raw.get(size + 2..).ok_or("a chunk without its end")?;
    }
}

// ---------------------------------------------------------------------------------------
// The guard's refusals.
// ---------------------------------------------------------------------------------------

/// The first error of a registry error body
/// (`{"errors":[{"code","message","detail":{"reason"}}]}`): code, message, reason;
/// empty strings for what is missing.
pub fn registry_error(reply: &Reply) -> (String, String, String) {
    let v = reply.try_json().unwrap_or(Value::Null);
    let e = &v["errors"][0];
    let s = |x: &Value| x.as_str().unwrap_or_default().to_owned();
    (s(&e["code"]), s(&e["message"]), s(&e["detail"]["reason"]))
}

/// The reason label of a guard refusal (`errors[0].detail.reason`), "" when none.
pub fn guard_reason(reply: &Reply) -> String {
    registry_error(reply).2
}

/// Lines of an Envoy log that say a Wasm VM panicked or trapped.
pub fn vm_failures(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let low = l.to_ascii_lowercase();
            low.contains("panicked")
                || low.contains("runtimeerror")
                || low.contains("wasm trap")
                || low.contains("failed: uncaught")
                || (low.contains("wasm") && low.contains(" trap"))
        })
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Registry tokens by hand.
// ---------------------------------------------------------------------------------------

/// A compact JWS's header and claims, decoded without verification.
pub fn jws_parts(token: &str) -> (Value, Value) {
    crate::gateway::decode_unverified(token).unwrap_or_else(|e| panic!("{e}"))
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// `header.claims` signed with `key_pem` (PKCS#8 RSA or P-256 PEM, by `header.alg`:
/// RS256, ES256) — a token of that key whatever `kid` the header names.
pub fn sign_jws(header: &Value, claims: &Value, key_pem: &str) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let input = format!("{}.{}", b64(header), b64(claims));
    let (alg, key) = match header["alg"].as_str() {
        Some("RS256") => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(key_pem.as_bytes()),
        ),
        Some("ES256") => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(key_pem.as_bytes()),
        ),
        other => panic!("sign_jws: alg {other:?}"),
    };
    let key = key.unwrap_or_else(|e| panic!("sign_jws: key: {e}"));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg)
        .unwrap_or_else(|e| panic!("sign_jws: {e}"));
    format!("{input}.{sig}")
}

/// `header.claims.` with `alg` set to `none` and no signature.
pub fn alg_none(header: &Value, claims: &Value) -> String {
    let mut h = header.clone();
    h["alg"] = Value::String("none".into());
    format!("{}.{}.", b64(&h), b64(claims))
}

/// `header.claims` with `alg` HS256, MACed with `secret` (e.g. the signing public key's
/// PEM: the algorithm-confusion attack).
pub fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let mut h = header.clone();
    h["alg"] = Value::String("HS256".into());
    let input = format!("{}.{}", b64(&h), b64(claims));
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap_or_else(|e| panic!("hs256: {e}"));
    format!("{input}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{filter_config, GatewaySpec, TestKeys};

    #[test]
    fn the_route_variant_adds_routes_filter_and_cluster() {
        let keys = TestKeys::generate();
        let config = filter_config(&keys, "http://127.0.0.1:{{LISTEN_PORT}}/token");
        let plain = GatewaySpec::new(&config).yaml();
        let route = RegistryRoute::new(5999).limit("community", 3, 60);
        let yaml = GatewaySpec::new(&config)
            .registry_route(route.clone())
            .yaml();
        assert_eq!(yaml, route.apply(&plain));
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let hcm = &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        let routes = &hcm["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(routes[0]["match"]["path"].as_str(), Some("/v2"));
        assert_eq!(routes[1]["match"]["prefix"].as_str(), Some("/v2/"));
        assert_eq!(
            routes[1]["route"]["cluster"].as_str(),
            Some(REGISTRY_CLUSTER)
        );
        assert_eq!(
            routes[1]["route"]["rate_limits"][0]["actions"][0]["request_headers"]["header_name"]
                .as_str(),
            Some(PLAN_HEADER)
        );
        assert_eq!(routes[2]["match"]["prefix"].as_str(), Some("/"));
        let filters: Vec<&str> = hcm["http_filters"]
            .as_sequence()
            .map(|s| s.iter().filter_map(|f| f["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            filters,
            [
                "registry_token",
                "envoy.filters.http.local_ratelimit",
                "envoy.filters.http.router"
            ]
        );
        let clusters: Vec<&str> = doc["static_resources"]["clusters"]
            .as_sequence()
            .map(|s| s.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(clusters.contains(&REGISTRY_CLUSTER), "{clusters:?}");
        // No limits: no rate-limit filter.
        let bare = RegistryRoute::new(5999).apply(&plain);
        assert!(!bare.contains("local_ratelimit") && !bare.contains("rate_limits"));
    }

    #[test]
    fn raw_responses_parse_with_length_chunks_or_to_the_end() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhiXX")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.status, r.body.as_str(), r.header("x-a")),
            (200, "hi", Some("b"))
        );
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.body, "abcde");
        let r =
            parse_response(b"HTTP/1.1 404 Not Found\r\n\r\nrest").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.status, r.body.as_str()), (404, "rest"));
        assert!(parse_response(b"garbage").is_err());
        // A whole answer is seen without waiting for the connection to close.
        assert!(!complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nh",
            false
        ));
        assert!(complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            false
        ));
        assert!(complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            true
        ));
        assert!(!complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n",
            false
        ));
        assert!(complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            false
        ));
        assert!(!complete(b"HTTP/1.1 404 Not Found\r\n\r\nrest", false));
    }

    #[test]
    fn forged_tokens_have_the_asked_shape() {
        let header = serde_json::json!({"alg": "RS256", "kid": "k1", "typ": "JWT"});
        let claims = serde_json::json!({"sub": "a"});
        let none = alg_none(&header, &claims);
        assert!(none.ends_with('.'));
        assert_eq!(jws_parts(&none).0["alg"], "none");
        assert_eq!(jws_parts(&none).0["kid"], "k1");
        let hs = hs256(&header, &claims, b"secret");
        assert_eq!(jws_parts(&hs).0["alg"], "HS256");
        assert_eq!(hs.split('.').count(), 3);
        let v = vm_failures("a\n[wasm] panicked at x\nFunction: on_x failed: Uncaught RuntimeError: unreachable\nok");
        assert_eq!(v.len(), 2);
    }
}
