//! A token's own repository rules (`rulesClaim`, e.g. the ledger's robot tokens'
//! `registry_rules`): the most the token may do, whatever its plans allow. Each rule is one
//! string `type:pattern:actions` (`repository:acme/app/*:pull`,
//! `repository:acme/**:pull,push`), read with the plan catalogue's grammar (`*` within one
//! segment, `**` any number of segments, first matching rule decides) and compiled by the
//! catalogue's own compiler into a one-plan trie. The grant is the plans' grant
//! intersected, per scope, with the actions of the first matching rule: no rule matching
//! grants nothing, so the rules can only narrow.
//!
//! Fail closed: a rules claim that is missing, not a list of strings, empty, longer than
//! [`MAX_RULES`] (the token keeps a longer list as `Claim::Other`), or holding one rule
//! that does not compile refuses the token; a placeholder (`{tenant}`, `{sub}`) is refused
//! too, so the rules never depend on another claim.

use crate::policy::plan::{Catalogue, PlanError, PlanSpec, RuleSpec};
use crate::policy::scope::Scope;
use crate::token::optok::MAX_LIST_CLAIM_ITEMS;

/// Most rules one token may carry.
pub const MAX_RULES: usize = MAX_LIST_CLAIM_ITEMS;
/// Longest rule string.
pub const MAX_RULE_BYTES: usize = 320;

/// The one plan's name inside a token's rules catalogue.
const PLAN: &str = "token";

/// A token's compiled rules.
#[derive(Debug, Clone)]
pub struct TokenRules {
    source: Vec<String>,
    catalogue: Catalogue,
}

impl PartialEq for TokenRules {
    fn eq(&self, other: &TokenRules) -> bool {
        self.source == other.source
    }
}

impl Eq for TokenRules {}

impl TokenRules {
    /// Compiles the rules claim's strings; the error says which rule and why.
    pub fn compile(rules: &[String]) -> Result<TokenRules, String> {
        if rules.is_empty() {
            return Err("holds no rule".into());
        }
        if rules.len() > MAX_RULES {
            return Err(format!("holds more than {MAX_RULES} rules"));
        }
        let specs = rules
            .iter()
            .enumerate()
            .map(|(i, r)| parse(r).map_err(|why| format!("rule {i}: {why}")))
            .collect::<Result<Vec<RuleSpec>, String>>()?;
        let catalogue = Catalogue::compile(&[PlanSpec {
            name: PLAN.into(),
            rules: specs,
        }])
        .map_err(|e| match e {
            PlanError::InvalidPattern {
                rule,
                pattern,
                reason,
                ..
            } => format!("rule {rule}: pattern {pattern:?}: {reason}"),
            PlanError::InvalidAction {
                rule,
                action,
                reason,
                ..
            } => format!("rule {rule}: action {action:?}: {reason}"),
            other => other.to_string(),
        })?;
        Ok(TokenRules {
            source: rules.to_vec(),
            catalogue,
        })
    }

    /// An estimate of the heap bytes the compiled rules hold (for a memo's byte budget):
    /// generous, a trie node and a rule's strings several times over per rule.
    pub fn heap_estimate(&self) -> usize {
        self.source.iter().map(|r| 512 + 8 * r.len()).sum::<usize>()
    }

    /// The rules as the token carried them.
    pub fn source(&self) -> &[String] {
        &self.source
    }

    /// `granted` (what the plans grant) narrowed to what the rules allow: per scope, the
    /// actions the first matching rule allows too; scopes left with none are dropped.
    pub fn narrow(&self, granted: &[Scope]) -> Vec<Scope> {
        // A rule allowing `*` keeps a plan's `*`; otherwise the plan's `*` (everything)
        // becomes the rule's actions. `grant` does exactly that with the plans' grant as
        // the request.
        self.catalogue.grant(PLAN, granted).unwrap_or_default()
    }
}

/// `type:pattern:actions`: the type before the first `:`, the actions (comma-separated)
/// after the last; the pattern between (it may hold a registry host's port).
fn parse(rule: &str) -> Result<RuleSpec, String> {
    if rule.len() > MAX_RULE_BYTES {
        return Err(format!("longer than {MAX_RULE_BYTES} bytes"));
    }
    let (kind, rest) = rule
        .split_once(':')
        .ok_or("not type:pattern:actions".to_string())?;
    let (pattern, actions) = rest
        .rsplit_once(':')
        .ok_or("not type:pattern:actions".to_string())?;
    if !matches!(kind, "repository" | "registry") {
        return Err("the type is neither repository nor registry".into());
    }
    if pattern.split('/').any(|s| s == "." || s == "..") {
        return Err("a pattern segment is . or ..".into());
    }
    if pattern.contains(['{', '}']) {
        return Err("placeholders have no meaning in a token's own rules".into());
    }
    if actions.is_empty() || actions.split(',').any(str::is_empty) {
        return Err("names no action, or an empty one".into());
    }
    Ok(RuleSpec {
        resource_type: kind.into(),
        pattern: pattern.into(),
        actions: actions.split(',').map(str::to_string).collect(),
        tags: None,
    })
}

#[cfg(test)]
mod tests;
