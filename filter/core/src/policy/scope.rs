//! Docker token scopes: `type[(class)]:name:action[,action…]`.
//!
//! [`parse_scope`] checks one scope against the Docker grammar; [`parse_scopes`] takes the
//! raw `scope` query parameter values, splits them on spaces, enforces [`MAX_SCOPES`] and
//! merges scopes that name the same resource. Every error message names the offending
//! scope (shortened, control characters masked) because it is returned to the client as
//! the `detail` of a 400 response. A parsed scope is a [`Scope`], the minted token's
//! `access` entry (defined in [`crate::token::access`], re-exported here).

use std::fmt;

// The parsed form is the token's `access` claim entry, defined where the token is.
pub use crate::token::access::Scope;
use crate::wire::echo;

/// Most scopes accepted in one token request (counted before merging).
pub const MAX_SCOPES: usize = 32;

/// Longest resource name accepted, in bytes (Docker's `NameTotalLengthMax`).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a repository name is not a valid Docker repository name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`].
    TooLong,
    /// A path component holds an uppercase letter.
    Uppercase,
    /// Leading, trailing or doubled `/`.
    EmptyComponent,
    /// A character outside `[a-z0-9._-]` in a path component.
    InvalidCharacter,
    /// A separator (`.`, `_`, `__`, `-`…) not between two alphanumerics, or `___`, `..`.
    MisplacedSeparator,
    /// The registry host prefix is not DNS labels joined by `.`.
    InvalidHost,
    /// The `:port` after the registry host is not digits.
    InvalidPort,
    /// A registry host prefix with no repository path after it.
    MissingPath,
}

impl NameError {
    fn reason(self) -> &'static str {
        match self {
            NameError::Empty => "the name is empty",
            NameError::TooLong => "longer than 255 bytes",
            NameError::Uppercase => "uppercase letters are not allowed",
            NameError::EmptyComponent => "empty path component",
            NameError::InvalidCharacter => {
                "path components may only hold lowercase letters, digits and the separators \".\", \"_\", \"__\", \"-\""
            }
            NameError::MisplacedSeparator => {
                "a separator must stand between two letters or digits (and \".\" or \"_\" may not repeat)"
            }
            NameError::InvalidHost => "invalid registry host",
            NameError::InvalidPort => "invalid registry port",
            NameError::MissingPath => "registry host without a repository path",
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// A scope that cannot be accepted. The `scope` fields hold the offending scope already
/// shortened and masked for echoing (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeError {
    /// Not of the form `type:name:actions`.
    Malformed {
        /// The offending scope, safe to echo.
        scope: String,
    },
    /// The type is not `[a-z0-9]+` optionally followed by `([a-zA-Z0-9]+)`.
    InvalidType {
        /// The offending scope, safe to echo.
        scope: String,
    },
    /// A `repository` name that is not a Docker repository name.
    InvalidRepositoryName {
        /// The offending scope, safe to echo.
        scope: String,
        /// What is wrong with the name.
        reason: NameError,
    },
    /// A `registry` scope whose name is not `catalog`.
    InvalidRegistryName {
        /// The offending scope, safe to echo.
        scope: String,
    },
    /// A name of another type that is empty, too long, or holds spaces or control characters.
    InvalidName {
        /// The offending scope, safe to echo.
        scope: String,
    },
    /// The action list is empty, or holds an empty entry (`pull,,push`, trailing `,`).
    EmptyAction {
        /// The offending scope, safe to echo.
        scope: String,
    },
    /// An action that is neither `[a-z]+` nor `*`.
    InvalidAction {
        /// The offending scope, safe to echo.
        scope: String,
        /// The offending action, safe to echo.
        action: String,
    },
    /// More than [`MAX_SCOPES`] scopes in one request.
    TooMany {
        /// The limit that was exceeded.
        max: usize,
    },
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeError::Malformed { scope } => {
                write!(f, "scope \"{scope}\": expected \"type:name:actions\"")
            }
            ScopeError::InvalidType { scope } => write!(
                f,
                "scope \"{scope}\": invalid resource type (expected lowercase letters and digits, optionally followed by \"(class)\")"
            ),
            ScopeError::InvalidRepositoryName { scope, reason } => {
                write!(f, "scope \"{scope}\": invalid repository name ({reason})")
            }
            ScopeError::InvalidRegistryName { scope } => write!(
                f,
                "scope \"{scope}\": invalid registry resource name (only \"catalog\" is defined)"
            ),
            ScopeError::InvalidName { scope } => write!(
                f,
                "scope \"{scope}\": invalid resource name (must be 1 to 255 bytes without spaces or control characters)"
            ),
            ScopeError::EmptyAction { scope } => {
                write!(f, "scope \"{scope}\": empty action")
            }
            ScopeError::InvalidAction { scope, action } => write!(
                f,
                "scope \"{scope}\": invalid action \"{action}\" (expected lowercase letters or \"*\")"
            ),
            ScopeError::TooMany { max } => {
                write!(f, "too many scopes: at most {max} scopes per request")
            }
        }
    }
}

impl std::error::Error for ScopeError {}

/// Parses one scope `type[(class)]:name:action[,action…]`.
///
/// The type ends at the first `:` and the actions start after the last `:`, so names may
/// hold `host:port`. The class is dropped; actions are deduplicated keeping first order.
pub fn parse_scope(s: &str) -> Result<Scope, ScopeError> {
    let err_scope = || echo(s);
    let (Some(first), Some(last)) = (s.find(':'), s.rfind(':')) else {
        return Err(ScopeError::Malformed { scope: err_scope() });
    };
    if first == last {
        return Err(ScopeError::Malformed { scope: err_scope() });
    }
    let type_part = &s[..first];
    let name = &s[first + 1..last];
    let actions_part = &s[last + 1..];

    let resource_type =
        parse_type(type_part).ok_or_else(|| ScopeError::InvalidType { scope: err_scope() })?;

    // Actions before the name: for `type:name:actions:` "empty action" is the clearer
    // message.
    let mut actions: Vec<String> = Vec::new();
    for action in actions_part.split(',') {
        if action.is_empty() {
            return Err(ScopeError::EmptyAction { scope: err_scope() });
        }
        let valid = action == "*" || action.bytes().all(|b| b.is_ascii_lowercase());
        if !valid {
            return Err(ScopeError::InvalidAction {
                scope: err_scope(),
                action: echo(action),
            });
        }
        if !actions.iter().any(|a| a == action) {
            actions.push(action.to_owned());
        }
    }

    match resource_type {
        "repository" => {
            validate_repository_name(name).map_err(|reason| ScopeError::InvalidRepositoryName {
                scope: err_scope(),
                reason,
            })?
        }
        "registry" => {
            if name != "catalog" {
                return Err(ScopeError::InvalidRegistryName { scope: err_scope() });
            }
        }
        _ => {
            if !is_valid_other_name(name) {
                return Err(ScopeError::InvalidName { scope: err_scope() });
            }
        }
    }

    Ok(Scope {
        resource_type: resource_type.to_owned(),
        name: name.to_owned(),
        actions,
    })
}

/// Parses the raw values of the `scope` query parameters.
///
/// Each value may hold several scopes separated by spaces (runs of spaces collapse, blank
/// values are ignored). More than [`MAX_SCOPES`] scopes in total is an error. Scopes with
/// the same type and name are merged into one entry (union of actions, order kept).
pub fn parse_scopes<I, S>(params: I) -> Result<Vec<Scope>, ScopeError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut merged: Vec<Scope> = Vec::new();
    let mut count = 0usize;
    for param in params {
        for raw in param.as_ref().split(' ').filter(|p| !p.is_empty()) {
            count += 1;
            if count > MAX_SCOPES {
                return Err(ScopeError::TooMany { max: MAX_SCOPES });
            }
            let scope = parse_scope(raw)?;
            match merged
                .iter_mut()
                .find(|m| m.resource_type == scope.resource_type && m.name == scope.name)
            {
                Some(existing) => {
                    for action in scope.actions {
                        if !existing.actions.contains(&action) {
                            existing.actions.push(action);
                        }
                    }
                }
                None => merged.push(scope),
            }
        }
    }
    Ok(merged)
}

/// Checks a Docker repository name: an optional registry host prefix (`host[:port]/`),
/// then `/`-separated path components `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`, at most
/// 255 bytes in total.
///
/// The first component is a host when the name has more than one component and the first
/// contains `.` or `:` or equals `localhost` (Docker's own heuristic).
pub fn validate_repository_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    let mut path = name;
    if let Some((first, rest)) = name.split_once('/') {
        if first.contains('.') || first.contains(':') || first == "localhost" {
            validate_host(first)?;
            if rest.is_empty() {
                return Err(NameError::MissingPath);
            }
            path = rest;
        }
    }
    path.split('/').try_for_each(validate_path_component)
}

/// `host[:port]`: DNS labels `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` joined by `.`,
/// optionally followed by `:` and one or more digits.
fn validate_host(host_port: &str) -> Result<(), NameError> {
    let (host, port) = match host_port.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host_port, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NameError::InvalidPort);
        }
    }
    let valid_label = |label: &str| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(f), Some(l)) => {
                f.is_ascii_alphanumeric()
                    && l.is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            }
            _ => false,
        }
    };
    if host.split('.').all(valid_label) {
        Ok(())
    } else {
        Err(NameError::InvalidHost)
    }
}

/// Whether `value` is exactly one repository path component
/// (`[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`, at most [`MAX_NAME_BYTES`]): no `/`, no
/// `..`, no `*`, no uppercase, never empty. Tenant and subject values must be one before a
/// plan placeholder (`{tenant}`, `{sub}`) may match them.
pub fn is_path_component(value: &str) -> bool {
    value.len() <= MAX_NAME_BYTES && validate_path_component(value).is_ok()
}

/// One path component: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn validate_path_component(component: &str) -> Result<(), NameError> {
    if component.is_empty() {
        return Err(NameError::EmptyComponent);
    }
    let bytes = component.as_bytes();
    // Reject bad characters first so the reason is the most precise one.
    if bytes.iter().any(u8::is_ascii_uppercase) {
        return Err(NameError::Uppercase);
    }
    if !bytes
        .iter()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
    {
        return Err(NameError::InvalidCharacter);
    }
    // Walk alternating runs of alphanumerics and separators.
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        let start = i;
        let alnum = bytes.get(i).is_some_and(u8::is_ascii_alphanumeric);
        while bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_alphanumeric() == alnum)
        {
            i += 1;
        }
        if alnum != expect_alnum {
            return Err(NameError::MisplacedSeparator);
        }
        if !alnum {
            let sep = &component[start..i];
            let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
            if !ok {
                return Err(NameError::MisplacedSeparator);
            }
        }
        expect_alnum = !expect_alnum;
    }
    // The last run must be alphanumeric: after it we expect a separator.
    if expect_alnum {
        return Err(NameError::MisplacedSeparator);
    }
    Ok(())
}

/// `[a-z0-9]+` optionally followed by `([a-zA-Z0-9]+)`; returns the type without class.
fn parse_type(part: &str) -> Option<&str> {
    let (ty, class) = match part.find('(') {
        Some(open) => {
            let class = part.get(open + 1..)?.strip_suffix(')')?;
            (part.get(..open)?, Some(class))
        }
        None => (part, None),
    };
    if ty.is_empty()
        || !ty
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return None;
    }
    if let Some(class) = class {
        if class.is_empty() || !class.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
    }
    Some(ty)
}

/// Names of types other than `repository` and `registry`: 1..=255 bytes, no spaces or
/// control characters.
fn is_valid_other_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests;
