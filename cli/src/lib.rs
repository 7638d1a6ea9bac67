//! `registry-token`: Offline Kit token bundles for air-gapped mirrors, minted with the
//! filter's decision core (the same configuration, environment overrides, revocation
//! checks, plan grant and minting; pure-Rust signing). See docs/OFFLINE.md.
//!
//! - [`source`]: `--config` (an Envoy YAML holding the filter, an Istio WasmPlugin, or the
//!   plugin configuration alone) into the core's validated `Config`;
//! - [`request`]: the bundle request and its policy;
//! - [`bundle`]: minting, the canonical manifest, its detached JWS, writing;
//! - [`verify`]: the `verify-bundle` checks;
//! - [`credential_provider`]: the kubelet image credential provider (docs/TRUST.md).

pub mod bundle;
pub mod canonical;
pub mod credential_provider;
pub mod request;
pub mod source;
pub mod verify;
