package tidepool.compat;

import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;
import java.util.Optional;
import java.util.TreeMap;
import java.util.function.Function;

/**
 * What each partition must contain, built from the producer's acknowledgements. Every expectation of
 * the consume and list-offsets checks is derived from here, never from what the broker says later.
 */
final class ProducedLog {
    private final int partitions;
    private final Map<Integer, NavigableMap<Long, SentRecord>> byPartition = new TreeMap<>();

    ProducedLog(int partitions) {
        this.partitions = partitions;
        for (int p = 0; p < partitions; p++) {
            byPartition.put(p, new TreeMap<>());
        }
    }

    /** Adds an acknowledged record; a second record acknowledged at the same offset is a failure. */
    void add(SentRecord sent, Checks checks) {
        NavigableMap<Long, SentRecord> log = byPartition.get(sent.partition());
        if (!checks.expect(log != null, "ack names a partition outside the topic", sent.where())) {
            return;
        }
        SentRecord previous = log.putIfAbsent(sent.offset(), sent);
        checks.expect(previous == null, "two records acknowledged at one offset",
                sent.where() + " and " + (previous == null ? "" : previous.planned().id()));
    }

    /**
     * A topic created for this run starts at 0 and, with one idempotent producer at a time, has no
     * gaps. A gap counts against the codec of the record acknowledged after it ({@code checksFor}).
     */
    void checkAcknowledgedOffsetsContiguous(Function<String, Checks> checksFor) {
        for (int p = 0; p < partitions; p++) {
            long expected = 0;
            for (SentRecord sent : byPartition.get(p).values()) {
                if (!checksFor.apply(sent.planned().codec()).expectEqual("acknowledged offsets not contiguous from 0",
                        expected, sent.offset(), "partition " + p)) {
                    break;
                }
                expected++;
            }
        }
    }

    int partitions() {
        return partitions;
    }

    int size() {
        return byPartition.values().stream().mapToInt(Map::size).sum();
    }

    int size(int partition) {
        return byPartition.get(partition).size();
    }

    SentRecord at(int partition, long offset) {
        NavigableMap<Long, SentRecord> log = byPartition.get(partition);
        return log == null ? null : log.get(offset);
    }

    Collection<SentRecord> records(int partition) {
        return byPartition.get(partition).values();
    }

    List<SentRecord> all() {
        return byPartition.values().stream().flatMap(log -> log.values().stream()).toList();
    }

    long startOffset(int partition) {
        NavigableMap<Long, SentRecord> log = byPartition.get(partition);
        return log.isEmpty() ? 0 : log.firstKey();
    }

    long endOffset(int partition) {
        NavigableMap<Long, SentRecord> log = byPartition.get(partition);
        return log.isEmpty() ? 0 : log.lastKey() + 1;
    }

    /** Kafka's answer to "offset for timestamp": the first record, in offset order, with timestamp >= target. */
    Optional<SentRecord> firstAtOrAfter(int partition, long targetTimestamp) {
        return records(partition).stream().filter(r -> r.timestamp() >= targetTimestamp).findFirst();
    }

    /** The record with the largest timestamp (the workload keeps maxima unique, so ties do not arise). */
    Optional<SentRecord> maxTimestamp(int partition) {
        SentRecord best = null;
        for (SentRecord r : records(partition)) {
            if (best == null || r.timestamp() > best.timestamp()) {
                best = r;
            }
        }
        return Optional.ofNullable(best);
    }
}
