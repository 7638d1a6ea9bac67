//! PKCS#12 decoding against files that the `openssl` CLI (OpenSSL 3) writes at run time.
//!
//! No key or PFX file is stored in the repository: keys are generated once per run, and
//! every test writes them, its certificates and PFX files into a temporary directory. The
//! `-legacy` cases need OpenSSL's legacy provider; without it they fail (never skip) and
//! say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::common;
use registry_token_core::token::keys::pfx::{self, PfxError, MAX_PFX_BYTES};
use registry_token_core::token::keys::{certificate_spki, PrivateKey, PublicKey};
use registry_token_core::wire::der::{self, tag};

// ---- openssl helpers ----------------------------------------------------------------------

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "registry-token-pfx-{}-{name}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.0.join(file)).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `openssl args…` in `dir`; its stdout. Fails the test, with openssl's stderr, if
/// openssl is missing or fails.
fn openssl(dir: &TempDir, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the openssl CLI (OpenSSL 3 is required): {e}"));
    if !out.status.success() {
        let hint = if args.contains(&"-legacy") {
            "\nhint: `openssl pkcs12 -export -legacy` needs OpenSSL 3's legacy provider \
             (legacy.so in the OpenSSL modules directory); these tests do not skip without it"
        } else {
            ""
        };
        panic!(
            "openssl {} failed ({}):\n{}{hint}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.stdout
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KeyType {
    Rsa2048,
    P256,
}

/// Write `<name>.key` (PEM PKCS#8) into `dir`; its DER PKCS#8 as `openssl pkcs8 -topk8`
/// writes it. Each name and type is one `openssl genpkey` key, generated once per run (RSA
/// generation is the slow part) and written into every directory that asks for it.
fn gen_key(dir: &TempDir, name: &str, kind: KeyType) -> Vec<u8> {
    static KEYS: Mutex<BTreeMap<(String, KeyType), Vec<u8>>> = Mutex::new(BTreeMap::new());
    let key = format!("{name}.key");
    let pem = {
        let mut keys = KEYS.lock().unwrap_or_else(PoisonError::into_inner);
        keys.entry((name.to_owned(), kind))
            .or_insert_with(|| {
                let algorithm: &[&str] = match kind {
                    KeyType::Rsa2048 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                    KeyType::P256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                };
                let mut args = vec!["genpkey"];
                args.extend_from_slice(algorithm);
                openssl(dir, &args)
            })
            .clone()
    };
    std::fs::write(dir.path().join(&key), pem).unwrap();
    openssl(
        dir,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", &key, "-outform", "DER",
        ],
    )
}

/// `<name>.crt`, self-signed with `<name>.key`, or signed by `<ca>.crt`/`<ca>.key`; its DER.
fn gen_cert(dir: &TempDir, name: &str, ca: Option<&str>) -> Vec<u8> {
    let (key, crt, subject) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN={name}"),
    );
    match ca {
        None => {
            openssl(
                dir,
                &[
                    "req", "-x509", "-new", "-key", &key, "-subj", &subject, "-days", "2", "-out",
                    &crt,
                ],
            );
        }
        Some(ca) => {
            let csr = format!("{name}.csr");
            openssl(
                dir,
                &["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &format!("{ca}.crt"),
                    "-CAkey",
                    &format!("{ca}.key"),
                    "-set_serial",
                    "2",
                    "-days",
                    "2",
                    "-out",
                    &crt,
                ],
            );
        }
    }
    openssl(dir, &["x509", "-in", &crt, "-outform", "DER"])
}

/// `openssl pkcs12 -export <args> -passout pass:<password>`; the file's bytes.
fn export(dir: &TempDir, args: &[&str], password: &str) -> Vec<u8> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let out = format!("out-{}.pfx", COUNTER.fetch_add(1, Ordering::Relaxed));
    let pass = format!("pass:{password}");
    let mut all = vec!["pkcs12", "-export"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-passout", &pass, "-out", &out]);
    openssl(dir, &all);
    dir.read(&out)
}

const MODES: [(&str, &[&str]); 2] = [("default", &[]), ("legacy", &["-legacy"])];
const PASSWORDS: [&str; 3] = ["s3cret", "", "pässwörd €"];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A DER OID TLV from its contents.
fn oid_tlv(contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    der::write_tlv(tag::OID, contents, &mut out);
    out
}

const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
const PBE_SHA1_3DES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03];
const PBE_SHA1_RC2_40: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x06];
const KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x01,
];
const SHROUDED_KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
];

/// The decoded key is byte-identical to openssl's PKCS#8 and usable as the signing key;
/// the certificates are the originals, leaf first.
fn check(decoded: &pfx::Pfx, pkcs8: &[u8], certs: &[&[u8]], what: &str) {
    assert_eq!(
        decoded.private_key_pkcs8_der.as_slice(),
        pkcs8,
        "{what}: PKCS#8 differs from `openssl pkcs8 -topk8 -nocrypt -outform DER`"
    );
    let key = PrivateKey::from_pkcs8_der(&decoded.private_key_pkcs8_der)
        .unwrap_or_else(|e| panic!("{what}: PrivateKey refuses the decoded key: {e}"));
    let got: Vec<&[u8]> = decoded.certificates_der.iter().map(Vec::as_slice).collect();
    assert_eq!(got, certs, "{what}: certificates differ");
    if let Some(leaf) = certs.first() {
        let spki = certificate_spki(leaf).unwrap();
        assert!(
            PublicKey::from_spki_der(&spki)
                .unwrap()
                .same_key(key.public()),
            "{what}: first certificate is not the key's"
        );
    }
}

// ---- Loading what openssl writes ------------------------------------------------------------

fn key_and_self_signed_cert(kind: KeyType) {
    let dir = TempDir::new(&format!("{kind:?}"));
    let pkcs8 = gen_key(&dir, "leaf", kind);
    let cert = gen_cert(&dir, "leaf", None);
    for (mode, flags) in MODES {
        for password in PASSWORDS {
            let mut args = vec!["-inkey", "leaf.key", "-in", "leaf.crt"];
            args.extend_from_slice(flags);
            let file = export(&dir, &args, password);
            // Make sure the file is what the case claims to test.
            let (key_alg, cert_alg) = match mode {
                "default" => (PBES2, PBES2),
                _ => (PBE_SHA1_3DES, PBE_SHA1_RC2_40),
            };
            assert!(contains(&file, &oid_tlv(SHROUDED_KEY_BAG)));
            assert!(contains(&file, &oid_tlv(key_alg)), "{mode}: key PBE");
            if mode == "legacy" {
                assert!(contains(&file, &oid_tlv(cert_alg)), "{mode}: cert PBE");
            }
            let what = format!("{kind:?} {mode} password {password:?}");
            let decoded = pfx::decode(&file, password)
                .unwrap_or_else(|e| panic!("{what}: decode failed: {e}"));
            check(&decoded, &pkcs8, &[&cert], &what);
        }
    }
}

#[test]
fn rsa_2048_default_and_legacy() {
    key_and_self_signed_cert(KeyType::Rsa2048);
}

#[test]
fn p256_default_and_legacy() {
    key_and_self_signed_cert(KeyType::P256);
}

#[test]
fn chain_leaf_first() {
    let dir = TempDir::new("chain");
    gen_key(&dir, "ca", KeyType::Rsa2048);
    let ca = gen_cert(&dir, "ca", None);
    let pkcs8 = gen_key(&dir, "leaf", KeyType::P256);
    let leaf = gen_cert(&dir, "leaf", Some("ca"));
    for (mode, flags) in MODES {
        let mut args = vec![
            "-inkey",
            "leaf.key",
            "-in",
            "leaf.crt",
            "-certfile",
            "ca.crt",
        ];
        args.extend_from_slice(flags);
        let file = export(&dir, &args, "chain");
        let decoded = pfx::decode(&file, "chain").unwrap();
        check(&decoded, &pkcs8, &[&leaf, &ca], &format!("chain {mode}"));
    }
    // openssl always writes the leaf first; the reordering itself:
    assert_eq!(
        pfx::order_leaf_first(&pkcs8, vec![ca.clone(), leaf.clone()]),
        vec![leaf.clone(), ca.clone()]
    );
    let ca_pkcs8 = openssl(
        &dir,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "ca.key", "-outform", "DER",
        ],
    );
    assert_eq!(
        pfx::order_leaf_first(&ca_pkcs8, vec![leaf.clone(), ca.clone()]),
        vec![ca.clone(), leaf.clone()]
    );
    // No certificate matches: file order is kept.
    let other = gen_key(&dir, "other", KeyType::P256);
    assert_eq!(
        pfx::order_leaf_first(&other, vec![ca.clone(), leaf.clone()]),
        vec![ca, leaf]
    );
}

#[test]
fn key_without_certificates() {
    let dir = TempDir::new("nocerts");
    let pkcs8 = gen_key(&dir, "k", KeyType::P256);
    for (mode, flags) in MODES {
        let mut args = vec!["-inkey", "k.key", "-nocerts"];
        args.extend_from_slice(flags);
        let file = export(&dir, &args, "pw");
        let decoded = pfx::decode(&file, "pw").unwrap();
        check(&decoded, &pkcs8, &[], &format!("nocerts {mode}"));
    }
}

#[test]
fn certificates_without_key_is_no_private_key() {
    let dir = TempDir::new("nokeys");
    gen_key(&dir, "k", KeyType::P256);
    gen_cert(&dir, "k", None);
    for (mode, flags) in MODES {
        let mut args = vec!["-in", "k.crt", "-nokeys"];
        args.extend_from_slice(flags);
        let file = export(&dir, &args, "pw");
        assert_eq!(
            pfx::decode(&file, "pw").unwrap_err(),
            PfxError::NoPrivateKey,
            "{mode}"
        );
        assert_eq!(
            pfx::decode(&file, "nope").unwrap_err(),
            PfxError::WrongPassword,
            "{mode}: the MAC is checked first"
        );
    }
}

#[test]
fn plain_key_bag_and_unencrypted_certificates() {
    let dir = TempDir::new("plain");
    let pkcs8 = gen_key(&dir, "k", KeyType::Rsa2048);
    let cert = gen_cert(&dir, "k", None);
    let file = export(
        &dir,
        &[
            "-inkey", "k.key", "-in", "k.crt", "-keypbe", "NONE", "-certpbe", "NONE",
        ],
        "pw",
    );
    assert!(contains(&file, &oid_tlv(KEY_BAG)), "not a plain keyBag");
    assert!(!contains(&file, &oid_tlv(SHROUDED_KEY_BAG)));
    let decoded = pfx::decode(&file, "pw").unwrap();
    check(&decoded, &pkcs8, &[&cert], "plain key bag");
    assert_eq!(
        pfx::decode(&file, "wrong").unwrap_err(),
        PfxError::WrongPassword
    );
}

#[test]
fn other_openssl_algorithm_choices() {
    let dir = TempDir::new("algs");
    let pkcs8 = gen_key(&dir, "k", KeyType::P256);
    let cert = gen_cert(&dir, "k", None);
    let cases: &[&[&str]] = &[
        &[
            "-keypbe",
            "AES-128-CBC",
            "-certpbe",
            "DES-EDE3-CBC",
            "-macalg",
            "sha1",
        ],
        &[
            "-keypbe",
            "AES-256-CBC",
            "-certpbe",
            "AES-128-CBC",
            "-macalg",
            "sha256",
        ],
        &[
            "-legacy",
            "-keypbe",
            "PBE-SHA1-2DES",
            "-certpbe",
            "PBE-SHA1-RC2-128",
        ],
        &["-legacy", "-macalg", "sha256", "-iter", "3000"],
    ];
    for extra in cases {
        let mut args = vec!["-inkey", "k.key", "-in", "k.crt"];
        args.extend_from_slice(extra);
        let file = export(&dir, &args, "pw");
        let what = extra.join(" ");
        let decoded =
            pfx::decode(&file, "pw").unwrap_or_else(|e| panic!("{what}: decode failed: {e}"));
        check(&decoded, &pkcs8, &[&cert], &what);
    }
}

#[test]
fn wrong_password() {
    let dir = TempDir::new("wrong");
    gen_key(&dir, "k", KeyType::P256);
    gen_cert(&dir, "k", None);
    for (mode, flags) in MODES {
        for (set, tried) in [("right", "wrong"), ("right", ""), ("", "x"), ("x", "X")] {
            let mut args = vec!["-inkey", "k.key", "-in", "k.crt"];
            args.extend_from_slice(flags);
            let file = export(&dir, &args, set);
            let err = pfx::decode(&file, tried).unwrap_err();
            assert_eq!(err, PfxError::WrongPassword, "{mode} {set:?} / {tried:?}");
            let msg = err.to_string();
            assert!(msg.contains("wrong password"), "{msg}");
            if !set.is_empty() {
                assert!(!msg.contains(set), "{msg}");
            }
        }
    }
}

// ---- Hostile and broken input ------------------------------------------------------------

/// A small deterministic generator (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[test]
fn truncated_and_garbled_never_panic() {
    let dir = TempDir::new("garbled");
    gen_key(&dir, "k", KeyType::P256);
    gen_cert(&dir, "k", None);
    let mut rng = XorShift(0x5eed);
    for (mode, flags) in MODES {
        let mut args = vec!["-inkey", "k.key", "-in", "k.crt"];
        args.extend_from_slice(flags);
        let file = export(&dir, &args, "pw");
        pfx::decode(&file, "pw").unwrap();
        // Every proper prefix: the outer length no longer fits.
        for len in 0..file.len() {
            let err = pfx::decode(&file[..len], "pw").unwrap_err();
            assert!(
                matches!(err, PfxError::Malformed(_)),
                "{mode} prefix {len}: {err:?}"
            );
        }
        // Trailing garbage.
        let mut longer = file.clone();
        longer.push(0);
        assert!(matches!(
            pfx::decode(&longer, "pw"),
            Err(PfxError::Malformed(_))
        ));
        // One flipped byte anywhere: an error (Malformed where the structure breaks,
        // WrongPassword where the MAC catches it), never a panic and never success.
        for pos in 0..file.len() {
            let mut bad = file.clone();
            bad[pos] ^= (rng.next() as u8) | 1;
            let result = pfx::decode(&bad, "pw");
            assert!(result.is_err(), "{mode}: flip at {pos} accepted");
        }
    }
    // Random junk.
    for i in 0..2000 {
        let len = (rng.next() % 300) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if i % 2 == 0 && !junk.is_empty() {
            junk[0] = 0x30; // look like a SEQUENCE
        }
        let err = pfx::decode(&junk, "pw").unwrap_err();
        assert!(matches!(err, PfxError::Malformed(_)), "{err:?}");
    }
}

#[test]
fn oversized_input_is_too_large() {
    let mut big = vec![0x30, 0x83, 0x01, 0x00, 0x01];
    big.resize(MAX_PFX_BYTES + 1, 0);
    assert_eq!(pfx::decode(&big, "").unwrap_err(), PfxError::TooLarge);
}

/// A PFX with an empty AuthenticatedSafe and the given MacData contents.
fn pfx_with_mac(mac_alg: &[u8], iterations: &[u8]) -> Vec<u8> {
    let mut auth_safe = Vec::new();
    der::write_tlv(tag::SEQUENCE, &[], &mut auth_safe);
    let mut octets = Vec::new();
    der::write_tlv(tag::OCTET_STRING, &auth_safe, &mut octets);
    let mut content_info = oid_tlv(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01]);
    der::write_tlv(tag::CONTEXT_0, &octets, &mut content_info);

    let mut alg = oid_tlv(mac_alg);
    der::write_tlv(tag::NULL, &[], &mut alg);
    let mut digest_info = Vec::new();
    der::write_tlv(tag::SEQUENCE, &alg, &mut digest_info);
    der::write_tlv(tag::OCTET_STRING, &[0; 32], &mut digest_info);
    let mut mac_data = Vec::new();
    der::write_tlv(tag::SEQUENCE, &digest_info, &mut mac_data);
    der::write_tlv(tag::OCTET_STRING, &[1; 8], &mut mac_data);
    der::write_unsigned_integer(iterations, &mut mac_data);

    let mut body = Vec::new();
    der::write_unsigned_integer(&[3], &mut body);
    der::write_tlv(tag::SEQUENCE, &content_info, &mut body);
    der::write_tlv(tag::SEQUENCE, &mac_data, &mut body);
    der::sequence(&body)
}

const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

#[test]
fn iteration_counts_are_bounded() {
    // 20,000,000 MAC iterations: refused before any hashing.
    let start = std::time::Instant::now();
    let file = pfx_with_mac(SHA256, &20_000_000u32.to_be_bytes());
    assert_eq!(pfx::decode(&file, "pw").unwrap_err(), PfxError::TooLarge);
    let huge = pfx_with_mac(SHA256, &[0x7f; 12]);
    assert_eq!(pfx::decode(&huge, "pw").unwrap_err(), PfxError::TooLarge);
    assert!(start.elapsed().as_secs() < 1);
    let zero = pfx_with_mac(SHA256, &[0]);
    assert!(matches!(
        pfx::decode(&zero, "pw"),
        Err(PfxError::Malformed(_))
    ));
    // A sane count runs the MAC (which fails on the zero MAC value).
    let ok = pfx_with_mac(SHA256, &[0x08, 0x00]);
    assert_eq!(pfx::decode(&ok, "pw").unwrap_err(), PfxError::WrongPassword);
}

#[test]
fn unsupported_mac_algorithm_names_its_oid() {
    let md5 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05];
    let err = pfx::decode(&pfx_with_mac(&md5, &[1]), "pw").unwrap_err();
    assert_eq!(
        err,
        PfxError::UnsupportedAlgorithm("1.2.840.113549.2.5".into())
    );
    assert!(err.to_string().contains("1.2.840.113549.2.5"));
}

#[test]
fn algorithms_left_out_are_unsupported_not_malformed() {
    let dir = TempDir::new("left-out");
    gen_key(&dir, "k", KeyType::P256);
    let cases: &[(&[&str], &str)] = &[
        (&["-macalg", "sha512"], "2.16.840.1.101.3.4.2.3"),
        (&["-keypbe", "AES-192-CBC"], "2.16.840.1.101.3.4.1.22"),
    ];
    for (extra, oid) in cases {
        let mut args = vec!["-inkey", "k.key", "-nocerts"];
        args.extend_from_slice(extra);
        let file = export(&dir, &args, "pw");
        assert_eq!(
            pfx::decode(&file, "pw").unwrap_err(),
            PfxError::UnsupportedAlgorithm((*oid).into()),
            "{extra:?}"
        );
    }
}

#[test]
fn file_without_mac_is_refused() {
    let dir = TempDir::new("nomac");
    gen_key(&dir, "k", KeyType::P256);
    let file = export(&dir, &["-inkey", "k.key", "-nocerts", "-nomac"], "pw");
    assert!(matches!(
        pfx::decode(&file, "pw"),
        Err(PfxError::Malformed(_))
    ));
}

#[test]
fn debug_and_errors_hide_secrets() {
    let dir = TempDir::new("debug");
    gen_key(&dir, "k", KeyType::P256);
    let file = export(&dir, &["-inkey", "k.key", "-nocerts"], "hunter2");
    let decoded = pfx::decode(&file, "hunter2").unwrap();
    let debug = format!("{decoded:?}");
    assert!(debug.contains("redacted"), "{debug}");
    assert!(!debug.contains(&format!("{:?}", &decoded.private_key_pkcs8_der[..8])));
    for err in [
        PfxError::Malformed("x"),
        PfxError::WrongPassword,
        PfxError::NoPrivateKey,
        PfxError::UnsupportedAlgorithm("1.2.3".into()),
        PfxError::TooLarge,
    ] {
        assert!(!err.to_string().contains("hunter2"));
        assert!(err.to_string().contains("PKCS#12"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------
// signing.keyPfx in the configuration.
// ---------------------------------------------------------------------------------------

fn pfx_config(pfx: &[u8], password: Option<&str>, algorithm: &str) -> serde_json::Value {
    use base64::Engine;
    let mut c = common::base_config();
    let signing = c["signing"].as_object_mut().unwrap();
    signing.remove("keyPem");
    signing.insert(
        "keyPfx".into(),
        base64::engine::general_purpose::STANDARD.encode(pfx).into(),
    );
    if let Some(p) = password {
        signing.insert("keyPfxPassword".into(), p.into());
    }
    signing.insert("algorithm".into(), algorithm.into());
    c
}

/// Both flavours (OpenSSL 3 default and -legacy), RSA and P-256: the key signs tokens that
/// verify with the certificate's key, and the certificates become the `x5c` chain.
#[test]
fn key_pfx_configures_the_signing_key_and_its_chain() {
    use registry_token_core::config::Config;
    for (kind, alg) in [(KeyType::Rsa2048, "RS256"), (KeyType::P256, "ES256")] {
        let dir = TempDir::new(&format!("config-{kind:?}"));
        gen_key(&dir, "leaf", kind);
        let cert = gen_cert(&dir, "leaf", None);
        for (mode, flags) in MODES {
            let mut args = vec!["-inkey", "leaf.key", "-in", "leaf.crt"];
            args.extend_from_slice(flags);
            let pfx = export(&dir, &args, "s3cret");
            let config = Config::from_value(pfx_config(&pfx, Some("s3cret"), alg))
                .unwrap_or_else(|e| panic!("{alg} {mode}: {e}"));
            assert_eq!(config.signing.key.alg().name(), alg, "{mode}");
            let x5c = config
                .signing
                .x5c
                .clone()
                .expect("the PFX certificate as x5c");
            assert_eq!(x5c.len(), 1);
            use base64::Engine;
            assert_eq!(
                base64::engine::general_purpose::STANDARD
                    .decode(&x5c[0])
                    .unwrap(),
                cert,
                "{alg} {mode}"
            );
            let d = common::decide(
                &config,
                "service=registry.example&scope=repository:stella-ops/public/base:pull",
                &[(
                    "authorization",
                    &common::bearer(&common::optok(&common::default_claims())),
                )],
            );
            assert_eq!(d.status, 200, "{alg} {mode}: {}", d.body);
        }
    }
}

/// Refusals at configure time name the field, never the password or key.
#[test]
fn key_pfx_refusals_name_the_field() {
    use registry_token_core::config::Config;
    let dir = TempDir::new("config-refusals");
    gen_key(&dir, "leaf", KeyType::P256);
    gen_cert(&dir, "leaf", None);
    let pfx = export(
        &dir,
        &["-inkey", "leaf.key", "-in", "leaf.crt"],
        "right-password",
    );
    let refused = |v: serde_json::Value| match Config::from_value(v) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let e = refused(pfx_config(&pfx, Some("wrong-password"), "ES256"));
    assert!(e.contains("signing.keyPfxPassword"), "{e}");
    assert!(
        !e.contains("wrong-password") && !e.contains("right-password"),
        "{e}"
    );
    let e = refused(pfx_config(&pfx, Some("right-password"), "RS256"));
    assert!(e.contains("signing.algorithm"), "{e}");
    let nokey = export(&dir, &["-nokeys", "-in", "leaf.crt"], "right-password");
    let e = refused(pfx_config(&nokey, Some("right-password"), "ES256"));
    assert!(e.contains("signing.keyPfx"), "{e}");
    let e = refused(pfx_config(b"not a pfx at all", None, "ES256"));
    assert!(e.contains("signing.keyPfx"), "{e}");
    let mut both = pfx_config(&pfx, Some("right-password"), "ES256");
    both["signing"]["keyPem"] = common::base_config()["signing"]["keyPem"].clone();
    let e = refused(both);
    assert!(
        e.contains("signing.keyPfx") && e.contains("not both"),
        "{e}"
    );
}
