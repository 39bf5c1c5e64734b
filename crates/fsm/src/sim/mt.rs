//! CPython's `random` module, as far as `malloc.py` uses it: MT19937 seeded the way
//! `random.seed(int)` seeds it, and `random.random()`.
//!
//! ```text
//!   seed (any int) --abs--> 32-bit words, least significant first --init_by_array--> state[624]
//!   random() = ((a >> 5) * 2^26 + (b >> 6)) / 2^53      a, b: two consecutive genrand_int32()
//! ```
//!
//! Written from the published MT19937 algorithm (Matsumoto and Nishimura, 1998) and the
//! seeding and float conventions CPython documents; checked against the values CPython prints
//! (see the tests).

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// A Mersenne Twister generator with CPython's seeding.
#[derive(Clone)]
pub struct PyRandom {
    state: [u32; N],
    index: usize,
}

impl std::fmt::Debug for PyRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyRandom")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl PyRandom {
    /// The generator `random.seed(seed)` gives in CPython (seeding uses `abs(seed)`).
    pub fn new(seed: i128) -> Self {
        let mut n = seed.unsigned_abs();
        let mut key = Vec::new();
        while n != 0 {
            key.push(n as u32); // the low 32 bits: truncation intended
            n >>= 32;
        }
        if key.is_empty() {
            key.push(0);
        }
        Self::from_key(&key)
    }

    /// `init_genrand(s)`: the linear recurrence that fills the state from one word.
    fn from_word(s: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = s;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        PyRandom { state, index: N }
    }

    /// `init_by_array(key)`.
    fn from_key(key: &[u32]) -> Self {
        let mut g = Self::from_word(19_650_218);
        let mt = &mut g.state;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1];
            mt[i] = (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1];
            mt[i] =
                (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        g
    }

    /// Regenerates all 624 words of state (the "twist").
    fn twist(&mut self) {
        let mt = &mut self.state;
        for k in 0..N {
            let y = (mt[k] & UPPER_MASK) | (mt[(k + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 0 { 0 } else { MATRIX_A };
            mt[k] = mt[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// `genrand_int32()`: the next tempered 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `random.random()`: a float in [0, 1) with 53 random bits.
    pub fn random(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }
}

#[cfg(test)]
mod tests {
    use super::PyRandom;

    fn draws(seed: i128, n: usize) -> Vec<f64> {
        let mut g = PyRandom::new(seed);
        (0..n).map(|_| g.random()).collect()
    }

    #[test]
    fn seed_0_matches_cpython() {
        assert_eq!(
            draws(0, 5),
            [
                0.8444218515250481,
                0.7579544029403025,
                0.420571580830845,
                0.25891675029296335,
                0.5112747213686085
            ]
        );
    }

    #[test]
    fn seed_1_matches_cpython() {
        assert_eq!(
            draws(1, 3),
            [0.13436424411240122, 0.8474337369372327, 0.763774618976614]
        );
    }

    #[test]
    fn negative_seed_is_abs() {
        assert_eq!(draws(-1, 3), draws(1, 3));
        assert_eq!(draws(-123_456_789_012, 700), draws(123_456_789_012, 700));
    }

    #[test]
    fn multi_word_seed_differs_from_its_low_word() {
        // 2^32 + 1 seeds with the key [1, 1], not [1] (CPython: 0.2309331037176915).
        assert_ne!(draws((1 << 32) + 1, 3), draws(1, 3));
        assert_eq!(draws((1 << 32) + 1, 1), [0.2309331037176915]);
        // A four-word seed (CPython: 0.7275084571578186).
        assert_eq!(
            draws(123_456_789_012_345_678_901_234_567_890, 1),
            [0.7275084571578186]
        );
    }

    #[test]
    fn reference_mt19937_first_output() {
        // The reference implementation's init_genrand(5489) gives 3499211612 first.
        let mut g = PyRandom::from_word(5489);
        assert_eq!(g.next_u32(), 3_499_211_612);
    }

    #[test]
    fn cpython_values_past_one_twist() {
        // random.seed(2); [random.random() for _ in range(400)][-1] and the 1000th (CPython 3.11).
        let v = draws(2, 1000);
        assert_eq!(v[399], V2_399);
        assert_eq!(v[999], V2_999);
    }

    const V2_399: f64 = 0.23291382156000595;
    const V2_999: f64 = 0.9214110288903143;
}
