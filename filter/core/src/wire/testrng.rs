//! The one pseudo-random generator of this crate's tests (SplitMix64): deterministic,
//! dependency-free, good for any seed (0 included).

/// A SplitMix64 generator; the field is its state (the seed).
pub(crate) struct Rng(pub u64);

/// The integer types [`Rng::below`] takes and gives.
pub(crate) trait Bound: Copy {
    fn to_u64(self) -> u64;
    fn from_u64(v: u64) -> Self;
}

macro_rules! bound {
    ($($t:ty),*) => {$(
        impl Bound for $t {
            fn to_u64(self) -> u64 {
                self as u64
            }
            fn from_u64(v: u64) -> Self {
                v as $t
            }
        }
    )*};
}
bound!(usize, u64, u32, i32);

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Same as [`Rng::next_u64`].
    #[allow(clippy::should_implement_trait)]
    pub(crate) fn next(&mut self) -> u64 {
        self.next_u64()
    }

    /// Uniform-ish in `0..n`; 0 when `n` is 0. The result has the type of `n`.
    pub(crate) fn below<N: Bound>(&mut self, n: N) -> N {
        N::from_u64(self.next_u64() % n.to_u64().max(1))
    }

    /// One of `items` (which must not be empty).
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `len` random bytes.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
