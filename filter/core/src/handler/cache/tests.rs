//! Tests of the per-VM memos: the byte and entry bounds, eviction, validity intervals, the
//! context memo and the key framing.

use super::*;

#[test]
fn the_byte_budget_holds_and_huge_entries_are_not_kept() {
    let budget = 64 * 1024;
    let mut m: Bounded<String> = Bounded::with_budget(1_000_000, budget);
    for i in 0..10_000u32 {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_be_bytes());
        m.insert(key, "x".repeat(100 + (i as usize % 900)), 0, 10);
        assert!(m.bytes() <= budget, "{} > {budget}", m.bytes());
    }
    assert!(m.len() > 10, "the budget still holds many entries");
    // An entry above a sixteenth of the budget is skipped, and evicts nothing.
    let before = (m.len(), m.bytes());
    m.insert([0xff; 32], "y".repeat(budget / 16), 0, 10);
    assert_eq!((m.len(), m.bytes()), before);
    assert_eq!(m.get(&[0xff; 32], 1), None);
    // Replacing an entry accounts for the old one; clearing resets the count.
    let mut one: Bounded<String> = Bounded::with_budget(10, budget);
    one.insert([1; 32], "a".repeat(1000), 0, 10);
    let first = one.bytes();
    one.insert([1; 32], "a".repeat(1000), 0, 10);
    assert_eq!(one.bytes(), first);
    one.clear();
    assert_eq!(one.bytes(), 0);
}

/// The streaming form the byte-buffer input replaced: the digests must not change.
fn streamed_context(policy: &OpTokPolicy<'_>, keys: &KeySet) -> CacheKey {
    let mut h = Sha256::new();
    field(&mut h, b"optok-v1");
    field(&mut h, policy.issuer.as_bytes());
    h.update((policy.audiences.len() as u64).to_be_bytes());
    for a in policy.audiences {
        field(&mut h, a.as_bytes());
    }
    h.update((policy.required_scopes.len() as u64).to_be_bytes());
    for s in policy.required_scopes {
        field(&mut h, s.as_bytes());
    }
    h.update((policy.algorithms.len() as u64).to_be_bytes());
    for a in policy.algorithms {
        field(&mut h, a.name().as_bytes());
    }
    h.update(policy.clock_skew_seconds.to_be_bytes());
    field(&mut h, policy.tenant_claim.as_bytes());
    h.update((keys.len() as u64).to_be_bytes());
    for k in keys.iter() {
        field(&mut h, k.kid().unwrap_or("").as_bytes());
        field(&mut h, k.thumbprint().as_bytes());
        field(&mut h, k.alg().map_or("", |a| a.name()).as_bytes());
    }
    h.finalize().into()
}

#[test]
fn the_context_memo_answers_what_hashing_again_would() {
    use crate::token::alg::Alg;
    use crate::token::keys::testkeys;
    let one = KeySet::from_keys(vec![testkeys::rsa_private().public().clone()]);
    let two = KeySet::from_keys(vec![
        testkeys::rsa_private()
            .public()
            .clone()
            .with_kid("a".into()),
        testkeys::p256_private().public().clone(),
    ]);
    let audiences = ["registry-token".to_string()];
    let other_audiences = ["registry-token".to_string(), "x".to_string()];
    let scopes = ["registry.token.issue".to_string()];
    let algorithms = [Alg::Rs256, Alg::Es256];
    let policy = OpTokPolicy {
        issuer: "https://authority.example",
        audiences: &audiences,
        required_scopes: &scopes,
        algorithms: &algorithms,
        clock_skew_seconds: 30,
        tenant_claim: "tenant",
    };
    let policies = [
        policy.clone(),
        OpTokPolicy {
            audiences: &other_audiences,
            ..policy.clone()
        },
        OpTokPolicy {
            clock_skew_seconds: 31,
            ..policy.clone()
        },
        OpTokPolicy {
            algorithms: &algorithms[..1],
            ..policy.clone()
        },
    ];
    let mut memo = ContextMemo::default();
    let mut seen = std::collections::HashSet::new();
    for round in 0..3 {
        for p in &policies {
            for keys in [&one, &two, &one] {
                let expected = streamed_context(p, keys);
                assert_eq!(verification_context(p, keys), expected);
                assert_eq!(memo.context(p, &[], keys), expected, "round {round}");
                assert_eq!(memo.context(p, &[], keys), expected, "again, round {round}");
                seen.insert(expected);
            }
        }
    }
    assert_eq!(
        seen.len(),
        policies.len() * 2,
        "every policy and key set differs"
    );
}

fn k(n: u32) -> CacheKey {
    let mut key = [0u8; 32];
    key[..4].copy_from_slice(&n.to_be_bytes());
    key
}

#[test]
fn get_honours_the_validity_interval() {
    let mut m = Bounded::new(4);
    m.insert(k(1), "a", 100, 200);
    assert_eq!(m.get(&k(1), 99), None, "before valid_from");
    assert_eq!(m.len(), 1, "kept: it becomes valid later");
    assert_eq!(m.get(&k(1), 100), Some("a"));
    assert_eq!(m.get(&k(1), 199), Some("a"));
    assert_eq!(m.get(&k(1), 200), None, "valid_until is exclusive");
    assert!(m.is_empty(), "an expired entry is dropped when met");
    m.insert(k(2), "b", 300, 300);
    assert!(m.is_empty(), "an empty interval stores nothing");
    assert_eq!(m.get(&k(3), 0), None);
}

#[test]
fn a_full_map_evicts_the_oldest_insertion() {
    let mut m = Bounded::new(3);
    for n in 1..=3 {
        m.insert(k(n), n, 0, 10);
    }
    m.insert(k(4), 4, 0, 10);
    assert_eq!(m.len(), 3);
    assert_eq!(m.get(&k(1), 1), None);
    for n in 2..=4 {
        assert_eq!(m.get(&k(n), 1), Some(n));
    }
    // Replacing an existing key evicts nothing and refreshes its age.
    m.insert(k(2), 20, 0, 10);
    assert_eq!(m.len(), 3);
    m.insert(k(5), 5, 0, 10);
    assert_eq!(m.get(&k(3), 1), None, "3 was the oldest insertion");
    assert_eq!(m.get(&k(2), 1), Some(20));
    assert_eq!(m.capacity(), 3);
}

#[test]
fn the_eviction_queue_stays_bounded_under_reinsertion() {
    let mut m = Bounded::new(8);
    for round in 0..10_000u64 {
        m.insert(k(1), round, 0, 10);
        m.insert(k((round % 5) as u32 + 2), round, 0, 10);
    }
    assert!(m.len() <= 8);
    assert!(m.queue_len() <= 2 * 8 + 16, "{}", m.queue_len());
    assert_eq!(m.get(&k(1), 0), Some(9_999));
    m.clear();
    assert!(m.is_empty());
    assert_eq!(m.queue_len(), 0);
}

#[test]
fn a_large_map_never_exceeds_its_bound() {
    let mut m = Bounded::new(1000);
    for n in 0..50_000 {
        m.insert(k(n), n, 0, 100);
    }
    assert_eq!(m.len(), 1000);
    assert!(m.queue_len() <= 2016);
    assert_eq!(m.get(&k(48_999), 5), None);
    assert_eq!(m.get(&k(49_000), 5), Some(49_000));
}

#[test]
fn zero_capacity_still_holds_one_entry() {
    let mut m = Bounded::new(0);
    m.insert(k(1), 1, 0, 5);
    m.insert(k(2), 2, 0, 5);
    assert_eq!(m.len(), 1);
    assert_eq!(m.get(&k(2), 0), Some(2));
}

#[test]
fn field_framing_separates_fields() {
    let hash = |parts: &[&[u8]]| {
        let mut h = Sha256::new();
        for p in parts {
            field(&mut h, p);
        }
        let out: CacheKey = h.finalize().into();
        out
    };
    assert_ne!(hash(&[b"ab", b"c"]), hash(&[b"a", b"bc"]));
    assert_ne!(hash(&[b"abc"]), hash(&[b"abc", b""]));
}

#[test]
fn token_rules_are_compiled_once_per_list_and_refusals_never_kept() {
    let caches = Caches::default();
    let a = vec!["repository:acme/*:pull".to_string()];
    let first = caches.token_rules(&a).unwrap();
    let again = caches.token_rules(&a).unwrap();
    assert!(
        Rc::ptr_eq(&first, &again),
        "the second lookup is the memo's"
    );
    assert_eq!(caches.rules_hits(), 1);
    // Another list (even one string split differently) is another entry.
    let b = vec!["repository:acme/*:pull,push".to_string()];
    assert!(!Rc::ptr_eq(&first, &caches.token_rules(&b).unwrap()));
    let split = vec!["repository:acme/*".to_string(), ":pull".to_string()];
    assert!(caches.token_rules(&split).is_err());
    assert_eq!(caches.rules_hits(), 1);
    let bad = vec!["repository:../x:pull".to_string()];
    assert!(caches.token_rules(&bad).is_err());
    assert!(
        caches.token_rules(&bad).is_err(),
        "a refusal is refused again"
    );
    assert_eq!(caches.rules_hits(), 1);
}

/// The OpTok memo's key: one token, one key per VM; another token, another key; another
/// VM (another secret), another key for the same token, so keys cannot be computed from
/// outside; and never the SHA-256 form while the OS gives a key.
#[test]
fn optok_keys_are_keyed_per_vm_and_distinct_per_token() {
    let (a, b) = (OpTokKey::new(), OpTokKey::new());
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
    assert_eq!(a.key(token), a.key(token));
    assert_ne!(a.key(token), a.key(&format!("{token}x")));
    assert_ne!(a.key(token), b.key(token), "the same key under two secrets");
    assert_eq!(&a.key(token)[16..], b"siphash-2-4-128\0");
    let sha: CacheKey = Sha256::digest(token.as_bytes()).into();
    assert_ne!(a.key(token), sha);
    assert_eq!(
        OpTokKey(None).key(token),
        sha,
        "without a secret: the SHA-256"
    );
}
