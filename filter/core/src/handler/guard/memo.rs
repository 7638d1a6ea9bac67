//! The guard's memo of verified registry tokens: a client sends the same token with every
//! request of a pull (one manifest, then each layer), so its signature is checked once per
//! VM and the claims are read from here afterwards. Bounded in bytes: when an entry would
//! pass the bound, the memo starts over (a burst of new tokens costs one verification
//! each, as without a memo). Only verified tokens are kept, and an entry is used only
//! while its `exp` (with the skew) has not passed.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::guard::token::RegistryToken;

/// Verified registry tokens by their compact form.
#[derive(Debug)]
pub struct TokenMemo {
    entries: RefCell<HashMap<String, Rc<RegistryToken>>>,
    bytes: Cell<usize>,
    limit: usize,
    hits: Cell<u64>,
}

impl Default for TokenMemo {
    fn default() -> Self {
        TokenMemo::with_limit(TokenMemo::DEFAULT_LIMIT_BYTES)
    }
}

impl TokenMemo {
    /// The default bound, bytes (tokens and their claims).
    pub const DEFAULT_LIMIT_BYTES: usize = 4 * 1024 * 1024;

    /// A memo holding at most about `limit` bytes.
    pub fn with_limit(limit: usize) -> TokenMemo {
        TokenMemo {
            entries: RefCell::default(),
            bytes: Cell::new(0),
            limit,
            hits: Cell::new(0),
        }
    }

    /// The verified claims of `token`, if it was verified and has not expired at `now`
    /// (allowing `skew` seconds).
    pub fn get(&self, token: &str, now: u64, skew: u64) -> Option<Rc<RegistryToken>> {
        let found = self.entries.borrow().get(token).cloned()?;
        if now > found.exp.saturating_add(skew) {
            return None;
        }
        self.hits.set(self.hits.get().saturating_add(1));
        Some(found)
    }

    /// Keeps a verified token.
    pub fn insert(&self, token: &str, claims: Rc<RegistryToken>) {
        let weight = token.len() + claims.weight();
        if weight > self.limit {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        if self.bytes.get() + weight > self.limit {
            entries.clear();
            self.bytes.set(0);
        }
        if entries.insert(token.to_owned(), claims).is_none() {
            self.bytes.set(self.bytes.get() + weight);
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests answered from the memo so far.
    pub fn hits(&self) -> u64 {
        self.hits.get()
    }
}
