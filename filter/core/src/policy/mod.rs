//! Policy: requested scopes, the plan catalogue that grants them, licence revocation, the
//! trust policies of workload issuers.

pub mod plan;
pub mod revocation;
pub mod scope;
pub mod trust;
