//! Virtual time: turmoil advances every host's tokio timer in simulated ticks, so sleeping
//! costs no real time and every reading is replayable.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tidepool_io::{BoxFuture, Clock};

/// Wall-clock milliseconds at virtual time zero: 2023-11-14T22:13:20Z. Fixed, so record
/// timestamps are the same in every replay (turmoil's own epoch defaults to the real time).
pub const SIM_EPOCH_MS: i64 = 1_700_000_000_000;

/// A host's clock inside a turmoil simulation.
///
/// - `now()` is the simulation's elapsed virtual time: the same origin on every host and
///   across restarts of a host, so it never goes backwards.
/// - `wall_ms()` is [`SIM_EPOCH_MS`] + elapsed virtual time + this host's skew. The skew can
///   be set or jumped at any moment (a wrong NTP server, a leap, an operator), and may be
///   negative: the wall clock may go backwards, as a real one may.
/// - `sleep()` is tokio's timer, which turmoil drives on virtual time.
///
/// Outside a turmoil host (a unit test, the simulation driver) there is no virtual time:
/// the clock then stands still at its last reading.
#[derive(Debug, Default)]
pub struct SimClock {
    skew_ms: AtomicI64,
    /// The latest `now()` in nanoseconds, so `now()` stays monotonic whatever happens.
    last_now_nanos: AtomicU64,
}

impl SimClock {
    pub fn new() -> SimClock {
        SimClock::default()
    }

    /// A clock whose wall time is off by `skew_ms` from the simulation's.
    pub fn skewed(skew_ms: i64) -> SimClock {
        let clock = SimClock::new();
        clock.set_skew_ms(skew_ms);
        clock
    }

    /// Sets this host's wall-clock offset from the simulation's wall time.
    pub fn set_skew_ms(&self, skew_ms: i64) {
        self.skew_ms.store(skew_ms, Ordering::Relaxed);
    }

    /// Moves this host's wall clock by `delta_ms` (negative: backwards) from where it is.
    pub fn jump_ms(&self, delta_ms: i64) {
        self.skew_ms.fetch_add(delta_ms, Ordering::Relaxed);
    }

    pub fn skew_ms(&self) -> i64 {
        self.skew_ms.load(Ordering::Relaxed)
    }
}

impl Clock for SimClock {
    fn now(&self) -> Duration {
        let reading = turmoil::sim_elapsed().map(|elapsed| elapsed.as_nanos());
        let reading = reading.map_or(0, |nanos| u64::try_from(nanos).unwrap_or(u64::MAX));
        let latest = self
            .last_now_nanos
            .fetch_max(reading, Ordering::Relaxed)
            .max(reading);
        Duration::from_nanos(latest)
    }

    fn wall_ms(&self) -> i64 {
        let elapsed_ms = i64::try_from(self.now().as_millis()).unwrap_or(i64::MAX);
        SIM_EPOCH_MS
            .saturating_add(elapsed_ms)
            .saturating_add(self.skew_ms())
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_simulation_the_clock_stands_at_the_epoch() {
        let clock = SimClock::new();
        assert_eq!(clock.now(), Duration::ZERO);
        assert_eq!(clock.wall_ms(), SIM_EPOCH_MS);
    }

    #[test]
    fn skew_moves_the_wall_clock_only() {
        let clock = SimClock::skewed(-500);
        assert_eq!(clock.wall_ms(), SIM_EPOCH_MS - 500);
        clock.jump_ms(2_000);
        assert_eq!(clock.skew_ms(), 1_500);
        assert_eq!(clock.wall_ms(), SIM_EPOCH_MS + 1_500);
        assert_eq!(clock.now(), Duration::ZERO, "monotonic time ignores skew");
    }

    #[test]
    fn inside_a_simulation_time_is_virtual_and_shared_by_hosts() {
        // Coarse ticks: half an hour of virtual time in 18,000 steps.
        let mut sim = turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(3_600))
            .tick_duration(Duration::from_millis(100))
            .build();
        sim.client("sleeper", async {
            let clock = SimClock::skewed(250);
            let before = clock.now();
            // Half an hour of virtual time: the test would time out if this were real.
            clock.sleep(Duration::from_secs(1_800)).await;
            let after = clock.now();
            assert!(
                after >= before + Duration::from_secs(1_800),
                "{before:?} → {after:?}"
            );
            let expected_wall = SIM_EPOCH_MS + i64::try_from(after.as_millis()).unwrap() + 250;
            assert_eq!(clock.wall_ms(), expected_wall);
            Ok(())
        });
        sim.client("late", async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            // A second host reads the same virtual time, give or take the current tick.
            let now = SimClock::new().now();
            assert!(
                now >= Duration::from_secs(10) && now < Duration::from_secs(11),
                "{now:?}"
            );
            Ok(())
        });
        sim.run().unwrap();
    }
}
