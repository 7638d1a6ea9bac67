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
use crate::token::access::TagPolicy;
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
    /// Tag rules for the guard (`tags`), carried into the entries this rule grants;
    /// validated by the configuration.
    pub tags: Option<TagPolicy>,
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
    /// Each rule's `tags`, by rule index.
    tags: Vec<Option<TagPolicy>>,
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
                plan.tags.push(rule.tags.clone());
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

    /// The grant of several plans (a caller's plan and its group plans): per requested
    /// scope, the union of what each plan's first matching rule allows, granted as
    /// [`Catalogue::grant_for`] grants one plan's. A single plan grants exactly what
    /// [`Catalogue::grant_for`] does.
    pub fn grant_union(
        &self,
        plans: &[&str],
        requested: &[Scope],
        vars: &Placeholders<'_>,
    ) -> Result<Vec<Scope>, UnknownPlan> {
        let plans = plans
            .iter()
            .map(|p| self.plan(p))
            .collect::<Result<Vec<&Plan>, UnknownPlan>>()?;
        Ok(requested
            .iter()
            .filter_map(|scope| {
                let allowed = plans
                    .iter()
                    .filter_map(|p| p.allowed(&scope.resource_type, &scope.name, vars, &mut 0))
                    .reduce(Allowed::union)?;
                let actions = grant_actions(allowed, &scope.actions);
                (!actions.is_empty()).then(|| Scope {
                    resource_type: scope.resource_type.clone(),
                    name: scope.name.clone(),
                    actions,
                })
            })
            .collect())
    }

    /// Whether every rule of `plan` allows nothing but `pull` (the anonymous plan's rule).
    /// The tag rules of the rule that decides repository `name` in the first of `plans`
    /// that has one matching it (`None`: no such rule, or it has no `tags`).
    pub fn tag_policy(
        &self,
        plans: &[&str],
        name: &str,
        vars: &Placeholders<'_>,
    ) -> Option<&TagPolicy> {
        plans.iter().find_map(|p| {
            let plan = self.plan(p).ok()?;
            let rule = plan.repository.first_match(name, vars, &mut 0)?;
            Some(plan.tags.get(rule)?.as_ref())
        })?
    }

    /// Whether a plan grants `pull` on repository `name` (the guard's catalogue filter).
    pub fn pulls(&self, plan: &str, name: &str, vars: &Placeholders<'_>) -> bool {
        self.plan(plan)
            .ok()
            .and_then(|p| p.allowed("repository", name, vars, &mut 0))
            .is_some_and(|a| a.permits("pull"))
    }

    pub fn pull_only(&self, plan: &str) -> Result<bool, UnknownPlan> {
        Ok(self.plan(plan)?.rules.iter().all(|a| a.only_pull()))
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
mod tests;
