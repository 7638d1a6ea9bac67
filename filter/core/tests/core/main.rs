//! The core's integration tests, as one binary with a module per subject (one link of the
//! core and its dev-dependencies instead of one per file). Each drives the core from
//! outside, through its public API; `common` holds the shared fixtures, generated once per
//! run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod cache;
mod config;
mod decision;
mod docs;
mod dpop;
mod fuzz_props;
mod guard;
mod hardening;
mod layers;
mod pfx;
mod post;
mod revocation;
mod robots;
mod tenant;
mod trust;
