//! Guard mode: the same module on the route to the registry (`/v2/…`), issue 22. It reads
//! the registry token the realm minted, and applies the rules the registry has none for:
//! revocation that reaches tokens already issued, protected and immutable tags, and a
//! catalogue filtered to what the caller may see (rate limits by plan are Envoy's own
//! filters, on the identity headers the guard sets). The decision that puts these
//! together is `handler::guard`. Every request
//! it has no rule for passes to the registry untouched.
//!
//! - [`route`]: which resource a request names and the actions it needs;
//! - [`tags`]: protected and immutable tags, delete;
//! - [`catalog`]: the `_catalog` answer cut to the caller's repositories;
//! - [`token`]: the registry token the realm minted, verified with its own public keys.

pub mod catalog;
pub mod route;
pub mod tags;
pub mod token;
