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
pub(crate) mod tests {
    use super::*;

    use crate::wire::query::{parse_query, QueryError};
    use crate::wire::testrng::Rng;

    fn ok(s: &str) -> Scope {
        parse_scope(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> ScopeError {
        match parse_scope(s) {
            Ok(scope) => panic!("{s} parsed as {scope:?}"),
            Err(e) => e,
        }
    }

    fn name_err(name: &str) -> NameError {
        match validate_repository_name(name) {
            Ok(()) => panic!("{name} accepted"),
            Err(e) => e,
        }
    }

    fn scope(ty: &str, name: &str, actions: &[&str]) -> Scope {
        Scope {
            resource_type: ty.to_owned(),
            name: name.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    // ---- parse_scope: structure ----

    #[test]
    fn simple_pull() {
        assert_eq!(
            ok("repository:library/alpine:pull"),
            scope("repository", "library/alpine", &["pull"])
        );
    }

    #[test]
    fn several_actions_keep_order() {
        assert_eq!(ok("repository:a/b:push,pull").actions, ["push", "pull"]);
    }

    #[test]
    fn actions_deduplicated_first_order() {
        assert_eq!(
            ok("repository:a:push,pull,push,pull,delete").actions,
            ["push", "pull", "delete"]
        );
    }

    #[test]
    fn host_port_name() {
        let s = ok("repository:localhost:5000/foo/bar:pull");
        assert_eq!(s.name, "localhost:5000/foo/bar");
        assert_eq!(s.actions, ["pull"]);
    }

    #[test]
    fn fqdn_host_port_name() {
        let s = ok("repository:registry.example.com:443/team/app:pull,push");
        assert_eq!(s.name, "registry.example.com:443/team/app");
        assert_eq!(s.actions, ["pull", "push"]);
    }

    #[test]
    fn class_is_dropped() {
        assert_eq!(
            ok("repository(plugin):x:pull"),
            scope("repository", "x", &["pull"])
        );
    }

    #[test]
    fn class_may_hold_uppercase_and_digits() {
        assert_eq!(ok("repository(Plugin2):x:pull").resource_type, "repository");
    }

    #[test]
    fn bad_classes() {
        for s in [
            "repository():x:pull",
            "repository(a-b):x:pull",
            "repository(plugin:x:pull",
            "repository(plugin)x:y:pull",
            "repository(a)(b):x:pull",
            "repository)(:x:pull",
        ] {
            assert!(matches!(err(s), ScopeError::InvalidType { .. }), "{s}");
        }
    }

    #[test]
    fn registry_catalog() {
        assert_eq!(
            ok("registry:catalog:*"),
            scope("registry", "catalog", &["*"])
        );
    }

    #[test]
    fn registry_other_name_refused() {
        assert!(matches!(
            err("registry:other:*"),
            ScopeError::InvalidRegistryName { .. }
        ));
        assert!(matches!(
            err("registry:Catalog:*"),
            ScopeError::InvalidRegistryName { .. }
        ));
    }

    #[test]
    fn missing_separators() {
        for s in ["", "repository", "repository:foo", ":", "pull"] {
            assert!(matches!(err(s), ScopeError::Malformed { .. }), "{s:?}");
        }
    }

    #[test]
    fn empty_actions() {
        assert!(matches!(
            err("repository:foo:"),
            ScopeError::EmptyAction { .. }
        ));
    }

    #[test]
    fn trailing_colon_after_actions() {
        // The actions start after the last colon, so this is an empty action list.
        assert!(matches!(
            err("repository:foo:pull:"),
            ScopeError::EmptyAction { .. }
        ));
    }

    #[test]
    fn empty_action_entries() {
        for s in [
            "repository:a:pull,",
            "repository:a:,pull",
            "repository:a:pull,,push",
        ] {
            assert!(matches!(err(s), ScopeError::EmptyAction { .. }), "{s}");
        }
    }

    #[test]
    fn invalid_actions() {
        for (s, bad) in [
            ("repository:a:PULL", "PULL"),
            ("repository:a:pull1", "pull1"),
            ("repository:a:**", "**"),
            ("repository:a:pull, push", " push"),
            ("repository:a:pu-ll", "pu-ll"),
            ("repository:a:pull,*x", "*x"),
        ] {
            match err(s) {
                ScopeError::InvalidAction { action, .. } => assert_eq!(action, bad, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
    }

    #[test]
    fn star_and_unknown_lowercase_actions_are_syntactically_fine() {
        assert_eq!(ok("repository:a:*,pull").actions, ["*", "pull"]);
        assert_eq!(ok("repository:a:frobnicate").actions, ["frobnicate"]);
    }

    #[test]
    fn bad_types() {
        for s in [
            ":foo:pull",
            "Repository:foo:pull",
            "repo-sitory:foo:pull",
            "repo sitory:foo:pull",
            "(x):foo:pull",
        ] {
            assert!(matches!(err(s), ScopeError::InvalidType { .. }), "{s}");
        }
    }

    #[test]
    fn digits_in_type_allowed() {
        assert_eq!(ok("v2thing:some/name:pull").resource_type, "v2thing");
    }

    #[test]
    fn other_types_keep_name_syntactically() {
        let s = ok("plugin:Some/Name:With:pull");
        assert_eq!(s.resource_type, "plugin");
        assert_eq!(s.name, "Some/Name:With");
    }

    #[test]
    fn other_types_name_rules() {
        for s in [
            "plugin::pull",
            "plugin:a b:pull",
            "plugin:a\tb:pull",
            "plugin:a\u{7f}:pull",
        ] {
            assert!(matches!(err(s), ScopeError::InvalidName { .. }), "{s:?}");
        }
        let long = format!("plugin:{}:pull", "x".repeat(256));
        assert!(matches!(err(&long), ScopeError::InvalidName { .. }));
        let max = format!("plugin:{}:pull", "x".repeat(255));
        assert_eq!(ok(&max).name.len(), 255);
    }

    // ---- repository names ----

    #[test]
    fn empty_repository_name() {
        match err("repository::pull") {
            ScopeError::InvalidRepositoryName { reason, .. } => {
                assert_eq!(reason, NameError::Empty)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn name_length_255_ok_256_refused() {
        let name255 = format!("{}/{}", "a".repeat(127), "b".repeat(127));
        assert_eq!(name255.len(), 255);
        assert!(validate_repository_name(&name255).is_ok());
        let name256 = format!("{}/{}", "a".repeat(128), "b".repeat(127));
        assert_eq!(name_err(&name256), NameError::TooLong);
        let scope = format!("repository:{name256}:pull");
        assert!(matches!(
            err(&scope),
            ScopeError::InvalidRepositoryName {
                reason: NameError::TooLong,
                ..
            }
        ));
    }

    #[test]
    fn length_counts_the_host() {
        let name = format!("example.com/{}", "a".repeat(244));
        assert_eq!(name.len(), 256);
        assert_eq!(name_err(&name), NameError::TooLong);
        assert!(validate_repository_name(&name[..255]).is_ok());
    }

    #[test]
    fn uppercase_message() {
        assert_eq!(
            err("repository:Foo:pull").to_string(),
            "scope \"repository:Foo:pull\": invalid repository name (uppercase letters are not allowed)"
        );
    }

    #[test]
    fn separators_allowed() {
        for name in [
            "a_b",
            "a__b",
            "a.b",
            "a-b",
            "a--b",
            "a---b",
            "a.b_c-d__e",
            "0",
            "a1/b2/c3",
            "foo.bar",
            "library/alpine",
            "a/b/c/d/e/f",
        ] {
            assert!(validate_repository_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn separators_refused() {
        for name in [
            "a..b", "a___b", "a._b", "a-.b", "a_-b", ".a", "a.", "-a", "a-", "_a", "a_", "__a",
            "a__", "a/.b", "a/b-",
        ] {
            assert_eq!(name_err(name), NameError::MisplacedSeparator, "{name}");
        }
    }

    #[test]
    fn empty_components() {
        for name in ["a//b", "/a", "a/", "a/b/"] {
            assert_eq!(name_err(name), NameError::EmptyComponent, "{name}");
        }
    }

    #[test]
    fn invalid_characters() {
        for name in ["a b", "a@b", "a+b", "a:b", "é", "a\u{0}b", "a*"] {
            assert_eq!(name_err(name), NameError::InvalidCharacter, "{name:?}");
        }
    }

    #[test]
    fn uppercase_in_path() {
        for name in ["Foo", "foo/Bar", "example.com/Foo", "Foo/bar"] {
            assert_eq!(name_err(name), NameError::Uppercase, "{name}");
        }
    }

    #[test]
    fn hosts_accepted() {
        for name in [
            "localhost/foo",
            "localhost:5000/foo",
            "example.com/foo",
            "Example.COM/foo",
            "my-registry.example.com:443/a/b",
            "10.0.0.1:5000/x",
            "a:1/b",
            "x.y/z",
        ] {
            assert!(validate_repository_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn hosts_refused() {
        for name in [
            "-bad.com/x",
            "bad-.com/x",
            "ex_ample.com/x",
            "a..b/x",
            ".a/x",
            "a./x",
            ":5000/x",
            "ex ample.com/x",
        ] {
            assert_eq!(name_err(name), NameError::InvalidHost, "{name}");
        }
    }

    #[test]
    fn ports_refused() {
        for name in ["host:/x", "host:abc/x", "host:80:80/x", "localhost:-1/x"] {
            assert_eq!(name_err(name), NameError::InvalidPort, "{name}");
        }
    }

    #[test]
    fn host_without_path() {
        assert_eq!(name_err("example.com/"), NameError::MissingPath);
        // Without a slash the single component is a path component.
        assert_eq!(name_err("localhost:5000"), NameError::InvalidCharacter);
        assert!(validate_repository_name("localhost").is_ok());
    }

    #[test]
    fn host_heuristic_only_on_first_component() {
        // A dotted later component is an ordinary path component.
        assert!(validate_repository_name("a/b.c").is_ok());
        assert_eq!(name_err("a/b:c"), NameError::InvalidCharacter);
    }

    // ---- messages ----

    #[test]
    fn messages_name_the_scope_and_reason() {
        let cases = [
            ("foo", "scope \"foo\": expected \"type:name:actions\""),
            (
                "registry:other:*",
                "scope \"registry:other:*\": invalid registry resource name (only \"catalog\" is defined)",
            ),
            ("repository:a:", "scope \"repository:a:\": empty action"),
            (
                "repository:a:Pull",
                "scope \"repository:a:Pull\": invalid action \"Pull\" (expected lowercase letters or \"*\")",
            ),
            (
                "Repo:a:pull",
                "scope \"Repo:a:pull\": invalid resource type (expected lowercase letters and digits, optionally followed by \"(class)\")",
            ),
            (
                "repository:a..b:pull",
                "scope \"repository:a..b:pull\": invalid repository name (a separator must stand between two letters or digits (and \".\" or \"_\" may not repeat))",
            ),
        ];
        for (input, message) in cases {
            assert_eq!(err(input).to_string(), message);
        }
    }

    #[test]
    fn too_many_message() {
        assert_eq!(
            ScopeError::TooMany { max: MAX_SCOPES }.to_string(),
            "too many scopes: at most 32 scopes per request"
        );
    }

    #[test]
    fn long_scope_truncated_in_message() {
        let input = format!("repository:{}:pull", "A".repeat(300));
        let message = err(&input).to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("...\""), "{message}");
    }

    #[test]
    fn control_characters_never_echoed() {
        let message = err("repository:a\u{1b}[31m\n\r\u{0}:pull").to_string();
        assert!(!message.chars().any(char::is_control), "{message:?}");
        let message = err("repository:a:pu\u{7}ll").to_string();
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }

    #[test]
    fn name_error_display() {
        assert_eq!(NameError::TooLong.to_string(), "longer than 255 bytes");
        assert_eq!(NameError::InvalidPort.to_string(), "invalid registry port");
    }

    // ---- serialization and display ----

    #[test]
    fn serializes_as_access_entry() {
        let json =
            serde_json::to_string(&ok("repository(plugin):a/b:pull,push")).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"type":"repository","name":"a/b","actions":["pull","push"]}"#
        );
    }

    #[test]
    fn display_round_trips() {
        let s = ok("repository:localhost:5000/a:pull,push");
        assert_eq!(s.to_string(), "repository:localhost:5000/a:pull,push");
        assert_eq!(ok(&s.to_string()), s);
    }

    // ---- parse_scopes ----

    #[test]
    fn no_parameters() {
        assert_eq!(parse_scopes(Vec::<String>::new()), Ok(vec![]));
        assert_eq!(parse_scopes(["", "   "]), Ok(vec![]));
    }

    #[test]
    fn several_parameters() {
        assert_eq!(
            parse_scopes(["repository:a:pull", "repository:b:push"]),
            Ok(vec![
                scope("repository", "a", &["pull"]),
                scope("repository", "b", &["push"]),
            ])
        );
    }

    #[test]
    fn space_separated_in_one_parameter() {
        assert_eq!(
            parse_scopes(["  repository:a:pull    repository:b:push  registry:catalog:* "]),
            Ok(vec![
                scope("repository", "a", &["pull"]),
                scope("repository", "b", &["push"]),
                scope("registry", "catalog", &["*"]),
            ])
        );
    }

    #[test]
    fn merge_same_resource() {
        assert_eq!(
            parse_scopes([
                "repository:a:pull",
                "repository:b:pull repository:a:push,pull"
            ]),
            Ok(vec![
                scope("repository", "a", &["pull", "push"]),
                scope("repository", "b", &["pull"]),
            ])
        );
    }

    #[test]
    fn merge_ignores_class() {
        assert_eq!(
            parse_scopes(["repository(plugin):a:push", "repository:a:pull"]),
            Ok(vec![scope("repository", "a", &["push", "pull"])])
        );
    }

    #[test]
    fn different_types_not_merged() {
        assert_eq!(
            parse_scopes(["repository:catalog:pull", "registry:catalog:*"]).map(|v| v.len()),
            Ok(2)
        );
    }

    #[test]
    fn limit_32_ok_33_refused() {
        let many: Vec<String> = (0..32).map(|i| format!("repository:r{i}:pull")).collect();
        assert_eq!(parse_scopes(&many).map(|v| v.len()), Ok(32));
        let mut too_many = many.clone();
        too_many.push("repository:x:pull".to_owned());
        assert_eq!(
            parse_scopes(&too_many),
            Err(ScopeError::TooMany { max: MAX_SCOPES })
        );
    }

    #[test]
    fn limit_counts_before_merging() {
        let same = vec!["repository:a:pull"; 33];
        assert_eq!(
            parse_scopes(same),
            Err(ScopeError::TooMany { max: MAX_SCOPES })
        );
        let joined = vec!["repository:a:pull"; 33].join(" ");
        assert_eq!(
            parse_scopes([joined]),
            Err(ScopeError::TooMany { max: MAX_SCOPES })
        );
    }

    #[test]
    fn first_bad_scope_is_reported() {
        assert!(matches!(
            parse_scopes(["repository:a:pull repository:B:pull repository:c:"]),
            Err(ScopeError::InvalidRepositoryName { .. })
        ));
    }

    #[test]
    fn tab_is_not_a_separator() {
        assert!(parse_scopes(["repository:a:pull\trepository:b:pull"]).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let alphabet: Vec<char> = "ab:/,.()_-*Z09 :::\u{0}\u{1b}é\u{202e}%+\"\\"
            .chars()
            .collect();
        let seeds = [
            "repository:a/b:pull",
            "registry:catalog:*",
            "repository:localhost:5000/x:push,pull",
            "repository(plugin):a:pull",
        ];
        let mut rng = Rng::new(7);
        for _ in 0..20_000 {
            let mut s: String = rng.pick(&seeds).to_string();
            for _ in 0..rng.below(6) {
                let mut chars: Vec<char> = s.chars().collect();
                let at = rng.below(chars.len() + 1);
                match rng.below(3) {
                    0 => chars.insert(at, *rng.pick(&alphabet)),
                    1 if at < chars.len() => {
                        chars.remove(at);
                    }
                    _ => chars.truncate(at),
                }
                s = chars.into_iter().collect();
            }
            match parse_scope(&s) {
                Ok(parsed) => {
                    // Whatever parses re-parses to itself from its display form.
                    assert_eq!(parse_scope(&parsed.to_string()).as_ref(), Ok(&parsed));
                }
                Err(e) => {
                    let message = e.to_string();
                    assert!(!message.chars().any(char::is_control), "{message:?}");
                    assert!(message.len() < 400);
                }
            }
            let _ = parse_scopes([s.as_str(), s.as_str()]);
        }
        let mut rng = Rng::new(99);
        for _ in 0..5_000 {
            let len = rng.below(80);
            let s: String = (0..len).map(|_| *rng.pick(&alphabet)).collect();
            let _ = parse_scopes([s]);
        }
    }

    // ---- fed by the query string (wire::query) ----

    #[test]
    fn query_feeds_parse_scopes() {
        let q = parse_query(
            "service=r&scope=repository%3Aa%3Apull+repository%3Ab%3Apush&scope=repository:a:push",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let scopes = parse_scopes(&q.scopes).unwrap_or_default();
        assert_eq!(
            scopes,
            vec![
                Scope {
                    resource_type: "repository".into(),
                    name: "a".into(),
                    actions: vec!["pull".into(), "push".into()],
                },
                Scope {
                    resource_type: "repository".into(),
                    name: "b".into(),
                    actions: vec!["push".into()],
                },
            ]
        );
    }

    #[test]
    fn query_garbage_never_panics() {
        let pieces = [
            "scope",
            "service",
            "account",
            "client_id",
            "offline_token",
            "=",
            "&",
            "%",
            "%2",
            "%3A",
            "%2F",
            "%FF",
            "%C3",
            "%A9",
            "%00",
            "+",
            "repository",
            ":",
            "/",
            "a",
            "pull",
            ",",
            "*",
            "é",
            "\u{0}",
            " ",
            "%zz",
            "registry",
            "catalog",
            "localhost",
            "5000",
        ];
        let mut rng = Rng::new(42);
        for _ in 0..20_000 {
            let n = rng.below(24);
            let raw: String = (0..n).map(|_| *rng.pick(&pieces)).collect();
            match parse_query(&raw) {
                Ok(q) => {
                    if let Err(e) = parse_scopes(&q.scopes) {
                        assert!(!e.to_string().chars().any(char::is_control));
                    }
                }
                Err(e) => assert!(!e.to_string().chars().any(char::is_control)),
            }
        }
        for _ in 0..2_000 {
            let n = rng.below(64);
            let raw: String = (0..n)
                .map(|_| char::from_u32(rng.below(0x1_0000) as u32).unwrap_or('?'))
                .collect();
            let _ = parse_query(&raw);
        }
        // Oversized input is refused before any work.
        let huge = "scope=repository:a:pull&".repeat(10_000);
        assert!(matches!(
            parse_query(&huge),
            Err(QueryError::TooLong { .. })
        ));
    }
}
