package tidepool.compat;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;

/**
 * Generates the records to produce, deterministically from a seed. The shapes are chosen to exercise
 * the edges a broker can get wrong when it stores and serves client batches: null vs empty keys and
 * values, headers with duplicate keys, null header values and an empty header key, records larger than
 * a batch, and CreateTime timestamps that are not monotonic in offset order (so "max timestamp" and
 * "first offset at or after a timestamp" are not simply the last and the binary-searched offset).
 */
final class Workload {
    static final List<String> CODECS = List.of("none", "gzip", "snappy", "lz4", "zstd");

    /** Gap between consecutive ordinary timestamps: distinct timestamps make expectations unambiguous. */
    private static final long TIMESTAMP_STEP_MS = 10;
    /** Peaks lie this far after the last ordinary timestamp. */
    private static final long PEAK_GAP_MS = 60_000;

    private final int recordsPerCodec;
    private final int partitions;
    private final long baseTimestamp;
    private final Random random;

    Workload(int recordsPerCodec, int partitions, long baseTimestamp, long seed) {
        this.recordsPerCodec = recordsPerCodec;
        this.partitions = partitions;
        this.baseTimestamp = baseTimestamp;
        this.random = new Random(seed);
    }

    long baseTimestamp() {
        return baseTimestamp;
    }

    /**
     * A base timestamp that puts every timestamp of the workload in the past: Kafka 4 rejects
     * timestamps more than an hour in the future by default (message.timestamp.after.max.ms).
     */
    static long baseTimestampBefore(long nowMs, int recordsPerCodec) {
        long span = (long) CODECS.size() * recordsPerCodec * TIMESTAMP_STEP_MS + PEAK_GAP_MS + CODECS.size();
        return nowMs - span - 60 * 60 * 1000L;
    }

    /** The timestamp of the ordinary record with this global position (codec-major). */
    long ordinaryTimestamp(int codecIndex, int index) {
        return baseTimestamp + ((long) codecIndex * recordsPerCodec + index) * TIMESTAMP_STEP_MS;
    }

    List<PlannedRecord> plan(String codec) {
        int codecIndex = CODECS.indexOf(codec);
        List<PlannedRecord> records = new ArrayList<>(recordsPerCodec);
        for (int i = 0; i < recordsPerCodec; i++) {
            records.add(planOne(codec, codecIndex, i));
        }
        return records;
    }

    private PlannedRecord planOne(String codec, int codecIndex, int i) {
        byte[] key = key(codec, i);
        Integer partition = key == null ? i % partitions : null;
        return new PlannedRecord(codec, i, partition, key, value(codec, i), headers(codec, i),
                timestamp(codecIndex, i));
    }

    private long timestamp(int codecIndex, int i) {
        // One record per codec, mid-stream, carries a timestamp above all others (distinct per codec).
        if (i == recordsPerCodec / 2) {
            return ordinaryTimestamp(CODECS.size(), 0) + PEAK_GAP_MS + codecIndex;
        }
        return ordinaryTimestamp(codecIndex, i);
    }

    private static byte[] key(String codec, int i) {
        if (i % 97 == 3) {
            return null;
        }
        if (i % 211 == 5) {
            return new byte[0];
        }
        return utf8("key-" + codec + "-" + i);
    }

    private byte[] value(String codec, int i) {
        if (i % 113 == 7) {
            return null;
        }
        if (i % 127 == 9) {
            return new byte[0];
        }
        // Occasionally larger than batch.size (16 KiB), so the record travels in a batch of its own.
        int length = i % 499 == 11 ? 40_000 + random.nextInt(20_000) : random.nextInt(600);
        return compressibleBytes(codec + ":" + i + ":", length);
    }

    /** Text with repetition (so codecs actually compress) plus random bytes (so values differ). */
    private byte[] compressibleBytes(String prefix, int length) {
        byte[] bytes = new byte[length];
        byte[] pattern = utf8(prefix + "the quick brown fox jumps over the lazy dog ");
        for (int j = 0; j < length; j++) {
            bytes[j] = j % 7 == 0 ? (byte) random.nextInt(256) : pattern[j % pattern.length];
        }
        return bytes;
    }

    private static List<Header> headers(String codec, int i) {
        List<Header> headers = new ArrayList<>();
        if (i % 13 == 4) {
            return headers; // some records carry no headers at all
        }
        headers.add(new RecordHeader("codec", utf8(codec)));
        // Two headers with one key: order and both values must survive the broker.
        headers.add(new RecordHeader("dup", utf8("first-" + i)));
        headers.add(new RecordHeader("seq", ByteBuffer.allocate(4).putInt(i).array()));
        headers.add(new RecordHeader("dup", utf8("second-" + i)));
        if (i % 7 == 0) {
            headers.add(new RecordHeader("nullable", null));
        }
        if (i % 11 == 0) {
            headers.add(new RecordHeader("", utf8("empty-key")));
        }
        return headers;
    }

    static byte[] utf8(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }
}
