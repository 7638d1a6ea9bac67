//! The `registry-token` command's integration tests, one binary: `bundle` (determinism,
//! configuration forms, policy, refusals), `verify` (tampering), `credential_provider`
//! (the kubelet's exchange), and their fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bundle;
mod common;
mod credential_provider;
mod verify;
