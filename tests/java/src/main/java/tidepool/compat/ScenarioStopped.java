package tidepool.compat;

/** A scenario cannot go on; the failure that stopped it is already recorded in {@link Checks}. */
final class ScenarioStopped extends RuntimeException {
    private static final long serialVersionUID = 1L;

    ScenarioStopped(String reason) {
        super(reason);
    }
}
