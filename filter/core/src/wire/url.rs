//! Minimal absolute-URL handling for `registry.realm` and DPoP `htu` (RFC 3986 §6.2.2–6.2.3
//! syntax- and scheme-based normalization). Only `http` and `https` are accepted.

/// An absolute http(s) URL split into normalized parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `http` or `https`, lowercase.
    pub scheme: String,
    /// Host, lowercase (IPv6 literals keep their brackets).
    pub host: String,
    /// Port, `None` when it is the scheme's default.
    pub port: Option<u16>,
    /// Path, percent-encoding normalized, `/` when empty, dot segments removed.
    pub path: String,
    /// The query (without `?`), kept only by [`HttpUrl::parse_keeping_query`]; empty
    /// otherwise, so comparisons (DPoP `htu`) ignore it.
    pub query: String,
}

impl HttpUrl {
    /// Parses an absolute http(s) URL. With `allow_query` false, a query or fragment is an
    /// error; with it true, they are dropped (as DPoP `htu` comparison requires).
    pub fn parse(text: &str, allow_query: bool) -> Result<HttpUrl, String> {
        if text.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err("must not contain spaces or control characters".into());
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| "must be an absolute http or https URL".to_string())?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("scheme {scheme:?} is not http or https")),
        };
        let end_authority = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end_authority);
        if authority.contains('@') {
            return Err("must not carry user information".into());
        }
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() {
            return Err("has no host".into());
        }
        let (path, query_or_fragment) = match tail.find(['?', '#']) {
            Some(i) => tail.split_at(i),
            None => (tail, ""),
        };
        if !query_or_fragment.is_empty() && !allow_query {
            return Err("must not have a query or fragment".into());
        }
        let path = normalize_path(path)?;
        Ok(HttpUrl {
            scheme,
            host: host.to_ascii_lowercase(),
            port: port.filter(|p| *p != default_port),
            path,
            query: String::new(),
        })
    }

    /// Whether `text` names this URL as [`HttpUrl::parse`] (query and fragment allowed,
    /// then ignored) reads and compares it. The URL's own canonical spelling (scheme, host,
    /// port when not the default, path, as held here) is recognised without parsing or
    /// allocating: what a client copies from the realm. Any other spelling is parsed.
    pub fn matches(&self, text: &str) -> bool {
        (self.query.is_empty() && self.is_spelled(text))
            || HttpUrl::parse(text, true).is_ok_and(|u| u == *self)
    }

    /// `text` is exactly `scheme://host[:port]path` of this URL.
    fn is_spelled(&self, text: &str) -> bool {
        let Some(rest) = text
            .strip_prefix(self.scheme.as_str())
            .and_then(|r| r.strip_prefix("://"))
            .and_then(|r| r.strip_prefix(self.host.as_str()))
        else {
            return false;
        };
        let rest = match self.port {
            None => rest,
            Some(port) => {
                // `:` and the port in decimal without a leading zero, as `as_string` writes it.
                let Some(r) = rest.strip_prefix(':') else {
                    return false;
                };
                let (digits, tail) = r.split_at(r.bytes().take_while(u8::is_ascii_digit).count());
                if digits.starts_with('0') || digits.parse::<u16>() != Ok(port) {
                    return false;
                }
                tail
            }
        };
        rest == self.path
    }

    /// Parses an absolute http(s) URL to fetch: the query is kept (an Authority may
    /// publish `jwks_uri` as `…/keys?p=policy`), the fragment dropped.
    pub fn parse_keeping_query(text: &str) -> Result<HttpUrl, String> {
        let mut url = HttpUrl::parse(text, true)?;
        if let Some((_, rest)) = text.split_once('?') {
            url.query = rest.split('#').next().unwrap_or("").to_string();
        }
        Ok(url)
    }

    /// Path and query, as an HTTP request target.
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    /// The normalized URL text: `scheme://host[:port]/path`.
    pub fn as_string(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{}{}", self.scheme, self.host, port, self.path),
            None => format!("{}://{}{}", self.scheme, self.host, self.path),
        }
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let close = stripped
            .find(']')
            .ok_or_else(|| "has an unterminated IPv6 literal".to_string())?;
        let host_len = close + 2;
        let (host, rest) = authority.split_at(host_len);
        match rest.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if rest.is_empty() => (host, None),
            None => return Err("has garbage after the IPv6 literal".into()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err("has an invalid host".into());
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| "has an invalid port".to_string())?,
        ),
    };
    Ok((host, port))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalizes percent-encoding (uppercase hex, unreserved characters decoded) and removes
/// dot segments.
fn normalize_path(path: &str) -> Result<String, String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + 1);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or(0);
        if b == b'%' {
            let hex = path
                .get(i + 1..i + 3)
                .ok_or_else(|| "has a truncated percent-encoding".to_string())?;
            let v = u8::from_str_radix(hex, 16)
                .map_err(|_| "has an invalid percent-encoding".to_string())?;
            if is_unreserved(v) {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            out.push(char::from(b));
            i += 1;
        }
    }
    if !path.is_ascii() {
        return Err("must be ASCII (percent-encode other characters)".into());
    }
    // RFC 3986 §5.2.4 remove_dot_segments: empty segments are kept (`/a//` is not `/a/`),
    // and a path ending in `.` or `..` ends with a slash.
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = out.split('/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    for (i, seg) in parts.iter().enumerate() {
        match *seg {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
        if i == last && (*seg == "." || *seg == "..") {
            segments.push("");
        }
    }
    let mut joined = String::from("/");
    joined.push_str(&segments.join("/"));
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_agrees_with_parse_and_compare() {
        for configured in [
            "https://gateway.example/token",
            "http://127.0.0.1:8085/token",
            "https://[::1]:8443/realm/token",
            "https://gw.example:443/a%2Fb/token",
        ] {
            let url = HttpUrl::parse(configured, false).unwrap();
            let spelled = url.as_string();
            assert!(url.is_spelled(&spelled), "{spelled}");
            let mut texts = vec![
                spelled.clone(),
                configured.to_string(),
                configured.to_uppercase(),
                format!("{spelled}?x=1#f"),
                format!("{spelled}/"),
                format!("{spelled}x"),
                spelled.replace("://", "://a@"),
                spelled.replace("token", "tok"),
                spelled.replacen(':', "s:", 1),
            ];
            if let Some(p) = url.port {
                texts.push(spelled.replace(&format!(":{p}"), &format!(":0{p}")));
                texts.push(spelled.replace(&format!(":{p}"), &format!(":{p}0")));
                texts.push(spelled.replace(&format!(":{p}"), ""));
            }
            for text in &texts {
                let parsed = HttpUrl::parse(text, true).is_ok_and(|u| u == url);
                assert_eq!(url.matches(text), parsed, "{configured} against {text}");
                if url.is_spelled(text) {
                    assert!(parsed, "the fast path accepted {text}, parse does not");
                }
            }
        }
    }

    fn norm(s: &str) -> String {
        HttpUrl::parse(s, true).unwrap().as_string()
    }

    #[test]
    fn normalizes_case_port_and_path() {
        assert_eq!(
            norm("HTTPS://Gateway.Example:443/token"),
            "https://gateway.example/token"
        );
        assert_eq!(
            norm("http://gateway.example:80/token"),
            "http://gateway.example/token"
        );
        assert_eq!(
            norm("http://gateway.example:8085/token"),
            "http://gateway.example:8085/token"
        );
        assert_eq!(norm("https://g.example"), "https://g.example/");
        assert_eq!(
            norm("https://g.example/a/./b/../token"),
            "https://g.example/a/token"
        );
        assert_eq!(
            norm("https://g.example/%7etoken"),
            "https://g.example/~token"
        );
        assert_eq!(norm("https://g.example/a%2fb"), "https://g.example/a%2Fb");
        assert_eq!(
            norm("https://g.example/token?x=1#f"),
            "https://g.example/token"
        );
        assert_eq!(norm("https://[::1]:8443/token"), "https://[::1]:8443/token");
        assert_eq!(norm("https://g.example/dir/"), "https://g.example/dir/");
    }

    #[test]
    fn keeps_the_query_only_when_asked() {
        let u = HttpUrl::parse_keeping_query("https://a.example/keys?p=b2c_1#frag").unwrap();
        assert_eq!(u.path_and_query(), "/keys?p=b2c_1");
        let v = HttpUrl::parse("https://a.example/keys?p=b2c_1", true).unwrap();
        assert_eq!(v.path_and_query(), "/keys");
        assert!(HttpUrl::parse_keeping_query("ftp://x/").is_err());
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "ftp://x/token",
            "//x/token",
            "https://",
            "https://user@x/token",
            "https://x:99999/token",
            "https://x:0/",
            "https://x/%zz",
            "https://x/%2",
            "https://x y/",
            "https://x/\u{e9}",
            "https://[::1/",
        ] {
            assert!(HttpUrl::parse(bad, true).is_err(), "{bad}");
        }
        assert!(HttpUrl::parse("https://x/token?a=b", false).is_err());
    }
}
