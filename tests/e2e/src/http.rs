//! HTTP for the tests: any method, headers and body, every status a [`Reply`] (4xx/5xx
//! included), no redirects followed, 15 s timeout; errors are transport failures only.

use std::io::Read;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

pub use registry_token_testkit::http::percent_encode;

/// An HTTP response, whatever its status.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers in order, names lowercased, repeated headers kept.
    pub headers: Vec<(String, String)>,
    /// Body (lossily decoded as UTF-8).
    pub body: String,
}

impl Reply {
    /// First value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of the header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body parsed as JSON, or None.
    pub fn try_json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    /// When the body is not JSON (the message shows status and body).
    pub fn json(&self) -> Value {
        match serde_json::from_str(&self.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "response body is not JSON ({e}); status {}, body: {:?}",
                self.status, self.body
            ),
        }
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(15))
            .build()
    })
}

/// Sends a request; 4xx/5xx are a [`Reply`] like any other status. Errors are transport
/// failures only (connection refused, reset, timeout, bad URL).
pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Reply, String> {
    let mut req = agent().request(method, url);
    for (name, value) in headers {
        req = req.set(name, value);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Err(format!("{method} {url}: {t}")),
    };
    let status = resp.status();
    let mut headers = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for name in resp.headers_names() {
        let idx = match seen.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => {
                *count += 1;
                *count - 1
            }
            None => {
                seen.push((name.clone(), 1));
                0
            }
        };
        if let Some(value) = resp.all(&name).get(idx) {
            headers.push((name, (*value).to_owned()));
        }
    }
    let mut bytes = Vec::new();
    resp.into_reader()
        .take(64 * 1024 * 1024)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{method} {url}: reading the body: {e}"))?;
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Sends a request.
///
/// # Panics
/// On transport failures (see [`try_request`]).
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    match try_request(method, url, headers, body) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

/// `GET url`; no redirects followed, 4xx/5xx returned as a [`Reply`].
///
/// # Panics
/// On transport failures (see [`try_request`]).
pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    request("GET", url, headers, None)
}

/// `POST url` with a body.
///
/// # Panics
/// On transport failures (see [`try_request`]).
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    request("POST", url, headers, Some(body))
}
