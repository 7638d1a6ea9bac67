//! The segment trie of a plan's rules for one resource type.

use std::collections::{BTreeMap, BTreeSet};

use super::pattern::{Glob, Segment, Var};
use super::Placeholders;

/// One trie node. Children are node indexes in [`Trie::nodes`].
#[derive(Debug, Clone, Default)]
struct Node {
    literal: BTreeMap<String, usize>,
    /// Glob children grouped by literal prefix, then literal suffix.
    globs: BTreeMap<String, BTreeMap<String, Vec<(Glob, usize)>>>,
    /// The distinct (prefix length, suffix length) pairs present in `globs`.
    glob_shapes: Vec<(usize, usize)>,
    double_star: Option<usize>,
    /// Placeholder children, by [`Var::index`]: followed only when the segment equals the
    /// caller's (validated) value, so one lookup per placeholder whatever the rule count.
    vars: [Option<usize>; Var::COUNT],
    /// The first rule whose pattern ends here.
    terminal: Option<usize>,
    /// The smallest rule index in this subtree (for pruning).
    min_rule: usize,
}

/// A per-plan, per-type pattern trie.
#[derive(Debug, Clone, Default)]
pub(super) struct Trie {
    nodes: Vec<Node>,
}

#[derive(Default)]
pub(super) struct TrieBuilder {
    nodes: Vec<Node>,
    /// Glob child of (node, glob text), to reuse nodes for identical globs.
    glob_index: BTreeMap<(usize, String), usize>,
}

impl TrieBuilder {
    pub(super) fn new_node(&mut self, rule: usize) -> usize {
        self.nodes.push(Node {
            min_rule: rule,
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    /// Adds a rule. Rules arrive in increasing order, so a node's `min_rule` is the rule
    /// that created it and a node's `terminal` is only set once.
    pub(super) fn insert(&mut self, segments: &[Segment], rule: usize) {
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
                Segment::Placeholder(var) => self
                    .nodes
                    .get(current)
                    .and_then(|n| n.vars.get(var.index()).copied().flatten()),
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

    pub(super) fn link(&mut self, parent: usize, segment: &Segment, child: usize) {
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
            Segment::Placeholder(var) => {
                if let Some(slot) = node.vars.get_mut(var.index()) {
                    *slot = Some(child);
                }
            }
        }
    }

    pub(super) fn finish(self) -> Trie {
        Trie { nodes: self.nodes }
    }
}

impl Trie {
    /// The smallest rule index whose pattern matches `name`, if any. A placeholder
    /// segment matches only the caller's own value; without one it matches nothing.
    pub(super) fn first_match(
        &self,
        name: &str,
        vars: &Placeholders<'_>,
        steps: &mut usize,
    ) -> Option<usize> {
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
            for (slot, value) in node.vars.iter().zip(vars.values()) {
                if let (Some(child), Some(value)) = (slot, value) {
                    if value == *segment {
                        stack.push((*child, pos + 1));
                    }
                }
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
