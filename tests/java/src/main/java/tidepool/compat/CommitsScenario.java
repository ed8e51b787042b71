package tidepool.compat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The commits scenario: a group member commits chosen offsets (with metadata) for every partition;
 * they read back the same through the consumer ({@code committed()}, OffsetFetch) and the Admin
 * client ({@code listConsumerGroupOffsets}); a new member of the group then resumes exactly there:
 * the first record it reads in each partition is at the committed offset, and it reads on to the
 * end without a gap. Its own commit at the end reads back as the log end.
 *
 * <p>Each consumer is used only by the scenario's thread, one after the other.
 */
final class CommitsScenario {
    private static final int PARTITIONS = 3;
    private static final int RECORDS_PER_PARTITION = 20;
    /** Offsets to commit: inside the log and different per partition, so a mixed-up answer shows. */
    private static final Map<Integer, Long> TARGETS = Map.of(0, 3L, 1, 11L, 2, 17L);
    private static final Duration ASSIGNED_WITHIN = Duration.ofSeconds(30);
    private static final Duration READ_WITHIN = Duration.ofSeconds(30);
    private static final Duration CALL_TIMEOUT = Duration.ofSeconds(15);

    private final String bootstrap;
    private final AdminChecks admin;
    private final GroupAdminChecks groups;
    private final Checks checks;
    private final String topic;
    private final String groupId;

    CommitsScenario(String bootstrap, AdminChecks admin, Checks checks) {
        String suffix = UUID.randomUUID().toString().substring(0, 8);
        this.bootstrap = bootstrap;
        this.admin = admin;
        this.groups = new GroupAdminChecks(admin.client());
        this.checks = checks;
        this.topic = "tidepool-java-compat-commits-" + suffix;
        this.groupId = "tidepool-java-compat-commits-" + suffix;
    }

    void run() throws InterruptedException {
        admin.createScenarioTopic(topic, PARTITIONS, Map.of());
        produce();
        Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
        TARGETS.forEach((p, offset) -> commit.put(new TopicPartition(topic, p),
                new OffsetAndMetadata(offset, "tidepool-java p" + p)));

        try (KafkaConsumer<String, String> first = new KafkaConsumer<>(config("first", "earliest"))) {
            first.subscribe(List.of(topic));
            Waits.require(checks, () -> {
                first.poll(Duration.ofMillis(100));
                return first.assignment().size() == PARTITIONS;
            }, ASSIGNED_WITHIN, "the only member of a group was not assigned every partition",
                    () -> "assignment " + first.assignment());
            first.commitSync(commit, CALL_TIMEOUT);
            Map<TopicPartition, OffsetAndMetadata> readBack = first.committed(commit.keySet(), CALL_TIMEOUT);
            checks.expectEqual("consumer.committed() differs from the offsets committed", describe(commit),
                    describe(readBack), groupId);
        }
        checks.expectEqual("listConsumerGroupOffsets differs from the offsets committed", describe(commit),
                describe(groups.committed(groupId)), groupId);
        resume();
    }

    /** A new member of the group starts at the committed offsets and reads on to the end. */
    private void resume() throws InterruptedException {
        // auto.offset.reset=none: without a committed offset the consumer fails instead of guessing.
        try (KafkaConsumer<String, String> second = new KafkaConsumer<>(config("second", "none"))) {
            second.subscribe(List.of(topic));
            Map<Integer, List<ConsumerRecord<String, String>>> read = new HashMap<>();
            Waits.require(checks, () -> {
                for (ConsumerRecord<String, String> record : second.poll(Duration.ofMillis(100))) {
                    read.computeIfAbsent(record.partition(), p -> new ArrayList<>()).add(record);
                }
                return read.values().stream().mapToInt(List::size).sum() >= expectedToRead();
            }, READ_WITHIN, "the resuming member did not read everything after the committed offsets",
                    () -> "read per partition " + counts(read));
            for (int p = 0; p < PARTITIONS; p++) {
                checkResumed(p, read.getOrDefault(p, List.of()));
            }
            second.commitSync(CALL_TIMEOUT);
        }
        Map<Integer, Long> ends = new TreeMap<>();
        for (int p = 0; p < PARTITIONS; p++) {
            ends.put(p, (long) RECORDS_PER_PARTITION);
        }
        Map<Integer, Long> committed = new TreeMap<>();
        groups.committed(groupId).forEach((tp, om) -> committed.put(tp.partition(), om.offset()));
        checks.expectEqual("listConsumerGroupOffsets after reading to the end", ends, committed, groupId);
    }

    private static int expectedToRead() {
        return TARGETS.values().stream().mapToInt(offset -> RECORDS_PER_PARTITION - offset.intValue()).sum();
    }

    /** First record at the committed offset, then every following offset once, values as produced. */
    private void checkResumed(int partition, List<ConsumerRecord<String, String>> records) {
        long committed = TARGETS.get(partition);
        String where = topic + "-" + partition;
        checks.expectEqual("first record read after resuming is not at the committed offset", committed,
                records.isEmpty() ? null : records.get(0).offset(), where);
        long next = committed;
        for (ConsumerRecord<String, String> record : records) {
            if (!checks.expectEqual("records read after resuming not contiguous", next, record.offset(), where)) {
                return;
            }
            checks.expectEqual("value read differs from value produced", value(partition, record.offset()),
                    record.value(), where + "/" + record.offset());
            next++;
        }
        checks.expectEqual("records read after resuming end early", (long) RECORDS_PER_PARTITION, next, where);
    }

    private void produce() throws InterruptedException {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.CLIENT_ID_CONFIG, "tidepool-java-compat-commits");
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(config)) {
            for (int i = 0; i < RECORDS_PER_PARTITION; i++) {
                for (int p = 0; p < PARTITIONS; p++) {
                    acks.add(producer.send(new ProducerRecord<>(topic, p, null, value(p, i))));
                }
            }
            producer.flush();
            for (int i = 0; i < acks.size(); i++) {
                RecordMetadata metadata = acks.get(i).get(15, TimeUnit.SECONDS);
                // A fresh topic, one idempotent producer: record i of a partition lands at offset i.
                checks.expectEqual("produced record not at the expected offset", (long) (i / PARTITIONS),
                        metadata.offset(), topic + "-" + metadata.partition());
            }
        } catch (ExecutionException | TimeoutException e) {
            throw new CheckException("produce failed: " + e, e);
        }
    }

    private static String value(int partition, long offset) {
        return "commits:" + partition + ":" + offset;
    }

    private Properties config(String name, String offsetReset) {
        Properties config = GroupMember.config(bootstrap, groupId, "tidepool-java-compat-commits-" + name,
                RangeAssignor.class);
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, offsetReset);
        return config;
    }

    /** Offsets and metadata per partition, in partition order, comparable and readable. */
    private static Map<Integer, String> describe(Map<TopicPartition, OffsetAndMetadata> offsets) {
        Map<Integer, String> text = new TreeMap<>();
        offsets.forEach((tp, om) -> text.put(tp.partition(), om == null ? "none" : om.offset() + " \"" + om.metadata() + "\""));
        return text;
    }

    private static Map<Integer, Integer> counts(Map<Integer, List<ConsumerRecord<String, String>>> read) {
        Map<Integer, Integer> counts = new TreeMap<>();
        read.forEach((p, records) -> counts.put(p, records.size()));
        return counts;
    }
}
