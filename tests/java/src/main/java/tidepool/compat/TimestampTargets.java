package tidepool.compat;

import java.util.List;
import java.util.OptionalLong;

/**
 * Timestamps to look offsets up by: before everything (answer: each partition's first record), in the
 * middle (answer depends on the out-of-order peaks), equal to a peak, and after everything (answer: none).
 */
final class TimestampTargets {
    private TimestampTargets() {
    }

    static List<Long> of(ProducedLog log) {
        List<SentRecord> all = log.all();
        long min = all.stream().mapToLong(SentRecord::timestamp).min().orElse(0);
        long max = all.stream().mapToLong(SentRecord::timestamp).max().orElse(0);
        OptionalLong median = all.stream().mapToLong(SentRecord::timestamp).sorted().skip(all.size() / 2).findFirst();
        return List.of(min - 1, median.orElse(min), max, max + 1);
    }
}
