package tidepool.compat;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Reads the whole topic back with a group-less consumer (assign + seekToBeginning: this stage is
 * about fetching; the group scenarios cover groups) and compares every record with what was
 * acknowledged.
 */
final class Consuming {
    private final String bootstrap;
    private final String topic;
    private final ProducedLog expected;
    private final WorkloadCells cells;
    private final Checks offsetChecks;
    private final Map<String, Integer> consumedPerCodec = new HashMap<>();
    private int consumed;

    Consuming(String bootstrap, String topic, ProducedLog expected, WorkloadCells cells) {
        this.bootstrap = bootstrap;
        this.topic = topic;
        this.expected = expected;
        this.cells = cells;
        this.offsetChecks = cells.offsetQueries();
    }

    int consumed() {
        return consumed;
    }

    Map<String, Integer> consumedPerCodec() {
        return consumedPerCodec;
    }

    void readAndVerify(Duration deadline) {
        List<TopicPartition> partitions = topicPartitions();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(config())) {
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            checkConsumerOffsetQueries(consumer, partitions);
            pollUntilEnd(consumer, partitions, deadline);
        }
        checkNothingMissing();
    }

    private Properties config() {
        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ConsumerConfig.CLIENT_ID_CONFIG, "tidepool-java-compat-consumer");
        // No group.id: nothing is committed, and no coordinator is involved in this stage.
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        config.put(ConsumerConfig.CHECK_CRCS_CONFIG, true);
        config.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        config.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30_000);
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        return config;
    }

    private List<TopicPartition> topicPartitions() {
        List<TopicPartition> partitions = new ArrayList<>();
        for (int p = 0; p < expected.partitions(); p++) {
            partitions.add(new TopicPartition(topic, p));
        }
        return partitions;
    }

    /** The consumer's own ListOffsets paths (beginningOffsets, endOffsets, offsetsForTimes). */
    private void checkConsumerOffsetQueries(KafkaConsumer<byte[], byte[]> consumer, List<TopicPartition> partitions) {
        Map<TopicPartition, Long> beginning = consumer.beginningOffsets(partitions);
        Map<TopicPartition, Long> end = consumer.endOffsets(partitions);
        for (TopicPartition tp : partitions) {
            int p = tp.partition();
            offsetChecks.expectEqual("consumer.beginningOffsets", expected.startOffset(p), beginning.get(tp), tp.toString());
            offsetChecks.expectEqual("consumer.endOffsets", expected.endOffset(p), end.get(tp), tp.toString());
        }
        checkOffsetsForTimes(consumer, partitions);
    }

    private void checkOffsetsForTimes(KafkaConsumer<byte[], byte[]> consumer, List<TopicPartition> partitions) {
        for (long target : TimestampTargets.of(expected)) {
            Map<TopicPartition, Long> query = new HashMap<>();
            partitions.forEach(tp -> query.put(tp, target));
            Map<TopicPartition, OffsetAndTimestamp> answer;
            try {
                answer = consumer.offsetsForTimes(query);
            } catch (RuntimeException e) {
                offsetChecks.failUnlessTolerated(Gap.TIMESTAMP_LOOKUP, "consumer.offsetsForTimes threw",
                        "target " + target + ": " + e);
                continue;
            }
            for (TopicPartition tp : partitions) {
                checkOffsetForTime(tp, target, answer.get(tp));
            }
        }
    }

    /** Kafka answers the first offset with timestamp >= target, or nothing (null) when none qualifies. */
    private void checkOffsetForTime(TopicPartition tp, long target, OffsetAndTimestamp actual) {
        Optional<SentRecord> wanted = expected.firstAtOrAfter(tp.partition(), target);
        boolean same = wanted.isEmpty() ? actual == null
                : actual != null && actual.offset() == wanted.get().offset()
                        && actual.timestamp() == wanted.get().timestamp();
        if (!same) {
            String expectedText = wanted.map(r -> "offset " + r.offset() + " timestamp " + r.timestamp()).orElse("null");
            offsetChecks.failUnlessTolerated(Gap.TIMESTAMP_LOOKUP, "consumer.offsetsForTimes",
                    tp + " target " + target + ": expected " + expectedText + ", got " + actual);
            return;
        }
        offsetChecks.pass();
        if (actual != null && actual.leaderEpoch().isEmpty()) {
            offsetChecks.failUnlessTolerated(Gap.LEADER_EPOCH, "consumer.offsetsForTimes without leader epoch",
                    tp + " target " + target + ": " + actual);
        }
    }

    private void pollUntilEnd(KafkaConsumer<byte[], byte[]> consumer, List<TopicPartition> partitions, Duration deadline) {
        Map<Integer, Long> nextExpectedOffset = new HashMap<>();
        partitions.forEach(tp -> nextExpectedOffset.put(tp.partition(), expected.startOffset(tp.partition())));
        long stopAt = System.nanoTime() + deadline.toNanos();
        while (!reachedEnd(consumer, partitions)) {
            if (System.nanoTime() > stopAt) {
                cells.everyCodec().fail("consumer did not reach the end offsets in time", positions(consumer, partitions));
                return;
            }
            for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(500))) {
                verify(record, nextExpectedOffset);
            }
        }
    }

    private boolean reachedEnd(KafkaConsumer<byte[], byte[]> consumer, List<TopicPartition> partitions) {
        return partitions.stream().allMatch(tp -> consumer.position(tp) >= expected.endOffset(tp.partition()));
    }

    private String positions(KafkaConsumer<byte[], byte[]> consumer, List<TopicPartition> partitions) {
        StringBuilder text = new StringBuilder();
        for (TopicPartition tp : partitions) {
            text.append(String.format("p%d at %d of %d; ", tp.partition(), consumer.position(tp),
                    expected.endOffset(tp.partition())));
        }
        return text.toString();
    }

    private void verify(ConsumerRecord<byte[], byte[]> record, Map<Integer, Long> nextExpectedOffset) {
        consumed++;
        int p = record.partition();
        String where = p + "/" + record.offset();
        // Offsets within a partition arrive in order, each exactly once, with no gap. A gap counts
        // against the codec of the record that should have come next.
        long next = nextExpectedOffset.getOrDefault(p, 0L);
        SentRecord missed = expected.at(p, next);
        Checks orderChecks = missed == null ? cells.everyCodec() : cells.codec(missed.planned().codec());
        orderChecks.expectEqual("consumed offsets not contiguous (gap, duplicate or reorder)", next, record.offset(),
                "partition " + p);
        nextExpectedOffset.put(p, Math.max(next, record.offset() + 1));
        SentRecord sent = expected.at(p, record.offset());
        // A record no acknowledgement named: a write the idempotent producer's retry should not have made.
        if (!cells.everyCodecAndIdempotence().expect(sent != null, "consumed a record nobody produced", where)) {
            return;
        }
        consumedPerCodec.merge(sent.planned().codec(), 1, Integer::sum);
        compare(sent, record, cells.codec(sent.planned().codec()));
    }

    private void compare(SentRecord sent, ConsumerRecord<byte[], byte[]> record, Checks checks) {
        PlannedRecord planned = sent.planned();
        String where = sent.where();
        checks.expect(Arrays.equals(planned.key(), record.key()), "key differs",
                where + ": expected " + show(planned.key()) + ", got " + show(record.key()));
        checks.expect(Arrays.equals(planned.value(), record.value()), "value differs",
                where + ": expected " + show(planned.value()) + ", got " + show(record.value()));
        checks.expect(sameHeaders(planned.headers(), record.headers().toArray()), "headers differ",
                where + ": expected " + show(planned.headers()) + ", got " + show(Arrays.asList(record.headers().toArray())));
        checks.expectEqual("timestamp differs", planned.timestamp(), record.timestamp(), where);
        checks.expectEqual("timestamp type differs", TimestampType.CREATE_TIME, record.timestampType(), where);
        checks.expectEqual("consumed timestamp differs from acknowledged", sent.timestamp(), record.timestamp(), where);
        // The broker stamps each stored batch with the leader epoch; the consumer uses it to validate positions.
        if (record.leaderEpoch().filter(epoch -> epoch >= 0).isEmpty()) {
            checks.failUnlessTolerated(Gap.LEADER_EPOCH, "fetched record without leader epoch", where);
        }
    }

    /** With contiguity checked while reading, equal counts mean every record arrived exactly once. */
    private void checkNothingMissing() {
        cells.everyCodec().expectEqual("consumed record count", expected.size(), consumed, "whole topic");
        Map<String, Integer> producedPerCodec = new HashMap<>();
        expected.all().forEach(r -> producedPerCodec.merge(r.planned().codec(), 1, Integer::sum));
        for (String codec : Workload.CODECS) {
            cells.codec(codec).expectEqual("consumed count per codec", producedPerCodec.getOrDefault(codec, 0),
                    consumedPerCodec.getOrDefault(codec, 0), codec);
        }
    }

    /** Same keys and values in the same order, duplicates and null values included. */
    private static boolean sameHeaders(List<Header> expected, Header[] actual) {
        if (expected.size() != actual.length) {
            return false;
        }
        for (int i = 0; i < actual.length; i++) {
            if (!expected.get(i).key().equals(actual[i].key())
                    || !Arrays.equals(expected.get(i).value(), actual[i].value())) {
                return false;
            }
        }
        return true;
    }

    static String show(byte[] bytes) {
        if (bytes == null) {
            return "null";
        }
        String text = new String(bytes, 0, Math.min(bytes.length, 40), StandardCharsets.UTF_8);
        return "[" + bytes.length + " bytes \"" + text.replaceAll("\\p{Cntrl}", "?") + "\"]";
    }

    private static String show(List<Header> headers) {
        return headers.stream().map(h -> h.key() + "=" + show(h.value())).toList().toString();
    }
}
