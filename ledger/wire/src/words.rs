//! The words of the contract: a record's decision, grant and binding kind, and the
//! revocation kinds with the feed key each one fills.
//!
//! Serialised by serde's renames; read by hand (`from_word`) so that an unknown word is
//! refused with the sentence the ledger has always answered (serde's own would read
//! "unknown variant `x`, expected one of …").

use std::borrow::Cow;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

/// Reads one word with `from_word`, refusing anything else with `expected`.
fn word<'de, D: Deserializer<'de>, T>(
    d: D,
    from_word: fn(&str) -> Option<T>,
    expected: &'static str,
) -> Result<T, D::Error> {
    let text = Cow::<str>::deserialize(d)?;
    from_word(&text).ok_or_else(|| D::Error::custom(expected))
}

/// What the gateway decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// A token was minted.
    Issued,
    /// The request was refused.
    Rejected,
}

impl Decision {
    /// Both decisions.
    pub const ALL: [Decision; 2] = [Decision::Issued, Decision::Rejected];
    /// Why another word is refused.
    pub const EXPECTED: &'static str = "must be issued or rejected";

    /// `issued` or `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Issued => "issued",
            Decision::Rejected => "rejected",
        }
    }

    /// The decision named `word`.
    pub fn from_word(word: &str) -> Option<Decision> {
        Decision::ALL.into_iter().find(|d| d.as_str() == word)
    }
}

impl<'de> Deserialize<'de> for Decision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        word(d, Decision::from_word, Decision::EXPECTED)
    }
}

/// How the token was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// `GET /token` (the Docker token protocol).
    Get,
    /// `POST /token`, `grant_type=password`.
    Password,
    /// `POST /token`, `grant_type=refresh_token`.
    RefreshToken,
}

impl Grant {
    /// Every grant.
    pub const ALL: [Grant; 3] = [Grant::Get, Grant::Password, Grant::RefreshToken];
    /// Why another word is refused.
    pub const EXPECTED: &'static str = "must be get, password or refresh_token";

    /// `get`, `password` or `refresh_token`.
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Get => "get",
            Grant::Password => "password",
            Grant::RefreshToken => "refresh_token",
        }
    }

    /// The grant named `word`.
    pub fn from_word(word: &str) -> Option<Grant> {
        Grant::ALL.into_iter().find(|g| g.as_str() == word)
    }
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        word(d, Grant::from_word, Grant::EXPECTED)
    }
}

/// The sender constraint of a minted token: the first word of a record's `binding`
/// (`jkt`, `x5t#S256` or `none`, optionally followed by `:<thumbprint>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BindingKind {
    /// DPoP: `cnf.jkt`.
    #[serde(rename = "jkt")]
    Jkt,
    /// Mutual TLS: `cnf.x5t#S256`.
    #[serde(rename = "x5t#S256")]
    X5tS256,
    /// Not sender-constrained.
    #[serde(rename = "none")]
    None,
}

impl BindingKind {
    /// Every kind.
    pub const ALL: [BindingKind; 3] = [BindingKind::Jkt, BindingKind::X5tS256, BindingKind::None];
    /// Why another binding is refused.
    pub const EXPECTED: &'static str = "must be jkt, x5t#S256 or none (optionally :thumbprint)";

    /// `jkt`, `x5t#S256` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            BindingKind::Jkt => "jkt",
            BindingKind::X5tS256 => "x5t#S256",
            BindingKind::None => "none",
        }
    }

    /// The kind a `binding` value starts with (the text before its first `:`).
    pub fn of(binding: &str) -> Option<BindingKind> {
        let kind = binding.split(':').next().unwrap_or("");
        BindingKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

/// What a revocation revokes, and the feed key that lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevocationKind {
    /// A licence (`stellaops:license`).
    License,
    /// A subject.
    Subject,
    /// A refresh token, by its id.
    RefreshToken,
    /// A tenant.
    Tenant,
}

impl RevocationKind {
    /// Every kind, in the order the ledger lists them.
    pub const ALL: [RevocationKind; 4] = [
        RevocationKind::License,
        RevocationKind::Subject,
        RevocationKind::RefreshToken,
        RevocationKind::Tenant,
    ];
    /// Why another word is refused.
    pub const EXPECTED: &'static str = "must be license, subject, refreshToken or tenant";

    /// `license`, `subject`, `refreshToken` or `tenant`.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::License => "license",
            RevocationKind::Subject => "subject",
            RevocationKind::RefreshToken => "refreshToken",
            RevocationKind::Tenant => "tenant",
        }
    }

    /// The kind named `word`.
    pub fn from_word(word: &str) -> Option<RevocationKind> {
        RevocationKind::ALL.into_iter().find(|k| k.as_str() == word)
    }

    /// The key of the [`crate::Feed`] list holding this kind's values.
    pub fn feed_key(self) -> &'static str {
        match self {
            RevocationKind::License => "revokedLicenses",
            RevocationKind::Subject => "revokedSubjects",
            RevocationKind::RefreshToken => "revokedRefreshTokens",
            RevocationKind::Tenant => "revokedTenants",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// serde's renames and `as_str` are the same words, and each word reads back.
    #[test]
    fn serde_words_are_the_as_str_words() {
        fn check<T: Serialize + Copy>(all: &[T], as_str: fn(T) -> &'static str) {
            for &w in all {
                assert_eq!(serde_json::to_value(w).unwrap(), json!(as_str(w)));
            }
        }
        check(&Decision::ALL, Decision::as_str);
        check(&Grant::ALL, Grant::as_str);
        check(&BindingKind::ALL, BindingKind::as_str);
        check(&RevocationKind::ALL, RevocationKind::as_str);
        for d in Decision::ALL {
            assert_eq!(
                serde_json::from_value::<Decision>(json!(d.as_str())).unwrap(),
                d
            );
        }
        for g in Grant::ALL {
            assert_eq!(
                serde_json::from_value::<Grant>(json!(g.as_str())).unwrap(),
                g
            );
        }
        for k in BindingKind::ALL {
            assert_eq!(BindingKind::of(k.as_str()), Some(k));
            assert_eq!(BindingKind::of(&format!("{}:thumb", k.as_str())), Some(k));
        }
        for k in RevocationKind::ALL {
            assert_eq!(RevocationKind::from_word(k.as_str()), Some(k));
        }
    }

    #[test]
    fn other_words_are_refused_with_the_ledger_sentence() {
        let err = |v: Value| {
            serde_json::from_value::<Decision>(v)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err(json!("granted")), Decision::EXPECTED);
        assert_eq!(err(json!("Issued")), Decision::EXPECTED);
        assert_eq!(
            err(json!(1)),
            "invalid type: integer `1`, expected a string"
        );
        let err = serde_json::from_value::<Grant>(json!("implicit")).unwrap_err();
        assert_eq!(err.to_string(), Grant::EXPECTED);
        assert_eq!(BindingKind::of("mtls"), None);
        assert_eq!(BindingKind::of(""), None);
        assert_eq!(RevocationKind::from_word("LICENSE"), None);
    }
}
