package tidepool.compat;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * Collects the outcome of every check. Failures are grouped by a short category so that one broken
 * behaviour hitting ten thousand records prints as one line with a count and a few examples, not as
 * ten thousand lines.
 */
final class Checks {
    private static final int EXAMPLES_PER_CATEGORY = 5;

    private final Set<Gap> tolerable;
    private long passed;
    private final Map<String, Failure> failures = new LinkedHashMap<>();
    private final Map<String, Failure> tolerated = new LinkedHashMap<>();

    Checks(Set<Gap> tolerable) {
        this.tolerable = tolerable;
    }

    /** Records a passed check, or a failure of {@code category} described by {@code detail}. */
    boolean expect(boolean ok, String category, String detail) {
        if (ok) {
            passed++;
        } else {
            fail(category, detail);
        }
        return ok;
    }

    /** Like {@link #expect}, but builds the detail only on failure (the per-record checks run often). */
    boolean expectEqual(String category, Object expected, Object actual, String where) {
        if (Objects.equals(expected, actual)) {
            passed++;
            return true;
        }
        fail(category, where + ": expected " + expected + ", got " + actual);
        return false;
    }

    void fail(String category, String detail) {
        record(failures, category, detail);
    }

    /** A failure in {@code gap}'s checks: reported, but fatal unless the run tolerates that gap. */
    void failUnlessTolerated(Gap gap, String category, String detail) {
        if (tolerable.contains(gap)) {
            record(tolerated, category + " [--tolerate " + gap.flagName() + ": " + gap.description + "]", detail);
        } else {
            fail(category, detail);
        }
    }

    void pass() {
        passed++;
    }

    boolean ok() {
        return failures.isEmpty();
    }

    long passedCount() {
        return passed;
    }

    long failedCount() {
        return failures.values().stream().mapToLong(f -> f.count).sum();
    }

    void print(PrintStream out) {
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

    private static final class Failure {
        long count;
        final List<String> examples = new ArrayList<>();
    }
}
