//! Thin, panic-free wrappers over the hostcalls the filter uses on the request path.

use std::time::SystemTime;

use proxy_wasm::types::{MapType, Status};

/// Wall-clock time from the host (falls back to the epoch, which fails every `exp` check
/// closed, if the host cannot answer).
pub fn current_time() -> SystemTime {
    proxy_wasm::hostcalls::get_current_time().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// One request header (pseudo-headers included).
pub fn request_header(name: &str) -> Option<String> {
    proxy_wasm::hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

/// All request headers, names lowercase as Envoy keeps them.
pub fn request_headers() -> Vec<(String, String)> {
    proxy_wasm::hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
}

/// A property as UTF-8 text.
pub fn property_string(path: &[&str]) -> Option<String> {
    proxy_wasm::hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
}

/// The proxy-wasm map serialization: count, then (key length, value length) pairs, then
/// NUL-terminated keys and values.
fn serialize_map(map: &[(&str, &str)]) -> Vec<u8> {
    let mut size = 4;
    for (k, v) in map {
        size += 8 + k.len() + v.len() + 2;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&u32::try_from(map.len()).unwrap_or(0).to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&u32::try_from(k.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(0).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Sends the local reply. Unlike the SDK's `send_http_response`, an unexpected host status
/// is logged instead of panicking.
pub fn send_local_response(status: u16, headers: &[(&str, &str)], body: &[u8]) {
    const DETAILS: &str = "registry_token_filter";
    let serialized = serialize_map(headers);
    // SAFETY: every pointer/length pair describes a live buffer for the whole call; the
    // host copies the data before returning.
    let result = unsafe {
        proxy_send_local_response(
            u32::from(status),
            DETAILS.as_ptr(),
            DETAILS.len(),
            body.as_ptr(),
            body.len(),
            serialized.as_ptr(),
            serialized.len(),
            -1,
        )
    };
    if result != Status::Ok {
        log::error!("registry-token-filter: the host refused the local reply: {result:?}");
    }
}
