//! The raw registry API the guard phase needs (its registry: [`crate::procs::BenchRegistry`]):
//! one request on a fresh connection, a monolithic blob upload, and a blob pull read to
//! its end without keeping it.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use registry_token_loadgen::http::{self, connect, read_response, Target};
use registry_token_loadgen::jose::sha256;

/// How long one request (a whole upload or pull) may take.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// A value of the response head `head` (case-insensitive name).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One request on a fresh connection (`Connection: close`) with `token` as the Bearer,
/// and `body` when given; its status, head and body.
pub fn request(
    t: &Target,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&[u8]>,
) -> Result<(u16, String, Vec<u8>), String> {
    let mut s = connect(t, IO_TIMEOUT).map_err(|e| format!("{method} {path}: {e}"))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n",
        t.host
    );
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/octet-stream\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let io = |e: std::io::Error| format!("{method} {path}: {e}");
    s.write_all(head.as_bytes()).map_err(io)?;
    if let Some(b) = body {
        s.write_all(b).map_err(io)?;
    }
    s.flush().map_err(io)?;
    let mut buf = Vec::new();
    let r = read_response(s.as_mut(), &mut buf).map_err(io)?;
    let head = String::from_utf8_lossy(&buf[..r.body.start]).into_owned();
    Ok((r.status, head, buf[r.body.clone()].to_vec()))
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    let hex: String = sha256(data).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Uploads `data` as a blob of `repo` in one `PUT` (after the `POST` that opens the
/// upload); returns its digest.
pub fn push_blob(t: &Target, repo: &str, token: &str, data: &[u8]) -> Result<String, String> {
    let d = digest(data);
    let start = format!("/v2/{repo}/blobs/uploads/");
    let (status, head, body) = request(t, "POST", &start, token, Some(&[]))?;
    let location = match (status, header(&head, "location")) {
        (202, Some(l)) => l.to_string(),
        _ => {
            return Err(format!(
                "POST {start} answered {status}: {}",
                String::from_utf8_lossy(&body)
            ))
        }
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = format!("{location}{sep}digest={d}");
    let (status, _, body) = request(t, "PUT", &put, token, Some(data))?;
    if status != 201 {
        return Err(format!(
            "PUT of the blob answered {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(d)
}

/// A connection to `t`, to [`pull`] on.
pub fn open(t: &Target) -> Result<Box<dyn http::Stream>, String> {
    connect(t, IO_TIMEOUT).map_err(|e| format!("{}: {e}", t.addr))
}

/// `GET path` with `token` on the fresh connection `s` to `t`, the body read to its end in
/// 256 KiB reads and dropped, each read's bytes added to `read` as they come; the body's
/// length.
pub fn pull(
    s: &mut dyn http::Stream,
    t: &Target,
    path: &str,
    token: &str,
    read: &AtomicU64,
) -> Result<u64, String> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        t.host
    );
    let io = |e: std::io::Error| format!("GET {path}: {e}");
    s.write_all(req.as_bytes()).map_err(io)?;
    s.flush().map_err(io)?;
    let mut chunk = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let head_end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 64 * 1024 {
            return Err(format!("GET {path}: response head too long"));
        }
        let n = s.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return Err(format!("GET {path}: closed before the response head"));
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&head[..head_end]).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse::<u16>().ok());
    let length = header(&text, "content-length").and_then(|v| v.parse::<u64>().ok());
    let (Some(200), Some(length)) = (status, length) else {
        return Err(format!(
            "GET {path}: not a 200 with a Content-Length: {}",
            text.lines().next().unwrap_or("")
        ));
    };
    let mut body = (head.len() - head_end) as u64;
    read.fetch_add(body, Ordering::Relaxed);
    while body < length {
        let n = s.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return Err(format!(
                "GET {path}: body cut short at {body} of {length} bytes"
            ));
        }
        body += n as u64;
        read.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_digests() {
        let head = "HTTP/1.1 202 Accepted\r\nLocation: /v2/a/blobs/uploads/x?_state=y\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            header(head, "location"),
            Some("/v2/a/blobs/uploads/x?_state=y")
        );
        assert_eq!(header(head, "Content-Length"), Some("0"));
        assert_eq!(header(head, "etag"), None);
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
