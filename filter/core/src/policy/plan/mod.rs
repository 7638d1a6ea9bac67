//! The plan catalogue: which actions a plan allows on which resources.
//!
//! Plans are compiled once, at configure time, by [`Catalogue::compile`]. Each plan's rules
//! go into a segment trie per resource type (literal segments in an ordered map, glob
//! segments grouped by their literal prefix and suffix, `**` as a single child), so a
//! lookup visits only the branches a name can match, whatever the number of rules. Within
//! a plan the first rule, in file order, whose type and pattern match decides.
//!
//! A pattern segment may be a placeholder, `{tenant}` or `{sub}`: it matches exactly the
//! caller's tenant or subject, and only when that value is one valid repository path
//! component ([`Placeholders`] checks it once per request). A placeholder is a trie child
//! of its own, so it costs one comparison per node, never a per-request pattern.

use std::collections::BTreeMap;
use std::fmt;

use crate::policy::scope::{is_path_component, Scope};
use crate::wire::echo;

mod actions;
mod pattern;
mod trie;

use actions::compile_actions;
pub use actions::{ActionError, ActionSet, Allowed};
use pattern::compile_pattern;
#[cfg(test)]
use pattern::Glob;
pub use pattern::PatternError;
use trie::{Trie, TrieBuilder};

/// The caller's values for the plan placeholders. A value that is not exactly one
/// repository path component (see [`is_path_component`]) is dropped here, so it can never
/// be matched: no `/`, `..`, `*`, uppercase or empty value reaches the trie.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placeholders<'a> {
    tenant: Option<&'a str>,
    subject: Option<&'a str>,
}

impl<'a> Placeholders<'a> {
    /// The caller's tenant and subject; invalid values are dropped.
    pub fn new(tenant: Option<&'a str>, subject: Option<&'a str>) -> Placeholders<'a> {
        Placeholders {
            tenant: tenant.filter(|t| is_path_component(t)),
            subject: subject.filter(|s| is_path_component(s)),
        }
    }

    /// No value at all: placeholder rules match nothing.
    pub const NONE: Placeholders<'static> = Placeholders {
        tenant: None,
        subject: None,
    };

    /// The tenant, when it is valid.
    pub fn tenant(&self) -> Option<&'a str> {
        self.tenant
    }

    /// The subject, when it is valid.
    pub fn subject(&self) -> Option<&'a str> {
        self.subject
    }

    /// The values in `pattern::Var::index` order.
    fn values(&self) -> [Option<&'a str>; pattern::Var::COUNT] {
        [self.tenant, self.subject]
    }
}

/// One rule of a plan, as configured (`plans[i].repositories[j]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSpec {
    /// `repository` (also when empty) or `registry`.
    pub resource_type: String,
    /// `/`-separated pattern; `*` globs within a segment, a `**` segment spans segments,
    /// a `{tenant}` or `{sub}` segment is the caller's own value.
    pub pattern: String,
    /// `pull`, `push`, `delete` or `*`; empty means `["pull"]`.
    pub actions: Vec<String>,
}

/// One plan, as configured (`plans[i]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanSpec {
    /// Plan name, matched against the caller's plan claim.
    pub name: String,
    /// Rules in file order; the first matching rule decides.
    pub rules: Vec<RuleSpec>,
}

/// The plan named in a lookup is not in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPlan {
    /// The requested plan name, safe to echo.
    pub name: String,
}

impl fmt::Display for UnknownPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown plan \"{}\"", self.name)
    }
}

impl std::error::Error for UnknownPlan {}

/// A configuration error in the plan catalogue, naming its location (`plans[i]…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// `plans[plan].name` is empty.
    EmptyName {
        /// Plan index.
        plan: usize,
    },
    /// `plans[plan].name` repeats the name of `plans[first]`.
    DuplicateName {
        /// Plan index.
        plan: usize,
        /// The repeated name, safe to echo.
        name: String,
        /// Index of the plan that first used the name.
        first: usize,
    },
    /// `plans[plan].repositories[rule].type` is neither `repository` nor `registry`.
    InvalidType {
        /// Plan index.
        plan: usize,
        /// Rule index within the plan.
        rule: usize,
        /// The configured type, safe to echo.
        value: String,
    },
    /// `plans[plan].repositories[rule].pattern` does not compile.
    InvalidPattern {
        /// Plan index.
        plan: usize,
        /// Rule index within the plan.
        rule: usize,
        /// The configured pattern, safe to echo.
        pattern: String,
        /// What is wrong.
        reason: PatternError,
    },
    /// `plans[plan].repositories[rule].actions` holds an action that does not compile.
    InvalidAction {
        /// Plan index.
        plan: usize,
        /// Rule index within the plan.
        rule: usize,
        /// The offending action (empty when the list itself is the problem), safe to echo.
        action: String,
        /// What is wrong.
        reason: ActionError,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::EmptyName { plan } => write!(f, "plans[{plan}].name: plan name is empty"),
            PlanError::DuplicateName { plan, name, first } => write!(
                f,
                "plans[{plan}].name: \"{name}\": duplicate plan name (first defined at plans[{first}])"
            ),
            PlanError::InvalidType { plan, rule, value } => write!(
                f,
                "plans[{plan}].repositories[{rule}].type: \"{value}\": unknown resource type (expected \"repository\" or \"registry\")"
            ),
            PlanError::InvalidPattern {
                plan,
                rule,
                pattern,
                reason,
            } => write!(
                f,
                "plans[{plan}].repositories[{rule}].pattern: \"{pattern}\": {reason}"
            ),
            PlanError::InvalidAction {
                plan,
                rule,
                action,
                reason,
            } if action.is_empty() => {
                write!(f, "plans[{plan}].repositories[{rule}].actions: {reason}")
            }
            PlanError::InvalidAction {
                plan,
                rule,
                action,
                reason,
            } => write!(
                f,
                "plans[{plan}].repositories[{rule}].actions: \"{action}\": {reason}"
            ),
        }
    }
}

impl std::error::Error for PlanError {}

/// The compiled plan catalogue.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    plans: Vec<Plan>,
    by_name: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default)]
struct Plan {
    name: String,
    /// What each rule allows, by rule index.
    rules: Vec<Allowed>,
    repository: Trie,
    registry: Trie,
}

impl Catalogue {
    /// Compiles the configured plans, checking every pattern and action.
    pub fn compile(plans: &[PlanSpec]) -> Result<Catalogue, PlanError> {
        let mut catalogue = Catalogue::default();
        for (plan_index, spec) in plans.iter().enumerate() {
            if spec.name.is_empty() {
                return Err(PlanError::EmptyName { plan: plan_index });
            }
            if let Some(&first) = catalogue.by_name.get(&spec.name) {
                return Err(PlanError::DuplicateName {
                    plan: plan_index,
                    name: echo(&spec.name),
                    first,
                });
            }
            let mut plan = Plan {
                name: spec.name.clone(),
                ..Plan::default()
            };
            let mut repository = TrieBuilder::default();
            let mut registry = TrieBuilder::default();
            for (rule_index, rule) in spec.rules.iter().enumerate() {
                let at = |e: RuleError| e.locate(plan_index, rule_index, rule);
                let kind = match rule.resource_type.as_str() {
                    "" | "repository" => ResourceKind::Repository,
                    "registry" => ResourceKind::Registry,
                    _ => return Err(at(RuleError::Type)),
                };
                let segments =
                    compile_pattern(&rule.pattern, kind).map_err(|e| at(RuleError::Pattern(e)))?;
                let allowed = compile_actions(&rule.actions, kind)
                    .map_err(|(action, e)| at(RuleError::Action(action, e)))?;
                match kind {
                    ResourceKind::Repository => repository.insert(&segments, rule_index),
                    ResourceKind::Registry => registry.insert(&segments, rule_index),
                }
                plan.rules.push(allowed);
            }
            plan.repository = repository.finish();
            plan.registry = registry.finish();
            catalogue.by_name.insert(spec.name.clone(), plan_index);
            catalogue.plans.push(plan);
        }
        Ok(catalogue)
    }

    /// Whether a plan of that name exists.
    pub fn has_plan(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Plan names in configuration order.
    pub fn plan_names(&self) -> impl Iterator<Item = &str> {
        self.plans.iter().map(|p| p.name.as_str())
    }

    fn plan(&self, name: &str) -> Result<&Plan, UnknownPlan> {
        self.by_name
            .get(name)
            .and_then(|&i| self.plans.get(i))
            .ok_or_else(|| UnknownPlan { name: echo(name) })
    }

    /// What `plan` allows on the resource `resource_type:name`: the actions of the first
    /// matching rule, or `None` when no rule matches (always for types other than
    /// `repository` and `registry`). Placeholder rules match nothing here.
    pub fn allowed(
        &self,
        plan: &str,
        resource_type: &str,
        name: &str,
    ) -> Result<Option<Allowed>, UnknownPlan> {
        self.allowed_for(plan, resource_type, name, &Placeholders::NONE)
    }

    /// [`Catalogue::allowed`] for a caller with these placeholder values.
    pub fn allowed_for(
        &self,
        plan: &str,
        resource_type: &str,
        name: &str,
        vars: &Placeholders<'_>,
    ) -> Result<Option<Allowed>, UnknownPlan> {
        Ok(self.plan(plan)?.allowed(resource_type, name, vars, &mut 0))
    }

    /// Grants `requested` under `plan` (Docker semantics): per scope, the requested actions
    /// that are allowed, in the requested order; a requested `*` yields `*` when everything
    /// is allowed and otherwise the allowed set in the order pull, push, delete. Scopes
    /// granting nothing are left out. Placeholder rules match nothing here: see
    /// [`Catalogue::grant_for`].
    pub fn grant(&self, plan: &str, requested: &[Scope]) -> Result<Vec<Scope>, UnknownPlan> {
        self.grant_for(plan, requested, &Placeholders::NONE)
    }

    /// [`Catalogue::grant`] for a caller with these placeholder values (`{tenant}`,
    /// `{sub}`).
    pub fn grant_for(
        &self,
        plan: &str,
        requested: &[Scope],
        vars: &Placeholders<'_>,
    ) -> Result<Vec<Scope>, UnknownPlan> {
        let plan = self.plan(plan)?;
        Ok(requested
            .iter()
            .filter_map(|scope| {
                let allowed = plan.allowed(&scope.resource_type, &scope.name, vars, &mut 0)?;
                let actions = grant_actions(allowed, &scope.actions);
                (!actions.is_empty()).then(|| Scope {
                    resource_type: scope.resource_type.clone(),
                    name: scope.name.clone(),
                    actions,
                })
            })
            .collect())
    }
}

impl Plan {
    /// `steps` counts the work done, for the scaling tests.
    fn allowed(
        &self,
        resource_type: &str,
        name: &str,
        vars: &Placeholders<'_>,
        steps: &mut usize,
    ) -> Option<Allowed> {
        let trie = match resource_type {
            "repository" => &self.repository,
            "registry" => &self.registry,
            _ => return None,
        };
        let rule = trie.first_match(name, vars, steps)?;
        self.rules.get(rule).copied()
    }
}

fn grant_actions(allowed: Allowed, requested: &[String]) -> Vec<String> {
    if requested.iter().any(|a| a == "*") {
        return match allowed {
            Allowed::All => vec!["*".to_owned()],
            Allowed::Only(set) => set.names().map(str::to_owned).collect(),
        };
    }
    let mut granted: Vec<String> = Vec::new();
    for action in requested {
        if allowed.permits(action) && !granted.contains(action) {
            granted.push(action.clone());
        }
    }
    granted
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResourceKind {
    Repository,
    Registry,
}

/// A rule error before its location is attached.
enum RuleError {
    Type,
    Pattern(PatternError),
    Action(String, ActionError),
}

impl RuleError {
    fn locate(self, plan: usize, rule: usize, spec: &RuleSpec) -> PlanError {
        match self {
            RuleError::Type => PlanError::InvalidType {
                plan,
                rule,
                value: echo(&spec.resource_type),
            },
            RuleError::Pattern(reason) => PlanError::InvalidPattern {
                plan,
                rule,
                pattern: echo(&spec.pattern),
                reason,
            },
            RuleError::Action(action, reason) => PlanError::InvalidAction {
                plan,
                rule,
                action: echo(&action),
                reason,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::scope::{parse_scopes, Scope};
    use crate::wire::testrng::Rng;

    fn rule(pattern: &str, actions: &[&str]) -> RuleSpec {
        RuleSpec {
            resource_type: "repository".to_owned(),
            pattern: pattern.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    fn registry_rule(pattern: &str, actions: &[&str]) -> RuleSpec {
        RuleSpec {
            resource_type: "registry".to_owned(),
            ..rule(pattern, actions)
        }
    }

    fn plan(name: &str, rules: Vec<RuleSpec>) -> PlanSpec {
        PlanSpec {
            name: name.to_owned(),
            rules,
        }
    }

    fn one_plan(rules: Vec<RuleSpec>) -> Catalogue {
        Catalogue::compile(&[plan("p", rules)]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn compile_err(plans: &[PlanSpec]) -> PlanError {
        match Catalogue::compile(plans) {
            Ok(_) => panic!("compiled"),
            Err(e) => e,
        }
    }

    fn pattern_err(pattern: &str) -> PatternError {
        match compile_err(&[plan("p", vec![rule(pattern, &[])])]) {
            PlanError::InvalidPattern { reason, .. } => reason,
            other => panic!("{pattern}: {other:?}"),
        }
    }

    fn allowed(c: &Catalogue, name: &str) -> Option<Allowed> {
        c.allowed("p", "repository", name)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn matches(pattern: &str, name: &str) -> bool {
        allowed(&one_plan(vec![rule(pattern, &[])]), name).is_some()
    }

    fn set(actions: &[&str]) -> Allowed {
        let mut s = ActionSet::EMPTY;
        for a in actions {
            s = s.with(ActionSet::bit(a).unwrap_or(0));
        }
        Allowed::Only(s)
    }

    fn scope(ty: &str, name: &str, actions: &[&str]) -> Scope {
        Scope {
            resource_type: ty.to_owned(),
            name: name.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// Grants one repository scope `a` with `requested` under a plan allowing `allowed`.
    fn grant_one(allowed_actions: &[&str], requested: &[&str]) -> Vec<String> {
        let c = one_plan(vec![rule("a", allowed_actions)]);
        let granted = c
            .grant("p", &[scope("repository", "a", requested)])
            .unwrap_or_default();
        granted.into_iter().flat_map(|s| s.actions).collect()
    }

    // ---- catalogue structure ----

    #[test]
    fn empty_catalogue() {
        let c = Catalogue::compile(&[]).unwrap_or_default();
        assert!(!c.has_plan("x"));
        assert_eq!(c.plan_names().count(), 0);
    }

    #[test]
    fn plan_names_in_order() {
        let c = Catalogue::compile(&[
            plan("zeta", vec![]),
            plan("alpha", vec![]),
            plan("mid", vec![]),
        ])
        .unwrap_or_default();
        assert_eq!(c.plan_names().collect::<Vec<_>>(), ["zeta", "alpha", "mid"]);
        assert!(c.has_plan("alpha"));
        assert!(!c.has_plan("Alpha"));
    }

    #[test]
    fn plan_without_rules_grants_nothing() {
        let c = one_plan(vec![]);
        assert_eq!(allowed(&c, "a"), None);
        assert_eq!(
            c.grant("p", &[scope("repository", "a", &["pull"])]),
            Ok(vec![])
        );
    }

    #[test]
    fn empty_plan_name() {
        let e = compile_err(&[plan("a", vec![]), plan("", vec![])]);
        assert_eq!(e, PlanError::EmptyName { plan: 1 });
        assert_eq!(e.to_string(), "plans[1].name: plan name is empty");
    }

    #[test]
    fn duplicate_plan_name() {
        let e = compile_err(&[plan("a", vec![]), plan("b", vec![]), plan("a", vec![])]);
        assert_eq!(
            e.to_string(),
            "plans[2].name: \"a\": duplicate plan name (first defined at plans[0])"
        );
    }

    #[test]
    fn unknown_plan() {
        let c = one_plan(vec![rule("**", &["*"])]);
        assert_eq!(
            c.allowed("gold", "repository", "a"),
            Err(UnknownPlan {
                name: "gold".to_owned()
            })
        );
        assert!(c.grant("gold", &[]).is_err());
        assert_eq!(
            UnknownPlan {
                name: "gold".to_owned()
            }
            .to_string(),
            "unknown plan \"gold\""
        );
        let e = c.allowed("bad\n\"plan", "repository", "a");
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err("unknown plan \"bad?\\\"plan\"".to_owned())
        );
    }

    // ---- pattern compile errors ----

    #[test]
    fn error_message_names_location() {
        let e = compile_err(&[
            plan("a", vec![rule("x", &[])]),
            plan(
                "b",
                vec![
                    rule("x", &[]),
                    rule("y", &[]),
                    rule("z", &[]),
                    rule("stella-ops/**x", &[]),
                ],
            ),
        ]);
        assert_eq!(
            e.to_string(),
            "plans[1].repositories[3].pattern: \"stella-ops/**x\": \"**\" must be a whole segment"
        );
    }

    #[test]
    fn double_star_inside_segment() {
        for p in ["a**", "**a", "a/b**c", "***", "a/***/b"] {
            assert_eq!(pattern_err(p), PatternError::DoubleStarNotWhole, "{p}");
        }
    }

    #[test]
    fn empty_pattern() {
        assert_eq!(pattern_err(""), PatternError::Empty);
    }

    #[test]
    fn slashes() {
        for p in ["/a", "a/", "/", "/**"] {
            assert_eq!(pattern_err(p), PatternError::LeadingOrTrailingSlash, "{p}");
        }
        assert_eq!(pattern_err("a//b"), PatternError::EmptySegment);
    }

    #[test]
    fn invalid_characters() {
        for (p, c) in [
            ("a b", ' '),
            ("a/b?", '?'),
            ("team/[ab]", '['),
            ("é", 'é'),
            ("a@b", '@'),
            ("a\tb", '\t'),
        ] {
            assert_eq!(pattern_err(p), PatternError::InvalidCharacter(c), "{p:?}");
        }
        assert_eq!(
            PatternError::InvalidCharacter('?').to_string(),
            "character '?' can never appear in a repository name"
        );
        assert_eq!(
            PatternError::InvalidCharacter('\t').to_string(),
            "character U+0009 can never appear in a repository name"
        );
    }

    #[test]
    fn uppercase_only_in_host() {
        assert_eq!(pattern_err("Team/*"), PatternError::Uppercase);
        assert_eq!(pattern_err("Foo.bar"), PatternError::Uppercase);
        assert_eq!(pattern_err("example.com/Team"), PatternError::Uppercase);
        assert!(matches(
            "Registry.Example.com/team",
            "Registry.Example.com/team"
        ));
    }

    #[test]
    fn colon_only_in_host() {
        assert_eq!(pattern_err("team/a:b"), PatternError::ColonOutsideHost);
        assert_eq!(pattern_err("a:b"), PatternError::ColonOutsideHost);
        assert!(matches("localhost:5000/**", "localhost:5000/x/y"));
        assert!(matches("*:5000/app", "localhost:5000/app"));
        assert!(!matches("*:5000/app", "localhost:5001/app"));
    }

    #[test]
    fn registry_patterns() {
        let c = one_plan(vec![registry_rule("catalog", &["*"])]);
        assert_eq!(
            c.allowed("p", "registry", "catalog"),
            Ok(Some(Allowed::All))
        );
        let c = one_plan(vec![registry_rule("*", &["*"])]);
        assert_eq!(
            c.allowed("p", "registry", "catalog"),
            Ok(Some(Allowed::All))
        );
        for p in ["catalog/x", "cat*", "**", "", "Catalog"] {
            let e = compile_err(&[plan("p", vec![registry_rule(p, &["*"])])]);
            assert!(
                matches!(
                    e,
                    PlanError::InvalidPattern {
                        reason: PatternError::RegistryPattern,
                        ..
                    }
                ),
                "{p}"
            );
        }
    }

    #[test]
    fn resource_type_names() {
        let c = Catalogue::compile(&[plan(
            "p",
            vec![RuleSpec {
                resource_type: String::new(),
                ..rule("a", &[])
            }],
        )])
        .unwrap_or_default();
        assert_eq!(
            c.allowed("p", "repository", "a"),
            Ok(Some(Allowed::Only(ActionSet::PULL)))
        );
        let e = compile_err(&[plan(
            "p",
            vec![
                rule("a", &[]),
                RuleSpec {
                    resource_type: "repo".to_owned(),
                    ..rule("a", &[])
                },
            ],
        )]);
        assert_eq!(
            e.to_string(),
            "plans[0].repositories[1].type: \"repo\": unknown resource type (expected \"repository\" or \"registry\")"
        );
    }

    // ---- actions ----

    #[test]
    fn default_actions_pull() {
        let c = one_plan(vec![rule("a", &[])]);
        assert_eq!(allowed(&c, "a"), Some(set(&["pull"])));
    }

    #[test]
    fn star_means_all() {
        let c = one_plan(vec![rule("a", &["pull", "*"])]);
        assert_eq!(allowed(&c, "a"), Some(Allowed::All));
    }

    #[test]
    fn duplicate_actions_ok() {
        let c = one_plan(vec![rule("a", &["push", "pull", "push"])]);
        assert_eq!(allowed(&c, "a"), Some(set(&["pull", "push"])));
    }

    #[test]
    fn unknown_action_refused() {
        let e = compile_err(&[plan("p", vec![rule("a", &["pull", "pul"])])]);
        assert_eq!(
            e.to_string(),
            "plans[0].repositories[0].actions: \"pul\": unknown action (expected \"pull\", \"push\", \"delete\" or \"*\")"
        );
        for bad in ["Pull", "", " pull", "**", "read"] {
            assert!(
                matches!(
                    compile_err(&[plan("p", vec![rule("a", &[bad])])]),
                    PlanError::InvalidAction {
                        reason: ActionError::Unknown,
                        ..
                    }
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn registry_actions_must_be_star() {
        for actions in [&["pull"][..], &[][..], &["*", "pull"][..]] {
            let e = compile_err(&[plan("p", vec![registry_rule("catalog", actions)])]);
            assert!(
                matches!(
                    e,
                    PlanError::InvalidAction {
                        reason: ActionError::RegistryNeedsStar,
                        ..
                    }
                ),
                "{actions:?}"
            );
        }
        let e = compile_err(&[plan("p", vec![registry_rule("catalog", &[])])]);
        assert_eq!(
            e.to_string(),
            "plans[0].repositories[0].actions: registry rules only support the action \"*\""
        );
        let e = compile_err(&[plan("p", vec![registry_rule("catalog", &["pull"])])]);
        assert_eq!(
            e.to_string(),
            "plans[0].repositories[0].actions: \"pull\": registry rules only support the action \"*\""
        );
    }

    #[test]
    fn action_set_api() {
        let s = ActionSet::EMPTY.with(4).with(1);
        assert!(s.contains("pull") && s.contains("delete") && !s.contains("push"));
        assert!(!s.contains("*") && !s.contains("x"));
        assert_eq!(s.names().collect::<Vec<_>>(), ["pull", "delete"]);
        assert!(ActionSet::EMPTY.is_empty());
        assert!(Allowed::All.permits("delete"));
        assert!(!Allowed::All.permits("frob"));
        assert!(!Allowed::All.permits("*"));
    }

    // ---- pattern semantics ----

    #[test]
    fn literal_pattern() {
        assert!(matches("team/app", "team/app"));
        assert!(!matches("team/app", "team/app2"));
        assert!(!matches("team/app", "team"));
        assert!(!matches("team/app", "team/app/x"));
        assert!(!matches("team", "team/app"));
    }

    #[test]
    fn star_is_one_segment() {
        assert!(matches("team/*", "team/app"));
        assert!(!matches("team/*", "team"));
        assert!(!matches("team/*", "team/a/b"));
        assert!(matches("*", "alpine"));
        assert!(!matches("*", "library/alpine"));
        assert!(matches("*/*", "library/alpine"));
        assert!(matches("*/app", "x/app"));
        assert!(!matches("*/app", "x/y/app"));
    }

    #[test]
    fn glob_within_segment() {
        assert!(matches("team/base-*", "team/base-alpine"));
        assert!(matches("team/base-*", "team/base-"));
        assert!(!matches("team/base-*", "team/bas"));
        assert!(!matches("team/base-*", "team/base-a/b"));
        assert!(matches("team/*-dev", "team/app-dev"));
        assert!(!matches("team/*-dev", "team/app-dev2"));
        assert!(matches("team/a*b*c", "team/abc"));
        assert!(matches("team/a*b*c", "team/axxbyyc"));
        assert!(matches("team/a*b*c", "team/abcbc"));
        assert!(!matches("team/a*b*c", "team/acb"));
        assert!(matches("t*m/*", "team/x"));
        assert!(!matches("a*a", "a"));
        assert!(matches("a*a", "aa"));
    }

    #[test]
    fn double_star_tail() {
        assert!(matches("a/**", "a"));
        assert!(matches("a/**", "a/b"));
        assert!(matches("a/**", "a/b/c"));
        assert!(!matches("a/**", "ab"));
        assert!(!matches("a/**", "b/a"));
    }

    #[test]
    fn double_star_alone_matches_everything() {
        for name in ["a", "a/b", "a/b/c/d/e", "localhost:5000/x"] {
            assert!(matches("**", name), "{name}");
        }
    }

    #[test]
    fn double_star_head_and_middle() {
        assert!(matches("**/app", "app"));
        assert!(matches("**/app", "x/y/app"));
        assert!(!matches("**/app", "x/app2"));
        assert!(matches("a/**/b", "a/b"));
        assert!(matches("a/**/b", "a/x/b"));
        assert!(matches("a/**/b", "a/x/y/b"));
        assert!(!matches("a/**/b", "a/x/y"));
        assert!(matches("a/**/b/**", "a/x/b/y/z"));
        assert!(matches("**/**", "a/b"));
        assert!(matches("a/**/*-dev", "a/x/y/app-dev"));
        assert!(!matches("a/**/*-dev", "a"));
    }

    #[test]
    fn matching_is_case_sensitive() {
        assert!(!matches("example.com/**", "Example.com/x"));
    }

    #[test]
    fn glob_matcher_unit() {
        let cases = [
            ("*", "", true),
            ("*", "abc", true),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("a*b", "ab", true),
            ("a*b", "axb", true),
            ("a*b", "axbx", false),
            ("*x*", "abxcd", true),
            ("*x*", "abcd", false),
            ("a*b*c*d", "aXbXcXd", true),
            ("a*b*c*d", "aXcXbXd", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                expected,
                "{pattern} {text}"
            );
        }
    }

    // ---- first match wins ----

    #[test]
    fn narrow_rule_first() {
        let c = one_plan(vec![rule("team/secret", &[]), rule("team/*", &["*"])]);
        assert_eq!(allowed(&c, "team/secret"), Some(set(&["pull"])));
        assert_eq!(allowed(&c, "team/other"), Some(Allowed::All));
    }

    #[test]
    fn broad_rule_first_shadows_later_narrow() {
        let c = one_plan(vec![rule("team/**", &["pull"]), rule("team/app", &["*"])]);
        assert_eq!(allowed(&c, "team/app"), Some(set(&["pull"])));
    }

    #[test]
    fn later_broader_rule_does_not_override() {
        let c = one_plan(vec![rule("team/app", &["pull"]), rule("**", &["*"])]);
        assert_eq!(allowed(&c, "team/app"), Some(set(&["pull"])));
        assert_eq!(allowed(&c, "other"), Some(Allowed::All));
    }

    #[test]
    fn identical_patterns_first_wins() {
        let c = one_plan(vec![
            rule("a/*", &["push"]),
            rule("a/*", &["*"]),
            rule("a/*", &["delete"]),
        ]);
        assert_eq!(allowed(&c, "a/b"), Some(set(&["push"])));
    }

    #[test]
    fn first_match_across_kinds() {
        let c = one_plan(vec![
            rule("**/x", &["delete"]),
            rule("a/*", &["push"]),
            rule("a/x", &["pull"]),
        ]);
        assert_eq!(allowed(&c, "a/x"), Some(set(&["delete"])));
        assert_eq!(allowed(&c, "a/y"), Some(set(&["push"])));
    }

    #[test]
    fn registry_and_repository_rules_are_separate() {
        let c = one_plan(vec![
            rule("catalog", &["pull"]),
            registry_rule("catalog", &["*"]),
        ]);
        assert_eq!(allowed(&c, "catalog"), Some(set(&["pull"])));
        assert_eq!(
            c.allowed("p", "registry", "catalog"),
            Ok(Some(Allowed::All))
        );
        assert_eq!(c.allowed("p", "plugin", "catalog"), Ok(None));
    }

    #[test]
    fn plans_are_independent() {
        let c = Catalogue::compile(&[
            plan("free", vec![rule("public/**", &[])]),
            plan("gold", vec![rule("**", &["pull", "push"])]),
        ])
        .unwrap_or_default();
        assert_eq!(c.allowed("free", "repository", "private/x"), Ok(None));
        assert_eq!(
            c.allowed("gold", "repository", "private/x"),
            Ok(Some(set(&["pull", "push"])))
        );
    }

    // ---- grant ----

    #[test]
    fn grant_intersection_table() {
        let table: [(&[&str], &[&str], &[&str]); 16] = [
            (&["pull"], &["pull"], &["pull"]),
            (&["pull"], &["push"], &[]),
            (&["pull"], &["pull", "push"], &["pull"]),
            (&["pull"], &["push", "pull"], &["pull"]),
            (&["pull", "push"], &["push", "pull"], &["push", "pull"]),
            (&["*"], &["push", "pull"], &["push", "pull"]),
            (&["*"], &["delete"], &["delete"]),
            (&["*"], &["*"], &["*"]),
            (&["*"], &["pull", "*"], &["*"]),
            (&["pull", "push"], &["*"], &["pull", "push"]),
            (&["delete", "pull"], &["*"], &["pull", "delete"]),
            (
                &["push", "pull", "delete"],
                &["*"],
                &["pull", "push", "delete"],
            ),
            (&["*"], &["frob"], &[]),
            (&["*"], &["pull", "frob"], &["pull"]),
            (&[], &["*"], &["pull"]),
            (&["delete"], &["pull", "push"], &[]),
        ];
        for (allowed_actions, requested, expected) in table {
            assert_eq!(
                grant_one(allowed_actions, requested),
                expected,
                "allowed {allowed_actions:?} requested {requested:?}"
            );
        }
    }

    #[test]
    fn grant_omits_unmatched_and_keeps_order() {
        let c = one_plan(vec![
            rule("team/**", &["pull", "push"]),
            registry_rule("catalog", &["*"]),
        ]);
        let requested = parse_scopes([
            "repository:other/x:pull repository:team/b:push,pull,delete",
            "registry:catalog:* plugin:x:pull repository:team/a:delete repository:team/c:pull",
        ])
        .unwrap_or_default();
        assert_eq!(
            c.grant("p", &requested),
            Ok(vec![
                scope("repository", "team/b", &["push", "pull"]),
                scope("registry", "catalog", &["*"]),
                scope("repository", "team/c", &["pull"]),
            ])
        );
    }

    #[test]
    fn grant_registry_without_rule() {
        let c = one_plan(vec![rule("**", &["*"])]);
        assert_eq!(
            c.grant("p", &[scope("registry", "catalog", &["*"])]),
            Ok(vec![])
        );
    }

    #[test]
    fn grant_nothing_requested() {
        let c = one_plan(vec![rule("**", &["*"])]);
        assert_eq!(c.grant("p", &[]), Ok(vec![]));
    }

    #[test]
    fn grant_host_port_names() {
        let c = one_plan(vec![rule("localhost:5000/team/*", &["*"])]);
        let requested =
            parse_scopes(["repository:localhost:5000/team/app:pull,push"]).unwrap_or_default();
        assert_eq!(
            c.grant("p", &requested),
            Ok(vec![scope(
                "repository",
                "localhost:5000/team/app",
                &["pull", "push"]
            )])
        );
    }

    // ---- scale: index vs. naive linear scan ----

    fn naive_segment(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|k| naive_segment(rest, &s[k..])),
            Some((c, rest)) => s.first() == Some(c) && naive_segment(rest, &s[1..]),
        }
    }

    fn naive_path(p: &[&str], n: &[&str], vars: &Placeholders<'_>) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((&"**", rest)) => (0..=n.len()).any(|k| naive_path(rest, &n[k..], vars)),
            Some((seg, rest)) => match n.split_first() {
                Some((first, n_rest)) => {
                    let head = match *seg {
                        "{tenant}" => vars.tenant() == Some(*first),
                        "{sub}" => vars.subject() == Some(*first),
                        _ => naive_segment(seg.as_bytes(), first.as_bytes()),
                    };
                    head && naive_path(rest, n_rest, vars)
                }
                None => false,
            },
        }
    }

    /// The reference: every rule in order, pattern segments pre-split.
    struct Naive<'a> {
        rules: Vec<(Vec<&'a str>, &'a RuleSpec)>,
    }

    impl<'a> Naive<'a> {
        fn new(rules: &'a [RuleSpec]) -> Naive<'a> {
            Naive {
                rules: rules
                    .iter()
                    .map(|r| (r.pattern.split('/').collect(), r))
                    .collect(),
            }
        }

        fn allowed(&self, name: &str) -> Option<Allowed> {
            self.allowed_for(name, &Placeholders::NONE)
        }

        fn allowed_for(&self, name: &str, vars: &Placeholders<'_>) -> Option<Allowed> {
            let n: Vec<&str> = name.split('/').collect();
            self.rules
                .iter()
                .find(|(pattern, _)| naive_path(pattern, &n, vars))
                .map(|(_, r)| {
                    compile_actions(&r.actions, ResourceKind::Repository)
                        .unwrap_or(Allowed::Only(ActionSet::EMPTY))
                })
        }
    }

    const ACTION_CHOICES: [&[&str]; 6] = [
        &[],
        &["push"],
        &["pull", "push"],
        &["*"],
        &["delete"],
        &["pull", "delete"],
    ];

    fn random_segment(rng: &mut Rng, orgs: usize) -> String {
        match rng.below(10) {
            0 => format!("org{}", rng.below(orgs)),
            1 => "app".to_owned(),
            2 => format!("app-{}", rng.below(5)),
            3 => format!("base-{}", rng.below(5)),
            4 => format!("svc{}-dev", rng.below(5)),
            5 => "lib".to_owned(),
            6 => format!("team{}", rng.below(20)),
            7 => "x".to_owned(),
            8 => format!("a{}b", rng.below(3)),
            _ => format!("org{}", rng.below(orgs)),
        }
    }

    fn random_pattern_segment(rng: &mut Rng, orgs: usize) -> String {
        match rng.below(14) {
            0 => "*".to_owned(),
            1 => "base-*".to_owned(),
            2 => "*-dev".to_owned(),
            3 => format!("svc{}*", rng.below(5)),
            4 => "a*b".to_owned(),
            5 => format!("app-*{}", rng.below(5)),
            6 => "**".to_owned(),
            _ => random_segment(rng, orgs),
        }
    }

    fn random_rules(rng: &mut Rng, count: usize, orgs: usize) -> Vec<RuleSpec> {
        (0..count)
            .map(|i| {
                // Most rules are anchored on a literal organisation, like real catalogues.
                let wild_first = rng.below(50) == 0;
                let mut segments = vec![if wild_first {
                    random_pattern_segment(rng, orgs)
                } else {
                    format!("org{}", i % orgs)
                }];
                for _ in 0..rng.below(4) {
                    segments.push(random_pattern_segment(rng, orgs));
                }
                if wild_first {
                    // End on a literal so no catch-all shadows the rest of the plan.
                    segments.push(random_segment(rng, orgs));
                }
                rule(
                    &segments.join("/"),
                    ACTION_CHOICES[rng.below(ACTION_CHOICES.len())],
                )
            })
            .collect()
    }

    fn random_name(rng: &mut Rng, orgs: usize) -> String {
        let mut segments = vec![format!("org{}", rng.below(orgs))];
        for _ in 0..rng.below(5) {
            segments.push(random_segment(rng, orgs));
        }
        segments.join("/")
    }

    #[test]
    fn index_agrees_with_linear_scan_on_10000_rules() {
        let mut rng = Rng::new(0x5eed);
        let orgs = 2_000;
        let rules = random_rules(&mut rng, 10_000, orgs);
        let catalogue = one_plan(rules.clone());
        let naive = Naive::new(&rules);
        let mut matched = 0;
        for _ in 0..4_000 {
            let name = random_name(&mut rng, orgs);
            let expected = naive.allowed(&name);
            matched += usize::from(expected.is_some());
            assert_eq!(allowed(&catalogue, &name), expected, "{name}");
        }
        // The generator must exercise both outcomes.
        assert!(matched > 500, "{matched}");
        assert!(matched < 3_900, "{matched}");
    }

    #[test]
    fn index_agrees_with_linear_scan_on_dense_small_plans() {
        // Few organisations: many overlapping globs and ** rules on the same names.
        let mut rng = Rng::new(77);
        for round in 0..40 {
            let rules = random_rules(&mut rng, 5 + round * 5, 3);
            let catalogue = one_plan(rules.clone());
            let naive = Naive::new(&rules);
            for _ in 0..200 {
                let name = random_name(&mut rng, 3);
                assert_eq!(allowed(&catalogue, &name), naive.allowed(&name), "{name}");
            }
        }
    }

    fn max_steps(rules: Vec<RuleSpec>, names: &[String]) -> usize {
        let c = one_plan(rules);
        let plan = c.plans.first().unwrap_or_else(|| panic!("no plan"));
        names
            .iter()
            .map(|name| {
                let mut steps = 0;
                plan.allowed("repository", name, &Placeholders::NONE, &mut steps);
                steps
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn lookup_work_does_not_grow_with_rule_count() {
        // Literal organisation, then a mix of literals and globs: 10 vs 10,000 rules.
        let build = |count: usize| -> Vec<RuleSpec> {
            (0..count)
                .map(|i| match i % 4 {
                    0 => rule(&format!("org{i}/app"), &["push"]),
                    1 => rule(&format!("org{i}/base-*"), &[]),
                    2 => rule(&format!("team-{i}-*/**"), &["*"]),
                    _ => rule(&format!("org{i}/*/*-dev"), &["delete"]),
                })
                .collect()
        };
        let names: Vec<String> = (0..10)
            .flat_map(|i| {
                [
                    format!("org{i}/app"),
                    format!("org{i}/base-alpine"),
                    format!("team-{i}-x/a/b"),
                    format!("org{i}/svc/app-dev"),
                    format!("nomatch{i}/x"),
                ]
            })
            .collect();
        let small = max_steps(build(10), &names);
        let large = max_steps(build(10_000), &names);
        assert!(small > 0);
        // The 10,000-rule plan does at most a small constant more work (the ~1,000 glob
        // segments like `team-N-*` sit in one node's glob group but are told apart by
        // their literal prefix).
        assert!(large <= small + 4, "small {small}, large {large}");
    }

    #[test]
    fn many_double_stars_stay_bounded() {
        let c = one_plan(vec![rule("**/**/**/**/**/**/z", &[])]);
        let name = vec!["a"; 100].join("/");
        let plan = c.plans.first().unwrap_or_else(|| panic!("no plan"));
        let mut steps = 0;
        assert_eq!(
            plan.allowed("repository", &name, &Placeholders::NONE, &mut steps),
            None
        );
        // Memoised states: at most (nodes) x (positions).
        assert!(steps <= 8 * 101, "{steps}");
        assert!(allowed(&c, &format!("{name}/z")).is_some());
    }

    // ---- placeholders ----

    fn allowed_as(
        c: &Catalogue,
        name: &str,
        tenant: Option<&str>,
        sub: Option<&str>,
    ) -> Option<Allowed> {
        c.allowed_for("p", "repository", name, &Placeholders::new(tenant, sub))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn tenant_placeholder_matches_only_own_namespace() {
        let c = one_plan(vec![rule("tenants/{tenant}/**", &["pull", "push"])]);
        let acme = Some("acme");
        assert_eq!(
            allowed_as(&c, "tenants/acme/x", acme, None),
            Some(set(&["pull", "push"]))
        );
        assert_eq!(
            allowed_as(&c, "tenants/acme/a/b/c", acme, None),
            Some(set(&["pull", "push"]))
        );
        assert_eq!(
            allowed_as(&c, "tenants/acme", acme, None),
            Some(set(&["pull", "push"]))
        );
        assert_eq!(allowed_as(&c, "tenants/globex/x", acme, None), None);
        assert_eq!(allowed_as(&c, "tenants/acme2/x", acme, None), None);
        assert_eq!(allowed_as(&c, "tenants/acm/x", acme, None), None);
        assert_eq!(allowed_as(&c, "acme/x", acme, None), None);
        // Without a tenant, or with the subject only, nothing.
        assert_eq!(allowed_as(&c, "tenants/acme/x", None, None), None);
        assert_eq!(allowed_as(&c, "tenants/acme/x", None, Some("acme")), None);
        // The placeholder-free API never fills placeholders.
        assert_eq!(allowed(&c, "tenants/acme/x"), None);
    }

    #[test]
    fn sub_placeholder_and_both() {
        let c = one_plan(vec![
            rule("users/{sub}/*", &["*"]),
            rule("tenants/{tenant}/users/{sub}", &["delete"]),
            rule("tenants/{tenant}/**", &["pull"]),
        ]);
        let (t, u) = (Some("acme"), Some("alice"));
        assert_eq!(allowed_as(&c, "users/alice/app", t, u), Some(Allowed::All));
        assert_eq!(allowed_as(&c, "users/alice/a/b", t, u), None);
        assert_eq!(allowed_as(&c, "users/bob/app", t, u), None);
        assert_eq!(
            allowed_as(&c, "tenants/acme/users/alice", t, u),
            Some(set(&["delete"]))
        );
        assert_eq!(
            allowed_as(&c, "tenants/acme/users/bob", t, u),
            Some(set(&["pull"]))
        );
        assert_eq!(allowed_as(&c, "tenants/acme/users/alice", None, u), None);
        assert_eq!(
            allowed_as(&c, "tenants/acme/users/alice", t, None),
            Some(set(&["pull"]))
        );
    }

    #[test]
    fn placeholder_first_match_order_with_literals() {
        // A literal rule before the placeholder wins for its own name; after it, it loses.
        let c = one_plan(vec![
            rule("tenants/acme/frozen", &["pull"]),
            rule("tenants/{tenant}/*", &["*"]),
            rule("tenants/acme/other", &["delete"]),
            rule("tenants/*/public", &["pull"]),
        ]);
        let t = Some("acme");
        assert_eq!(
            allowed_as(&c, "tenants/acme/frozen", t, None),
            Some(set(&["pull"]))
        );
        assert_eq!(
            allowed_as(&c, "tenants/acme/other", t, None),
            Some(Allowed::All)
        );
        assert_eq!(
            allowed_as(&c, "tenants/globex/public", t, None),
            Some(set(&["pull"]))
        );
        assert_eq!(
            allowed_as(&c, "tenants/acme/other", None, None),
            Some(set(&["delete"]))
        );
    }

    #[test]
    fn invalid_placeholder_values_never_match() {
        let c = one_plan(vec![
            rule("tenants/{tenant}/**", &["*"]),
            rule("{tenant}", &["*"]),
            rule("users/{sub}", &["*"]),
        ]);
        let long = "a".repeat(256);
        for bad in [
            "",
            "ACME",
            "Acme",
            "a/b",
            "..",
            ".",
            "*",
            "**",
            "a b",
            "a\nb",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "_a",
            "a.",
            "{tenant}",
            "é",
            "a:1",
            "a%2fb",
            long.as_str(),
        ] {
            for name in [
                format!("tenants/{bad}/x"),
                format!("tenants/{bad}"),
                bad.to_string(),
                format!("users/{bad}"),
                "tenants/x/y".to_string(),
                "tenants/acme/x".to_string(),
            ] {
                assert_eq!(
                    allowed_as(&c, &name, Some(bad), Some(bad)),
                    None,
                    "{bad:?} {name:?}"
                );
            }
            assert_eq!(
                Placeholders::new(Some(bad), Some(bad)),
                Placeholders::NONE,
                "{bad:?}"
            );
        }
        let max = "a".repeat(255);
        assert_eq!(
            Placeholders::new(Some(&max), None).tenant(),
            Some(max.as_str())
        );
        for good in [
            "acme",
            "a",
            "0",
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a---b",
            "acme-corp.eu_1",
        ] {
            assert_eq!(
                allowed_as(&c, good, Some(good), None),
                Some(Allowed::All),
                "{good}"
            );
        }
    }

    #[test]
    fn placeholder_pattern_errors_name_the_rule() {
        for pattern in [
            "a{tenant}",
            "{tenant}b",
            "{tenant",
            "tenant}",
            "{foo}",
            "{}",
            "{Tenant}",
            "a/{tenant}{sub}",
            "{{tenant}}",
            "x/{sub}*",
            "{tenant}/**/{sub}x",
        ] {
            assert_eq!(pattern_err(pattern), PatternError::Placeholder, "{pattern}");
        }
        let e = compile_err(&[plan("p", vec![rule("ok/*", &[]), rule("t/a{tenant}", &[])])]);
        assert_eq!(
            e.to_string(),
            "plans[0].repositories[1].pattern: \"t/a{tenant}\": placeholders are \"{tenant}\" and \"{sub}\", each a whole segment"
        );
        // Not in registry rules.
        assert!(Catalogue::compile(&[plan("p", vec![registry_rule("{tenant}", &[])])]).is_err());
        // Whole-segment placeholders compile anywhere in a repository pattern.
        for pattern in [
            "{tenant}",
            "{sub}",
            "{tenant}/{sub}",
            "a/{tenant}/**",
            "**/{sub}",
            "{tenant}/*-dev",
        ] {
            assert!(
                Catalogue::compile(&[plan("p", vec![rule(pattern, &[])])]).is_ok(),
                "{pattern}"
            );
        }
    }

    fn random_tenant(rng: &mut Rng, tenants: usize) -> String {
        format!("t{}", rng.below(tenants))
    }

    #[test]
    fn placeholder_index_agrees_with_linear_scan() {
        let mut rng = Rng::new(0x7e4a);
        let tenants = 5;
        for round in 0..30 {
            let mut rules = random_rules(&mut rng, 5 + round * 7, 3);
            // Mix in placeholder rules at random positions.
            for _ in 0..(3 + round) {
                let at = rng.below(rules.len() + 1);
                let pattern = match rng.below(6) {
                    0 => "tenants/{tenant}/**".to_owned(),
                    1 => "users/{sub}/*".to_owned(),
                    2 => format!("org{}/{{tenant}}/*", rng.below(3)),
                    3 => "{tenant}/{sub}".to_owned(),
                    4 => "**/{sub}/app".to_owned(),
                    _ => format!("tenants/{{tenant}}/{}", random_pattern_segment(&mut rng, 3)),
                };
                rules.insert(
                    at,
                    rule(&pattern, ACTION_CHOICES[rng.below(ACTION_CHOICES.len())]),
                );
            }
            let catalogue = one_plan(rules.clone());
            let naive = Naive::new(&rules);
            for _ in 0..200 {
                let tenant = random_tenant(&mut rng, tenants);
                let sub = format!("u{}", rng.below(3));
                let name = match rng.below(5) {
                    0 => format!(
                        "tenants/{}/{}",
                        random_tenant(&mut rng, tenants),
                        random_segment(&mut rng, 3)
                    ),
                    1 => format!("users/u{}/{}", rng.below(3), random_segment(&mut rng, 3)),
                    2 => format!("{}/u{}", random_tenant(&mut rng, tenants), rng.below(3)),
                    3 => format!("org{}/{}/x", rng.below(3), random_tenant(&mut rng, tenants)),
                    _ => random_name(&mut rng, 3),
                };
                let t = (rng.below(4) != 0).then_some(tenant.as_str());
                let u = (rng.below(4) != 0).then_some(sub.as_str());
                let vars = Placeholders::new(t, u);
                assert_eq!(
                    catalogue
                        .allowed_for("p", "repository", &name, &vars)
                        .unwrap_or(None),
                    naive.allowed_for(&name, &vars),
                    "{name} {t:?} {u:?}"
                );
            }
        }
    }

    #[test]
    fn placeholder_lookup_work_does_not_grow_with_rule_count() {
        // A placeholder-heavy catalogue: every rule has one, 10 vs 10,000 rules.
        let build = |count: usize| -> Vec<RuleSpec> {
            (0..count)
                .map(|i| match i % 4 {
                    0 => rule(&format!("r{i}/{{tenant}}/**"), &["pull", "push"]),
                    1 => rule(&format!("tenants/{{tenant}}/r{i}/*"), &[]),
                    2 => rule(&format!("users/{{sub}}/r{i}-*"), &["*"]),
                    _ => rule(&format!("r{i}/{{tenant}}/{{sub}}/*-dev"), &["delete"]),
                })
                .collect()
        };
        let names: Vec<String> = (0..10)
            .flat_map(|i| {
                [
                    format!("r{}/acme/a/b", i * 4),
                    format!("tenants/acme/r{}/x", i * 4 + 1),
                    format!("users/alice/r{}-x", i * 4 + 2),
                    format!("r{}/acme/alice/app-dev", i * 4 + 3),
                    format!("tenants/globex/r{}/x", i * 4 + 1),
                    format!("nomatch{i}/x"),
                ]
            })
            .collect();
        let vars = Placeholders::new(Some("acme"), Some("alice"));
        let steps = |rules: Vec<RuleSpec>| -> usize {
            let c = one_plan(rules);
            let plan = c.plans.first().unwrap_or_else(|| panic!("no plan"));
            names
                .iter()
                .map(|name| {
                    let mut steps = 0;
                    plan.allowed("repository", name, &vars, &mut steps);
                    steps
                })
                .max()
                .unwrap_or(0)
        };
        let small = steps(build(10));
        let large = steps(build(10_000));
        assert!(small > 0);
        assert!(large <= small + 4, "small {small}, large {large}");
        // And the large catalogue does match (the names of the first ten rules).
        let c = one_plan(build(10_000));
        assert!(allowed_as(&c, "r0/acme/a/b", Some("acme"), None).is_some());
        assert!(allowed_as(&c, "tenants/acme/r9997/x", Some("acme"), None).is_some());
        assert!(allowed_as(&c, "tenants/globex/r9997/x", Some("acme"), None).is_none());
    }
}
