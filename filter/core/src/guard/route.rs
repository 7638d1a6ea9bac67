//! The registry API's routes (distribution's `v2` router and the OCI distribution spec
//! 1.1): which resource a request on the registry's route names and which actions it
//! needs, as distribution's own token check derives them (`GET`/`HEAD` pull; `POST`,
//! `PUT`, `PATCH` pull and push; `DELETE` delete; a cross-repository mount also pulls its
//! source). The guard reads it to apply the rules the registry has none for: tags, the
//! catalogue, rate limits.
//!
//! Hand-written rather than a router crate: names may contain `manifests`, `blobs` or
//! `tags` segments, so a route is found from the end of the path, exactly as
//! distribution's anchored expressions do, and every part is checked against its grammar.

/// The longest repository name distribution accepts, bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// The longest tag, bytes (`[\w][\w.-]{0,127}`).
pub const MAX_TAG_BYTES: usize = 128;

/// A manifest's reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference<'a> {
    /// A tag, e.g. `v1.2.3`.
    Tag(&'a str),
    /// A digest, e.g. `sha256:…`.
    Digest(&'a str),
}

/// What a request on the registry's route names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource<'a> {
    /// `/v2/`: the API version check (passes untouched).
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags {
        /// The repository.
        name: &'a str,
    },
    /// `/v2/<name>/manifests/<reference>`.
    Manifest {
        /// The repository.
        name: &'a str,
        /// Tag or digest.
        reference: Reference<'a>,
    },
    /// `/v2/<name>/blobs/<digest>`.
    Blob {
        /// The repository.
        name: &'a str,
    },
    /// `/v2/<name>/blobs/uploads/…`; `mount_from`: the source of a cross-repository mount.
    Upload {
        /// The repository.
        name: &'a str,
        /// `?from=` of a `POST …/uploads/?mount=…&from=…`.
        mount_from: Option<&'a str>,
    },
    /// `/v2/<name>/referrers/<digest>` (OCI 1.1).
    Referrers {
        /// The repository.
        name: &'a str,
    },
}

/// A request on the registry's route, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRequest<'a> {
    /// The resource.
    pub resource: Resource<'a>,
    /// The actions it needs on its repository (empty for [`Resource::Base`]; for the
    /// catalogue, `*` on `registry:catalog`).
    pub actions: &'static [&'static str],
}

impl RegistryRequest<'_> {
    /// The repository it names, if any.
    pub fn repository(&self) -> Option<&str> {
        match &self.resource {
            Resource::Base | Resource::Catalog => None,
            Resource::Tags { name }
            | Resource::Manifest { name, .. }
            | Resource::Blob { name }
            | Resource::Upload { name, .. }
            | Resource::Referrers { name } => Some(name),
        }
    }
}

/// Why a path on the registry's route is not one of its routes (the guard passes it to
/// the registry, which answers its own 404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Not under `/v2/`.
    NotRegistryApi,
    /// Under `/v2/` but no route of the API.
    UnknownRoute,
    /// A route whose name, tag or digest breaks its grammar.
    Invalid(&'static str),
}

/// Lowercase letters and digits.
fn alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A repository name: path components of `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
/// joined by `/`, at most [`MAX_NAME_BYTES`].
pub fn valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return false;
    }
    name.split('/').all(|c| {
        let b = c.as_bytes();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            // A separator: `.`, `_`, `__` or a run of `-`, between alphanumerics.
            let start = i;
            match b[i] {
                b'.' => i += 1,
                b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
                b'-' => {
                    while b.get(i) == Some(&b'-') {
                        i += 1;
                    }
                }
                _ => return false,
            }
            if start == 0 || !b.get(i).copied().is_some_and(alnum) {
                return false;
            }
        }
        true
    })
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= MAX_TAG_BYTES
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// A digest: `algorithm:encoded`, the algorithm `[a-z0-9]+([+._-][a-z0-9]+)*`, the
/// encoded part `[a-zA-Z0-9=_-]+` (OCI image spec); `sha256` must be 64 lowercase hex.
pub fn valid_digest(digest: &str) -> bool {
    let Some((alg, enc)) = digest.split_once(':') else {
        return false;
    };
    let alg_ok = !alg.is_empty()
        && alg
            .split(['+', '.', '_', '-'])
            .all(|p| !p.is_empty() && p.bytes().all(alnum));
    let enc_ok = !enc.is_empty()
        && enc
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'));
    let sha_ok = alg != "sha256"
        || (enc.len() == 64
            && enc
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    alg_ok && enc_ok && sha_ok
}

const PULL: &[&str] = &["pull"];
const PULL_PUSH: &[&str] = &["pull", "push"];
const DELETE: &[&str] = &["delete"];
const CATALOG: &[&str] = &["*"];

/// The actions `method` needs on a repository, as distribution's token check asks them;
/// `None` for a method the API has no route for.
fn actions(method: &str) -> Option<&'static [&'static str]> {
    match method {
        "GET" | "HEAD" => Some(PULL),
        "POST" | "PUT" | "PATCH" => Some(PULL_PUSH),
        "DELETE" => Some(DELETE),
        _ => None,
    }
}

/// The value of query parameter `key` (first occurrence, not percent-decoded: the values
/// read here are repository names and digests, which need no escaping).
fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Parses `method` and `path` (with its query) of a request on the registry's route.
pub fn parse<'a>(method: &str, path: &'a str) -> Result<RegistryRequest<'a>, RouteError> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let rest = path.strip_prefix("/v2/").ok_or(if path == "/v2" {
        RouteError::UnknownRoute
    } else {
        RouteError::NotRegistryApi
    })?;
    if rest.is_empty() {
        return Ok(RegistryRequest {
            resource: Resource::Base,
            actions: &[],
        });
    }
    let acts = actions(method).ok_or(RouteError::UnknownRoute)?;
    if rest == "_catalog" {
        return Ok(RegistryRequest {
            resource: Resource::Catalog,
            actions: CATALOG,
        });
    }
    let name_ok = |name: &'a str| {
        if valid_name(name) {
            Ok(name)
        } else {
            Err(RouteError::Invalid("repository name"))
        }
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(RegistryRequest {
            resource: Resource::Tags {
                name: name_ok(name)?,
            },
            actions: acts,
        });
    }
    // Uploads before blobs: `…/blobs/uploads/` would otherwise read as a blob `uploads`.
    if let Some(i) = rest.rfind("/blobs/uploads/") {
        let (name, tail) = (&rest[..i], &rest[i + "/blobs/uploads/".len()..]);
        if tail.contains('/') {
            return Err(RouteError::UnknownRoute);
        }
        let mount_from = if method == "POST" && tail.is_empty() {
            query_param(query, "mount")
                .and(query_param(query, "from"))
                .map(name_ok)
                .transpose()?
        } else {
            None
        };
        return Ok(RegistryRequest {
            resource: Resource::Upload {
                name: name_ok(name)?,
                mount_from,
            },
            actions: acts,
        });
    }
    let (name, kind, last) = match rest.rsplit_once('/') {
        Some((head, last)) => match head.rsplit_once('/') {
            Some((name, kind)) => (name, kind, last),
            None => return Err(RouteError::UnknownRoute),
        },
        None => return Err(RouteError::UnknownRoute),
    };
    let resource = match kind {
        "manifests" => {
            let reference = if last.contains(':') {
                if !valid_digest(last) {
                    return Err(RouteError::Invalid("digest"));
                }
                Reference::Digest(last)
            } else {
                if !valid_tag(last) {
                    return Err(RouteError::Invalid("tag"));
                }
                Reference::Tag(last)
            };
            Resource::Manifest {
                name: name_ok(name)?,
                reference,
            }
        }
        "blobs" | "referrers" => {
            if !valid_digest(last) {
                return Err(RouteError::Invalid("digest"));
            }
            let name = name_ok(name)?;
            if kind == "blobs" {
                Resource::Blob { name }
            } else {
                Resource::Referrers { name }
            }
        }
        _ => return Err(RouteError::UnknownRoute),
    };
    Ok(RegistryRequest {
        resource,
        actions: acts,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn every_route_of_the_api_with_its_actions() {
        fn p<'a>(m: &str, path: &'a str) -> RegistryRequest<'a> {
            parse(m, path).unwrap()
        }
        assert_eq!(p("GET", "/v2/").resource, Resource::Base);
        assert_eq!(p("GET", "/v2/_catalog?n=10").resource, Resource::Catalog);
        assert_eq!(p("GET", "/v2/_catalog").actions, ["*"]);
        let tags = p("GET", "/v2/acme/app/tags/list?n=5&last=v1");
        assert_eq!(tags.resource, Resource::Tags { name: "acme/app" });
        assert_eq!(tags.actions, ["pull"]);
        let put = p("PUT", "/v2/acme/app/manifests/v1.2.3");
        assert_eq!(
            put.resource,
            Resource::Manifest {
                name: "acme/app",
                reference: Reference::Tag("v1.2.3")
            }
        );
        assert_eq!(put.actions, ["pull", "push"]);
        let head_path = format!("/v2/acme/app/manifests/{D}");
        let head = p("HEAD", &head_path);
        assert_eq!(
            head.resource,
            Resource::Manifest {
                name: "acme/app",
                reference: Reference::Digest(D)
            }
        );
        assert_eq!(p("DELETE", "/v2/a/manifests/latest").actions, ["delete"]);
        assert_eq!(
            p("GET", &format!("/v2/a/b/c/blobs/{D}")).resource,
            Resource::Blob { name: "a/b/c" }
        );
        assert_eq!(
            p("GET", &format!("/v2/a/referrers/{D}?artifactType=x")).resource,
            Resource::Referrers { name: "a" }
        );
        assert_eq!(
            p("POST", "/v2/a/blobs/uploads/").resource,
            Resource::Upload {
                name: "a",
                mount_from: None
            }
        );
        assert_eq!(
            p("PATCH", "/v2/a/blobs/uploads/3f2a-uuid?_state=x").resource,
            Resource::Upload {
                name: "a",
                mount_from: None
            }
        );
        assert_eq!(
            p(
                "POST",
                &format!("/v2/a/blobs/uploads/?mount={D}&from=other/repo")
            )
            .resource,
            Resource::Upload {
                name: "a",
                mount_from: Some("other/repo")
            }
        );
        assert_eq!(p("POST", "/v2/a/blobs/uploads/").repository(), Some("a"));
        assert_eq!(p("GET", "/v2/_catalog").repository(), None);
    }

    #[test]
    fn names_holding_route_words_are_found_from_the_end() {
        let r = parse("GET", "/v2/team/manifests/tags/manifests/latest").unwrap();
        assert_eq!(
            r.resource,
            Resource::Manifest {
                name: "team/manifests/tags",
                reference: Reference::Tag("latest")
            }
        );
        let r = parse("GET", "/v2/blobs/tags/list").unwrap();
        assert_eq!(r.resource, Resource::Tags { name: "blobs" });
        let r = parse("PUT", "/v2/x/blobs/uploads/blobs/uploads/u1").unwrap();
        assert_eq!(
            r.resource,
            Resource::Upload {
                name: "x/blobs/uploads",
                mount_from: None
            }
        );
    }

    #[test]
    fn anything_else_is_not_a_route() {
        use RouteError::*;
        let e = |m: &str, path: &str| parse(m, path).unwrap_err();
        assert_eq!(e("GET", "/token"), NotRegistryApi);
        assert_eq!(e("GET", "/v20/x"), NotRegistryApi);
        assert_eq!(e("GET", "/v2"), UnknownRoute);
        assert_eq!(e("GET", "/v2/a"), UnknownRoute);
        assert_eq!(e("GET", "/v2/a/b"), UnknownRoute);
        assert_eq!(e("GET", "/v2/a/things/x"), UnknownRoute);
        assert_eq!(e("OPTIONS", "/v2/a/manifests/x"), UnknownRoute);
        assert_eq!(e("GET", "/v2/a/blobs/uploads/u/extra"), UnknownRoute);
        assert_eq!(e("GET", "/v2/A/manifests/x"), Invalid("repository name"));
        assert_eq!(e("GET", "/v2/a//b/manifests/x"), Invalid("repository name"));
        assert_eq!(e("GET", "/v2/../a/manifests/x"), Invalid("repository name"));
        assert_eq!(
            e("GET", "/v2/a%2Fb/manifests/x"),
            Invalid("repository name")
        );
        assert_eq!(e("GET", "/v2/a/manifests/.hidden"), Invalid("tag"));
        assert_eq!(
            e("GET", &format!("/v2/a/manifests/{}", "t".repeat(129))),
            Invalid("tag")
        );
        assert_eq!(e("GET", "/v2/a/manifests/sha256:abc"), Invalid("digest"));
        assert_eq!(e("GET", "/v2/a/blobs/latest"), Invalid("digest"));
        assert_eq!(
            e("POST", &format!("/v2/a/blobs/uploads/?mount={D}&from=../x")),
            Invalid("repository name")
        );
    }

    #[test]
    fn the_name_grammar_is_distributions() {
        for good in [
            "a",
            "a0",
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a---b",
            "a/b/c",
            "library/alpine",
        ] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "", "A", "-a", "a-", "a.", "_a", "a..b", "a___b", "a/", "/a", "a//b", "a b", "a:b", "é",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name(&"a".repeat(255)));
        assert!(!valid_name(&"a".repeat(256)));
        for good in ["latest", "v1.2.3", "_x", "A-b.c_D", &"t".repeat(128)] {
            assert!(valid_tag(good), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a b"] {
            assert!(!valid_tag(bad), "{bad:?}");
        }
        assert!(valid_digest(D));
        assert!(valid_digest("sha512:abc=="));
        assert!(valid_digest(
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"
        ));
        for bad in [
            "sha256:ABC",
            "sha256:",
            ":abc",
            "sha256",
            "Sha256:x",
            "sha256:0123",
            "a..b:x",
            "a:b/c",
        ] {
            assert!(!valid_digest(bad), "{bad:?}");
        }
    }
}
