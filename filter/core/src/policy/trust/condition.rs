//! A claim condition: the claim must be a string equal to one of the alternatives, where
//! an alternative may hold `*` (a non-empty run of characters but `/` and `:`) and `**`
//! (any non-empty run): `repository_owner: acme`, `ref: refs/heads/release/*`,
//! `sub: system:serviceaccount:ci:*`. Matching is a bounded dynamic programme (no
//! backtracking): a hostile value costs at most `MAX_VALUE_BYTES` × the pattern's length.

/// Longest claim value a condition looks at; a longer one never matches.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Longest alternative.
pub const MAX_PATTERN_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    /// `*`: any run without `/` or `:`.
    Star,
    /// `**`: any run.
    DoubleStar,
}

/// One compiled alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    toks: Vec<Tok>,
}

impl Glob {
    /// Compiles an alternative: non-empty, at most [`MAX_PATTERN_BYTES`], no control
    /// character, no run of three or more `*`.
    pub fn compile(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty value never matches; remove it".into());
        }
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!("longer than {MAX_PATTERN_BYTES} bytes"));
        }
        if pattern.chars().any(char::is_control) {
            return Err("holds a control character".into());
        }
        if pattern.contains("***") {
            return Err("three or more * in a row mean nothing more than **".into());
        }
        if pattern.bytes().all(|b| b == b'*') {
            return Err(
                "matches any value: a condition must narrow the tokens trusted (drop the claim, \
                 or name a value)"
                    .into(),
            );
        }
        let bytes = pattern.as_bytes();
        let mut toks = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b == b'*' {
                if bytes.get(i + 1) == Some(&b'*') {
                    toks.push(Tok::DoubleStar);
                    i += 2;
                } else {
                    toks.push(Tok::Star);
                    i += 1;
                }
            } else {
                toks.push(Tok::Byte(b));
                i += 1;
            }
        }
        Ok(Glob { toks })
    }

    /// Whether `value` matches, entirely.
    pub fn matches(&self, value: &str) -> bool {
        let v = value.as_bytes();
        if v.len() > MAX_VALUE_BYTES {
            return false;
        }
        // can[j]: the pattern's first `t` tokens match the value's first `j` bytes.
        let mut can = vec![false; v.len() + 1];
        can[0] = true;
        for tok in &self.toks {
            match *tok {
                Tok::Byte(b) => {
                    for j in (1..=v.len()).rev() {
                        can[j] = can[j - 1] && v[j - 1] == b;
                    }
                    can[0] = false;
                }
                Tok::Star | Tok::DoubleStar => {
                    // At least one character: `ci:*` does not match `ci:`.
                    let mut run = false;
                    let mut before = can[0];
                    can[0] = false;
                    for j in 1..=v.len() {
                        let crosses = matches!(v[j - 1], b'/' | b':') && *tok == Tok::Star;
                        run = !crosses && (before || run);
                        before = can[j];
                        can[j] = run;
                    }
                }
            }
        }
        can[v.len()]
    }
}
