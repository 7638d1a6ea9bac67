//! A tiny HTTP server for the remote revocation list (`revocation.url`): it answers every
//! request with the current body (JSON or text, `200`) or `503` when there is none, and
//! counts the requests. [`ListServer::cluster_yaml`] is the Envoy cluster (`licensing`)
//! that reaches it.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// Serves the list at any path; `None` answers 503. Stops when dropped.
pub struct ListServer {
    port: u16,
    body: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl ListServer {
    /// Listens on 127.0.0.1 (a free port) serving `body`.
    ///
    /// # Panics
    /// When it cannot bind.
    pub fn start(body: Option<&str>) -> ListServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let body = Arc::new(Mutex::new(body.map(str::to_string)));
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, h, s) = (body.clone(), hits.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let Ok(read_half) = conn.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(read_half);
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                h.fetch_add(1, Ordering::SeqCst);
                let current = b.lock().map(|g| g.clone()).unwrap_or(None);
                let reply = match current {
                    Some(text) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    ),
                    None => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                };
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        ListServer {
            port,
            body,
            hits,
            stop,
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the body (`None`: answer 503 from now on).
    pub fn set(&self, body: Option<&str>) {
        if let Ok(mut g) = self.body.lock() {
            *g = body.map(str::to_string);
        }
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The Envoy cluster `licensing` reaching it (a YAML sequence item at column 0).
    pub fn cluster_yaml(&self) -> String {
        format!(
            "- name: licensing\n  type: STATIC\n  connect_timeout: 1s\n  load_assignment:\n    \
             cluster_name: licensing\n    endpoints:\n    - lb_endpoints:\n      - endpoint:\n          \
             address:\n            socket_address: {{ address: 127.0.0.1, port_value: {} }}\n",
            self.port
        )
    }
}

impl Drop for ListServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
