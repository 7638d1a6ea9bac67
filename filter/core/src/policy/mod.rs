//! Policy: requested scopes, the plan catalogue that grants them, licence revocation.

pub mod plan;
pub mod revocation;
pub mod scope;
