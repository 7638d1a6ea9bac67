//! Bytes and text formats, with no knowledge of tokens or policy: base64url, DER, the
//! protobuf wire format (Envoy's `Struct` and crypto messages), the token endpoint's query
//! string and form, HTTP URLs.

pub mod b64;
pub mod der;
mod echo;
pub mod envoy_crypto;
pub mod form;
pub mod json;
pub mod protobuf;
pub mod query;
pub mod structpb;
#[cfg(test)]
pub(crate) mod testrng;
pub mod time;
pub mod url;

pub(crate) use echo::echo;
