//! Seeded randomness, one independent stream per entity.
//!
//! A run has one master seed. Every consumer (each client, the downstream,
//! the relay's jitter, the fault plan) draws from its own ChaCha8 stream,
//! keyed by the master seed and selected by `(domain, index)`. Adding a
//! client or one more draw in one place therefore never shifts the draws of
//! another. ChaCha8 is named explicitly because `StdRng` may change between
//! `rand` versions, and the determinism contract is byte-for-byte.

mod chacha8;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use chacha8::Stream;

/// Who a stream belongs to. The discriminant is part of the stream id, so
/// reordering these variants changes every run: append only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Domain {
    Relay = 1,
    Downstream = 2,
    Arrivals = 3,
    Client = 4,
    Experiment = 5,
    /// A member of a closed-loop population (think times, start offset).
    Member = 6,
    /// One downstream call's latency and failure, keyed by the logical
    /// request and stepped by send and relay attempt (not by call order).
    Call = 7,
    /// Network delays of one downstream call (there, then back), keyed
    /// like [`Domain::Call`].
    CallNetwork = 8,
    /// Network delays between a client and the relay, keyed by the logical
    /// request and stepped by send and leg.
    ClientNetwork = 9,
    /// A client's own retry-gate draws (adaptive throttling), per client.
    ClientGate = 10,
    /// The simulated store's commit latencies.
    Store = 11,
    /// Which route a logical request takes, and the resource it asks for.
    Route = 12,
    /// The options of a scenario a swarm draws.
    Swarm = 13,
}

/// Number of low bits of a stream id left for the entity index.
const INDEX_BITS: u32 = 48;

/// The run's master seed; hands out child streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seed(pub u64);

impl Seed {
    /// The stream for entity `index` of `domain`. Distinct `(domain, index)`
    /// pairs select distinct ChaCha streams of the same key.
    pub fn stream(self, domain: Domain, index: u64) -> Stream {
        self.streams().stream(domain, index)
    }

    /// The seed's ChaCha key, expanded once, for a caller that makes a
    /// stream per event (a call, a send): the same streams as
    /// [`Seed::stream`], without expanding the key every time.
    pub fn streams(self) -> Streams {
        Streams {
            key: ChaCha8Rng::seed_from_u64(self.0).get_seed(),
        }
    }
}

/// A [`Seed`]'s expanded key: hands out the seed's streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streams {
    key: [u8; 32],
}

impl Streams {
    /// [`Seed::stream`].
    #[inline]
    pub fn stream(&self, domain: Domain, index: u64) -> Stream {
        self.at(domain, index, 0)
    }

    /// [`Seed::step_stream`].
    #[inline]
    pub fn step_stream(&self, domain: Domain, index: u64, step: u64) -> Stream {
        debug_assert!(step < 1 << 58, "step {step} too large");
        self.at(domain, index, step * WORDS_PER_STEP)
    }

    /// The stream of `(domain, index)`, from word `pos`.
    #[inline]
    fn at(&self, domain: Domain, index: u64, pos: u64) -> Stream {
        debug_assert!(index < 1 << INDEX_BITS, "entity index {index} too large");
        let id = ((domain as u64) << INDEX_BITS) | (index & ((1 << INDEX_BITS) - 1));
        Stream::new(&self.key, id, pos)
    }
}

/// Words of stream reserved for each step of an entity (one send, one
/// request): every step starts at its own position, so the draws of step `k`
/// never depend on how many draws earlier steps made.
const WORDS_PER_STEP: u64 = 64;

impl Seed {
    /// The stream for step `step` of entity `index` of `domain`.
    pub fn step_stream(self, domain: Domain, index: u64, step: u64) -> Stream {
        self.streams().step_stream(domain, index, step)
    }
}

/// A uniform draw in `[0, 1)` with 53 bits of precision.
#[inline]
pub fn unit(rng: &mut Stream) -> f64 {
    rng.random::<f64>()
}

/// An exponential draw with the given mean, by inversion (one uniform).
#[inline]
pub fn exponential(rng: &mut Stream, mean: f64) -> f64 {
    -(1.0 - unit(rng)).ln() * mean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_draws(mut s: impl Rng) -> Vec<u64> {
        (0..4).map(|_| s.random::<u64>()).collect()
    }

    #[test]
    fn same_seed_and_entity_give_the_same_stream() {
        let seed = Seed(42);
        assert_eq!(
            first_draws(seed.stream(Domain::Client, 7)),
            first_draws(seed.stream(Domain::Client, 7))
        );
    }

    #[test]
    fn entities_domains_and_seeds_get_different_streams() {
        let a = first_draws(Seed(42).stream(Domain::Client, 7));
        assert_ne!(a, first_draws(Seed(42).stream(Domain::Client, 8)));
        assert_ne!(a, first_draws(Seed(42).stream(Domain::Downstream, 7)));
        assert_ne!(a, first_draws(Seed(43).stream(Domain::Client, 7)));
    }

    #[test]
    fn expanded_keys_give_the_seeds_streams() {
        let seed = Seed(42);
        let streams = seed.streams();
        assert_eq!(
            first_draws(streams.stream(Domain::Call, 7)),
            first_draws(seed.stream(Domain::Call, 7))
        );
        assert_eq!(
            first_draws(streams.step_stream(Domain::Call, 7, 3)),
            first_draws(seed.step_stream(Domain::Call, 7, 3))
        );
        // The expansion is ChaCha8's own `seed_from_u64`: streams made before
        // keys were kept expanded stay the same.
        let mut old = ChaCha8Rng::seed_from_u64(42);
        old.set_stream(((Domain::Call as u64) << INDEX_BITS) | 7);
        assert_eq!(
            first_draws(old.clone()),
            first_draws(streams.stream(Domain::Call, 7))
        );
        old.set_word_pos(3 * 64);
        assert_eq!(
            first_draws(old),
            first_draws(streams.step_stream(Domain::Call, 7, 3))
        );
    }

    #[test]
    fn exponential_mean_is_close_to_requested() {
        let mut s = Seed(1).stream(Domain::Experiment, 0);
        let n = 200_000;
        let mean = (0..n).map(|_| exponential(&mut s, 2.0)).sum::<f64>() / n as f64;
        // Standard error is 2/sqrt(n) ≈ 0.0045; allow five of them.
        assert!((mean - 2.0).abs() < 0.0225, "mean {mean}");
    }
}
