//! The `access` claim entry of a registry token: one resource and the actions granted on
//! it. The minted token carries a list of them ([`crate::token::mint`]); the Docker scope
//! grammar that reads them from a request and the plans that grant them (`policy`) build on
//! this type.

use std::fmt;

use serde::Serialize;

/// One requested (or granted) resource: exactly the Docker `access` claim entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// Resource type without class, e.g. `repository` or `registry`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Resource name, e.g. `library/alpine` or `catalog`.
    pub name: String,
    /// Actions, deduplicated, in the order first seen.
    pub actions: Vec<String>,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.resource_type,
            self.name,
            self.actions.join(",")
        )
    }
}
