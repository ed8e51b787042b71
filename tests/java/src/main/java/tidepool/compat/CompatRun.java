package tidepool.compat;

import java.io.PrintStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Uuid;

/** One run of the check, step by step; each step adds to {@link Checks} and to the summary. */
final class CompatRun {
    private final Options options;
    private final Checks checks;
    private final String topic = "tidepool-java-compat-" + UUID.randomUUID().toString().substring(0, 8);
    private final Map<String, String> summary = new LinkedHashMap<>();

    CompatRun(Options options, Checks checks) {
        this.options = options;
        this.checks = checks;
    }

    void run() throws InterruptedException {
        summary.put("bootstrap", options.bootstrap());
        if (!options.tolerated().isEmpty()) {
            summary.put("tolerating", options.tolerated().toString());
        }
        summary.put("topic", topic + " partitions=" + options.partitions());
        try (AdminChecks admin = new AdminChecks(options.bootstrap(), checks)) {
            Stage.enter("describeCluster");
            Set<Integer> nodeIds = admin.checkCluster(summary);
            Uuid topicId = createTopic(admin, nodeIds);
            ProducedLog log = produceAll();
            consumeAll(log);
            Stage.enter("listOffsets earliest / latest / forTimestamp / maxTimestamp");
            admin.checkListOffsets(topic, log);
            Stage.enter("deleteTopics");
            admin.deleteTopic(topic);
        }
        Stage.enter("done");
    }

    private Uuid createTopic(AdminChecks admin, Set<Integer> nodeIds) throws InterruptedException {
        Stage.enter("createTopics " + topic);
        Uuid topicId = admin.createTopic(topic, options.partitions());
        admin.checkCreateAgainFails(topic, options.partitions());
        Stage.enter("describeTopics");
        TopicDescription description = admin.awaitLeaders(topic, options.partitions());
        admin.checkDescribedTopic(description, options.partitions(), nodeIds, topicId);
        admin.checkUnknownTopic(topic + "-never-created");
        return topicId;
    }

    private ProducedLog produceAll() throws InterruptedException {
        long base = Workload.baseTimestampBefore(System.currentTimeMillis(), options.recordsPerCodec());
        Workload workload = new Workload(options.recordsPerCodec(), options.partitions(), base, options.seed());
        Producing producing = new Producing(options.bootstrap(), topic, checks);
        ProducedLog log = new ProducedLog(options.partitions());
        List<String> lines = new ArrayList<>();
        for (String codec : Workload.CODECS) {
            Stage.enter("produce " + options.recordsPerCodec() + " records, compression " + codec);
            long started = System.nanoTime();
            List<SentRecord> sent = producing.produce(codec, workload.plan(codec));
            long millis = (System.nanoTime() - started) / 1_000_000;
            sent.forEach(record -> log.add(record, checks));
            lines.add(String.format("%s %d/%d acked in %d ms", codec, sent.size(), options.recordsPerCodec(), millis));
        }
        log.checkAcknowledgedOffsetsContiguous(checks);
        summary.put("produced", String.join(", ", lines));
        summary.put("per partition", perPartition(log));
        return log;
    }

    private void consumeAll(ProducedLog log) {
        Stage.enter("consume " + log.size() + " records (assign + seekToBeginning, no group)");
        long started = System.nanoTime();
        Consuming consuming = new Consuming(options.bootstrap(), topic, log, checks);
        consuming.readAndVerify(Duration.ofSeconds(120));
        long millis = (System.nanoTime() - started) / 1_000_000;
        summary.put("consumed", consuming.consumed() + " records in " + millis + " ms " + consuming.consumedPerCodec());
    }

    private static String perPartition(ProducedLog log) {
        StringBuilder text = new StringBuilder();
        for (int p = 0; p < log.partitions(); p++) {
            text.append(p == 0 ? "" : " ").append("p").append(p).append('=').append(log.size(p));
        }
        return text.toString();
    }

    void printSummary(PrintStream out) {
        out.println("summary:");
        summary.forEach((key, value) -> out.printf("  %-14s %s%n", key, value));
    }
}
