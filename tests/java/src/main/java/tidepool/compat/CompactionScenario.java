package tidepool.compat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
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
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The compaction scenario of the matrix, exactly as tests/matrix/README.md describes it (the same
 * for every client; tests/compat/compaction_matrix.py is the Python version of plan and judgement):
 * a compacted topic with a short segment.ms; 200 updates over 20 keys, then tombstones for the first
 * 5; after 1.5 s one record with key {@code roll}, whose append rolls the segment so the first one
 * becomes cleanable; then the partition is read from offset 0 every second, up to 60 s, until each
 * key appears once, and that last read is judged against the delivery reports.
 */
final class CompactionScenario {
    static final int KEYS = 20;
    static final int UPDATES = 200;
    static final int TOMBSTONED = 5;
    static final String ROLL_KEY = "roll";
    static final Duration ROLL_AFTER = Duration.ofMillis(1500);
    static final Duration WAIT = Duration.ofSeconds(60);
    private static final Duration READ_EVERY = Duration.ofSeconds(1);
    /** One read of a single small partition; more means the broker stopped answering. */
    private static final Duration ONE_READ_WITHIN = Duration.ofSeconds(15);

    static final Map<String, String> TOPIC_CONFIGS = topicConfigs();

    /** A record to produce, in order; a null value is a tombstone. */
    record Planned(String key, String value) {
    }

    /** A record as read back. */
    record Read(long offset, String key, String value) {
    }

    private final String bootstrap;
    private final AdminChecks admin;
    private final Checks checks;
    private final String topic = "tidepool-java-compat-compaction-" + UUID.randomUUID().toString().substring(0, 8);
    private String summary = "";

    CompactionScenario(String bootstrap, AdminChecks admin, Checks checks) {
        this.bootstrap = bootstrap;
        this.admin = admin;
        this.checks = checks;
    }

    String summary() {
        return summary;
    }

    private static Map<String, String> topicConfigs() {
        Map<String, String> configs = new LinkedHashMap<>();
        configs.put("cleanup.policy", "compact");
        configs.put("segment.ms", "1000");
        configs.put("min.cleanable.dirty.ratio", "0.01");
        // Long enough that the tombstones are still there when the partition is read.
        configs.put("delete.retention.ms", "600000");
        return configs;
    }

    static String keyName(int index) {
        return String.format("key-%02d", index);
    }

    /** Updates round-robin over the keys (values like "key-07=v3"), then a tombstone for the first TOMBSTONED keys. */
    static List<Planned> plan() {
        List<Planned> records = new ArrayList<>();
        for (int update = 0; update < UPDATES; update++) {
            String key = keyName(update % KEYS);
            records.add(new Planned(key, key + "=v" + update / KEYS));
        }
        for (int index = 0; index < TOMBSTONED; index++) {
            records.add(new Planned(keyName(index), null));
        }
        return records;
    }

    /** Each of the KEYS keys appears exactly once: the cleaner has passed over the first segment. */
    static boolean settled(List<Read> read) {
        Map<String, Integer> counts = new HashMap<>();
        for (Read record : read) {
            if (record.key() != null && !record.key().equals(ROLL_KEY)) {
                counts.merge(record.key(), 1, Integer::sum);
            }
        }
        return counts.size() == KEYS && counts.values().stream().allMatch(count -> count == 1);
    }

    /**
     * The failed checks of the last read (empty: pass). {@code offsets}: what each delivery report
     * named, in produce order.
     */
    static List<String> judge(List<Planned> produced, List<Long> offsets, long rollOffset, List<Read> read) {
        List<String> failures = new ArrayList<>();
        if (offsets.size() != produced.size()) {
            return List.of(offsets.size() + " delivery reports for " + produced.size() + " records");
        }
        Map<String, Read> latest = new TreeMap<>();
        for (int i = 0; i < produced.size(); i++) {
            latest.put(produced.get(i).key(), new Read(offsets.get(i), produced.get(i).key(), produced.get(i).value()));
        }
        if (!settled(read)) {
            failures.add("not compacted within " + WAIT.toSeconds() + " s: " + read.size()
                    + " records read, keys not yet unique");
        }
        long previous = -1;
        for (Read record : read) {
            if (record.offset() <= previous) {
                failures.add("offset " + record.offset() + " after " + previous + ": offsets must increase");
            }
            previous = record.offset();
        }
        Map<String, Read> seen = new HashMap<>();
        read.forEach(record -> seen.put(record.key(), record));
        latest.forEach((key, last) -> {
            Read record = seen.get(key);
            if (record == null) {
                failures.add(key + " is gone; its last record was at offset " + last.offset());
            } else if (record.offset() != last.offset() || !Objects.equals(record.value(), last.value())) {
                failures.add(key + " read as " + show(record.value()) + " at " + record.offset() + ", expected "
                        + show(last.value()) + " at " + last.offset());
            }
        });
        if (read.size() >= produced.size() + 1) {
            failures.add(read.size() + " records read of " + (produced.size() + 1) + " produced: nothing removed");
        }
        Read lastRead = read.isEmpty() ? null : read.get(read.size() - 1);
        if (lastRead == null || !ROLL_KEY.equals(lastRead.key()) || lastRead.offset() != rollOffset) {
            failures.add("the last record read is not the roll record at offset " + rollOffset);
        }
        return failures.size() > 10 ? failures.subList(0, 10) : failures;
    }

    private static String show(String value) {
        return value == null ? "null" : "\"" + value + "\"";
    }

    void run() throws InterruptedException {
        admin.createScenarioTopic(topic, 1, TOPIC_CONFIGS);
        List<Planned> produced = plan();
        List<Long> offsets;
        long rollOffset;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerConfig())) {
            offsets = send(producer, produced);
            // The append of a record after segment.ms finds the segment old enough to roll.
            Thread.sleep(ROLL_AFTER.toMillis());
            rollOffset = send(producer, List.of(new Planned(ROLL_KEY, ROLL_KEY))).get(0);
        }
        long started = System.nanoTime();
        List<Read> read;
        int reads = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerConfig())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            consumer.assign(List.of(tp));
            while (true) {
                long readStarted = System.nanoTime();
                read = readFromStart(consumer, tp);
                reads++;
                if (settled(read) || System.nanoTime() - started > WAIT.toNanos()) {
                    break;
                }
                long pause = READ_EVERY.toMillis() - (System.nanoTime() - readStarted) / 1_000_000;
                Thread.sleep(Math.max(0, pause));
            }
        }
        summary = String.format("%d records read of %d produced after %d ms (%d reads)", read.size(),
                produced.size() + 1, (System.nanoTime() - started) / 1_000_000, reads);
        List<String> failures = judge(produced, offsets, rollOffset, read);
        for (String failure : failures) {
            checks.fail("compaction", failure);
        }
        if (failures.isEmpty()) {
            checks.pass();
        }
    }

    /** Sends in order and returns the offset each delivery report named. */
    private List<Long> send(KafkaProducer<String, String> producer, List<Planned> records)
            throws InterruptedException {
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        for (Planned record : records) {
            acks.add(producer.send(new ProducerRecord<>(topic, 0, record.key(), record.value())));
        }
        producer.flush();
        List<Long> offsets = new ArrayList<>();
        for (int i = 0; i < acks.size(); i++) {
            try {
                offsets.add(acks.get(i).get(15, TimeUnit.SECONDS).offset());
            } catch (ExecutionException | TimeoutException e) {
                throw new CheckException("produce of " + records.get(i) + " failed: " + e, e);
            }
        }
        return offsets;
    }

    /** The partition from offset 0 to its current end. */
    private List<Read> readFromStart(KafkaConsumer<String, String> consumer, TopicPartition tp) {
        long end = consumer.endOffsets(List.of(tp)).get(tp);
        consumer.seek(tp, 0);
        List<Read> read = new ArrayList<>();
        long stopAt = System.nanoTime() + ONE_READ_WITHIN.toNanos();
        while (consumer.position(tp) < end) {
            if (System.nanoTime() > stopAt) {
                throw new CheckException("reading " + tp + " from 0 did not reach its end " + end + " within "
                        + ONE_READ_WITHIN.toSeconds() + " s (at " + consumer.position(tp) + ")", null);
            }
            for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                read.add(new Read(record.offset(), record.key(), record.value()));
            }
        }
        return read;
    }

    private Properties producerConfig() {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.CLIENT_ID_CONFIG, "tidepool-java-compat-compaction");
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        return config;
    }

    private Properties consumerConfig() {
        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ConsumerConfig.CLIENT_ID_CONFIG, "tidepool-java-compat-compaction");
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        return config;
    }
}
