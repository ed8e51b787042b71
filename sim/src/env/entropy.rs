//! Randomness for a simulated run: one run seed split into named, independent streams.
//!
//! Each consumer of randomness (the network, each disk crash, the fault schedule, the
//! workload, each host) draws from its own stream, derived from the run seed and the stream's
//! name. Drawing more numbers from one stream never shifts another, so shrinking a fault
//! schedule does not reshuffle the network's latencies (DESIGN.md §7).
//!
//! The generator is SplitMix64 and the name hash is FNV-1a, both written out here rather than
//! taken from `rand`: a seed saved in a regression file must replay the same run after any
//! dependency upgrade, and `rand` documents that `SmallRng`'s algorithm may change.

use std::sync::atomic::{AtomicU64, Ordering};

use tidepool_io::Entropy;

/// The stream turmoil's network draws from (latencies, message loss).
pub const NETWORK: &str = "network";
/// The stream disk crashes draw from (which pending writes survive).
pub const DISK: &str = "disk";
/// The stream a fault schedule draws from.
pub const FAULTS: &str = "faults";
/// The stream the workload (producers, consumers, their choices) draws from.
pub const WORKLOAD: &str = "workload";

/// The one number a simulated run is replayed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunSeed(pub u64);

impl RunSeed {
    pub fn new(seed: u64) -> RunSeed {
        RunSeed(seed)
    }

    /// The stream called `name`: the same seed and name always give the same numbers, and
    /// different names give unrelated ones.
    pub fn stream(self, name: &str) -> SimEntropy {
        SimEntropy::new(mix64(self.0 ^ mix64(fnv1a64(name.as_bytes()))))
    }

    /// The stream a host's own code draws from (topic ids, client jitter, ...).
    pub fn host_stream(self, host: &str) -> SimEntropy {
        self.stream(&format!("host/{host}"))
    }
}

impl From<u64> for RunSeed {
    fn from(seed: u64) -> RunSeed {
        RunSeed(seed)
    }
}

/// A SplitMix64 stream. Lock-free: the state is a counter, so one atomic add per number.
#[derive(Debug)]
pub struct SimEntropy {
    state: AtomicU64,
}

/// SplitMix64's increment (the golden ratio in 64 bits).
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

impl SimEntropy {
    pub fn new(seed: u64) -> SimEntropy {
        SimEntropy {
            state: AtomicU64::new(seed),
        }
    }
}

impl Entropy for SimEntropy {
    fn next_u64(&self) -> u64 {
        let state = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        mix64(state)
    }
}

/// SplitMix64's output function: a bijection that spreads every input bit over the output.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`: a hash that is the same on every platform and every Rust release.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(FNV_OFFSET, bytes)
}

/// Continues an FNV-1a hash with more bytes.
pub(crate) fn fnv1a64_extend(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// A number in `0..bound` (0 when `bound` is 0), by multiply-and-shift: unbiased enough for a
/// simulation and free of the modulo's skew towards small numbers.
pub fn below(entropy: &dyn Entropy, bound: u64) -> u64 {
    ((u128::from(entropy.next_u64()) * u128::from(bound)) >> 64) as u64
}

/// True with probability one half.
pub fn coin(entropy: &dyn Entropy) -> bool {
    entropy.next_u64() >> 63 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(entropy: &SimEntropy, count: usize) -> Vec<u64> {
        (0..count).map(|_| entropy.next_u64()).collect()
    }

    #[test]
    fn a_stream_replays_from_its_seed_and_name() {
        let seed = RunSeed::new(42);
        assert_eq!(draw(&seed.stream(DISK), 16), draw(&seed.stream(DISK), 16));
    }

    #[test]
    fn streams_of_one_seed_are_independent() {
        let seed = RunSeed::new(42);
        let streams = [NETWORK, DISK, FAULTS, WORKLOAD].map(|name| draw(&seed.stream(name), 4));
        for (i, a) in streams.iter().enumerate() {
            for b in &streams[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Drawing from one stream leaves another where it was.
        let faults = seed.stream(FAULTS);
        let _ = draw(&seed.stream(NETWORK), 1000);
        assert_eq!(draw(&faults, 4), streams[2]);
    }

    #[test]
    fn different_seeds_give_different_streams() {
        assert_ne!(
            draw(&RunSeed::new(1).stream(WORKLOAD), 4),
            draw(&RunSeed::new(2).stream(WORKLOAD), 4)
        );
        assert_ne!(
            draw(&RunSeed::new(1).host_stream("a"), 4),
            draw(&RunSeed::new(1).host_stream("b"), 4)
        );
    }

    /// Pinned values: a change here silently breaks every saved seed.
    #[test]
    fn the_generator_is_splitmix64() {
        // SplitMix64 from state 0: the reference implementation's first outputs.
        let entropy = SimEntropy::new(0);
        assert_eq!(entropy.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(entropy.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(fnv1a64(b""), FNV_OFFSET);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn below_stays_below_its_bound() {
        let entropy = RunSeed::new(3).stream("below");
        assert_eq!(below(&entropy, 0), 0);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let value = below(&entropy, 5);
            assert!(value < 5);
            seen[value as usize] = true;
        }
        assert!(seen.iter().all(|seen| *seen), "every value comes up");
        let heads = (0..200).filter(|_| coin(&entropy)).count();
        assert!((60..140).contains(&heads), "{heads} heads in 200");
    }
}
