//! `registry-token verify-bundle`: every kind of tampering fails, naming the first bad file;
//! an untouched bundle passes.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use registry_token_cli::{bundle, canonical, source};
use registry_token_core::token::crypto::{sha256, RustCrypto};
use serde_json::{json, Value};

/// A fresh copy of the good bundle `good` named `name`.
fn copy(bed: &Bed, good: &Path, name: &str) -> PathBuf {
    let dir = bed.path(name);
    copy_bundle(good, &dir);
    assert_eq!(files(&dir), files(good));
    dir
}

fn read_manifest(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Writes `manifest` canonically and signs it with the bed's real key, as an attacker who
/// holds the key (or a bug) would: the checks behind the signature must still hold.
fn resign(bed: &Bed, dir: &Path, manifest: &Value) {
    let loaded = source::load_text(&bed.config.to_string(), "bed", None, &[]).unwrap();
    let bytes = canonical::to_string(manifest).into_bytes();
    let jws = bundle::sign_detached(&bytes, &loaded.config, &RustCrypto).unwrap();
    fs::write(dir.join("manifest.json"), &bytes).unwrap();
    fs::write(dir.join("manifest.jws"), jws).unwrap();
}

fn flip(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    fs::write(path, b).unwrap();
}

fn verify_jwks(dir: &Path, jwks: &Path, at: &str) -> std::process::Output {
    run(
        &[
            "verify-bundle",
            dir.to_str().unwrap(),
            "--jwks",
            jwks.to_str().unwrap(),
            "--at",
            at,
        ],
        &[],
    )
}

#[test]
fn every_kind_of_tampering_fails_naming_the_file() {
    let bed = Bed::new(Kind::Rsa);
    let good = bed.good_bundle("good");
    assert_ok(&bed.verify(&good));

    // A byte of the manifest changed (the subject).
    let d = copy(&bed, &good, "t-manifest");
    let text = fs::read_to_string(d.join("manifest.json")).unwrap();
    fs::write(
        d.join("manifest.json"),
        text.replace("mirror-eu-1", "mirror-eu-9"),
    )
    .unwrap();
    assert_fails(&bed.verify(&d), &["manifest.json", "does not verify"]);

    // Whitespace only: still another byte string.
    let d = copy(&bed, &good, "t-manifest-ws");
    let mut b = fs::read(d.join("manifest.json")).unwrap();
    b.push(b'\n');
    fs::write(d.join("manifest.json"), b).unwrap();
    assert_fails(&bed.verify(&d), &["manifest.json", "does not verify"]);

    // manifest.jws: a signature byte, and a header changed.
    let d = copy(&bed, &good, "t-jws-sig");
    let len = fs::read(d.join("manifest.jws")).unwrap().len();
    flip(&d.join("manifest.jws"), len - 20);
    assert_fails(&bed.verify(&d), &["manifest.jws", "does not verify"]);
    let d = copy(&bed, &good, "t-jws-header");
    flip(&d.join("manifest.jws"), 3);
    assert_fails(&bed.verify(&d), &["manifest.jws"]);
    let d = copy(&bed, &good, "t-jws-attached");
    let jws = fs::read_to_string(d.join("manifest.jws")).unwrap();
    let (h, s) = jws.split_once("..").unwrap();
    fs::write(d.join("manifest.jws"), format!("{h}.e30.{s}")).unwrap();
    assert_fails(&bed.verify(&d), &["manifest.jws", "detached"]);
    let d = copy(&bed, &good, "t-jws-newline");
    let mut b = fs::read(d.join("manifest.jws")).unwrap();
    b.push(b'\n');
    fs::write(d.join("manifest.jws"), b).unwrap();
    assert_fails(&bed.verify(&d), &["manifest.jws"]);
    let d = copy(&bed, &good, "t-jws-missing");
    fs::remove_file(d.join("manifest.jws")).unwrap();
    assert_fails(&bed.verify(&d), &["manifest.jws: missing"]);

    // A token file changed (a byte of its claims).
    let d = copy(&bed, &good, "t-token");
    flip(&d.join("tokens/base.jwt"), 120);
    assert_fails(&bed.verify(&d), &["tokens/base.jwt", "SHA-256"]);

    // A token missing.
    let d = copy(&bed, &good, "t-missing");
    fs::remove_file(d.join("tokens/tools.jwt")).unwrap();
    assert_fails(&bed.verify(&d), &["tokens/tools.jwt: missing"]);

    // An extra token, and a renamed one.
    let d = copy(&bed, &good, "t-extra");
    fs::copy(d.join("tokens/base.jwt"), d.join("tokens/extra.jwt")).unwrap();
    assert_fails(&bed.verify(&d), &["tokens/extra.jwt", "not listed"]);
    let d = copy(&bed, &good, "t-renamed");
    fs::rename(d.join("tokens/tools.jwt"), d.join("tokens/tools2.jwt")).unwrap();
    assert_fails(&bed.verify(&d), &["tokens/tools.jwt: missing"]);
    let d = copy(&bed, &good, "t-stray");
    fs::write(d.join("README"), b"hi").unwrap();
    assert_fails(&bed.verify(&d), &["README", "not part of the bundle"]);

    // Behind a valid manifest signature: a digest that does not match its file.
    let d = copy(&bed, &good, "t-digest");
    let mut m = read_manifest(&d);
    m["tokens"][0]["sha256"] = json!(bundle::hex(&sha256(b"something else")));
    resign(&bed, &d, &m);
    assert_fails(&bed.verify(&d), &["tokens/base.jwt", "SHA-256"]);

    // Behind a valid manifest signature and digest: another genuine token in its place.
    let d = copy(&bed, &good, "t-swapped");
    fs::copy(d.join("tokens/tools.jwt"), d.join("tokens/base.jwt")).unwrap();
    let mut m = read_manifest(&d);
    m["tokens"][0]["sha256"] = json!(bundle::hex(&sha256(
        &fs::read(d.join("tokens/base.jwt")).unwrap()
    )));
    resign(&bed, &d, &m);
    assert_fails(
        &bed.verify(&d),
        &["tokens/base.jwt", "claim jti does not match"],
    );

    // Behind a valid manifest signature: access widened in the manifest only.
    let d = copy(&bed, &good, "t-access");
    let mut m = read_manifest(&d);
    m["tokens"][0]["access"][0]["actions"] = json!(["pull", "push"]);
    resign(&bed, &d, &m);
    assert_fails(
        &bed.verify(&d),
        &["tokens/base.jwt", "claim access does not match"],
    );

    // A token signed by another key, with a valid manifest and digest.
    let other = Bed::new(Kind::Rsa);
    let foreign = other.good_bundle("foreign");
    let d = copy(&bed, &good, "t-foreign");
    fs::copy(foreign.join("tokens/base.jwt"), d.join("tokens/base.jwt")).unwrap();
    let mut m = read_manifest(&d);
    m["tokens"][0]["sha256"] = json!(bundle::hex(&sha256(
        &fs::read(d.join("tokens/base.jwt")).unwrap()
    )));
    resign(&bed, &d, &m);
    assert_fails(&bed.verify(&d), &["tokens/base.jwt", "kid"]);

    // A non-canonical manifest, even signed.
    let d = copy(&bed, &good, "t-noncanonical");
    let m = read_manifest(&d);
    let loaded = source::load_text(&bed.config.to_string(), "bed", None, &[]).unwrap();
    let pretty = serde_json::to_vec_pretty(&m).unwrap();
    let jws = bundle::sign_detached(&pretty, &loaded.config, &RustCrypto).unwrap();
    fs::write(d.join("manifest.json"), &pretty).unwrap();
    fs::write(d.join("manifest.jws"), jws).unwrap();
    assert_fails(&bed.verify(&d), &["manifest.json", "not canonical"]);

    // The untouched bundle still verifies.
    assert_ok(&bed.verify(&good));
}

#[test]
fn wrong_keys_and_times_fail() {
    let bed = Bed::new(Kind::Rsa);
    let good = bed.good_bundle("good");
    // Another key entirely: its kid is unknown.
    let other = Bed::new(Kind::Ec);
    let jwks = other.jwks_file();
    assert_fails(
        &verify_jwks(&good, &jwks, AT),
        &["manifest.jws", "not among the trusted keys"],
    );
    // Another key under our kid: the signature does not verify.
    let ours: Value = serde_json::from_slice(&fs::read(bed.jwks_file()).unwrap()).unwrap();
    let mut impostor: Value = jwks_of(&key(bed.dir.path(), "impostor", Kind::Rsa));
    impostor["keys"][0]["kid"] = ours["keys"][0]["kid"].clone();
    let p = bed.path("impostor.jwks.json");
    fs::write(&p, impostor.to_string()).unwrap();
    assert_fails(
        &verify_jwks(&good, &p, AT),
        &["manifest.json", "does not verify"],
    );
    // A JWKS with a private key is refused.
    let mut private = ours.clone();
    private["keys"][0]["d"] = json!("AQAB");
    fs::write(&p, private.to_string()).unwrap();
    assert_fails(&verify_jwks(&good, &p, AT), &["--jwks"]);
    // Times: before the window, after it, and now (2099 is ahead).
    let ours_path = bed.jwks_file();
    assert_fails(
        &verify_jwks(&good, &ours_path, "2098-12-31T23:59:59Z"),
        &["tokens/base.jwt", "not valid before"],
    );
    assert_fails(
        &verify_jwks(&good, &ours_path, "2099-01-20T00:00:00Z"),
        &["tokens/base.jwt", "expired"],
    );
    assert_ok(&verify_jwks(&good, &ours_path, "2099-01-19T23:59:59Z"));
    // --config gives the same keys.
    let o = run(
        &[
            "verify-bundle",
            good.to_str().unwrap(),
            "--config",
            bed.config_path().to_str().unwrap(),
            "--at",
            AT,
        ],
        &[],
    );
    assert_ok(&o);
    // No trust anchor at all is a usage error of its own.
    let o = run(&["verify-bundle", good.to_str().unwrap()], &[]);
    assert_fails(&o, &["--jwks FILE or --config FILE"]);
    let o = run(
        &[
            "verify-bundle",
            bed.path("nowhere").to_str().unwrap(),
            "--jwks",
            ours_path.to_str().unwrap(),
        ],
        &[],
    );
    assert_fails(&o, &["not a directory"]);
}

#[test]
fn published_keys_verify_a_bundle_of_the_previous_key() {
    // Rotation: the gateway moves to a new key and publishes the old one; bundles signed
    // with the old key still verify against `registry-token jwks` of the new configuration.
    let mut bed = Bed::new(Kind::Rsa);
    let good = bed.good_bundle("old");
    let old_public = registry_token_core::token::keys::PrivateKey::from_pem(&bed.signing_pem)
        .unwrap()
        .public()
        .clone();
    let old_kid = old_public.thumbprint().to_string();
    let new_pem = key(bed.dir.path(), "new", Kind::Rsa);
    openssl(
        bed.dir.path(),
        &[
            "pkey",
            "-in",
            "signing.pem",
            "-pubout",
            "-out",
            "old.pub.pem",
        ],
    );
    let old_pub_pem = fs::read_to_string(bed.path("old.pub.pem")).unwrap();
    bed.config["signing"]["keyPem"] = json!(new_pem);
    bed.config["signing"]["publishedKeys"] = json!([{"pem": old_pub_pem}]);
    bed.write_config();
    let jwks: Value = serde_json::from_slice(&fs::read(bed.jwks_file()).unwrap()).unwrap();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    assert_eq!(jwks["keys"][1]["kid"], json!(old_kid));
    assert_ok(&bed.verify(&good));
}
