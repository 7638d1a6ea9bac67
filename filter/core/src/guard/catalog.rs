//! The catalogue filtered: the registry's `GET /v2/_catalog` answer
//! (`{"repositories": [...]}`) cut to the repositories the caller may pull, so one tenant
//! never learns another's names. Which names are visible is the caller's plans' question
//! (`policy::plan`, with its placeholders); this module only rewrites the document, and
//! refuses to pass on one it cannot read (an unreadable catalogue is not shown unfiltered).

use serde::{Deserialize, Serialize};

/// Largest catalogue page read, bytes (distribution's pages are at most 1000 names of at
/// most 255 bytes; a bigger answer is not a catalogue this guard will pass).
pub const MAX_CATALOG_BYTES: usize = 512 * 1024;

/// Why a catalogue answer could not be filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogError {
    /// Larger than [`MAX_CATALOG_BYTES`].
    TooLarge,
    /// Not `{"repositories": [strings]}`.
    Malformed(String),
}

#[derive(Deserialize)]
struct Page {
    repositories: Vec<String>,
}

#[derive(Serialize)]
struct Filtered<'a> {
    repositories: Vec<&'a str>,
}

/// The catalogue page `body` with only the names `visible` keeps, in the registry's order,
/// and how many were left out. Members other than `repositories` are dropped (the
/// registry sends none; whatever they were, they were not filtered).
pub fn filter(
    body: &[u8],
    visible: impl Fn(&str) -> bool,
) -> Result<(Vec<u8>, usize), CatalogError> {
    if body.len() > MAX_CATALOG_BYTES {
        return Err(CatalogError::TooLarge);
    }
    let page: Page = serde_json::from_slice(body)
        .map_err(|e| CatalogError::Malformed(format!("the catalogue is not readable: {e}")))?;
    let kept: Vec<&str> = page
        .repositories
        .iter()
        .map(String::as_str)
        .filter(|n| visible(n))
        .collect();
    let hidden = page.repositories.len() - kept.len();
    let out = serde_json::to_vec(&Filtered { repositories: kept })
        .map_err(|e| CatalogError::Malformed(e.to_string()))?;
    Ok((out, hidden))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn only_visible_names_in_the_registrys_order() {
        let body = br#"{"repositories":["acme/app","initech/db","acme/base","public/x"]}"#;
        let (out, hidden) =
            filter(body, |n| n.starts_with("acme/") || n.starts_with("public/")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"repositories":["acme/app","acme/base","public/x"]}"#
        );
        assert_eq!(hidden, 1);
        let (out, hidden) = filter(body, |_| false).unwrap();
        assert_eq!(out, br#"{"repositories":[]}"#);
        assert_eq!(hidden, 4);
    }

    #[test]
    fn what_cannot_be_read_is_not_passed_on() {
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            br#"{"repositories":"a"}"#,
            br#"{"repositories":[1]}"#,
            b"{\"repositories\":[\"a\"]",
        ] {
            assert!(
                matches!(filter(bad, |_| true), Err(CatalogError::Malformed(_))),
                "{bad:?}"
            );
        }
        let big = vec![b' '; MAX_CATALOG_BYTES + 1];
        assert_eq!(filter(&big, |_| true), Err(CatalogError::TooLarge));
        let (out, _) = filter(br#"{"repositories":["a"],"extra":{"b":1}}"#, |_| true).unwrap();
        assert_eq!(out, br#"{"repositories":["a"]}"#);
    }
}
