//! Action lists: the set of known actions a rule allows, and its compilation.

use std::fmt;

use super::ResourceKind;

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

    pub(super) fn bit(action: &str) -> Option<u8> {
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

    pub(super) fn with(self, bit: u8) -> ActionSet {
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

    /// What either allows (a union of plans: `*` if either is).
    pub fn union(self, other: Allowed) -> Allowed {
        match (self, other) {
            (Allowed::Only(a), Allowed::Only(b)) => Allowed::Only(ActionSet(a.0 | b.0)),
            _ => Allowed::All,
        }
    }

    /// Whether it allows nothing but `pull`.
    pub fn only_pull(self) -> bool {
        matches!(self, Allowed::Only(set) if set.0 & !ActionSet::PULL.0 == 0)
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

pub(super) fn compile_actions(
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
