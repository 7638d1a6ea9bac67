//! Tag rules through the guard with dockerd: an immutable tag keeps its image (docker's
//! push of another image fails with the guard's message; the same image again passes), a
//! new tag and a push by digest work; a protected tag is pushed by the plan whose rule
//! says `pushProtected` (enterprise), not by community; a manifest delete is refused where
//! the rule says `delete: false` (`delete_refused`) or names immutable tags (`immutable_tag`,
//! docs/GUARD.md) and served by a rule with neither. Each refusal counted once.

use std::time::Instant;

use registry_token_e2e::clients::Dockerd;
use registry_token_e2e::gateway::bearer;
use registry_token_e2e::registry::{sha256_digest, OciImage};
use registry_token_e2e::Reply;

use super::{community, enterprise, refused, Guarded, Setup, Who};

/// Docker's manifest media type (what dockerd 20.10 pushes).
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// `GET` of a manifest through Envoy: its bytes and media type.
fn manifest(g: &Guarded, token: &str, repo: &str, reference: &str) -> (Vec<u8>, String) {
    let auth = bearer(token);
    let accept = format!(
        "{DOCKER_MANIFEST}, {}",
        registry_token_e2e::registry::OCI_MANIFEST
    );
    let r = g.envoy.request(
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("authorization", &auth), ("accept", &accept)],
        None,
    );
    assert_eq!(r.status, 200, "GET {repo}:{reference}: {r:?}");
    let media = r.header("content-type").unwrap_or_default().to_owned();
    (r.body.into_bytes(), media)
}

/// `PUT` of a manifest through Envoy.
fn put_manifest(
    g: &Guarded,
    token: &str,
    repo: &str,
    reference: &str,
    body: &[u8],
    media: &str,
) -> Reply {
    let auth = bearer(token);
    g.envoy.request(
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("authorization", &auth), ("content-type", media)],
        Some(body),
    )
}

/// Uploads one blob (monolithic: `POST` then `PUT ?digest=`) through Envoy.
fn upload_blob(g: &Guarded, token: &str, repo: &str, data: &[u8]) {
    let auth = bearer(token);
    let r = g.envoy.request(
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[("authorization", &auth)],
        Some(b""),
    );
    assert_eq!(r.status, 202, "{r:?}");
    let location = r.header("location").unwrap_or_default();
    let path = location
        .strip_prefix(&g.envoy.base_url())
        .unwrap_or(location);
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = g.envoy.request(
        "PUT",
        &format!("{path}{sep}digest={}", sha256_digest(data)),
        &[
            ("authorization", &auth),
            ("content-type", "application/octet-stream"),
        ],
        Some(data),
    );
    assert_eq!(r.status, 201, "{r:?}");
}

/// The digest docker printed for its push (`<tag>: digest: sha256:… size: …`).
fn pushed_digest(stdout: &str) -> Option<String> {
    stdout
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .map(str::to_owned)
}

#[test]
fn immutable_and_protected_tags_and_delete_with_docker() {
    let started = Instant::now();
    let g = Guarded::start(&Setup::default());
    let host = g.host();
    let carl = community("carl", "acme");
    let emma = enterprise("emma", "acme");
    let scope = "repository:acme/app:pull,push,delete";
    let carl_token = g.token(&carl, &[scope]);
    let emma_token = g.token(&emma, &[scope]);
    let docker = Dockerd::start(&[&host]).unwrap_or_else(|e| panic!("{e}"));
    let run = docker.login(&host, carl.sub, &g.op(&carl));
    assert!(run.success, "{run}");

    // v1 (immutable) is new: pushed.
    let v1 = format!("{host}/acme/app:v1");
    let x = docker.import_tiny(&v1).unwrap_or_else(|e| panic!("{e}"));
    let run = docker.push(&v1);
    assert!(run.success, "{run}");
    let x_digest = pushed_digest(&run.stdout).unwrap_or_else(|| panic!("no digest:\n{run}"));
    // Another image under a new tag: pushed.
    let new = format!("{host}/acme/app:new");
    let y = docker.import_tiny(&new).unwrap_or_else(|e| panic!("{e}"));
    let run = docker.push(&new);
    assert!(run.success, "a new tag: {run}");
    let (y_manifest, y_media) = manifest(&g, &carl_token, "acme/app", "new");
    assert_eq!(y_media, DOCKER_MANIFEST);

    // Its manifest under v1, by hand: 403 immutable_tag, counted once.
    let before = g.rejected();
    let r = put_manifest(&g, &carl_token, "acme/app", "v1", &y_manifest, &y_media);
    let message = refused(
        &g,
        "another image to v1",
        &r,
        403,
        "DENIED",
        "immutable_tag",
    );
    assert_eq!(
        g.rejected_since(&before, &[("immutable_tag", 1)]),
        [("immutable_tag".to_owned(), 1)].into()
    );
    // docker push of that image as v1: refused, docker shows the guard's message.
    let before = g.rejected();
    let run = docker.tag(&y, &v1);
    assert!(run.success, "{run}");
    let run = docker.push(&v1);
    assert!(!run.success, "docker overwrote an immutable tag:\n{run}");
    assert!(
        run.stderr.contains(&message) || run.stdout.contains(&message),
        "docker does not show {message:?}:\n{run}"
    );
    eprintln!("docker push of another image to v1:\n{}", run.stderr.trim());
    let moved = g.rejected_since(&before, &[("immutable_tag", 1)]);
    assert_eq!(moved, [("immutable_tag".to_owned(), 1)].into(), "{run}");
    let (now, _) = manifest(&g, &carl_token, "acme/app", "v1");
    assert_eq!(sha256_digest(&now), x_digest, "v1 changed");
    // The same image again to v1: passes.
    let run = docker.tag(&x, &v1);
    assert!(run.success, "{run}");
    let run = docker.push(&v1);
    assert!(run.success, "the same image again to v1: {run}");
    assert_eq!(pushed_digest(&run.stdout), Some(x_digest.clone()), "{run}");

    // A push by digest (a manifest no tag names): passes the tag rules.
    let z = OciImage::build("z");
    for d in [&z.config_digest, &z.layer_digest] {
        let file = z
            .path()
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        upload_blob(
            &g,
            &carl_token,
            "acme/app",
            &std::fs::read(file).unwrap_or_default(),
        );
    }
    let file = z
        .path()
        .join("blobs/sha256")
        .join(z.manifest_digest.trim_start_matches("sha256:"));
    let z_manifest = std::fs::read(file).unwrap_or_default();
    let r = put_manifest(
        &g,
        &carl_token,
        "acme/app",
        &z.manifest_digest,
        &z_manifest,
        registry_token_e2e::registry::OCI_MANIFEST,
    );
    assert_eq!(r.status, 201, "a push by digest: {r:?}");
    assert_eq!(
        g.v2(
            "HEAD",
            &format!("/v2/acme/app/manifests/{}", z.manifest_digest),
            &carl_token,
            None
        )
        .status,
        200
    );

    // A protected tag: community refused (by hand and by docker), enterprise pushes.
    let before = g.rejected();
    let (x_manifest, x_media) = manifest(&g, &carl_token, "acme/app", "v1");
    let r = put_manifest(
        &g,
        &carl_token,
        "acme/app",
        "release-7",
        &x_manifest,
        &x_media,
    );
    let message = refused(
        &g,
        "community to release-7",
        &r,
        403,
        "DENIED",
        "protected_tag",
    );
    let latest = format!("{host}/acme/app:latest");
    let run = docker.tag(&x, &latest);
    assert!(run.success, "{run}");
    let run = docker.push(&latest);
    assert!(!run.success, "community pushed latest:\n{run}");
    let shown = message.replace("release-7", "latest");
    assert!(
        run.stderr.contains("latest")
            && (run.stderr.contains(&shown) || run.stderr.contains("protected")),
        "docker does not show the protected tag refusal ({shown:?}):\n{run}"
    );
    let moved = g.rejected_since(&before, &[("protected_tag", 2)]);
    assert_eq!(moved, [("protected_tag".to_owned(), 2)].into(), "{run}");
    let run = docker.login(&host, emma.sub, &g.op(&emma));
    assert!(run.success, "{run}");
    let run = docker.push(&latest);
    assert!(run.success, "enterprise pushes latest: {run}");
    let r = put_manifest(
        &g,
        &emma_token,
        "acme/app",
        "release-7",
        &x_manifest,
        &x_media,
    );
    assert_eq!(r.status, 201, "enterprise pushes release-7: {r:?}");

    // Delete: community's rule says delete: false (refused); enterprise's names immutable
    // tags, and a delete would untag them (refused, docs/GUARD.md: beyond the contract's
    // `delete`, which defaults to true); a rule with neither (team) deletes.
    let before = g.rejected();
    let y_digest = sha256_digest(&y_manifest);
    let path = format!("/v2/acme/app/manifests/{y_digest}");
    let r = g.v2("DELETE", &path, &carl_token, None);
    refused(&g, "community delete", &r, 403, "DENIED", "delete_refused");
    let r = g.v2("DELETE", &path, &emma_token, None);
    refused(&g, "enterprise delete", &r, 403, "DENIED", "immutable_tag");
    assert_eq!(
        g.rejected_since(&before, &[("delete_refused", 1), ("immutable_tag", 1)]),
        [
            ("delete_refused".to_owned(), 1),
            ("immutable_tag".to_owned(), 1)
        ]
        .into()
    );
    assert_eq!(g.v2("HEAD", &path, &carl_token, None).status, 200);
    let tess = g.token(
        &Who {
            plan: "team",
            ..community("tess", "acme")
        },
        &[scope],
    );
    let r = g.v2("DELETE", &path, &tess, None);
    assert_eq!(r.status, 202, "a delete the rule allows: {r:?}");
    assert_eq!(g.v2("HEAD", &path, &carl_token, None).status, 404);
    g.assert_no_trap();
    eprintln!("test took {:.2?}", started.elapsed());
}
