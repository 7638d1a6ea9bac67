//! Trust policies: what a token of a workload issuer (GitHub Actions, GitLab CI, a
//! Kubernetes service account: `issuers[].policies`) is granted. Each issuer's policies
//! are an ordered list; the first whose claim conditions all hold decides the caller's
//! subject and tenant (templates over claims), plans (fixed, and/or named by a list claim
//! such as `groups`) and licence. A valid token no policy matches is refused (403
//! `no_trust_policy`).
//!
//! Fail closed everywhere: a condition on a claim that is present but not a string, a
//! template reading a missing, mistyped or refused claim value, a tenant that is not one
//! repository path component, a plans claim that is not a string or a list of strings:
//! each refuses the token ([`TrustDenial`]), never skips a check.

mod condition;
mod rules;
mod template;

use std::collections::BTreeSet;
use std::fmt;
use std::rc::Rc;

use crate::policy::scope::is_path_component;
use crate::token::optok::Claim;

pub use condition::{Glob, MAX_PATTERN_BYTES, MAX_VALUE_BYTES};
pub use rules::{TokenRules, MAX_RULES, MAX_RULE_BYTES};
pub use template::{is_template_value, RenderError, Template, MAX_RENDERED_BYTES};

/// Most policies one issuer may hold, and most alternatives one condition may list.
pub const MAX_POLICIES: usize = 1000;
/// Most alternatives of one condition.
pub const MAX_ALTERNATIVES: usize = 64;
/// The subject template when a policy gives none: the token's own `sub`.
pub const DEFAULT_SUBJECT: &str = "{sub}";

/// One policy as configured (`issuers[i].policies[j]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustSpec {
    /// Its name: in the audit record and the ledger.
    pub name: String,
    /// Claim → accepted values (exact, or with `*`/`**`); all must hold.
    pub claims: Vec<(String, Vec<String>)>,
    /// Subject template (default `{sub}`).
    pub subject: Option<String>,
    /// Tenant template (none: no tenant).
    pub tenant: Option<String>,
    /// Plans granted.
    pub plans: Vec<String>,
    /// A claim naming further plans (a string or a list of strings, e.g. `groups`).
    pub plans_claim: Option<String>,
    /// The caller's licence (for `revokedLicenses`).
    pub license: Option<String>,
    /// A claim holding the token's own rules (a list of `type:pattern:actions`, e.g. the
    /// ledger's robot tokens' `registry_rules`): the grant is the plans' narrowed to them.
    pub rules_claim: Option<String>,
}

/// A configuration error in a policy: which one, which field, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustSpecError {
    /// Index of the policy.
    pub policy: usize,
    /// Its field (`name`, `claims.<claim>`, `subject`, …).
    pub field: String,
    /// Why.
    pub reason: String,
}

/// Why a verified token was not given a grant by its issuer's policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustDenial {
    /// No policy's conditions all hold.
    NoMatch,
    /// A claim a condition, a template or the plans claim reads is present with another
    /// type than the one it needs.
    WrongType(String),
    /// A template could not be filled (a claim missing or its value refused).
    Render(RenderError),
    /// The tenant template's result is not one repository path component.
    InvalidTenant,
    /// The matching policy names no plan for this token (no fixed plan, and its plans
    /// claim names none of the catalogue's).
    NoPlan(String),
    /// The matching policy's rules claim is missing, mistyped or holds a rule that does
    /// not compile: (claim, why).
    Rules(String, String),
}

impl fmt::Display for TrustDenial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |s: &str| s.chars().take(64).collect::<String>();
        match self {
            TrustDenial::NoMatch => write!(f, "no trust policy of the token's issuer matches its claims"),
            TrustDenial::WrongType(c) => write!(f, "the claim {:?} a trust policy reads has the wrong type", short(c)),
            TrustDenial::Render(RenderError::Missing(c)) => write!(f, "the claim {:?} the matching trust policy reads is missing", short(c)),
            TrustDenial::Render(RenderError::WrongType(c)) => write!(f, "the claim {:?} the matching trust policy reads is not a string", short(c)),
            TrustDenial::Render(RenderError::Refused(c)) => write!(f, "the claim {:?} holds a value a template may not use (1..=255 visible ASCII characters without {{ }} * ? % \\ \" or ..)", short(c)),
            TrustDenial::InvalidTenant => write!(f, "the tenant the matching trust policy gives is not one repository path component"),
            TrustDenial::NoPlan(p) => write!(f, "trust policy {:?} names no plan of the catalogue for this token", short(p)),
            TrustDenial::Rules(c, why) => write!(f, "the token's own rules (claim {:?}) are refused: {}", short(c), why.chars().take(200).collect::<String>()),
        }
    }
}

/// What the matching policy gives the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The policy's name.
    pub policy: String,
    /// The rendered subject.
    pub subject: String,
    /// The rendered tenant: one repository path component.
    pub tenant: Option<String>,
    /// The plans, fixed first, then those of the plans claim, without repeats.
    pub plans: Vec<String>,
    /// The licence.
    pub license: Option<String>,
    /// The token's own rules (the policy's `rulesClaim`): the plans' grant is narrowed to
    /// them.
    pub rules: Option<Rc<TokenRules>>,
}

/// Compiles a rules claim's strings ([`TokenRules::compile`], or a memo of it).
pub type CompileRules<'a> = &'a dyn Fn(&[String]) -> Result<Rc<TokenRules>, String>;

#[derive(Debug, Clone)]
struct Policy {
    name: String,
    conditions: Vec<(String, Vec<Glob>)>,
    subject: Template,
    tenant: Option<Template>,
    plans: Vec<String>,
    plans_claim: Option<String>,
    license: Option<String>,
    rules_claim: Option<String>,
}

/// An issuer's compiled policies, in order.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicies {
    policies: Vec<Policy>,
    claims: Vec<String>,
}

fn policy_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl TrustPolicies {
    /// Compiles `specs`; `has_plan` says whether the catalogue has a plan of that name.
    pub fn compile(
        specs: &[TrustSpec],
        has_plan: &dyn Fn(&str) -> bool,
    ) -> Result<TrustPolicies, TrustSpecError> {
        if specs.len() > MAX_POLICIES {
            return Err(TrustSpecError {
                policy: MAX_POLICIES,
                field: String::new(),
                reason: format!("more than {MAX_POLICIES} policies"),
            });
        }
        let mut out = TrustPolicies::default();
        let mut names = BTreeSet::new();
        let mut claims = BTreeSet::new();
        for (i, spec) in specs.iter().enumerate() {
            let err = |field: &str, reason: String| TrustSpecError {
                policy: i,
                field: field.to_string(),
                reason,
            };
            if !policy_name_ok(&spec.name) {
                return Err(err(
                    "name",
                    "must be 1..=64 characters among A-Z a-z 0-9 . _ -".into(),
                ));
            }
            if !names.insert(spec.name.clone()) {
                return Err(err(
                    "name",
                    format!("{:?} names another policy too", spec.name),
                ));
            }
            if spec.claims.is_empty() {
                return Err(err(
                    "claims",
                    "at least one condition is required: without one, every token the issuer \
                     signs for these audiences (any repository, any project) would be trusted"
                        .into(),
                ));
            }
            let mut conditions = Vec::new();
            for (claim, alternatives) in &spec.claims {
                let at = format!("claims.{claim}");
                if claim.is_empty() || claim.chars().any(char::is_control) {
                    return Err(err(&at, "not a claim name".into()));
                }
                if alternatives.is_empty() || alternatives.len() > MAX_ALTERNATIVES {
                    return Err(err(&at, format!("must list 1..={MAX_ALTERNATIVES} values")));
                }
                let globs = alternatives
                    .iter()
                    .map(|a| {
                        Glob::compile(a).map_err(|why| err(&at, format!("{:?}: {why}", short(a))))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                claims.insert(claim.clone());
                conditions.push((claim.clone(), globs));
            }
            let subject = Template::parse(spec.subject.as_deref().unwrap_or(DEFAULT_SUBJECT))
                .map_err(|why| err("subject", why))?;
            let tenant = spec
                .tenant
                .as_deref()
                .map(Template::parse)
                .transpose()
                .map_err(|why| err("tenant", why))?;
            claims.extend(subject.claims().map(str::to_string));
            if let Some(t) = &tenant {
                claims.extend(t.claims().map(str::to_string));
            }
            for (j, plan) in spec.plans.iter().enumerate() {
                if !has_plan(plan) {
                    return Err(err(
                        &format!("plans[{j}]"),
                        format!("names no plan in `plans` ({:?})", short(plan)),
                    ));
                }
            }
            if let Some(c) = &spec.plans_claim {
                if c.is_empty() || c.chars().any(char::is_control) {
                    return Err(err("plansClaim", "not a claim name".into()));
                }
                claims.insert(c.clone());
            }
            if let Some(c) = &spec.rules_claim {
                if c.is_empty() || c.chars().any(char::is_control) {
                    return Err(err("rulesClaim", "not a claim name".into()));
                }
                if spec.plans_claim.as_ref() == Some(c) || spec.claims.iter().any(|(n, _)| n == c) {
                    return Err(err(
                        "rulesClaim",
                        format!("{:?} is read as plans or as a condition too", short(c)),
                    ));
                }
                claims.insert(c.clone());
            }
            if spec.plans.is_empty() && spec.plans_claim.is_none() {
                return Err(err(
                    "plans",
                    "give at least one plan, or a plansClaim".into(),
                ));
            }
            if let Some(l) = &spec.license {
                if l.is_empty() || l.trim() != l || l.chars().any(char::is_control) {
                    return Err(err(
                        "license",
                        "must be non-empty, without surrounding spaces".into(),
                    ));
                }
            }
            out.policies.push(Policy {
                name: spec.name.clone(),
                conditions,
                subject,
                tenant,
                plans: spec.plans.clone(),
                plans_claim: spec.plans_claim.clone(),
                license: spec.license.clone(),
                rules_claim: spec.rules_claim.clone(),
            });
        }
        out.claims = claims.into_iter().collect();
        Ok(out)
    }

    /// Every claim a policy reads: what verification keeps in the token.
    pub fn claims(&self) -> &[String] {
        &self.claims
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// No policy at all.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The first policy whose conditions all hold, and what it gives. `claim` reads the
    /// verified token's kept claims; `has_plan` says which names the catalogue has.
    pub fn evaluate<'c>(
        &self,
        claim: &dyn Fn(&str) -> Option<&'c Claim>,
        has_plan: &dyn Fn(&str) -> bool,
    ) -> Result<Outcome, TrustDenial> {
        self.evaluate_with(claim, has_plan, &|r| TokenRules::compile(r).map(Rc::new))
    }

    /// [`TrustPolicies::evaluate`] compiling a rules claim with `rules` (the per-VM memo:
    /// the same robot's rules are compiled once, not per request).
    pub fn evaluate_with<'c>(
        &self,
        claim: &dyn Fn(&str) -> Option<&'c Claim>,
        has_plan: &dyn Fn(&str) -> bool,
        rules: CompileRules<'_>,
    ) -> Result<Outcome, TrustDenial> {
        for policy in &self.policies {
            if !policy.holds(claim)? {
                continue;
            }
            return policy.outcome(claim, has_plan, rules);
        }
        Err(TrustDenial::NoMatch)
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

impl Policy {
    fn holds<'c>(&self, claim: &dyn Fn(&str) -> Option<&'c Claim>) -> Result<bool, TrustDenial> {
        for (name, alternatives) in &self.conditions {
            match claim(name) {
                None => return Ok(false),
                Some(Claim::Str(v)) => {
                    if !alternatives.iter().any(|g| g.matches(v)) {
                        return Ok(false);
                    }
                }
                Some(_) => return Err(TrustDenial::WrongType(name.clone())),
            }
        }
        Ok(true)
    }

    fn outcome<'c>(
        &self,
        claim: &dyn Fn(&str) -> Option<&'c Claim>,
        has_plan: &dyn Fn(&str) -> bool,
        compile: CompileRules<'_>,
    ) -> Result<Outcome, TrustDenial> {
        let subject = self.subject.render(claim).map_err(TrustDenial::Render)?;
        let tenant = match &self.tenant {
            None => None,
            Some(t) => {
                let t = t.render(claim).map_err(TrustDenial::Render)?;
                if !is_path_component(&t) {
                    return Err(TrustDenial::InvalidTenant);
                }
                Some(t)
            }
        };
        let mut plans = self.plans.clone();
        if let Some(c) = &self.plans_claim {
            let named: &[String] = match claim(c) {
                None => &[],
                Some(Claim::Str(s)) => std::slice::from_ref(s),
                Some(Claim::List(l)) => l,
                Some(Claim::Other) => return Err(TrustDenial::WrongType(c.clone())),
            };
            for p in named {
                if has_plan(p) && !plans.contains(p) {
                    plans.push(p.clone());
                }
            }
        }
        if plans.is_empty() {
            return Err(TrustDenial::NoPlan(self.name.clone()));
        }
        let rules = match &self.rules_claim {
            None => None,
            Some(c) => {
                let refused = |why: &str| TrustDenial::Rules(c.clone(), why.to_string());
                match claim(c) {
                    None => return Err(refused("the token does not carry it")),
                    Some(Claim::List(l)) => Some(compile(l).map_err(|why| refused(&why))?),
                    Some(_) => {
                        return Err(refused(&format!(
                            "not a list of at most {MAX_RULES} strings"
                        )))
                    }
                }
            }
        };
        Ok(Outcome {
            policy: self.name.clone(),
            subject,
            tenant,
            plans,
            license: self.license.clone(),
            rules,
        })
    }
}

#[cfg(test)]
mod tests;
