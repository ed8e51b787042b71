package tidepool.compat;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;

/**
 * Collects the outcome of every check. Failures are grouped by a short category so that one broken
 * behaviour hitting ten thousand records prints as one line with a count and a few examples, not as
 * ten thousand lines.
 *
 * <p>A {@code Checks} is a view on one shared ledger: {@link #countingAgainst} gives a view whose
 * failures also count against some cells of the compatibility matrix (tests/matrix), so that each
 * cell can report the first check that failed in it. The ledger is synchronized because consumer
 * threads of the group scenarios may record checks too.
 */
final class Checks {
    private static final int EXAMPLES_PER_CATEGORY = 5;
    /** A matrix detail is one line of a JSON file: long exception texts are cut here. */
    private static final int DETAIL_CHARS = 400;

    private final Ledger ledger;
    private final List<String> scenarios;

    Checks(Set<Gap> tolerable) {
        this(new Ledger(tolerable), List.of());
    }

    private Checks(Ledger ledger, List<String> scenarios) {
        this.ledger = ledger;
        this.scenarios = scenarios;
    }

    /** A view of the same ledger whose failures count against exactly these matrix scenarios. */
    Checks countingAgainst(String... scenarioIds) {
        return new Checks(ledger, List.of(scenarioIds));
    }

    /** The first failure counted against a scenario ("category: detail"), if any. */
    Optional<String> firstFailure(String scenario) {
        return ledger.firstFailure(scenario);
    }

    /** Records a passed check, or a failure of {@code category} described by {@code detail}. */
    boolean expect(boolean ok, String category, String detail) {
        if (ok) {
            pass();
        } else {
            fail(category, detail);
        }
        return ok;
    }

    /** Like {@link #expect}, but builds the detail only on failure (the per-record checks run often). */
    boolean expectEqual(String category, Object expected, Object actual, String where) {
        if (Objects.equals(expected, actual)) {
            pass();
            return true;
        }
        fail(category, where + ": expected " + expected + ", got " + actual);
        return false;
    }

    void fail(String category, String detail) {
        ledger.fail(scenarios, category, detail);
    }

    /**
     * A failure in {@code gap}'s checks: reported, but fatal to the exit status unless the run
     * tolerates that gap. The matrix cells still fail: a tolerated gap is a broker gap, not a pass.
     */
    void failUnlessTolerated(Gap gap, String category, String detail) {
        ledger.failUnlessTolerated(scenarios, gap, category, detail);
    }

    void pass() {
        ledger.pass();
    }

    boolean ok() {
        return ledger.ok();
    }

    long passedCount() {
        return ledger.passedCount();
    }

    long failedCount() {
        return ledger.failedCount();
    }

    void print(PrintStream out) {
        ledger.print(out);
    }

    /** One line, at most DETAIL_CHARS long: what a matrix cell shows of a failure. */
    static String oneLine(String text) {
        String line = text.strip().replaceAll("\\s*\\R\\s*", " | ");
        return line.length() <= DETAIL_CHARS ? line : line.substring(0, DETAIL_CHARS - 3) + "...";
    }

    private static final class Ledger {
        private final Set<Gap> tolerable;
        private long passed;
        private final Map<String, Failure> failures = new LinkedHashMap<>();
        private final Map<String, Failure> tolerated = new LinkedHashMap<>();
        private final Map<String, String> firstFailureByScenario = new HashMap<>();

        Ledger(Set<Gap> tolerable) {
            this.tolerable = tolerable;
        }

        synchronized void pass() {
            passed++;
        }

        synchronized void fail(List<String> scenarios, String category, String detail) {
            record(failures, category, detail);
            countAgainst(scenarios, category, detail);
        }

        synchronized void failUnlessTolerated(List<String> scenarios, Gap gap, String category, String detail) {
            if (tolerable.contains(gap)) {
                String label = category + " [--tolerate " + gap.flagName() + ": " + gap.description + "]";
                record(tolerated, label, detail);
                countAgainst(scenarios, "tolerated " + label, detail);
            } else {
                fail(scenarios, category, detail);
            }
        }

        private void countAgainst(List<String> scenarios, String category, String detail) {
            for (String scenario : scenarios) {
                firstFailureByScenario.putIfAbsent(scenario, oneLine(category + ": " + detail));
            }
        }

        synchronized Optional<String> firstFailure(String scenario) {
            return Optional.ofNullable(firstFailureByScenario.get(scenario));
        }

        synchronized boolean ok() {
            return failures.isEmpty();
        }

        synchronized long passedCount() {
            return passed;
        }

        synchronized long failedCount() {
            return failures.values().stream().mapToLong(f -> f.count).sum();
        }

        synchronized void print(PrintStream out) {
            printGroup(out, "TOLERATED", tolerated);
            printGroup(out, "FAILED", failures);
        }

        private static void printGroup(PrintStream out, String label, Map<String, Failure> group) {
            for (var entry : group.entrySet()) {
                Failure failure = entry.getValue();
                out.printf("%s %s (%d time%s)%n", label, entry.getKey(), failure.count, failure.count == 1 ? "" : "s");
                failure.examples.forEach(example -> out.println("    " + example));
                if (failure.count > failure.examples.size()) {
                    out.printf("    ... and %d more%n", failure.count - failure.examples.size());
                }
            }
        }

        private static void record(Map<String, Failure> group, String category, String detail) {
            Failure failure = group.computeIfAbsent(category, c -> new Failure());
            failure.count++;
            if (failure.examples.size() < EXAMPLES_PER_CATEGORY) {
                failure.examples.add(detail);
            }
        }
    }

    private static final class Failure {
        long count;
        final List<String> examples = new ArrayList<>();
    }
}
