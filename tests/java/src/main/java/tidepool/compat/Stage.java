package tidepool.compat;

/**
 * What the check is doing right now, and a watchdog that ends the process if it takes too long: a
 * broker that never answers must fail the run, not hang CI.
 */
final class Stage {
    private static volatile String current = "starting";
    private static final long STARTED_NANOS = System.nanoTime();

    private Stage() {
    }

    static void enter(String stage) {
        current = stage;
        System.out.printf("[%6.2fs] %s%n", elapsedSeconds(), stage);
    }

    static double elapsedSeconds() {
        return (System.nanoTime() - STARTED_NANOS) / 1e9;
    }

    /** On timeout, the scenarios not reported yet are reported failed before the process ends. */
    static void startWatchdog(int timeoutSeconds, Matrix matrix) {
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(timeoutSeconds * 1000L);
            } catch (InterruptedException e) {
                return;
            }
            matrix.reportMissing("run timed out after " + timeoutSeconds + " s while: " + current);
            System.out.flush();
            System.err.printf("TIMEOUT after %ds while %s%n", timeoutSeconds, current);
            Thread.getAllStackTraces().forEach((thread, stack) -> {
                if (thread.getName().equals("main")) {
                    System.err.println("main thread:");
                    for (StackTraceElement frame : stack) {
                        System.err.println("    at " + frame);
                    }
                }
            });
            System.err.flush();
            // halt, not exit: client threads blocked on the broker must not keep the JVM alive.
            Runtime.getRuntime().halt(1);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();
    }
}
