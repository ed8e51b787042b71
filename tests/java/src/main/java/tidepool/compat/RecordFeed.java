package tidepool.compat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CopyOnWriteArrayList;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Produces records while a group scenario runs, so that records arrive before, during and after
 * every rebalance: record i goes to partition i mod n with value {@code <tag>:<i>}, one every few
 * milliseconds, from a thread of its own. Every acknowledgement is kept; they are what the members
 * must have read.
 */
final class RecordFeed implements AutoCloseable {
    private static final long JOIN_THREAD_MS = 90_000;

    /** A record the broker acknowledged. */
    record Acked(int partition, long offset, String value) {
    }

    private final String topic;
    private final int partitions;
    private final String tag;
    private final Duration interval;
    private final Properties config;
    private final Thread thread;
    private volatile boolean stopping;
    private final List<Acked> acked = Collections.synchronizedList(new ArrayList<>());
    private final List<String> errors = new CopyOnWriteArrayList<>();

    RecordFeed(String bootstrap, String topic, int partitions, String tag, Duration interval) {
        this.topic = topic;
        this.partitions = partitions;
        this.tag = tag;
        this.interval = interval;
        this.config = config(bootstrap, tag);
        this.thread = new Thread(this::produce, "feed-" + tag);
        thread.setDaemon(true);
    }

    private static Properties config(String bootstrap, String tag) {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.CLIENT_ID_CONFIG, "tidepool-java-compat-feed-" + tag);
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        config.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60_000);
        config.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30_000);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        return config;
    }

    void start() {
        thread.start();
    }

    /** Stops sending and waits until every record sent is acknowledged or failed. */
    void stop() throws InterruptedException {
        stopping = true;
        if (thread.isAlive()) {
            thread.join(JOIN_THREAD_MS);
            if (thread.isAlive()) {
                errors.add("producer not done " + JOIN_THREAD_MS + " ms after it was told to stop");
            }
        }
    }

    @Override
    public void close() {
        try {
            stop();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    List<Acked> acked() {
        synchronized (acked) {
            return List.copyOf(acked);
        }
    }

    List<String> errors() {
        return List.copyOf(errors);
    }

    /** Per partition, one past the last acknowledged offset: where a consumer that read everything commits. */
    Map<Integer, Long> endOffsets() {
        Map<Integer, Long> ends = new HashMap<>();
        for (Acked record : acked()) {
            ends.merge(record.partition(), record.offset() + 1, Math::max);
        }
        return ends;
    }

    private void produce() {
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(config)) {
            for (int i = 0; !stopping; i++) {
                int partition = i % partitions;
                String value = tag + ":" + i;
                producer.send(new ProducerRecord<>(topic, partition, null, value), (metadata, error) -> {
                    if (error != null) {
                        errors.add(value + ": " + error);
                    } else {
                        acked.add(new Acked(metadata.partition(), metadata.offset(), value));
                    }
                });
                Thread.sleep(interval.toMillis());
            }
            producer.flush();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (RuntimeException e) {
            errors.add("producer: " + e);
        }
    }
}
