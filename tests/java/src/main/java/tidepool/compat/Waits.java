package tidepool.compat;

import java.time.Duration;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/** Waiting for a condition that other threads (consumers, the broker) bring about. */
final class Waits {
    private static final long POLL_MS = 50;

    private Waits() {
    }

    /** Checks {@code condition} every 50 ms until it holds or {@code timeout} passed; returns whether it held. */
    static boolean until(BooleanSupplier condition, Duration timeout) throws InterruptedException {
        long stopAt = System.nanoTime() + timeout.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > stopAt) {
                return condition.getAsBoolean();
            }
            Thread.sleep(POLL_MS);
        }
        return true;
    }

    /**
     * Like {@link #until}, but a scenario that cannot go on without the condition: on timeout the
     * failure is recorded and the scenario stops.
     */
    static void require(Checks checks, BooleanSupplier condition, Duration timeout, String category,
                        Supplier<String> detail) throws InterruptedException {
        if (!until(condition, timeout)) {
            checks.fail(category, "after " + timeout.toMillis() + " ms: " + detail.get());
            throw new ScenarioStopped(category);
        }
        checks.pass();
    }
}
