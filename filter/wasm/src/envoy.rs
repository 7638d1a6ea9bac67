//! The Envoy side of the host: [`EnvoyHost`] implements the host traits of
//! `registry-token-host` with proxy-wasm hostcalls, and thin, panic-free wrappers cover
//! the hostcalls the request path uses (headers, properties, the local reply, the host
//! crypto's foreign functions).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};

use registry_token_core::token::crypto::host as hostproto;
use registry_token_host::host::{Clock, HttpCalls, MetricKind, SharedData, SharedError, Stats};

/// The real host: hostcalls, never panicking.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvoyHost;

impl SharedData for EnvoyHost {
    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), SharedError> {
        proxy_wasm::hostcalls::get_shared_data(key)
            .map_err(|s| SharedError::Host(format!("get_shared_data: {s:?}")))
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        match proxy_wasm::hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SharedError::CasMismatch),
            Err(s) => Err(SharedError::Host(format!("set_shared_data: {s:?}"))),
        }
    }
}

impl HttpCalls for EnvoyHost {
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, String> {
        proxy_wasm::hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout)
            .map_err(|s| format!("dispatch to cluster {cluster:?} failed: {s:?}"))
    }

    fn call_response(&self, body_size: usize, limit: usize) -> (String, Vec<u8>) {
        let status =
            proxy_wasm::hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
                .ok()
                .flatten()
                .unwrap_or_default();
        let body = proxy_wasm::hostcalls::get_buffer(
            BufferType::HttpCallResponseBody,
            0,
            body_size.min(limit),
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        (status, body)
    }
}

impl Clock for EnvoyHost {
    fn now(&self) -> Result<Duration, String> {
        proxy_wasm::hostcalls::get_current_time()
            .map_err(|s| format!("the host clock failed: {s:?}"))?
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "the host clock is before 1970".to_string())
    }
}

impl Stats for EnvoyHost {
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, String> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        proxy_wasm::hostcalls::define_metric(kind, name).map_err(|s| format!("{s:?}"))
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        let _ = proxy_wasm::hostcalls::increment_metric(id, delta);
    }

    fn record_metric(&self, id: u32, value: u64) {
        let _ = proxy_wasm::hostcalls::record_metric(id, value);
    }

    fn get_metric(&self, id: u32) -> u64 {
        proxy_wasm::hostcalls::get_metric(id).unwrap_or(0)
    }
}

/// The host's foreign functions.
pub struct EnvoyForeign;

impl hostproto::ForeignCall for EnvoyForeign {
    fn call(&self, function: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        match proxy_wasm::hostcalls::call_foreign_function(function, Some(args)) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Ok(Vec::new()),
            Err(status) => Err(format!("foreign function {function}: {status:?}")),
        }
    }
}

/// Wall-clock time from the host, for measurements only (the decision histogram): `None`
/// when the host cannot answer.
pub fn current_time() -> Option<SystemTime> {
    proxy_wasm::hostcalls::get_current_time().ok()
}

/// Whether Envoy shows this module's info lines (true when it cannot say).
pub fn info_logged() -> bool {
    proxy_wasm::hostcalls::get_log_level()
        .map_or(true, |level| level as u32 <= LogLevel::Info as u32)
}

/// One request header (pseudo-headers included).
pub fn request_header(name: &str) -> Option<String> {
    proxy_wasm::hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

/// Sets (or, with `None`, removes) a request header.
pub fn set_request_header(name: &str, value: Option<&str>) {
    let _ = proxy_wasm::hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
}

/// One response header (`:status` included).
pub fn response_header(name: &str) -> Option<String> {
    proxy_wasm::hostcalls::get_map_value(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

/// Removes a response header.
pub fn remove_response_header(name: &str) {
    let _ = proxy_wasm::hostcalls::set_map_value(MapType::HttpResponseHeaders, name, None);
}

/// One header of the answer to an HTTP call (in its callback).
pub fn call_response_header(name: &str) -> Option<String> {
    proxy_wasm::hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
}

/// The first `limit` bytes of a body buffer (`None`: the host has none).
pub fn body(kind: BufferType, limit: usize) -> Option<Vec<u8>> {
    proxy_wasm::hostcalls::get_buffer(kind, 0, limit)
        .ok()
        .flatten()
}

/// Replaces the first `size` bytes of a body buffer with `data`.
pub fn replace_body(kind: BufferType, size: usize, data: &[u8]) -> bool {
    proxy_wasm::hostcalls::set_buffer(kind, 0, size, data).is_ok()
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
