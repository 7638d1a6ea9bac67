//! Which configured issuer verifies an OpToken: the one whose `issuer` equals the token's
//! `iss`, byte for byte (no trailing-slash, case or Unicode folding: `https://a/` is not
//! `https://a`). The token is then verified against that issuer's keys, audiences,
//! algorithms and scopes only, so a key is found by (issuer, `kid`): two issuers
//! publishing the same `kid` never verify each other's tokens.
//!
//! Reading `iss` before the signature is checked is safe: it only chooses whose keys
//! verify the signature, and the verification checks `iss` again.

/// The index in `issuers` of the one named exactly `iss` (`None`: no `iss`, not a
/// string, or naming no configured issuer).
pub fn select<'a>(iss: Option<&str>, issuers: impl IntoIterator<Item = &'a str>) -> Option<usize> {
    let iss = iss?;
    issuers.into_iter().position(|name| name == iss)
}

#[cfg(test)]
mod tests {
    use super::select;

    const ISSUERS: [&str; 3] = [
        "https://authority.example",
        "https://token.actions.githubusercontent.com",
        "https://kubernetes.default.svc.cluster.local",
    ];

    #[test]
    fn exact_names_only() {
        assert_eq!(select(Some(ISSUERS[1]), ISSUERS), Some(1));
        assert_eq!(select(Some(ISSUERS[2]), ISSUERS), Some(2));
        for near in [
            "https://token.actions.githubusercontent.com/",
            "https://Token.actions.githubusercontent.com",
            "HTTPS://token.actions.githubusercontent.com",
            "https://token.actions.githubusercontent.com.",
            " https://token.actions.githubusercontent.com",
            "https://token.actions.githubusercontent.com\u{0}",
            "token.actions.githubusercontent.com",
            "https://token.actions.githubusercontent.com:443",
            "",
        ] {
            assert_eq!(select(Some(near), ISSUERS), None, "{near:?}");
        }
        assert_eq!(select(None, ISSUERS), None);
        assert_eq!(select(Some(ISSUERS[0]), []), None);
    }
}
