//! Per-VM caches on the `/token` path: verified OpToks and (optionally) minted registry
//! tokens.
//!
//! Both are *memos*, never a second source of truth:
//!
//! - **Verified OpToks** are keyed by a SipHash-2-4 (128-bit) of the OpToken under a
//!   secret drawn per VM (a keyed PRF, far cheaper than a SHA-256 of the token under V8;
//!   `OpTokKey`), and each entry keeps the SHA-256 of the verification context it was
//!   verified under (the OpTok policy: issuer, audiences, required scopes, algorithms,
//!   skew; and the key set: every key's `kid`, RFC 7638 thumbprint and `alg` pin), which
//!   must equal the current one. A hit therefore means "this exact token was verified
//!   under exactly these rules and keys"; a key-set change (JWKS refresh, rotation) or a
//!   configuration change makes every earlier entry unusable. An entry answers only for `inserted_at <= now < exp`, the interval on
//!   which a fresh verification is certain to give the same claims (the `nbf`/`iat` checks
//!   that passed at `inserted_at` pass later too; `exp` is honoured without the skew, so a
//!   token in its skew tail is simply verified again). A token that failed verification is
//!   never stored. The DPoP proof and the mTLS certificate are per request and are checked
//!   on every request, hit or miss, by the handler.
//! - **Minted tokens** (`signing.reuseSeconds > 0` only) are keyed by SHA-256 over the
//!   signing identity (issuer, `kid`, key thumbprint, lifetime) and what the token says
//!   about the caller: subject, DPoP/mTLS binding, tenant, service and the granted access. An entry
//!   answers for `issued_at <= now < issued_at + reuseSeconds`.
//!
//! Both maps are bounded by entries *and by bytes* (Wasm memory never shrinks, so a
//! count bound alone lets a client with long repository names grow the VM for good):
//! inserting into a full map evicts the oldest insertions first (FIFO, O(1) amortized),
//! and an entry larger than a sixteenth of the budget is not kept at all (a very large
//! grant is simply minted each time). Budgets per VM (so per worker): [`OPTOK_BUDGET_BYTES`]
//! and [`MINT_BUDGET_BYTES`]. Nothing here is shared between VMs or threads: the glue keeps
//! one [`Caches`] per VM and configuration (interior mutability through `RefCell`).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use crate::config::SigningConfig;
use crate::policy::scope::Scope;
use crate::policy::trust::TokenRules;
use crate::token::crypto::Crypto;
use crate::token::jws::JwtError;
use crate::token::keys::KeySet;
use crate::token::mint::Extra;
use crate::token::optok::{self, OpTokPolicy, VerifiedOpTok};

/// Default bound of the verified-OpTok cache, entries (about 300 bytes each).
pub const DEFAULT_OPTOK_CAPACITY: usize = 10_000;
/// Default bound of the minted-token cache, entries (about 1.5 KB each with RS256).
pub const DEFAULT_MINT_CAPACITY: usize = 10_000;
/// Byte budget of the verified-OpTok cache per VM (entries weighed by [`Weigh`]).
pub const OPTOK_BUDGET_BYTES: usize = 4 * 1024 * 1024;
/// Byte budget of the minted-token cache per VM.
pub const MINT_BUDGET_BYTES: usize = 8 * 1024 * 1024;
/// Bound of the compiled token-rules memo (robots' `registry_rules`), entries.
pub const RULES_CAPACITY: usize = 1_000;
/// Byte budget of the compiled token-rules memo per VM.
pub const RULES_BUDGET_BYTES: usize = 2 * 1024 * 1024;
/// Bookkeeping per entry besides its own bytes: the key, the map slot, the queue record.
const ENTRY_OVERHEAD_BYTES: usize = 128;

/// The heap bytes a cached value holds (an estimate that never undercounts its strings).
pub trait Weigh {
    /// Bytes.
    fn weight(&self) -> usize;
}

impl Weigh for VerifiedOpTok {
    fn weight(&self) -> usize {
        std::mem::size_of::<VerifiedOpTok>() + self.heap_bytes()
    }
}

/// The OpTok memo's key of a token: SipHash-2-4 with 128-bit output under a secret key
/// drawn once per VM (a keyed PRF: without the key, no token can be made to collide with
/// one already verified), about 15 times cheaper than a SHA-256 of the token under V8; a
/// DPoP-bound token's SHA-256 is still computed, for `ath` only. Where the OS gives no
/// random key, the SHA-256 of the token.
struct OpTokKey(Option<(u64, u64)>);

impl OpTokKey {
    fn new() -> OpTokKey {
        let mut seed = [0u8; 16];
        OpTokKey(
            crate::token::crypto::rust::os_random(&mut seed)
                .ok()
                .map(|()| {
                    let (k0, k1) = seed.split_at(8);
                    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                    (word(k0), word(k1))
                }),
        )
    }

    fn key(&self, token: &str) -> CacheKey {
        let Some((k0, k1)) = self.0 else {
            return Sha256::digest(token.as_bytes()).into();
        };
        let mut h = siphasher::sip128::SipHasher24::new_with_keys(k0, k1);
        std::hash::Hasher::write(&mut h, token.as_bytes());
        let digest = siphasher::sip128::Hasher128::finish128(&h).as_bytes();
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&digest);
        // The rest says which function made the key (the SHA-256 fallback fills all 32).
        key[16..].copy_from_slice(b"siphash-2-4-128\0");
        key
    }
}

/// A verified OpTok with the verification context it was verified under: the OpTok memo
/// is keyed by the token alone ([`OpTokKey`]), and an entry answers only under the same
/// context (an exact comparison, where a key over both would cost a hash over both).
#[derive(Clone)]
struct Verified {
    context: CacheKey,
    optok: VerifiedOpTok,
}

impl Weigh for Verified {
    fn weight(&self) -> usize {
        std::mem::size_of::<CacheKey>() + self.optok.weight()
    }
}

impl Weigh for &str {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weigh for String {
    fn weight(&self) -> usize {
        self.capacity()
    }
}

macro_rules! weigh_by_size {
    ($($t:ty),*) => {$(
        impl Weigh for $t {
            fn weight(&self) -> usize {
                std::mem::size_of::<$t>()
            }
        }
    )*};
}
weigh_by_size!(i32, u32, u64);

impl Weigh for Rc<TokenRules> {
    fn weight(&self) -> usize {
        std::mem::size_of::<TokenRules>() + self.heap_estimate()
    }
}

impl Weigh for MintedToken {
    fn weight(&self) -> usize {
        std::mem::size_of::<MintedToken>() + self.token.capacity() + self.jti.capacity()
    }
}

/// A 32-byte cache key.
pub type CacheKey = [u8; 32];

struct Slot<V> {
    value: V,
    bytes: usize,
    valid_from: u64,
    valid_until: u64,
    seq: u64,
}

/// A bounded map with per-entry validity intervals and FIFO eviction.
pub struct Bounded<V> {
    map: HashMap<CacheKey, Slot<V>>,
    order: VecDeque<(CacheKey, u64)>,
    seq: u64,
    capacity: usize,
    budget: usize,
    bytes: usize,
}

impl<V: Clone + Weigh> Bounded<V> {
    /// An empty map holding at most `capacity` entries (at least 1), with no byte bound.
    pub fn new(capacity: usize) -> Bounded<V> {
        Bounded::with_budget(capacity, usize::MAX)
    }

    /// An empty map holding at most `capacity` entries weighing at most `budget` bytes.
    pub fn with_budget(capacity: usize, budget: usize) -> Bounded<V> {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            capacity: capacity.max(1),
            budget,
            bytes: 0,
        }
    }

    /// Bytes held (by [`Weigh`] plus a fixed overhead per entry): at most the budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(slot) = self.map.remove(key) {
            self.bytes = self.bytes.saturating_sub(slot.bytes);
        }
    }

    /// The value under `key` when `valid_from <= now < valid_until`; an entry found out of
    /// its interval is dropped.
    pub fn get(&mut self, key: &CacheKey, now: u64) -> Option<V> {
        let slot = self.map.get(key)?;
        if slot.valid_from <= now && now < slot.valid_until {
            return Some(slot.value.clone());
        }
        if now >= slot.valid_until {
            self.remove(key);
        }
        None
    }

    /// Stores `value` for `valid_from <= now < valid_until` (nothing when the interval is
    /// empty), evicting the oldest insertions while the map is full.
    pub fn insert(&mut self, key: CacheKey, value: V, valid_from: u64, valid_until: u64) {
        let bytes = value.weight().saturating_add(ENTRY_OVERHEAD_BYTES);
        if valid_until <= valid_from || bytes > self.budget / 16 {
            return;
        }
        self.remove(&key);
        while self.map.len() >= self.capacity || self.bytes.saturating_add(bytes) > self.budget {
            let Some((old, seq)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|s| s.seq == seq) {
                self.remove(&old);
            }
        }
        self.seq += 1;
        self.bytes += bytes;
        self.map.insert(
            key,
            Slot {
                value,
                bytes,
                valid_from,
                valid_until,
                seq: self.seq,
            },
        );
        self.order.push_back((key, self.seq));
        // Re-inserted keys leave stale order records behind; keep the queue bounded.
        if self.order.len() > 2 * self.capacity + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|slot| slot.seq == *s));
        }
    }

    /// Number of entries held (expired ones included until they are met or evicted).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Length of the eviction queue (for tests: stays within `2 × capacity + 16`).
    pub fn queue_len(&self) -> usize {
        self.order.len()
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.bytes = 0;
    }
}

/// A minted registry token kept for reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedToken {
    /// The compact JWS.
    pub token: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `iat`.
    pub issued_at: u64,
    /// Its `exp`.
    pub expires_at: u64,
}

/// Hit and miss counts since the cache was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// OpToks answered from the cache.
    pub optok_hits: u64,
    /// OpToks verified (not in the cache, or out of their interval).
    pub optok_misses: u64,
    /// Replies that reused a minted token.
    pub mint_reused: u64,
}

/// The per-VM caches.
pub struct Caches {
    optoks: RefCell<Bounded<Verified>>,
    minted: RefCell<Bounded<MintedToken>>,
    rules: RefCell<Bounded<Rc<TokenRules>>>,
    rules_hits: Cell<u64>,
    stats: Cell<CacheStats>,
    context: RefCell<ContextMemo>,
    optok_key: OpTokKey,
}

impl Default for Caches {
    fn default() -> Caches {
        Caches::new(DEFAULT_OPTOK_CAPACITY, DEFAULT_MINT_CAPACITY)
    }
}

/// Feeds one length-prefixed field into a hash, so field boundaries cannot be forged.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// SHA-256 over the OpTok policy and the key set: what a verification depends on besides
/// the token and the time.
pub fn verification_context(policy: &OpTokPolicy<'_>, keys: &KeySet) -> CacheKey {
    let mut input = Vec::new();
    verification_context_input(policy, &[], keys, &mut input);
    Sha256::digest(&input).into()
}

/// What [`verification_context`] hashes (length-prefixed fields), written into `out`.
fn verification_context_input(
    policy: &OpTokPolicy<'_>,
    keep: &[String],
    keys: &KeySet,
    out: &mut Vec<u8>,
) {
    fn field(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out.clear();
    field(out, b"optok-v1");
    field(out, policy.issuer.as_bytes());
    out.extend_from_slice(&(policy.audiences.len() as u64).to_be_bytes());
    for a in policy.audiences {
        field(out, a.as_bytes());
    }
    out.extend_from_slice(&(policy.required_scopes.len() as u64).to_be_bytes());
    for s in policy.required_scopes {
        field(out, s.as_bytes());
    }
    out.extend_from_slice(&(policy.algorithms.len() as u64).to_be_bytes());
    for a in policy.algorithms {
        field(out, a.name().as_bytes());
    }
    out.extend_from_slice(&policy.clock_skew_seconds.to_be_bytes());
    field(out, policy.tenant_claim.as_bytes());
    // The claims kept for trust policies are part of the verified value (none: the bytes
    // of a one-Authority configuration are unchanged).
    if !keep.is_empty() {
        field(out, b"keep");
        out.extend_from_slice(&(keep.len() as u64).to_be_bytes());
        for k in keep {
            field(out, k.as_bytes());
        }
    }
    out.extend_from_slice(&(keys.len() as u64).to_be_bytes());
    for k in keys.iter() {
        field(out, k.kid().unwrap_or("").as_bytes());
        field(out, k.thumbprint().as_bytes());
        field(out, k.alg().map_or("", |a| a.name()).as_bytes());
    }
}

/// The last verification context computed, with its input: the next request under the
/// same policy and keys (every request, but after a key refresh) reuses the digest after
/// comparing the input bytes, instead of hashing them again.
#[derive(Default)]
struct ContextMemo {
    input: Vec<u8>,
    digest: CacheKey,
    scratch: Vec<u8>,
}

impl ContextMemo {
    fn context(&mut self, policy: &OpTokPolicy<'_>, keep: &[String], keys: &KeySet) -> CacheKey {
        verification_context_input(policy, keep, keys, &mut self.scratch);
        if self.scratch.is_empty() || self.scratch != self.input {
            self.digest = Sha256::digest(&self.scratch).into();
            std::mem::swap(&mut self.input, &mut self.scratch);
        }
        self.digest
    }
}

/// Who a minted token is for: the subject and the caller's bindings.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The subject.
    pub subject: &'a str,
    /// `cnf.jkt`.
    pub jkt: Option<&'a str>,
    /// `cnf.x5t#S256`.
    pub x5t_s256: Option<&'a str>,
    /// The tenant the minted token names (its `tenant` claim).
    pub tenant: Option<&'a str>,
}

impl<'a> From<&'a VerifiedOpTok> for Binding<'a> {
    fn from(o: &'a VerifiedOpTok) -> Binding<'a> {
        Binding {
            subject: o.subject(),
            jkt: o.jkt(),
            x5t_s256: o.x5t_s256(),
            tenant: o.tenant(),
        }
    }
}

/// The reuse key of a minted token: signing identity, subject, bindings, service, access.
pub fn mint_key(
    signing: &SigningConfig,
    optok: &Binding<'_>,
    service: &str,
    granted: &[Scope],
    extra: &Extra<'_>,
) -> CacheKey {
    let mut h = Sha256::new();
    field(&mut h, b"mint-v2");
    field(&mut h, signing.issuer.as_bytes());
    field(&mut h, signing.kid.as_bytes());
    field(&mut h, signing.key.public().thumbprint().as_bytes());
    h.update(signing.lifetime_seconds.to_be_bytes());
    h.update([u8::from(signing.x5c.is_some())]);
    field(&mut h, optok.subject.as_bytes());
    field(&mut h, optok.jkt.unwrap_or("").as_bytes());
    field(&mut h, optok.x5t_s256.unwrap_or("").as_bytes());
    // Absent and empty differ: an empty tenant is never minted, but keep them apart.
    h.update([u8::from(optok.tenant.is_some())]);
    field(&mut h, optok.tenant.unwrap_or("").as_bytes());
    field(&mut h, service.as_bytes());
    h.update((granted.len() as u64).to_be_bytes());
    for s in granted {
        field(&mut h, s.resource_type.as_bytes());
        field(&mut h, s.name.as_bytes());
        h.update((s.actions.len() as u64).to_be_bytes());
        for a in &s.actions {
            field(&mut h, a.as_bytes());
        }
    }
    // What the guard reads: a reused token must say the same.
    field(&mut h, extra.plan.unwrap_or("").as_bytes());
    h.update([u8::from(extra.rtid.is_some())]);
    field(&mut h, extra.rtid.unwrap_or("").as_bytes());
    h.update((extra.licenses.len() as u64).to_be_bytes());
    for l in extra.licenses {
        field(&mut h, l.as_bytes());
    }
    h.update((extra.tags.len() as u64).to_be_bytes());
    for t in extra.tags {
        match t {
            None => h.update([0]),
            Some(t) => {
                h.update([1, u8::from(t.push_protected), u8::from(t.delete)]);
                for list in [&t.protected, &t.immutable] {
                    h.update((list.len() as u64).to_be_bytes());
                    for g in list {
                        field(&mut h, g.as_bytes());
                    }
                }
            }
        }
    }
    h.finalize().into()
}

impl Caches {
    /// Caches with the given bounds.
    pub fn new(optok_capacity: usize, mint_capacity: usize) -> Caches {
        Caches {
            optoks: RefCell::new(Bounded::with_budget(optok_capacity, OPTOK_BUDGET_BYTES)),
            minted: RefCell::new(Bounded::with_budget(mint_capacity, MINT_BUDGET_BYTES)),
            rules: RefCell::new(Bounded::with_budget(RULES_CAPACITY, RULES_BUDGET_BYTES)),
            rules_hits: Cell::new(0),
            stats: Cell::new(CacheStats::default()),
            context: RefCell::default(),
            optok_key: OpTokKey::new(),
        }
    }

    /// Hit and miss counts so far.
    pub fn stats(&self) -> CacheStats {
        self.stats.get()
    }

    /// Token rules (a trust policy's `rulesClaim`) answered from the memo so far.
    pub fn rules_hits(&self) -> u64 {
        self.rules_hits.get()
    }

    /// Entries held: (verified OpToks, minted tokens).
    pub fn len(&self) -> (usize, usize) {
        (self.optoks.borrow().len(), self.minted.borrow().len())
    }

    /// True when both caches are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    fn bump(&self, f: impl FnOnce(&mut CacheStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// [`optok::verify_optok`] through the cache: a hit returns the claims verified earlier
    /// under the same policy and keys; a miss verifies and stores a success until `exp`.
    pub fn verify_optok(
        &self,
        token: &str,
        policy: &OpTokPolicy<'_>,
        keys: &KeySet,
        crypto: &dyn Crypto,
        now: u64,
    ) -> Result<VerifiedOpTok, JwtError> {
        self.verify_optok_keeping(token, policy, &[], keys, crypto, now)
    }

    /// [`Caches::verify_optok`] keeping the claims named in `keep` (a trust policy's),
    /// which are part of the verification context.
    pub fn verify_optok_keeping(
        &self,
        token: &str,
        policy: &OpTokPolicy<'_>,
        keep: &[String],
        keys: &KeySet,
        crypto: &dyn Crypto,
        now: u64,
    ) -> Result<VerifiedOpTok, JwtError> {
        let context = self.context.borrow_mut().context(policy, keep, keys);
        let key = self.optok_key.key(token);
        let hit = self.optoks.borrow_mut().get(&key, now);
        if let Some(v) = hit.filter(|v| v.context == context) {
            self.bump(|s| s.optok_hits += 1);
            return Ok(v.optok);
        }
        self.bump(|s| s.optok_misses += 1);
        let optok =
            optok::UntrustedOpTok::parse(token)?.verify_keeping(policy, keep, keys, crypto, now)?;
        let expires_at = optok.expires_at();
        self.optoks.borrow_mut().insert(
            key,
            Verified {
                context,
                optok: optok.clone(),
            },
            now,
            expires_at,
        );
        Ok(optok)
    }

    /// A token's own rules compiled ([`TokenRules::compile`]), from the memo when the same
    /// list was compiled before: keyed by SHA-256 over the strings, kept whatever the time
    /// (compiling depends on nothing else); a list that does not compile is never kept.
    pub fn token_rules(&self, rules: &[String]) -> Result<Rc<TokenRules>, String> {
        let mut h = Sha256::new();
        h.update((rules.len() as u64).to_be_bytes());
        for r in rules {
            field(&mut h, r.as_bytes());
        }
        let key: CacheKey = h.finalize().into();
        if let Some(hit) = self.rules.borrow_mut().get(&key, 0) {
            self.rules_hits.set(self.rules_hits.get() + 1);
            return Ok(hit);
        }
        let compiled = Rc::new(TokenRules::compile(rules)?);
        self.rules
            .borrow_mut()
            .insert(key, Rc::clone(&compiled), 0, u64::MAX);
        Ok(compiled)
    }

    /// A minted token stored under `key` less than `reuse_seconds` ago.
    pub fn reusable_mint(
        &self,
        key: &CacheKey,
        now: u64,
        reuse_seconds: u64,
    ) -> Option<MintedToken> {
        if reuse_seconds == 0 {
            return None;
        }
        let found = self.minted.borrow_mut().get(key, now)?;
        // The interval was fixed at insertion; a lower reuseSeconds applies at once.
        if now >= found.issued_at.saturating_add(reuse_seconds) || now >= found.expires_at {
            return None;
        }
        self.bump(|s| s.mint_reused += 1);
        Some(found)
    }

    /// Keeps `minted` for reuse during `reuse_seconds` after its `iat` (never past `exp`).
    pub fn remember_mint(&self, key: CacheKey, minted: &MintedToken, reuse_seconds: u64) {
        if reuse_seconds == 0 {
            return;
        }
        let until = minted
            .issued_at
            .saturating_add(reuse_seconds)
            .min(minted.expires_at);
        self.minted
            .borrow_mut()
            .insert(key, minted.clone(), minted.issued_at, until);
    }
}

#[cfg(test)]
mod tests;
