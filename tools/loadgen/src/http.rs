//! A minimal HTTP/1.1 keep-alive client over TCP or TLS (rustls, optional client
//! certificate), enough for `GET /token` and the admin endpoints, with no per-request
//! allocation beyond the response buffer.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use registry_token_core::token::keys::{pem_certificates, PrivateKey};

/// A plain or TLS byte stream.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Where to connect and how.
#[derive(Clone)]
pub struct Target {
    /// Resolved loopback address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// TLS client configuration and server name, for `https`.
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

/// Parses `http://host:port` / `https://host:port` (no path), resolves it, and refuses
/// anything but a loopback address.
pub fn loopback_target(url: &str) -> Result<(SocketAddr, String, bool), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!("{url}: only http:// and https:// URLs"));
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') {
        return Err(format!("{url}: give the origin only (no path)"));
    }
    let with_port = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:{}", if tls { 443 } else { 80 })
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{url}: no address"))?;
    if addrs.iter().any(|a| !is_loopback(a.ip())) {
        return Err(format!(
            "{url}: refusing a non-loopback target (load is only ever sent to this machine)"
        ));
    }
    Ok((addr, hostport.to_string(), tls))
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// A TLS client configuration trusting `ca_pem`, presenting `cert_pem`/`key_pem` (a key
/// the filter would take: RSA ≥ 2048 or P-256, PKCS#8, PKCS#1 or SEC1).
pub fn tls_config(
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_certificates(ca_pem).map_err(|e| format!("CA certificate: {e}"))? {
        roots
            .add(rustls::pki_types::CertificateDer::from(der))
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain: Vec<rustls::pki_types::CertificateDer<'static>> = pem_certificates(cert_pem)
                .map_err(|e| format!("client certificate: {e}"))?
                .into_iter()
                .map(rustls::pki_types::CertificateDer::from)
                .collect();
            let key = PrivateKey::from_pem(key_pem).map_err(|e| format!("client key: {e}"))?;
            let key = key.pkcs8_der().to_vec();
            builder
                .with_client_auth_cert(chain, rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()))
                .map_err(|e| format!("client certificate: {e}"))?
        }
    };
    Ok(Arc::new(config))
}

/// Opens a connection (TCP_NODELAY; TLS handshake done lazily by the first write).
pub fn connect(target: &Target, timeout: Duration) -> std::io::Result<Box<dyn Stream>> {
    let tcp = TcpStream::connect_timeout(&target.addr, timeout)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    match &target.tls {
        None => Ok(Box::new(tcp)),
        Some((config, name)) => {
            let conn = rustls::ClientConnection::new(config.clone(), name.clone())
                .map_err(std::io::Error::other)?;
            Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    }
}

/// One response.
#[derive(Debug, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Byte range of the body in the buffer.
    pub body: std::ops::Range<usize>,
    /// The server will close the connection.
    pub close: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header_value<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            let v = &line[colon + 1..];
            let start = v
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(v.len());
            return Some(&v[start..]);
        }
    }
    None
}

/// Sends `request` (complete bytes) and reads one response into `buf` (cleared first).
pub fn exchange(
    stream: &mut dyn Stream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<Response> {
    stream.write_all(request)?;
    stream.flush()?;
    read_response(stream, buf)
}

/// Reads one response with a `Content-Length` body.
pub fn read_response(stream: &mut dyn Stream, buf: &mut Vec<u8>) -> std::io::Result<Response> {
    use std::io::{Error, ErrorKind};
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(Error::new(ErrorKind::InvalidData, "response head too long"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = &buf[..head_end];
    let status = head
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, "bad status line"))?;
    let length = header_value(head, "content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked =
        header_value(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"));
    let Some(length) = length else {
        // Admin answers: chunked or delimited by the close; read everything.
        loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if chunked && buf.ends_with(b"\r\n0\r\n\r\n") {
                break;
            }
        }
        let raw = buf.split_off(head_end);
        let body = if chunked { dechunk(&raw) } else { raw };
        buf.extend_from_slice(&body);
        return Ok(Response {
            status,
            body: head_end..buf.len(),
            close: true,
        });
    };
    let close = header_value(head, "connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
    let total = head_end + length;
    while buf.len() < total {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "body cut short"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Response {
        status,
        body: head_end..total,
        close,
    })
}

/// Decodes a chunked body (stops at the last chunk or at malformed input).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(raw, b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
        let Ok(size) = usize::from_str_radix(&size_text, 16) else {
            break;
        };
        if size == 0 || raw.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = raw.get(eol + 2 + size + 2..).unwrap_or(&[]);
    }
    out
}

/// `GET path` on a fresh connection; the body as text. For the admin endpoints.
pub fn get(target: &Target, path: &str) -> Result<(u16, String), String> {
    let mut s = connect(target, Duration::from_secs(10)).map_err(|e| format!("{path}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        target.host
    );
    let mut buf = Vec::new();
    let r = exchange(s.as_mut(), req.as_bytes(), &mut buf).map_err(|e| format!("{path}: {e}"))?;
    Ok((
        r.status,
        String::from_utf8_lossy(&buf[r.body.clone()]).into_owned(),
    ))
}

/// A `Target` for a plain-HTTP loopback URL.
pub fn plain_target(url: &str) -> Result<Target, String> {
    let (addr, host, tls) = loopback_target(url)?;
    if tls {
        return Err(format!("{url}: expected http://"));
    }
    Ok(Target {
        addr,
        host,
        tls: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(loopback_target("http://127.0.0.1:8085").is_ok());
        assert!(loopback_target("http://localhost:9901/").is_ok());
        assert!(loopback_target("https://127.0.0.2:1").is_ok());
        assert!(loopback_target("http://10.0.0.1:80").is_err());
        assert!(loopback_target("http://192.168.1.1").is_err());
        assert!(loopback_target("ftp://127.0.0.1").is_err());
        assert!(loopback_target("http://127.0.0.1:8085/token").is_err());
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"), b"abcde");
        assert_eq!(dechunk(b"zz\r\n"), b"");
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nconnection: Close\r\n\r\n";
        assert_eq!(header_value(head, "content-length"), Some(&b"12"[..]));
        assert_eq!(header_value(head, "Connection"), Some(&b"Close"[..]));
        assert_eq!(header_value(head, "x"), None);
    }
}
