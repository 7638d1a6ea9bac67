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

/// The tag policy a registry token's `access` entry may carry (`tags`): written by the
/// realm from the plan rule that granted the entry, read by the guard on the registry's
/// route, ignored by the registry. Absent: no tag rules. The default has no globs and
/// allows delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPolicy {
    /// Tag globs pushed only by a rule with `push_protected`.
    pub protected: Vec<String>,
    /// Whether this entry may push the protected tags.
    pub push_protected: bool,
    /// Tag globs that, once they exist, keep their digest.
    pub immutable: Vec<String>,
    /// Whether manifests may be deleted.
    pub delete: bool,
}

impl Default for TagPolicy {
    fn default() -> Self {
        TagPolicy {
            protected: Vec::new(),
            push_protected: false,
            immutable: Vec::new(),
            delete: true,
        }
    }
}

impl TagPolicy {
    /// The longest tag glob accepted, bytes (a tag is at most 128).
    pub const MAX_GLOB_BYTES: usize = 128;
    /// The most globs in one list.
    pub const MAX_GLOBS: usize = 64;

    /// Whether `glob` is a tag glob: tag characters (`[A-Za-z0-9_.-]`) and `*`, at most
    /// [`Self::MAX_GLOB_BYTES`], not empty.
    pub fn valid_glob(glob: &str) -> bool {
        !glob.is_empty()
            && glob.len() <= Self::MAX_GLOB_BYTES
            && glob
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'*'))
    }
}
