//! The module map of docs/DESIGN.md, enforced: dependencies run one way,
//! `wire ← token ← sender, policy ← remote, guard ← config ← handler ← ledger`.
//!
//! Every source file under `src/` is read, its comments and literals dropped, and each
//! `crate::…` and `super::…` path (in `use` items and in code, tests included) resolved to
//! the top-level module it reaches. A module may use its own layer and the layers to its
//! left, never one to its right; `sender` and `policy` stand side by side and use neither
//! each other. `ledger` comes last: its record is built from the handler's audit record.
//! A doc link to a later layer (`[`crate::handler::Reason`]`) is not a use and is allowed.

use std::path::{Path, PathBuf};

/// The layers, left to right: a module may use the layers of a lower rank and its own.
const LAYERS: [(&str, u8); 9] = [
    ("wire", 0),
    ("token", 1),
    ("sender", 2),
    ("policy", 2),
    ("remote", 3),
    ("guard", 3),
    ("config", 4),
    ("handler", 5),
    ("ledger", 6),
];

fn rank(layer: &str) -> Option<u8> {
    LAYERS.iter().find(|(l, _)| *l == layer).map(|(_, r)| *r)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Rust source as identifiers, `::` and punctuation, each with its line; comments, string,
/// char and byte literals dropped, lifetimes kept as identifiers.
fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let (mut out, mut i, mut line) = (Vec::new(), 0, 1);
    // Skips a quoted literal whose opening quote is at `i`; returns the index after it.
    let skip_quoted = |mut i: usize, quote: char, line: &mut usize| {
        i += 1;
        while i < c.len() && c[i] != quote {
            if c[i] == '\\' {
                i += 1;
            }
            if at(i) == '\n' {
                *line += 1;
            }
            i += 1;
        }
        i + 1
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_quoted(i, '"', &mut line);
        } else if ch == '\'' {
            if at(i + 1) == '\\' || at(i + 2) == '\'' {
                i = skip_quoted(i, '\'', &mut line);
            } else {
                i += 1; // a lifetime: its name follows as an identifier
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let raw = matches!(word.as_str(), "r" | "br" | "cr");
            if raw && (at(i) == '"' || (at(i) == '#' && matches!(at(i + 1), '"' | '#'))) {
                // r"…", r#"…"#: ends at a quote followed by as many hashes.
                let hashes = c[i..].iter().take_while(|&&h| h == '#').count();
                i += hashes + 1;
                while i < c.len() {
                    if c[i] == '"' && c[i + 1..].iter().take(hashes).all(|&h| h == '#') {
                        i += 1 + hashes;
                        break;
                    }
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_quoted(i, '"', &mut line);
            } else if word == "b" && at(i) == '\'' {
                i = skip_quoted(i, '\'', &mut line);
            } else if word == "r" && at(i) == '#' {
                i += 1; // r#ident: the identifier follows
            } else {
                out.push((Tok::Ident(word), line));
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// The module path of a source file relative to `src/`: `wire/query.rs` is `wire::query`,
/// `token/keys/mod.rs` is `token::keys`, `lib.rs` the crate root.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && stem != "lib" {
            parts.push(stem.to_owned());
        }
    }
    parts
}

/// Every top-level module that the file at `relative` (under `src/`) reaches through a
/// `crate::` or `super::` path, with the line.
fn uses(relative: &Path, src: &str) -> Vec<(String, usize)> {
    let file_path = module_path(relative);
    let toks = tokens(src);
    let tok = |i: usize| toks.get(i).map(|(t, _)| t);
    let ident = |i: usize, s: &str| matches!(tok(i), Some(Tok::Ident(w)) if w == s);
    let sep = |i: usize| tok(i) == Some(&Tok::PathSep);
    // Inline modules (`mod tests { … }`) extend the file's module path.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut found = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let line = toks[i].1;
        match &toks[i].0 {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Punct('{'))) = (tok(i + 1), tok(i + 2)) {
                    inline.push((name.clone(), depth + 1));
                }
            }
            Tok::Ident(w)
                if (w == "crate" || w == "super") && sep(i + 1) && !sep(i.wrapping_sub(1)) =>
            {
                let mut base: Vec<String> = if w == "crate" {
                    Vec::new()
                } else {
                    let mut here = file_path.clone();
                    here.extend(inline.iter().map(|(n, _)| n.clone()));
                    here.pop();
                    here
                };
                let mut j = i + 2;
                while ident(j, "super") && sep(j + 1) {
                    base.pop();
                    j += 2;
                }
                if let Some(first) = base.first() {
                    found.push((first.clone(), line));
                } else if let Some(Tok::Ident(name)) = tok(j) {
                    found.push((name.clone(), line));
                } else if tok(j) == Some(&Tok::Punct('{')) {
                    // `crate::{a::x, b}`: the first name of each group.
                    let (mut nest, mut k, mut at_start) = (0usize, j, true);
                    while let Some(t) = tok(k) {
                        match t {
                            Tok::Punct('{') => {
                                nest += 1;
                                at_start = nest == 1;
                            }
                            Tok::Punct('}') => {
                                nest -= 1;
                                if nest == 0 {
                                    break;
                                }
                            }
                            Tok::Punct(',') => at_start = nest == 1,
                            Tok::Ident(name) if at_start => {
                                if name != "self" {
                                    found.push((name.clone(), toks[k].1));
                                }
                                at_start = false;
                            }
                            _ => at_start = false,
                        }
                        k += 1;
                    }
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Each use of a layer to the right (or of a side-by-side layer), as `file:line: …`, and
/// each file outside every layer.
fn violations(relative: &Path, src: &str) -> Vec<String> {
    let path = module_path(relative);
    let Some(layer) = path.first() else {
        return Vec::new(); // lib.rs: the crate root declares every layer
    };
    let shown = relative.display();
    let Some(own) = rank(layer) else {
        return vec![format!("{shown}: module `{layer}` has no place in LAYERS")];
    };
    uses(relative, src)
        .into_iter()
        .filter_map(|(target, line)| {
            let ok = target == *layer || !matches!(rank(&target), Some(r) if r >= own);
            (!ok).then(|| format!("{shown}:{line}: `{layer}` uses `{target}`, to its right"))
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn dependencies_run_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 40, "only {} source files found", files.len());
    let mut seen: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        problems.extend(violations(relative, &text));
        if let Some(layer) = module_path(relative).first() {
            if !seen.contains(layer) {
                seen.push(layer.clone());
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dependencies run wire ← token ← sender, policy ← remote ← config ← handler ← ledger:\n{}",
        problems.join("\n")
    );
    for (layer, _) in LAYERS {
        assert!(
            seen.iter().any(|s| s == layer),
            "no source for layer {layer}"
        );
    }
}

#[test]
fn the_check_sees_every_form_of_use() {
    let bad = [
        ("wire/query.rs", "use crate::policy::scope::echo;"),
        (
            "token/mint.rs",
            "pub access: &'a [crate::policy::scope::Scope],",
        ),
        ("token/keys/mod.rs", "use super::super::handler::Reason;"),
        (
            "token/mod.rs",
            "mod tests { use super::super::config::Config; }",
        ),
        (
            "sender/dpop.rs",
            "use crate::{token::alg::Alg, policy::plan};",
        ),
        ("policy/scope.rs", "fn f() { crate::sender::dpop::check() }"),
        ("handler/mod.rs", "use crate::ledger;"),
        (
            "wire/b64.rs",
            "let s = \"x\"; let t = crate::token::alg::Alg::Rs256;",
        ),
        ("newlayer/mod.rs", "use crate::wire;"),
    ];
    for (file, src) in bad {
        assert_eq!(violations(Path::new(file), src).len(), 1, "{file}: {src}");
    }
    let good = [
        (
            "handler/mod.rs",
            "use crate::{wire::b64, token::alg, config::Config};",
        ),
        ("token/crypto/rust.rs", "use super::{check_fit, Crypto};"),
        (
            "wire/query.rs",
            "mod tests { use super::*; use crate::wire::testrng::Rng; }",
        ),
        (
            "wire/query.rs",
            "/// [`crate::policy::scope::parse_scopes`] parses them.\n",
        ),
        (
            "wire/query.rs",
            "// crate::handler\n/* crate::handler /* nested */ */",
        ),
        (
            "wire/query.rs",
            "let s = \"crate::handler\"; let r = r#\"crate::handler\"#;",
        ),
        (
            "wire/query.rs",
            "let q = '\"'; let b = b'\\''; fn f<'a>(x: &'a str) {}",
        ),
        (
            "wire/query.rs",
            "pub(crate) fn f() -> std::fmt::Result { Ok(()) }",
        ),
        ("ledger.rs", "use crate::handler::Audit;"),
        ("lib.rs", "pub mod handler;"),
    ];
    for (file, src) in good {
        assert_eq!(
            violations(Path::new(file), src),
            Vec::<String>::new(),
            "{file}: {src}"
        );
    }
}
