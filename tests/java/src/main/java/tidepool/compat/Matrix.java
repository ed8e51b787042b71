package tidepool.compat;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * Reports this program's cells of the compatibility matrix (tests/matrix/README.md): one line
 * {@code MATRIX java <scenario> <PASS|FAIL|SKIP> <detail>} on stdout per scenario and, when
 * TIDEPOOL_MATRIX names a file, one JSON line appended to it. Every scenario is reported exactly
 * once; {@link #reportMissing} fails the ones a run did not reach, so no cell is left empty.
 */
final class Matrix {
    static final String CLIENT = "java";

    static final String IDEMPOTENCE = "idempotence";
    static final String GROUP_REBALANCE = "group-rebalance";
    static final String GROUP_COOPERATIVE = "group-cooperative";
    static final String COMMITS = "commits";
    static final String ADMIN = "admin";
    static final String COMPACTION = "compaction";

    /** Every scenario of tests/matrix/scenarios.json, in its order. */
    static final List<String> SCENARIOS = List.of(codec("none"), codec("gzip"), codec("snappy"), codec("lz4"),
            codec("zstd"), IDEMPOTENCE, GROUP_REBALANCE, GROUP_COOPERATIVE, COMMITS, ADMIN, COMPACTION);

    private final Path file;
    private final Set<String> reported = new LinkedHashSet<>();

    /** @param file where to append the JSON lines; null: stdout only */
    Matrix(Path file) {
        this.file = file;
    }

    static Matrix fromEnvironment() {
        String path = System.getenv("TIDEPOOL_MATRIX");
        return new Matrix(path == null || path.isEmpty() ? null : Path.of(path));
    }

    static String codec(String codec) {
        return "codec-" + codec;
    }

    /** Reports a scenario from its checks: fail with the first failure counted against it, else pass. */
    void report(String scenario, Checks checks) {
        Optional<String> failure = checks.firstFailure(scenario);
        write(scenario, failure.isPresent() ? "fail" : "pass", failure.orElse(""));
    }

    /** Fails every scenario not reported yet (the run ended early); true if there was one. */
    synchronized boolean reportMissing(String why) {
        boolean any = false;
        for (String scenario : SCENARIOS) {
            if (!reported.contains(scenario)) {
                write(scenario, "fail", why);
                any = true;
            }
        }
        return any;
    }

    private synchronized void write(String scenario, String result, String detail) {
        if (!SCENARIOS.contains(scenario)) {
            throw new IllegalArgumentException("not a matrix scenario: " + scenario);
        }
        if (!reported.add(scenario)) {
            return; // e.g. the watchdog and the run racing at the very end: the first report stands
        }
        String line = Checks.oneLine(detail);
        System.out.println("MATRIX " + CLIENT + " " + scenario + " " + result.toUpperCase() + (line.isEmpty() ? "" : " " + line));
        System.out.flush();
        if (file != null) {
            append("{\"client\": " + json(CLIENT) + ", \"scenario\": " + json(scenario) + ", \"result\": "
                    + json(result) + ", \"detail\": " + json(line) + "}\n");
        }
    }

    /** One write on a file opened for appending: programs reporting at once do not interleave lines. */
    private void append(String line) {
        ByteBuffer bytes = ByteBuffer.wrap(line.getBytes(StandardCharsets.UTF_8));
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.APPEND)) {
            channel.write(bytes);
            if (bytes.hasRemaining()) {
                System.err.println("matrix: short write to " + file);
            }
        } catch (IOException e) {
            System.err.println("matrix: cannot append to " + file + ": " + e);
        }
    }

    static String json(String text) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : text.toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append('"').toString();
    }
}
