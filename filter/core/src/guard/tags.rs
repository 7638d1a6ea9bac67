//! Tag rules on the registry's route: protected tags (pushed only by callers whose plan
//! rule says so), immutable tags (once a tag exists, a `PUT` of another manifest under it
//! is refused) and whether deleting is allowed. The decision at `/token` writes the rules
//! of each granted repository into the minted token, so the guard decides from the token
//! alone; an immutable tag needs one look at the registry (`HEAD` of the manifest), which
//! the glue makes and [`immutable_verdict`] reads.

use super::route::{Reference, Resource};

/// The tag rules of one repository, as the minted token carries them (`tags` of its
/// `access` entry).
pub use crate::token::access::TagPolicy as TagRules;

/// What the guard does with a request, as far as tags go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagVerdict {
    /// No tag rule applies.
    Pass,
    /// A push to a protected tag by a caller without the right.
    ProtectedTag,
    /// A delete by a caller whose rules do not allow it.
    DeleteNotAllowed,
    /// A delete where the rules name immutable tags: a tag cannot be untagged and pushed
    /// again (by tag, or by the digest it names: which tags name a digest the guard
    /// cannot know without listing them all, so any manifest delete is refused).
    DeleteImmutable,
    /// A push to an immutable tag: allowed only if the tag does not exist yet, or already
    /// names the manifest being pushed (a retried push); the glue asks the registry.
    CheckImmutable,
}

/// Glob match: `*` is any run of characters (tags hold no `/`), everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The verdict for `method` on `resource` under `rules`.
pub fn verdict(method: &str, resource: &Resource<'_>, rules: &TagRules) -> TagVerdict {
    let Resource::Manifest { reference, .. } = resource else {
        return TagVerdict::Pass;
    };
    match (method, reference) {
        ("DELETE", _) if !rules.delete => TagVerdict::DeleteNotAllowed,
        ("DELETE", _) if !rules.immutable.is_empty() => TagVerdict::DeleteImmutable,
        ("PUT", Reference::Tag(tag)) => {
            if !rules.push_protected && rules.protected.iter().any(|p| glob(p, tag)) {
                TagVerdict::ProtectedTag
            } else if rules.immutable.iter().any(|p| glob(p, tag)) {
                TagVerdict::CheckImmutable
            } else {
                TagVerdict::Pass
            }
        }
        _ => TagVerdict::Pass,
    }
}

/// Reads the registry's answer to `HEAD /v2/<name>/manifests/<tag>` for a push of the
/// manifest whose digest is `pushed`: `true` lets the push through. 404: the tag is new.
/// 200 with `Docker-Content-Digest` equal to `pushed`: the same manifest again. Anything
/// else (another digest, no digest, an error status, no answer) refuses: an immutable tag
/// fails closed.
pub fn immutable_verdict(status: Option<u16>, existing: Option<&str>, pushed: &str) -> bool {
    match status {
        Some(404) => true,
        Some(200) => existing.is_some_and(|d| d == pushed),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::guard::route::parse;

    fn rules() -> TagRules {
        TagRules {
            protected: vec!["latest".into(), "release-*".into()],
            push_protected: false,
            immutable: vec!["v*".into()],
            delete: false,
        }
    }

    fn permissive() -> TagRules {
        TagRules {
            delete: true,
            ..TagRules::default()
        }
    }

    fn v(method: &str, path: &str, rules: &TagRules) -> TagVerdict {
        verdict(method, &parse(method, path).unwrap().resource, rules)
    }

    #[test]
    fn protected_immutable_and_delete() {
        let r = rules();
        assert_eq!(
            v("PUT", "/v2/a/manifests/latest", &r),
            TagVerdict::ProtectedTag
        );
        assert_eq!(
            v("PUT", "/v2/a/manifests/release-2", &r),
            TagVerdict::ProtectedTag
        );
        assert_eq!(
            v("PUT", "/v2/a/manifests/v1.0", &r),
            TagVerdict::CheckImmutable
        );
        assert_eq!(v("PUT", "/v2/a/manifests/dev", &r), TagVerdict::Pass);
        assert_eq!(v("GET", "/v2/a/manifests/latest", &r), TagVerdict::Pass);
        assert_eq!(v("HEAD", "/v2/a/manifests/v1.0", &r), TagVerdict::Pass);
        assert_eq!(
            v("DELETE", "/v2/a/manifests/dev", &r),
            TagVerdict::DeleteNotAllowed
        );
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let by_digest = format!("/v2/a/manifests/{digest}");
        assert_eq!(v("DELETE", &by_digest, &r), TagVerdict::DeleteNotAllowed);
        assert_eq!(
            v("PUT", &by_digest, &r),
            TagVerdict::Pass,
            "a digest is not a tag"
        );
        assert_eq!(v("PUT", "/v2/a/blobs/uploads/u", &r), TagVerdict::Pass);
        let owner = TagRules {
            push_protected: true,
            delete: true,
            ..rules()
        };
        assert_eq!(v("PUT", "/v2/a/manifests/latest", &owner), TagVerdict::Pass);
        assert_eq!(
            v("PUT", "/v2/a/manifests/v2", &owner),
            TagVerdict::CheckImmutable
        );
        assert_eq!(
            v("DELETE", "/v2/a/manifests/dev", &owner),
            TagVerdict::DeleteImmutable,
            "with immutable tags, no manifest is deleted (it would untag one)"
        );
        assert_eq!(v("DELETE", &by_digest, &owner), TagVerdict::DeleteImmutable);
        let mutable = TagRules {
            immutable: vec![],
            ..owner.clone()
        };
        assert_eq!(
            v("DELETE", "/v2/a/manifests/dev", &mutable),
            TagVerdict::Pass
        );
        assert_eq!(
            v("PUT", "/v2/a/manifests/latest", &permissive()),
            TagVerdict::Pass
        );
        assert_eq!(
            v("DELETE", "/v2/a/manifests/dev", &permissive()),
            TagVerdict::Pass
        );
    }

    #[test]
    fn globs() {
        for (p, t) in [
            ("*", ""),
            ("*", "x"),
            ("v*", "v"),
            ("v*", "v1.2"),
            ("*-rc", "1-rc"),
            ("a*b*c", "aXbYc"),
            ("a*b*c", "abc"),
            ("latest", "latest"),
            ("**", "x"),
        ] {
            assert!(glob(p, t), "{p} {t}");
        }
        for (p, t) in [
            ("v*", "x1"),
            ("latest", "latest2"),
            ("*-rc", "1-rc1"),
            ("a*b*c", "acb"),
            ("", "x"),
            ("v?", "v1"),
        ] {
            assert!(!glob(p, t), "{p} {t}");
        }
    }

    #[test]
    fn an_immutable_tag_fails_closed() {
        let d = "sha256:aa";
        assert!(immutable_verdict(Some(404), None, d));
        assert!(immutable_verdict(Some(200), Some(d), d));
        assert!(!immutable_verdict(Some(200), Some("sha256:bb"), d));
        assert!(!immutable_verdict(Some(200), None, d));
        for s in [Some(401), Some(500), Some(503), None] {
            assert!(!immutable_verdict(s, None, d), "{s:?}");
        }
    }
}
