//! Tests of the scope grammar: parse_scope's structure, types, names and actions,
//! repository names and hosts, error messages, parse_scopes' splitting, merging and limit,
//! and the query string feeding it.

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
        "a..b", "a___b", "a._b", "a-.b", "a_-b", ".a", "a.", "-a", "a-", "_a", "a_", "__a", "a__",
        "a/.b", "a/b-",
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
    let json = serde_json::to_string(&ok("repository(plugin):a/b:pull,push")).unwrap_or_default();
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
