//! Resource patterns: their compilation into segments, and the glob matcher.

use std::fmt;

use super::ResourceKind;

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
    /// A `{` or `}` that is not a whole `{tenant}` or `{sub}` segment.
    Placeholder,
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
            PatternError::Placeholder => f.write_str(
                "placeholders are \"{tenant}\" and \"{sub}\", each a whole segment",
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Literal(String),
    Glob(Glob),
    DoubleStar,
    /// `{tenant}` or `{sub}`: exactly the caller's own value, which
    /// [`super::Placeholders`] has checked is one repository path component.
    Placeholder(Var),
}

/// A plan placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Var {
    /// `{tenant}`: the OpToken's tenant claim (`authority.tenantClaim`).
    Tenant,
    /// `{sub}`: the caller's subject.
    Sub,
}

impl Var {
    /// The index of the placeholder's child slot in a trie node.
    pub(super) const COUNT: usize = 2;

    pub(super) fn index(self) -> usize {
        match self {
            Var::Tenant => 0,
            Var::Sub => 1,
        }
    }
}

/// A segment holding `*`: matches any run of characters (never `/`, since names are
/// split on `/` first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Glob {
    pub(super) text: String,
    /// Literal text before the first `*`.
    pub(super) prefix_len: usize,
    /// Literal text after the last `*`.
    pub(super) suffix_len: usize,
}

impl Glob {
    pub(super) fn new(text: &str) -> Glob {
        let prefix_len = text.find('*').unwrap_or(text.len());
        let suffix_len = text.rfind('*').map_or(0, |i| text.len() - i - 1);
        Glob {
            text: text.to_owned(),
            prefix_len,
            suffix_len,
        }
    }

    pub(super) fn prefix(&self) -> &str {
        self.text.get(..self.prefix_len).unwrap_or("")
    }

    pub(super) fn suffix(&self) -> &str {
        self.text
            .get(self.text.len().saturating_sub(self.suffix_len)..)
            .unwrap_or("")
    }

    /// Wildcard match with backtracking to the last `*` (linear in practice, quadratic at
    /// worst on one segment of at most 255 bytes).
    pub(super) fn matches(&self, segment: &str) -> bool {
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
pub(super) fn compile_pattern(
    pattern: &str,
    kind: ResourceKind,
) -> Result<Vec<Segment>, PatternError> {
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
        match segment {
            "{tenant}" => {
                segments.push(Segment::Placeholder(Var::Tenant));
                continue;
            }
            "{sub}" => {
                segments.push(Segment::Placeholder(Var::Sub));
                continue;
            }
            _ if segment.contains(['{', '}']) => return Err(PatternError::Placeholder),
            _ => {}
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
