//! Bad configuration: exit status 2 and one line on standard error.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_registry-token-ledger");

fn run(args: &[&str], secret: Option<&str>) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("LEDGER_INGEST_SECRET")
        .env_remove("LEDGER_FEED_SECRET")
        .env_remove("LEDGER_ISSUER")
        .env_remove("LEDGER_JWKS_FILE")
        .env_remove("LEDGER_JWKS_URL");
    if let Some(s) = secret {
        cmd.env("LEDGER_INGEST_SECRET", s);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, "{\"keys\": []}").unwrap();
    let jwks = jwks.to_str().unwrap();
    let db = format!("sqlite://{}", dir.path().join("x.db").display());
    let good = "0123456789abcdef0123456789abcdef";
    let base = ["--issuer", "https://idp", "--database", db.as_str()];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let cases: Vec<(Vec<String>, Option<&str>, &str, i32)> = vec![
        (
            with(&["--jwks-file", jwks]),
            None,
            "LEDGER_INGEST_SECRET",
            2,
        ),
        (
            with(&["--jwks-file", jwks]),
            Some("short"),
            "at least 32",
            2,
        ),
        (with(&[]), Some(good), "--jwks-file or --jwks-url", 2),
        (
            with(&["--jwks-file", jwks, "--listen", "nowhere"]),
            Some(good),
            "--listen",
            2,
        ),
        (
            with(&["--jwks-file", jwks, "--bogus"]),
            Some(good),
            "--bogus",
            2,
        ),
        (
            with(&["--jwks-url", "ftp://x"]),
            Some(good),
            "--jwks-url",
            2,
        ),
        (
            vec![
                "--jwks-file".into(),
                jwks.into(),
                "--database".into(),
                "mysql://x".into(),
                "--issuer".into(),
                "i".into(),
            ],
            Some(good),
            "--database",
            2,
        ),
        // Valid flags, but the JWKS holds no key: fails at start.
        (
            with(&["--jwks-file", jwks]),
            Some(good),
            "no RSA or P-256",
            1,
        ),
        (
            with(&["--jwks-file", "/nonexistent/jwks.json"]),
            Some(good),
            "/nonexistent/jwks.json",
            1,
        ),
    ];
    for (args, secret, want, code) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, stderr) = run(&args, secret);
        assert_eq!(status, code, "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line, got {stderr:?}");
        assert!(lines[0].starts_with("registry-token-ledger: "), "{stderr}");
        assert!(
            lines[0].contains(want),
            "{args:?}: {stderr} should name {want}"
        );
    }
}
