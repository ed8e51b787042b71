package tidepool.compat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * One member of a consumer group (classic protocol): a KafkaConsumer in a thread of its own, since
 * a KafkaConsumer may only be used by one thread. It subscribes, polls, notes every record it reads
 * and every assignment change its rebalance listener sees, and commits synchronously after each
 * batch it has processed. The scenario thread only looks at what it noted; the judgement is done
 * there, after the fact.
 */
final class GroupMember implements AutoCloseable {
    private static final Duration POLL = Duration.ofMillis(100);
    private static final Duration COMMIT_TIMEOUT = Duration.ofSeconds(15);
    private static final long JOIN_THREAD_MS = 45_000;

    enum Change { ASSIGNED, REVOKED, LOST }

    /** What the rebalance listener was told, when (System.nanoTime). */
    record Event(Change change, Set<Integer> partitions, long nanos) {
        @Override
        public String toString() {
            return change.name().toLowerCase() + partitions;
        }
    }

    /** A record as this member read it; {@code owned}: the partition was in its assignment then. */
    record Read(int partition, long offset, String value, boolean owned) {
    }

    private final String name;
    private final String topic;
    private final Properties config;
    private final Ownership ownership;
    private final Thread thread;
    private volatile boolean stopping;
    private final Set<Integer> owned = ConcurrentHashMap.newKeySet();
    private final List<Event> events = new CopyOnWriteArrayList<>();
    private final List<Read> reads = Collections.synchronizedList(new ArrayList<>());
    private final List<String> errors = new CopyOnWriteArrayList<>();
    private final List<String> refusedCommits = new CopyOnWriteArrayList<>();

    GroupMember(String name, Properties config, String topic, Ownership ownership) {
        this.name = name;
        this.config = config;
        this.topic = topic;
        this.ownership = ownership;
        this.thread = new Thread(this::consume, "member-" + name);
        thread.setDaemon(true);
    }

    /**
     * The classic group protocol with the given assignor. The session timeout is long (30 s) so
     * that, when a member leaves, only its LeaveGroup can explain a prompt hand-over.
     */
    static Properties config(String bootstrap, String groupId, String clientId, Class<?> assignor) {
        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
        config.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
        config.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        config.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor.getName());
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 30_000);
        config.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 1_000);
        config.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        config.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30_000);
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        return config;
    }

    String name() {
        return name;
    }

    String clientId() {
        return config.getProperty(ConsumerConfig.CLIENT_ID_CONFIG);
    }

    void start() {
        thread.start();
    }

    Set<Integer> owned() {
        return new TreeSet<>(owned);
    }

    List<Event> events() {
        return List.copyOf(events);
    }

    int readCount() {
        return reads.size();
    }

    List<Read> reads() {
        synchronized (reads) {
            return List.copyOf(reads);
        }
    }

    List<String> errors() {
        return List.copyOf(errors);
    }

    List<String> refusedCommits() {
        return List.copyOf(refusedCommits);
    }

    /** Closes the consumer (which revokes its partitions and sends LeaveGroup) and waits for that. */
    void stop() throws InterruptedException {
        stopping = true;
        if (thread.isAlive()) {
            thread.join(JOIN_THREAD_MS);
            if (thread.isAlive()) {
                errors.add("consumer " + name + " not closed after " + JOIN_THREAD_MS + " ms");
            }
        }
    }

    /** For try-with-resources: a scenario that stopped early must not leave its members running. */
    @Override
    public void close() {
        try {
            stop();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    String describe() {
        return name + " owns " + owned() + ", read " + readCount() + ", events " + events
                + (errors.isEmpty() ? "" : ", errors " + errors);
    }

    private void consume() {
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(config)) {
            consumer.subscribe(List.of(topic), new Listener());
            while (!stopping) {
                ConsumerRecords<String, String> batch = consumer.poll(POLL);
                if (batch.isEmpty()) {
                    continue;
                }
                for (ConsumerRecord<String, String> record : batch) {
                    reads.add(new Read(record.partition(), record.offset(), record.value(),
                            owned.contains(record.partition())));
                }
                commit(consumer);
            }
            // Leaving the try block closes the consumer: the listener hears of the revocation, then
            // the consumer sends LeaveGroup.
        } catch (RuntimeException e) {
            errors.add(name + ": " + e);
        }
    }

    /** Commits what poll returned, now that it is processed. */
    private void commit(KafkaConsumer<String, String> consumer) {
        try {
            consumer.commitSync(COMMIT_TIMEOUT);
        } catch (RebalanceInProgressException | CommitFailedException e) {
            // Allowed around a rebalance: those records will be read again by their next owner.
            refusedCommits.add(name + ": " + e.getClass().getSimpleName());
        }
    }

    private final class Listener implements ConsumerRebalanceListener {
        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            Set<Integer> ids = ids(partitions);
            // The cooperative protocol reports an empty assignment after every rebalance; no news.
            if (ids.isEmpty()) {
                return;
            }
            events.add(new Event(Change.ASSIGNED, ids, System.nanoTime()));
            ownership.take(name, ids);
            owned.addAll(ids);
        }

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            lose(Change.REVOKED, partitions);
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            lose(Change.LOST, partitions);
        }

        private void lose(Change change, Collection<TopicPartition> partitions) {
            Set<Integer> ids = ids(partitions);
            if (ids.isEmpty()) {
                return;
            }
            events.add(new Event(change, ids, System.nanoTime()));
            owned.removeAll(ids);
            ownership.release(name, ids);
        }

        private Set<Integer> ids(Collection<TopicPartition> partitions) {
            return partitions.stream().filter(tp -> tp.topic().equals(topic)).map(TopicPartition::partition)
                    .collect(Collectors.toCollection(TreeSet::new));
        }
    }

    /**
     * Who owns which partition, as the members' listeners report it. A member being assigned a
     * partition that another has not yet given up means two consumers read it at once: the
     * coordinator completed a rebalance before every member had revoked what moves.
     */
    static final class Ownership {
        private final Map<Integer, String> owner = new HashMap<>();
        private final List<String> conflicts = new ArrayList<>();

        synchronized void take(String member, Set<Integer> partitions) {
            for (int p : partitions) {
                String previous = owner.put(p, member);
                if (previous != null && !previous.equals(member)) {
                    conflicts.add("partition " + p + " assigned to " + member + " while " + previous + " still owned it");
                }
            }
        }

        synchronized void release(String member, Set<Integer> partitions) {
            for (int p : partitions) {
                owner.remove(p, member);
            }
        }

        synchronized List<String> conflicts() {
            return List.copyOf(conflicts);
        }
    }
}
