//! The plan catalogue: which actions a plan allows on which resources.
//!
//! Plans are compiled once, at configure time, by [`Catalogue::compile`]. Each plan's rules
//! go into a segment trie per resource type (literal segments in an ordered map, glob
//! segments grouped by their literal prefix and suffix, `**` as a single child), so a
//! lookup visits only the branches a name can match, whatever the number of rules. Within
//! a plan the first rule, in file order, whose type and pattern match decides.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::policy::scope::{echo, Scope};

/// One rule of a plan, as configured (`plans[i].repositories[j]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSpec {
    /// `repository` (also when empty) or `registry`.
    pub resource_type: String,
    /// `/`-separated pattern; `*` globs within a segment, a `**` segment spans segments.
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

/// A finite set of known actions (`pull`, `push`, `delete`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionSet(u8);

/// Known actions with their bits, in canonical order.
const KNOWN_ACTIONS: [(&str, u8); 3] = [("pull", 1), ("push", 2), ("delete", 4)];

impl ActionSet {
    /// The empty set.
    pub const EMPTY: ActionSet = ActionSet(0);
    /// `{pull}`.
    pub const PULL: ActionSet = ActionSet(1);

    fn bit(action: &str) -> Option<u8> {
        KNOWN_ACTIONS
            .iter()
            .find(|(name, _)| *name == action)
            .map(|(_, bit)| *bit)
    }

    /// Whether `action` is a known action in the set.
    pub fn contains(self, action: &str) -> bool {
        Self::bit(action).is_some_and(|bit| self.0 & bit != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions in canonical order: `pull`, `push`, `delete`.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        KNOWN_ACTIONS
            .iter()
            .filter(move |(_, bit)| self.0 & bit != 0)
            .map(|(name, _)| *name)
    }

    fn with(self, bit: u8) -> ActionSet {
        ActionSet(self.0 | bit)
    }
}

/// What a matching rule allows on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Every action (the rule listed `*`).
    All,
    /// Only these actions.
    Only(ActionSet),
}

impl Allowed {
    /// Whether `action` may be granted. Unknown action names are never granted, even by
    /// [`Allowed::All`].
    pub fn permits(&self, action: &str) -> bool {
        match self {
            Allowed::All => ActionSet::bit(action).is_some(),
            Allowed::Only(set) => set.contains(action),
        }
    }
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

/// Why a pattern does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternError {
    /// The pattern is empty.
    Empty,
    /// A leading or trailing `/`.
    LeadingOrTrailingSlash,
    /// Two `/` in a row.
    EmptySegment,
    /// `**` inside a longer segment.
    DoubleStarNotWhole,
    /// A character that can never appear in a repository name.
    InvalidCharacter(char),
    /// An uppercase letter outside a registry host segment.
    Uppercase,
    /// A `:` outside a registry host segment.
    ColonOutsideHost,
    /// A `registry` rule whose pattern is not `catalog` or `*`.
    RegistryPattern,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::Empty => f.write_str("pattern is empty"),
            PatternError::LeadingOrTrailingSlash => {
                f.write_str("pattern must not start or end with \"/\"")
            }
            PatternError::EmptySegment => f.write_str("empty segment (\"//\")"),
            PatternError::DoubleStarNotWhole => f.write_str("\"**\" must be a whole segment"),
            PatternError::InvalidCharacter(c) => {
                if c.is_ascii_graphic() {
                    write!(f, "character '{c}' can never appear in a repository name")
                } else {
                    write!(
                        f,
                        "character U+{:04X} can never appear in a repository name",
                        u32::from(*c)
                    )
                }
            }
            PatternError::Uppercase => f.write_str(
                "uppercase letters can only appear in a registry host (first segment containing \".\" or \":\")",
            ),
            PatternError::ColonOutsideHost => f.write_str(
                "\":\" can only appear in a registry host (first segment containing \".\" or \":\")",
            ),
            PatternError::RegistryPattern => {
                f.write_str("registry rules match only \"catalog\" (or \"*\")")
            }
        }
    }
}

/// Why an action list does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionError {
    /// Not `pull`, `push`, `delete` or `*`.
    Unknown,
    /// A `registry` rule with an action other than `*` (or with none).
    RegistryNeedsStar,
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionError::Unknown => {
                f.write_str("unknown action (expected \"pull\", \"push\", \"delete\" or \"*\")")
            }
            ActionError::RegistryNeedsStar => {
                f.write_str("registry rules only support the action \"*\"")
            }
        }
    }
}

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
    /// `repository` and `registry`).
    pub fn allowed(
        &self,
        plan: &str,
        resource_type: &str,
        name: &str,
    ) -> Result<Option<Allowed>, UnknownPlan> {
        Ok(self.plan(plan)?.allowed(resource_type, name, &mut 0))
    }

    /// Grants `requested` under `plan` (Docker semantics): per scope, the requested actions
    /// that are allowed, in the requested order; a requested `*` yields `*` when everything
    /// is allowed and otherwise the allowed set in the order pull, push, delete. Scopes
    /// granting nothing are left out.
    pub fn grant(&self, plan: &str, requested: &[Scope]) -> Result<Vec<Scope>, UnknownPlan> {
        let plan = self.plan(plan)?;
        Ok(requested
            .iter()
            .filter_map(|scope| {
                let allowed = plan.allowed(&scope.resource_type, &scope.name, &mut 0)?;
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
    fn allowed(&self, resource_type: &str, name: &str, steps: &mut usize) -> Option<Allowed> {
        let trie = match resource_type {
            "repository" => &self.repository,
            "registry" => &self.registry,
            _ => return None,
        };
        let rule = trie.first_match(name, steps)?;
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

fn compile_actions(
    actions: &[String],
    kind: ResourceKind,
) -> Result<Allowed, (String, ActionError)> {
    if kind == ResourceKind::Registry {
        if actions.is_empty() {
            return Err((String::new(), ActionError::RegistryNeedsStar));
        }
        if let Some(bad) = actions.iter().find(|a| a.as_str() != "*") {
            return Err((bad.clone(), ActionError::RegistryNeedsStar));
        }
        return Ok(Allowed::All);
    }
    if actions.is_empty() {
        return Ok(Allowed::Only(ActionSet::PULL));
    }
    let mut set = ActionSet::EMPTY;
    let mut all = false;
    for action in actions {
        if action == "*" {
            all = true;
        } else {
            let bit = ActionSet::bit(action).ok_or((action.clone(), ActionError::Unknown))?;
            set = set.with(bit);
        }
    }
    Ok(if all {
        Allowed::All
    } else {
        Allowed::Only(set)
    })
}

/// One compiled pattern segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Glob(Glob),
    DoubleStar,
}

/// A segment holding `*`: matches any run of characters (never `/`, since names are
/// split on `/` first).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob {
    text: String,
    /// Literal text before the first `*`.
    prefix_len: usize,
    /// Literal text after the last `*`.
    suffix_len: usize,
}

impl Glob {
    fn new(text: &str) -> Glob {
        let prefix_len = text.find('*').unwrap_or(text.len());
        let suffix_len = text.rfind('*').map_or(0, |i| text.len() - i - 1);
        Glob {
            text: text.to_owned(),
            prefix_len,
            suffix_len,
        }
    }

    fn prefix(&self) -> &str {
        self.text.get(..self.prefix_len).unwrap_or("")
    }

    fn suffix(&self) -> &str {
        self.text
            .get(self.text.len().saturating_sub(self.suffix_len)..)
            .unwrap_or("")
    }

    /// Wildcard match with backtracking to the last `*` (linear in practice, quadratic at
    /// worst on one segment of at most 255 bytes).
    fn matches(&self, segment: &str) -> bool {
        let pat = self.text.as_bytes();
        let s = segment.as_bytes();
        let (mut p, mut i) = (0usize, 0usize);
        let mut backtrack: Option<(usize, usize)> = None;
        while i < s.len() {
            match pat.get(p) {
                Some(b'*') => {
                    backtrack = Some((p, i));
                    p += 1;
                }
                Some(c) if s.get(i) == Some(c) => {
                    p += 1;
                    i += 1;
                }
                _ => match backtrack {
                    Some((star, from)) => {
                        p = star + 1;
                        i = from + 1;
                        backtrack = Some((star, from + 1));
                    }
                    None => return false,
                },
            }
        }
        while pat.get(p) == Some(&b'*') {
            p += 1;
        }
        p == pat.len()
    }
}

/// Checks a pattern and splits it into segments.
fn compile_pattern(pattern: &str, kind: ResourceKind) -> Result<Vec<Segment>, PatternError> {
    if kind == ResourceKind::Registry {
        return match pattern {
            "catalog" => Ok(vec![Segment::Literal("catalog".to_owned())]),
            "*" => Ok(vec![Segment::Glob(Glob::new("*"))]),
            _ => Err(PatternError::RegistryPattern),
        };
    }
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    if pattern.starts_with('/') || pattern.ends_with('/') {
        return Err(PatternError::LeadingOrTrailingSlash);
    }
    let multi = pattern.contains('/');
    let mut segments = Vec::new();
    for (index, segment) in pattern.split('/').enumerate() {
        if segment.is_empty() {
            return Err(PatternError::EmptySegment);
        }
        if segment == "**" {
            segments.push(Segment::DoubleStar);
            continue;
        }
        if segment.contains("**") {
            return Err(PatternError::DoubleStarNotWhole);
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' | ':' | '*'))
        {
            return Err(PatternError::InvalidCharacter(c));
        }
        // Only a first segment that Docker would take for a registry host can hold
        // uppercase letters or a port.
        let host_like = index == 0
            && multi
            && (segment.contains('.') || segment.contains(':') || segment == "localhost");
        if !host_like {
            if segment.contains(':') {
                return Err(PatternError::ColonOutsideHost);
            }
            if segment.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(PatternError::Uppercase);
            }
        }
        segments.push(if segment.contains('*') {
            Segment::Glob(Glob::new(segment))
        } else {
            Segment::Literal(segment.to_owned())
        });
    }
    Ok(segments)
}

/// One trie node. Children are node indexes in [`Trie::nodes`].
#[derive(Debug, Clone, Default)]
struct Node {
    literal: BTreeMap<String, usize>,
    /// Glob children grouped by literal prefix, then literal suffix.
    globs: BTreeMap<String, BTreeMap<String, Vec<(Glob, usize)>>>,
    /// The distinct (prefix length, suffix length) pairs present in `globs`.
    glob_shapes: Vec<(usize, usize)>,
    double_star: Option<usize>,
    /// The first rule whose pattern ends here.
    terminal: Option<usize>,
    /// The smallest rule index in this subtree (for pruning).
    min_rule: usize,
}

/// A per-plan, per-type pattern trie.
#[derive(Debug, Clone, Default)]
struct Trie {
    nodes: Vec<Node>,
}

#[derive(Default)]
struct TrieBuilder {
    nodes: Vec<Node>,
    /// Glob child of (node, glob text), to reuse nodes for identical globs.
    glob_index: BTreeMap<(usize, String), usize>,
}

impl TrieBuilder {
    fn new_node(&mut self, rule: usize) -> usize {
        self.nodes.push(Node {
            min_rule: rule,
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    /// Adds a rule. Rules arrive in increasing order, so a node's `min_rule` is the rule
    /// that created it and a node's `terminal` is only set once.
    fn insert(&mut self, segments: &[Segment], rule: usize) {
        if self.nodes.is_empty() {
            self.new_node(rule);
        }
        let mut current = 0usize;
        for segment in segments {
            let existing = match segment {
                Segment::Literal(text) => self
                    .nodes
                    .get(current)
                    .and_then(|n| n.literal.get(text).copied()),
                Segment::Glob(glob) => self.glob_index.get(&(current, glob.text.clone())).copied(),
                Segment::DoubleStar => self.nodes.get(current).and_then(|n| n.double_star),
            };
            let child = match existing {
                Some(child) => child,
                None => {
                    let child = self.new_node(rule);
                    self.link(current, segment, child);
                    child
                }
            };
            current = child;
        }
        if let Some(node) = self.nodes.get_mut(current) {
            node.terminal.get_or_insert(rule);
        }
    }

    fn link(&mut self, parent: usize, segment: &Segment, child: usize) {
        if let Segment::Glob(glob) = segment {
            self.glob_index.insert((parent, glob.text.clone()), child);
        }
        let Some(node) = self.nodes.get_mut(parent) else {
            return;
        };
        match segment {
            Segment::Literal(text) => {
                node.literal.insert(text.clone(), child);
            }
            Segment::Glob(glob) => {
                let shape = (glob.prefix_len, glob.suffix_len);
                if !node.glob_shapes.contains(&shape) {
                    node.glob_shapes.push(shape);
                }
                node.globs
                    .entry(glob.prefix().to_owned())
                    .or_default()
                    .entry(glob.suffix().to_owned())
                    .or_default()
                    .push((glob.clone(), child));
            }
            Segment::DoubleStar => node.double_star = Some(child),
        }
    }

    fn finish(self) -> Trie {
        Trie { nodes: self.nodes }
    }
}

impl Trie {
    /// The smallest rule index whose pattern matches `name`, if any.
    fn first_match(&self, name: &str, steps: &mut usize) -> Option<usize> {
        if self.nodes.is_empty() {
            return None;
        }
        let segments: Vec<&str> = name.split('/').collect();
        let mut best: Option<usize> = None;
        let mut stack: Vec<(usize, usize)> = vec![(0, 0)];
        let mut seen: BTreeSet<(usize, usize)> = BTreeSet::new();
        while let Some((index, pos)) = stack.pop() {
            let Some(node) = self.nodes.get(index) else {
                continue;
            };
            if best.is_some_and(|b| node.min_rule >= b) || !seen.insert((index, pos)) {
                continue;
            }
            *steps += 1;
            if pos == segments.len() {
                if let Some(rule) = node.terminal {
                    best = Some(best.map_or(rule, |b| b.min(rule)));
                }
            }
            if let Some(child) = node.double_star {
                stack.extend((pos..=segments.len()).map(|k| (child, k)));
            }
            let Some(segment) = segments.get(pos) else {
                continue;
            };
            if let Some(&child) = node.literal.get(*segment) {
                stack.push((child, pos + 1));
            }
            for &(prefix_len, suffix_len) in &node.glob_shapes {
                let Some(suffix_start) = segment.len().checked_sub(suffix_len) else {
                    continue;
                };
                if prefix_len > suffix_start {
                    continue;
                }
                let (Some(prefix), Some(suffix)) =
                    (segment.get(..prefix_len), segment.get(suffix_start..))
                else {
                    continue;
                };
                let Some(group) = node.globs.get(prefix).and_then(|m| m.get(suffix)) else {
                    continue;
                };
                for (glob, child) in group {
                    *steps += 1;
                    if glob.matches(segment) {
                        stack.push((*child, pos + 1));
                    }
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::scope::tests::Rng;
    use crate::policy::scope::{parse_scopes, Scope};

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

    fn naive_path(p: &[&str], n: &[&str]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((&"**", rest)) => (0..=n.len()).any(|k| naive_path(rest, &n[k..])),
            Some((seg, rest)) => match n.split_first() {
                Some((first, n_rest)) => {
                    naive_segment(seg.as_bytes(), first.as_bytes()) && naive_path(rest, n_rest)
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
            let n: Vec<&str> = name.split('/').collect();
            self.rules
                .iter()
                .find(|(pattern, _)| naive_path(pattern, &n))
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
                plan.allowed("repository", name, &mut steps);
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
        assert_eq!(plan.allowed("repository", &name, &mut steps), None);
        // Memoised states: at most (nodes) x (positions).
        assert!(steps <= 8 * 101, "{steps}");
        assert!(allowed(&c, &format!("{name}/z")).is_some());
    }
}
