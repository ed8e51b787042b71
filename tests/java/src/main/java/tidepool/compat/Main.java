package tidepool.compat;

import java.io.PrintWriter;
import java.io.StringWriter;

/**
 * Checks a Kafka-wire broker against the official Java client (kafka-clients): admin, idempotent
 * produce with every compression codec, group-less consume, offset lookups, consumer groups (eager
 * and cooperative), committed offsets, topic configs and log compaction; and reports each scenario
 * of the compatibility matrix (tests/matrix) as client {@code java}. Exit 0 only if every check
 * passed; 1 on any failure; 2 on bad usage.
 */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) {
        Options options;
        try {
            options = Options.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("error: " + e.getMessage());
            System.err.print(Options.USAGE);
            System.exit(2);
            return;
        }
        Matrix matrix = Matrix.fromEnvironment();
        Stage.startWatchdog(options.timeoutSeconds(), matrix);
        Checks checks = new Checks(options.tolerated());
        CompatRun run = new CompatRun(options, checks, matrix);
        try {
            run.run();
        } catch (Exception e) {
            checks.fail("run aborted by an exception", stackTrace(e));
        }
        // Every scenario reports itself; this only catches a run that ended before some did.
        boolean missing = matrix.reportMissing("the run ended before this scenario (see the log)");
        run.printSummary(System.out);
        checks.print(System.out);
        System.out.printf("java-compat: %d passed, %d failed%n", checks.passedCount(), checks.failedCount());
        System.out.flush();
        // exit, not return: a client thread left behind by a failed step must not keep the JVM alive.
        System.exit(checks.ok() && !missing ? 0 : 1);
    }

    private static String stackTrace(Throwable e) {
        StringWriter text = new StringWriter();
        e.printStackTrace(new PrintWriter(text));
        return text.toString().strip();
    }
}
