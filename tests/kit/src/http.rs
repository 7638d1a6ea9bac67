//! One small HTTP client for control traffic (readiness, admin stats, a ledger's
//! `/metrics`): no redirects followed, 15 s timeout, every status returned. Load is not
//! made with it (the bench has its own).

use std::io::Read;
use std::sync::OnceLock;
use std::time::Duration;

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(15))
            .build()
    })
}

/// `GET url`: (status, body as lossy UTF-8). Errors are transport failures only.
pub fn get(url: &str) -> Result<(u16, String), String> {
    let resp = match agent().get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Err(format!("GET {url}: {t}")),
    };
    let status = resp.status();
    let mut bytes = Vec::new();
    resp.into_reader()
        .take(64 * 1024 * 1024)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` with every regular-expression metacharacter escaped (Envoy's stats `filter=`).
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(regex_escape("http.ingress.x"), r"http\.ingress\.x");
        assert_eq!(percent_encode("^a\\.b$"), "%5Ea%5C.b%24");
    }

    #[test]
    fn transport_errors_are_errors() {
        let port = crate::free_port().unwrap();
        let err = get(&format!("http://127.0.0.1:{port}/")).unwrap_err();
        assert!(err.starts_with("GET http://127.0.0.1:"), "{err}");
    }
}
