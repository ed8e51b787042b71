//! Randomness: one stream of `u64`s, seeded explicitly or from the operating system.

use std::sync::Mutex;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

/// The only source of randomness for code that may run in the simulation.
pub trait Entropy: Send + Sync + 'static {
    fn next_u64(&self) -> u64;

    /// A random (version 4) UUID drawn from this stream, e.g. for topic ids.
    fn uuid(&self) -> uuid::Uuid {
        let high = u128::from(self.next_u64()) << 64;
        let bits = high | u128::from(self.next_u64());
        uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid()
    }
}

/// A fast pseudo-random stream. Seeded from a number it is replayable; from the OS it is not.
#[derive(Debug)]
pub struct SeededEntropy {
    /// A std mutex: the critical section is a few arithmetic instructions and never awaits.
    rng: Mutex<SmallRng>,
}

impl SeededEntropy {
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy {
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
        }
    }

    pub fn from_os() -> SeededEntropy {
        SeededEntropy {
            rng: Mutex::new(SmallRng::from_os_rng()),
        }
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&self) -> u64 {
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        rng.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let a = SeededEntropy::new(42);
        let b = SeededEntropy::new(42);
        let from_a: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let from_b: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(from_a, from_b);
    }

    #[test]
    fn uuids_are_version_4() {
        let entropy = SeededEntropy::new(7);
        let id = entropy.uuid();
        assert_eq!(id.get_version_num(), 4);
        assert_ne!(id, entropy.uuid());
    }
}
