package tidepool.compat;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.function.Function;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

/** The AdminClient calls the broker implements, each compared with what Kafka would answer. */
final class AdminChecks implements AutoCloseable {
    private static final long WAIT_FOR_METADATA_MS = 30_000;

    private final Admin admin;
    private final Checks checks;

    AdminChecks(String bootstrap, Checks checks) {
        Properties config = new Properties();
        config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(AdminClientConfig.CLIENT_ID_CONFIG, "tidepool-java-compat-admin");
        config.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        config.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30_000);
        this.admin = Admin.create(config);
        this.checks = checks;
    }

    @Override
    public void close() {
        admin.close();
    }

    /** The client itself, for the scenarios that use Admin calls of their own. */
    Admin client() {
        return admin;
    }

    /**
     * A topic a scenario needs (RF 1, optional topic configs), ready when every partition has a
     * leader. Failures throw: the scenario cannot go on, and they count against it, not here.
     */
    void createScenarioTopic(String topic, int partitions, Map<String, String> configs) throws InterruptedException {
        get(admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1).configs(configs))).all());
        awaitLeaders(topic, partitions);
    }

    /** describeCluster: nodes with distinct ids and real addresses, and a cluster id. Returns the node ids. */
    Set<Integer> checkCluster(Map<String, String> summary) {
        DescribeClusterResult cluster = admin.describeCluster();
        List<Node> nodes = List.copyOf(get(cluster.nodes()));
        String clusterId = get(cluster.clusterId());
        Node controller = get(cluster.controller());
        checks.expect(!nodes.isEmpty(), "describeCluster has no nodes", "nodes " + nodes);
        Set<Integer> ids = nodes.stream().map(Node::id).collect(Collectors.toSet());
        checks.expectEqual("describeCluster node ids not distinct", nodes.size(), ids.size(), nodes.toString());
        for (Node node : nodes) {
            checks.expect(!node.host().isEmpty() && node.port() > 0, "describeCluster node without address",
                    node.toString());
        }
        checks.expect(clusterId != null && !clusterId.isEmpty(), "describeCluster without cluster id",
                "cluster id " + clusterId);
        summary.put("cluster", "id=" + clusterId + " nodes=" + nodes.size() + " controller="
                + (controller == null ? "none" : controller.id()));
        return ids;
    }

    /** Creates the run's topic; the result must echo the partition count and replication factor. */
    Uuid createTopic(String topic, int partitions) {
        CreateTopicsResult result = admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)));
        get(result.all());
        checks.expectEqual("createTopics numPartitions", partitions, get(result.numPartitions(topic)), topic);
        checks.expectEqual("createTopics replicationFactor", 1, get(result.replicationFactor(topic)), topic);
        Uuid topicId = get(result.topicId(topic));
        if (topicId == null || Uuid.ZERO_UUID.equals(topicId)) {
            checks.failUnlessTolerated(Gap.TOPIC_ID, "createTopics returned no topic id", topic);
        }
        return topicId;
    }

    /** Creating the same topic again must fail with TOPIC_ALREADY_EXISTS, not succeed or break the link. */
    void checkCreateAgainFails(String topic, int partitions) {
        try {
            get(admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all());
            checks.fail("createTopics of an existing topic succeeded", topic);
        } catch (CheckException e) {
            checks.expect(e.getCause() instanceof TopicExistsException,
                    "createTopics of an existing topic: wrong error", String.valueOf(e.getCause()));
        }
    }

    /** Metadata may lag topic creation on a real cluster: wait until every partition has a leader. */
    TopicDescription awaitLeaders(String topic, int partitions) throws InterruptedException {
        long stopAt = System.currentTimeMillis() + WAIT_FOR_METADATA_MS;
        while (true) {
            Optional<TopicDescription> description = tryDescribe(topic);
            if (description.isPresent() && description.get().partitions().size() == partitions
                    && description.get().partitions().stream().allMatch(p -> p.leader() != null)) {
                return description.get();
            }
            if (System.currentTimeMillis() > stopAt) {
                throw new CheckException("topic " + topic + " has no leader for every partition after "
                        + WAIT_FOR_METADATA_MS + " ms: " + description.orElse(null), null);
            }
            Thread.sleep(100);
        }
    }

    private Optional<TopicDescription> tryDescribe(String topic) {
        try {
            return Optional.of(get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic));
        } catch (CheckException e) {
            if (e.getCause() instanceof UnknownTopicOrPartitionException) {
                return Optional.empty();
            }
            throw e;
        }
    }

    /** describeTopics: partition ids 0..n-1, each led by a cluster node that is a replica and in sync. */
    void checkDescribedTopic(TopicDescription description, int partitions, Set<Integer> nodeIds, Uuid topicId) {
        checks.expectEqual("describeTopics partition count", partitions, description.partitions().size(),
                description.name());
        checks.expect(!description.isInternal(), "describeTopics: topic marked internal", description.name());
        if (topicId != null && !Uuid.ZERO_UUID.equals(topicId)) {
            checks.expectEqual("describeTopics topic id differs from createTopics", topicId,
                    description.topicId(), description.name());
        }
        for (int i = 0; i < description.partitions().size(); i++) {
            TopicPartitionInfo info = description.partitions().get(i);
            String where = description.name() + "-" + info.partition();
            checks.expectEqual("describeTopics partition ids not 0..n-1 in order", i, info.partition(), where);
            Node leader = info.leader();
            checks.expect(nodeIds.contains(leader.id()), "partition leader is not a cluster node",
                    where + ": leader " + leader + ", nodes " + nodeIds);
            checks.expect(info.replicas().contains(leader), "leader not among replicas",
                    where + ": " + info);
            checks.expect(info.isr().contains(leader), "leader not in sync", where + ": " + info);
        }
    }

    /** An unknown topic must be reported as UNKNOWN_TOPIC_OR_PARTITION, and not auto-created. */
    void checkUnknownTopic(String topic) {
        try {
            get(admin.describeTopics(List.of(topic)).allTopicNames());
            checks.fail("describeTopics of an unknown topic succeeded", topic);
        } catch (CheckException e) {
            checks.expect(e.getCause() instanceof UnknownTopicOrPartitionException,
                    "describeTopics of an unknown topic: wrong error", String.valueOf(e.getCause()));
        }
    }

    /** listOffsets with each OffsetSpec, compared with the offsets and timestamps that were acknowledged. */
    void checkListOffsets(String topic, ProducedLog log) {
        expectOffsets(topic, log, "earliest", OffsetSpec.earliest(), null,
                p -> new Answer(log.startOffset(p), null));
        expectOffsets(topic, log, "latest", OffsetSpec.latest(), null,
                p -> new Answer(log.endOffset(p), null));
        for (long target : TimestampTargets.of(log)) {
            expectOffsets(topic, log, "forTimestamp(" + target + ")", OffsetSpec.forTimestamp(target),
                    Gap.TIMESTAMP_LOOKUP, p -> Answer.of(log.firstAtOrAfter(p, target)));
        }
        expectOffsets(topic, log, "maxTimestamp", OffsetSpec.maxTimestamp(), Gap.MAX_TIMESTAMP,
                p -> Answer.of(log.maxTimestamp(p)));
    }

    /** Expected offset and, where Kafka defines it, timestamp (null: not compared). */
    private record Answer(long offset, Long timestamp) {
        /** Kafka answers offset -1 and timestamp -1 when no record qualifies. */
        static Answer of(Optional<SentRecord> record) {
            return record.map(r -> new Answer(r.offset(), r.timestamp())).orElse(new Answer(-1, -1L));
        }
    }

    private void expectOffsets(String topic, ProducedLog log, String name, OffsetSpec spec, Gap gap,
                               Function<Integer, Answer> expected) {
        Map<TopicPartition, OffsetSpec> query = new HashMap<>();
        for (int p = 0; p < log.partitions(); p++) {
            query.put(new TopicPartition(topic, p), spec);
        }
        Map<TopicPartition, ListOffsetsResultInfo> answers;
        try {
            answers = get(admin.listOffsets(query).all());
        } catch (CheckException e) {
            failOrTolerate(gap, "listOffsets " + name + " threw", String.valueOf(e.getCause()));
            return;
        }
        for (int p = 0; p < log.partitions(); p++) {
            ListOffsetsResultInfo actual = answers.get(new TopicPartition(topic, p));
            Answer wanted = expected.apply(p);
            boolean same = actual != null && actual.offset() == wanted.offset()
                    && (wanted.timestamp() == null || actual.timestamp() == wanted.timestamp());
            if (same) {
                checks.pass();
                checkLeaderEpoch(actual, topic + "-" + p + " " + name);
            } else {
                failOrTolerate(gap, "listOffsets " + name.replaceAll("\\(.*\\)", "(t)"),
                        topic + "-" + p + " " + name + ": expected " + wanted + ", got " + actual);
            }
        }
    }

    /** Kafka names the leader epoch of every offset it finds (ListOffsets v4+); clients use it to detect truncation. */
    private void checkLeaderEpoch(ListOffsetsResultInfo answer, String where) {
        if (answer.offset() < 0 || answer.leaderEpoch().filter(epoch -> epoch >= 0).isPresent()) {
            checks.pass();
        } else {
            checks.failUnlessTolerated(Gap.LEADER_EPOCH, "listOffsets answer without leader epoch", where + ": " + answer);
        }
    }

    private void failOrTolerate(Gap gap, String category, String detail) {
        if (gap == null) {
            checks.fail(category, detail);
        } else {
            checks.failUnlessTolerated(gap, category, detail);
        }
    }

    /** deleteTopics, then the topic must disappear from listTopics. */
    void deleteTopic(String topic) throws InterruptedException {
        try {
            get(admin.deleteTopics(List.of(topic)).all());
        } catch (CheckException e) {
            checks.failUnlessTolerated(Gap.DELETE_TOPICS, "deleteTopics threw", String.valueOf(e.getCause()));
            return;
        }
        long stopAt = System.currentTimeMillis() + WAIT_FOR_METADATA_MS;
        while (get(admin.listTopics().names()).contains(topic)) {
            if (System.currentTimeMillis() > stopAt) {
                checks.failUnlessTolerated(Gap.DELETE_TOPICS, "deleted topic still listed", topic);
                return;
            }
            Thread.sleep(100);
        }
        checks.pass();
    }

    /** Waits for an admin future; a failure becomes a CheckException carrying the client's exception. */
    static <T> T get(KafkaFuture<T> future) {
        try {
            return future.get();
        } catch (ExecutionException e) {
            throw new CheckException("admin call failed: " + e.getCause(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CheckException("interrupted", e);
        }
    }
}
