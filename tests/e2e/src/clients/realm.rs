//! [`CaptureRealm`]: a token realm that records what the clients send (`GET` and `POST
//! /token`, form fields, Basic credentials) and mints tokens a distribution 2.8 registry
//! accepts; the form and scope parsing it needs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::random_hex;
use crate::gateway::{SERVICE, SIGNING_ISSUER};

/// One request the realm received.
#[derive(Clone, Debug, Default)]
pub struct RealmRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    /// The query, decoded, in order.
    pub query_params: Vec<(String, String)>,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: String,
    /// The body as `application/x-www-form-urlencoded`, decoded, in order.
    pub form: Vec<(String, String)>,
    /// The status the realm answered.
    pub status: u16,
}

impl RealmRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name`.
    pub fn query_all(&self, name: &str) -> Vec<&str> {
        values(&self.query_params, name)
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query_all(name).first().copied()
    }

    /// The first value of form field `name`.
    pub fn form_field(&self, name: &str) -> Option<&str> {
        values(&self.form, name).first().copied()
    }

    /// The user and password of a Basic `Authorization` header.
    pub fn basic(&self) -> Option<(String, String)> {
        let v = self.header("authorization")?;
        let (scheme, rest) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = STANDARD.decode(rest.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_owned(), p.to_owned()))
    }

    /// The request as text with secrets masked (Basic credentials → `user:***`,
    /// `password`/`refresh_token`/`client_secret` fields → `***`).
    pub fn redacted(&self) -> String {
        let mut out = format!("{} {}", self.method, self.path);
        if !self.query.is_empty() {
            out.push('?');
            out.push_str(&self.query);
        }
        out.push_str(&format!("  → {}\n", self.status));
        for (k, v) in &self.headers {
            let v = if k == "authorization" {
                match self.basic() {
                    Some((u, _)) => format!("Basic base64({u}:***)"),
                    None => format!("{} ***", v.split(' ').next().unwrap_or("")),
                }
            } else {
                v.clone()
            };
            out.push_str(&format!("  {k}: {v}\n"));
        }
        if !self.form.is_empty() {
            let fields: Vec<String> = self
                .form
                .iter()
                .map(|(k, v)| {
                    if matches!(k.as_str(), "password" | "refresh_token" | "client_secret") {
                        format!("{k}=***")
                    } else {
                        format!("{k}={}", form_encode(v))
                    }
                })
                .collect();
            out.push_str(&format!("  body: {}\n", fields.join("&")));
        } else if !self.body.is_empty() {
            out.push_str(&format!("  body: {} bytes\n", self.body.len()));
        }
        out
    }
}

fn values<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b':'
            | b','
            | b'/'
            | b'*' => char::from(b).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `application/x-www-form-urlencoded` (also a query string).
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The registry access a scope string asks for: `type:name:action,…` where the name may
/// hold `host:port` (type up to the first `:`, actions after the last).
pub fn scope_access(scope: &str) -> Option<Value> {
    let first = scope.find(':')?;
    let last = scope.rfind(':')?;
    if last <= first {
        return None;
    }
    let typ = &scope[..first];
    let typ = typ.split('(').next().unwrap_or(typ);
    let name = &scope[first + 1..last];
    let actions: Vec<&str> = scope[last + 1..]
        .split(',')
        .filter(|a| !a.is_empty())
        .collect();
    Some(json!({"type": typ, "name": name, "actions": actions}))
}

/// How the capture realm decides and answers.
#[derive(Clone, Debug)]
pub struct RealmSettings {
    /// The user name that is accepted (Basic, or the `password` grant's `username`).
    pub user: String,
    /// Its password.
    pub password: String,
    /// When set, a GET with `offline_token=true` and a `password` grant with
    /// `access_type=offline` also get this `refresh_token`, and a `refresh_token` grant
    /// with it is accepted (docker then stores it as `identitytoken`).
    pub refresh_token: Option<String>,
    /// `expires_in` of the answers.
    pub expires_in: u64,
}

struct RealmShared {
    settings: RealmSettings,
    requests: Vec<RealmRequest>,
    key: jsonwebtoken::EncodingKey,
    x5c: String,
    alg: jsonwebtoken::Algorithm,
}

/// A token realm on 127.0.0.1 that records every request (method, path, query, headers,
/// form body) and answers like a Docker token server: it checks the credentials of
/// [`RealmSettings`] (Basic, `password` grant, `refresh_token` grant; 401 otherwise) and
/// mints a token for every requested scope, signed with the given key and carrying the
/// certificate in `x5c` (so a registry with that certificate in its `rootcertbundle`
/// accepts it; `iss` [`SIGNING_ISSUER`], `aud` [`SERVICE`]). Tokens are signed with the
/// `jsonwebtoken` crate, independently of the filter. Answers
/// `{"token", "access_token", "expires_in"}` (+ `refresh_token`, see
/// [`RealmSettings::refresh_token`]). It serves `GET` and `POST` on every path.
pub struct CaptureRealm {
    port: u16,
    shared: Arc<Mutex<RealmShared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CaptureRealm {
    /// Starts the realm. `key_pem`: PKCS#8 RSA (RS256) or P-256 (ES256) private key;
    /// `cert_pem`: its certificate (the `x5c` header).
    pub fn start(
        key_pem: &str,
        cert_pem: &str,
        settings: RealmSettings,
    ) -> Result<CaptureRealm, String> {
        let (key, alg) = match jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()) {
            Ok(k) => (k, jsonwebtoken::Algorithm::RS256),
            Err(_) => (
                jsonwebtoken::EncodingKey::from_ec_pem(key_pem.as_bytes())
                    .map_err(|e| format!("signing key: {e}"))?,
                jsonwebtoken::Algorithm::ES256,
            ),
        };
        let body: String = cert_pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?
            .port();
        let shared = Arc::new(Mutex::new(RealmShared {
            settings,
            requests: Vec::new(),
            key,
            x5c: body.trim().to_owned(),
            alg,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                thread::spawn(move || serve_realm(conn, &s));
            }
        });
        Ok(CaptureRealm {
            port,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>/token`, the registry's `auth.token.realm`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RealmRequest> {
        self.lock().requests.clone()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.lock().requests.clear();
    }

    /// All requests, redacted ([`RealmRequest::redacted`]), as one text.
    pub fn transcript(&self) -> String {
        self.requests()
            .iter()
            .map(RealmRequest::redacted)
            .collect::<Vec<_>>()
            .join("")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RealmShared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for CaptureRealm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if thread::panicking() {
            eprintln!("capture realm saw:\n{}", self.transcript());
        }
    }
}

fn read_request(conn: &mut TcpStream) -> Option<RealmRequest> {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.clone(), String::new()),
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    while body.len() < length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let is_form = headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("application/x-www-form-urlencoded"));
    Some(RealmRequest {
        method,
        query_params: parse_form(&query),
        path,
        query,
        headers,
        form: if is_form {
            parse_form(&body)
        } else {
            Vec::new()
        },
        body,
        status: 0,
    })
}

fn serve_realm(mut conn: TcpStream, shared: &Mutex<RealmShared>) {
    let Some(mut req) = read_request(&mut conn) else {
        return;
    };
    let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let (status, body) = realm_answer(&req, &s);
    req.status = status;
    s.requests.push(req);
    drop(s);
    let reason = if status == 200 { "OK" } else { "Error" };
    let mut extra = String::new();
    if status == 401 {
        extra.push_str("www-authenticate: Basic realm=\"capture\"\r\n");
    }
    let body = body.to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n{extra}\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
}

fn realm_answer(req: &RealmRequest, s: &RealmShared) -> (u16, Value) {
    let st = &s.settings;
    let unauthorized = |msg: &str| {
        (
            401,
            json!({"errors": [{"code": "UNAUTHORIZED", "message": msg}]}),
        )
    };
    let (account, scopes, offline, service) = match req.method.as_str() {
        "GET" => {
            let Some((u, p)) = req.basic() else {
                return unauthorized("no Basic credentials");
            };
            if u != st.user || p != st.password {
                return unauthorized("wrong user or password");
            }
            (
                u,
                req.query_all("scope")
                    .iter()
                    .flat_map(|s| s.split(' '))
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
                req.query_param("offline_token") == Some("true"),
                req.query_param("service").unwrap_or(SERVICE).to_owned(),
            )
        }
        "POST" => {
            let scopes: Vec<String> = values(&req.form, "scope")
                .iter()
                .flat_map(|s| s.split(' '))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let service = req.form_field("service").unwrap_or(SERVICE).to_owned();
            match req.form_field("grant_type") {
                Some("password") => {
                    let u = req.form_field("username").unwrap_or("");
                    if u != st.user || req.form_field("password") != Some(st.password.as_str()) {
                        return unauthorized("wrong user or password");
                    }
                    let offline = req.form_field("access_type") == Some("offline");
                    (u.to_owned(), scopes, offline, service)
                }
                Some("refresh_token") => {
                    match (&st.refresh_token, req.form_field("refresh_token")) {
                        (Some(want), Some(got)) if want == got => {
                            (st.user.clone(), scopes, false, service)
                        }
                        _ => return unauthorized("unknown refresh token"),
                    }
                }
                other => {
                    return (
                        400,
                        json!({"error": "unsupported_grant_type", "grant_type": other}),
                    )
                }
            }
        }
        _ => return (405, json!({"error": "method not allowed"})),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let access: Vec<Value> = scopes.iter().filter_map(|s| scope_access(s)).collect();
    let claims = json!({
        "iss": SIGNING_ISSUER,
        "sub": account,
        "aud": service,
        "exp": now + st.expires_in,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": random_hex(12),
        "access": access,
    });
    let mut header = jsonwebtoken::Header::new(s.alg);
    header.x5c = Some(vec![s.x5c.clone()]);
    let token = match jsonwebtoken::encode(&header, &claims, &s.key) {
        Ok(t) => t,
        Err(e) => return (500, json!({"error": format!("cannot sign: {e}")})),
    };
    let mut answer = json!({
        "token": token,
        "access_token": token,
        "expires_in": st.expires_in,
    });
    if let (true, Some(r)) = (offline, &st.refresh_token) {
        answer["refresh_token"] = json!(r);
    }
    (200, answer)
}
