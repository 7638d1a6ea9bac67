//! Decision core of the registry token filter.
//!
//! Everything that decides anything lives here, with no proxy-wasm dependency, so it is
//! tested natively. The folders follow the request pipeline, and dependencies run one way
//! (a module only uses the ones listed before it):
//!
//! | module | what |
//! |---|---|
//! | [`wire`] | bytes and text formats: base64url, DER, protobuf, `Struct`, query strings and `POST` forms (one decoder), URLs, time, untrusted text quoted in messages |
//! | [`token`] | algorithms, keys, crypto (pure Rust or Envoy's host), JWS, OpToken verification, the `access` claim entry, minting, sealed refresh tokens |
//! | [`sender`] | sender constraints: DPoP proofs, nonces, the replay record, mTLS |
//! | [`policy`] | scopes, the plan catalogue, revocation (licences, subjects, refresh-token ids) |
//! | [`remote`] | documents fetched from the network (JWKS, discovery, revocation list): records and leases |
//! | [`guard`] | the registry's own route (guard mode): its routes, tag rules, the filtered catalogue, rate limits |
//! | [`config`] | the plugin configuration: raw form, environment overrides, validation |
//! | [`handler`] | the request pipeline: credentials → OpToken → sender → policy → mint → reply |
//! | [`ledger`] | the issuance ledger's records (from the handler's audit record) and its shared-data buffer |
//!
//! `sender` and `policy` stand side by side: neither uses the other. `tests/core/layers.rs`
//! checks the order.
//!
//! The glue crate (`registry-token-filter`) gathers a [`handler::RequestView`], supplies a
//! clock reading, a [`token::crypto::Crypto`] implementation and the current key set, and
//! turns the returned [`handler::Decision`] into hostcalls. docs/DESIGN.md has the map.

pub mod config;
pub mod guard;
pub mod handler;
pub mod ledger;
pub mod policy;
pub mod remote;
pub mod sender;
pub mod token;
pub mod wire;
