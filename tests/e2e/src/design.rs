//! docs/DESIGN.md against the workspace, as `filter/core/tests/core/docs.rs` keeps the
//! reasons table in step: the crates table names every workspace member with its path and
//! its dependencies on our own crates (as `cargo metadata` reports them), and the "where
//! each rule is tested" table names only paths that exist and every test module of the
//! workspace. Run by `make check` (`cargo test -p registry-token-e2e --lib`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::repo_root;

/// Folders whose `.rs` files holding a test are test modules the table must name.
const TEST_DIRS: &[&str] = &[
    "filter/core/tests/core",
    "filter/host/src/tests",
    "ledger/tests/ledger",
    "cli/tests/cli",
    "tests/e2e/suites",
];

fn design() -> String {
    let path = repo_root().join("docs/DESIGN.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The table rows between `<!-- NAME:begin` and `<!-- NAME:end -->`, as cells (the header
/// and separator rows left out).
fn table(doc: &str, name: &str) -> Vec<Vec<String>> {
    let begin = format!("<!-- {name}:begin");
    let end = format!("<!-- {name}:end -->");
    let start = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("no {begin} in DESIGN.md"));
    let stop = doc[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("no {end} in DESIGN.md"));
    doc[start..start + stop]
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The `code` spans of a cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// Each workspace member: name → (path from the root, our crates it depends on).
fn members() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let root = repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    let root = root.canonicalize().unwrap();
    packages
        .iter()
        .map(|p| {
            let manifest = Path::new(p["manifest_path"].as_str().unwrap());
            let dir = manifest.parent().unwrap().canonicalize().unwrap();
            let path = dir.strip_prefix(&root).unwrap().display().to_string();
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|n| ours.contains(n))
                .collect();
            (p["name"].as_str().unwrap().to_string(), (path, deps))
        })
        .collect()
}

#[test]
fn the_crates_table_is_the_workspace() {
    let doc = design();
    let mut listed = BTreeMap::new();
    for row in table(&doc, "crates") {
        assert!(row.len() >= 4, "a crates row has four cells: {row:?}");
        let name = code_spans(&row[0]).concat();
        let path = code_spans(&row[1]).concat();
        let deps: BTreeSet<String> = code_spans(&row[2]).into_iter().collect();
        assert!(
            listed.insert(name.clone(), (path, deps)).is_none(),
            "{name} listed twice"
        );
    }
    let actual = members();
    for (name, (path, deps)) in &actual {
        let Some((doc_path, doc_deps)) = listed.get(name) else {
            panic!("DESIGN.md's crates table misses the workspace member {name} ({path})");
        };
        assert_eq!(doc_path, path, "path of {name}");
        assert_eq!(doc_deps, deps, "our crates {name} depends on");
    }
    for name in listed.keys() {
        assert!(
            actual.contains_key(name),
            "DESIGN.md lists {name}, which is not a workspace member"
        );
    }
}

/// Every `.rs` file below `dir` (relative to the root) that holds a test.
fn test_modules(dir: &str, found: &mut Vec<String>) {
    let root = repo_root();
    let mut entries: Vec<_> = fs::read_dir(root.join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(&root).unwrap().display().to_string();
        if path.is_dir() {
            test_modules(&rel, found);
        } else if rel.ends_with(".rs") {
            let text = fs::read_to_string(&path).unwrap();
            let is_test = |l: &str| {
                let l = l.trim_start();
                l.starts_with("#[test]") || l.starts_with("#[tokio::test")
            };
            if text.lines().any(is_test) {
                found.push(rel);
            }
        }
    }
}

#[test]
fn the_test_table_names_existing_paths_and_every_test_module() {
    let doc = design();
    let mut named = BTreeSet::new();
    for row in table(&doc, "tests") {
        assert_eq!(row.len(), 3, "a tests row has three cells: {row:?}");
        for cell in &row[1..] {
            for span in code_spans(cell) {
                if span.contains('/') && !span.contains(' ') {
                    let path = repo_root().join(&span);
                    assert!(
                        path.exists(),
                        "DESIGN.md names {span}, which does not exist"
                    );
                    named.insert(span);
                }
            }
        }
    }
    let mut modules = Vec::new();
    for dir in TEST_DIRS {
        test_modules(dir, &mut modules);
    }
    assert!(modules.len() > 40, "test modules found: {modules:?}");
    let missing: Vec<&String> = modules
        .iter()
        .filter(|m| {
            !named
                .iter()
                .any(|n| *m == n || (n.ends_with('/') && m.starts_with(n.as_str())))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "DESIGN.md's \"where each rule is tested\" table misses {missing:?}"
    );
}
