//! Bytes and text formats, with no knowledge of tokens or policy: base64url, DER, the
//! protobuf wire format (Envoy's `Struct` and crypto messages), the token endpoint's query
//! string and form, HTTP URLs.

pub mod b64;
pub mod der;
pub mod form;
pub mod query;
pub mod structpb;
pub mod time;
pub mod url;
