//! Time: a monotonic reading for deadlines, a wall-clock reading for record timestamps, and sleep.

use std::time::Duration;

use crate::BoxFuture;

/// The only source of time for code that may run in the simulation.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time since an arbitrary, fixed origin. Never goes backwards.
    fn now(&self) -> Duration;
    /// Milliseconds since the Unix epoch, as Kafka timestamps count them. May jump.
    fn wall_ms(&self) -> i64;
    /// Completes once `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Tokio's timer for the monotonic reading and sleeping, `SystemTime` for the wall clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: tokio::time::Instant,
}

impl SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the real clock is where time enters"
    )]
    pub fn new() -> SystemClock {
        SystemClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the real clock is where time enters"
    )]
    fn now(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.origin)
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the real clock is where time enters"
    )]
    fn wall_ms(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn monotonic_time_advances_across_a_sleep() {
        let clock = SystemClock::new();
        let before = clock.now();
        clock.sleep(Duration::from_millis(5)).await;
        assert!(clock.now() >= before + Duration::from_millis(5));
    }

    #[test]
    fn wall_clock_is_after_2020() {
        assert!(SystemClock::new().wall_ms() > 1_577_836_800_000);
    }
}
