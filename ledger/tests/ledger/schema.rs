//! The two migration dialects stay equivalent: same files, tables, columns and indexes.

use std::collections::BTreeMap;
use std::path::Path;

/// table -> columns, and index names, of one migration file.
fn shape(sql: &str) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut tables = BTreeMap::new();
    let mut indexes = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in sql.lines() {
        let line = line.split("--").next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some((name, cols)) = current.as_mut() {
            if line.starts_with(");") {
                tables.insert(name.clone(), std::mem::take(cols));
                current = None;
            } else {
                cols.push(words[0].trim_matches('"').to_string());
            }
            continue;
        }
        match words.as_slice() {
            ["CREATE", "TABLE", name, ..] => current = Some((name.to_string(), Vec::new())),
            ["ALTER", "TABLE", table, "ADD", "COLUMN", column, ..] => tables
                .entry(format!("{table} (added)"))
                .or_insert_with(Vec::new)
                .push(column.to_string()),
            ["CREATE", "INDEX", name, "ON", table, ..]
            | ["CREATE", "UNIQUE", "INDEX", name, "ON", table, ..] => indexes.push(format!(
                "{name} ON {table} {}",
                &line[line.find('(').unwrap()..]
            )),
            _ => {}
        }
    }
    indexes.sort();
    (tables, indexes)
}

#[test]
fn sqlite_and_postgres_migrations_match() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let list = |d: &str| {
        let mut v: Vec<String> = std::fs::read_dir(root.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let files = list("sqlite");
    assert!(!files.is_empty());
    assert_eq!(files, list("postgres"), "same migration files");
    // The issuances columns: created by 0001, added to by later migrations.
    let mut issuances: Vec<String> = Vec::new();
    for f in &files {
        let a = shape(&std::fs::read_to_string(root.join("sqlite").join(f)).unwrap());
        let b = shape(&std::fs::read_to_string(root.join("postgres").join(f)).unwrap());
        assert_eq!(a, b, "{f}: tables, columns and indexes");
        if f.starts_with("0001") {
            issuances.extend(a.0["issuances"].iter().cloned());
            assert!(a.0.contains_key("revocations") && a.0.contains_key("revocation_events"));
        }
        if let Some(added) = a.0.get("issuances (added)") {
            issuances.extend(added.iter().cloned());
        }
    }
    for c in registry_token_ledger::model::ISSUANCE_COLUMNS {
        assert!(issuances.contains(&c.to_string()), "issuances.{c}");
    }
    assert_eq!(
        issuances.len(),
        registry_token_ledger::model::ISSUANCE_COLUMNS.len(),
        "{issuances:?}"
    );
}
