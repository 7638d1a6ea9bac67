//! Subject and tenant templates: literal text and `{claim}` placeholders, e.g.
//! `github:{repository}@{ref}` or `{namespace}`. A placeholder reads a string claim whose
//! value passes [`is_template_value`]: nothing that could act as a wildcard, a
//! placeholder, an encoded separator or a path traversal in a plan pattern reaches a
//! result. The tenant's result must then be one repository path component (the same check
//! as every tenant value).

use crate::token::optok::Claim;

/// Longest rendered subject or tenant, bytes.
pub const MAX_RENDERED_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Claim(String),
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Why a template could not be rendered for a token (the policy matched; the token is
/// refused rather than given a subject or tenant it does not carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The claim is absent.
    Missing(String),
    /// The claim is not a string.
    WrongType(String),
    /// The claim's value fails [`is_template_value`], or the result is too long.
    Refused(String),
}

/// A claim value a template may read: 1..=255 bytes of visible ASCII, without `{`, `}`,
/// `*`, `?`, `%`, `\`, `"` and without `..`.
pub fn is_template_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_RENDERED_BYTES
        && !v.contains("..")
        && v.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"{}*?%\\\"".contains(&b))
}

impl Template {
    /// Parses `text`: placeholders are `{name}` with a non-empty name of visible ASCII
    /// without braces; a lone `{` or `}` is an error.
    pub fn parse(text: &str) -> Result<Template, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.len() > MAX_RENDERED_BYTES {
            return Err(format!("longer than {MAX_RENDERED_BYTES} bytes"));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    pieces.push(Piece::Text(rest.to_string()));
                    rest = "";
                }
                Some(i) if rest.as_bytes()[i] == b'}' => {
                    return Err(format!(
                        "a `}}` without its `{{` at byte {}",
                        text.len() - rest.len() + i
                    ));
                }
                Some(i) => {
                    if i > 0 {
                        pieces.push(Piece::Text(rest[..i].to_string()));
                    }
                    let after = &rest[i + 1..];
                    let Some(end) = after
                        .find(['{', '}'])
                        .filter(|&e| after.as_bytes()[e] == b'}')
                    else {
                        return Err("a `{` without its `}`".into());
                    };
                    let name = &after[..end];
                    if name.is_empty() || !name.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                        return Err(format!("{{{name}}} is not a claim name"));
                    }
                    pieces.push(Piece::Claim(name.to_string()));
                    rest = &after[end + 1..];
                }
            }
        }
        if pieces
            .iter()
            .any(|p| matches!(p, Piece::Text(t) if t.chars().any(char::is_control)))
        {
            return Err("holds a control character".into());
        }
        Ok(Template { pieces })
    }

    /// The claim names the template reads.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Claim(c) => Some(c.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// The template filled from the token's claims.
    pub fn render<'c>(
        &self,
        claim: &dyn Fn(&str) -> Option<&'c Claim>,
    ) -> Result<String, RenderError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Claim(name) => match claim(name) {
                    None => return Err(RenderError::Missing(name.clone())),
                    Some(Claim::Str(v)) if is_template_value(v) => out.push_str(v),
                    Some(Claim::Str(_)) => return Err(RenderError::Refused(name.clone())),
                    Some(_) => return Err(RenderError::WrongType(name.clone())),
                },
            }
        }
        if out.len() > MAX_RENDERED_BYTES {
            return Err(RenderError::Refused("(the result is too long)".into()));
        }
        Ok(out)
    }
}
