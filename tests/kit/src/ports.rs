//! Free TCP ports on 127.0.0.1, never the same one twice in a process.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock, PoisonError};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A free TCP port on 127.0.0.1 (the OS picks it). Never returns the same port twice in
/// one process, so tests starting at the same time in one binary do not collide.
pub fn free_port() -> Result<u16, String> {
    let mut given = handed_out().lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..1000 {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("cannot bind 127.0.0.1:0 to find a free port: {e}"))?;
        if given.insert(port) {
            return Ok(port);
        }
    }
    Err("no fresh free port after 1000 attempts".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_unique() {
        let ports: Vec<u16> = (0..200).filter_map(|_| free_port().ok()).collect();
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(ports.len(), 200);
        assert_eq!(set.len(), ports.len());
        assert!(ports.iter().all(|&p| p != 0));
    }
}
