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

/**
 * One run of the check, scenario by scenario. Each step adds to {@link Checks} and to the summary;
 * each matrix scenario is reported as soon as its last step ended. A step that throws fails the
 * cells it counts against and the run goes on with the next one.
 */
final class CompatRun {
    private final Options options;
    private final Checks checks;
    private final Matrix matrix;
    private final String topic = "tidepool-java-compat-" + UUID.randomUUID().toString().substring(0, 8);
    private final Map<String, String> summary = new LinkedHashMap<>();
    private Set<Integer> nodeIds;
    private ProducedLog log;

    CompatRun(Options options, Checks checks, Matrix matrix) {
        this.options = options;
        this.checks = checks;
        this.matrix = matrix;
    }

    /** A step of a scenario; it may throw, which fails the step's cells. */
    private interface Body {
        void run() throws Exception;
    }

    void run() {
        summary.put("bootstrap", options.bootstrap());
        if (!options.tolerated().isEmpty()) {
            summary.put("tolerating", options.tolerated().toString());
        }
        summary.put("topic", topic + " partitions=" + options.partitions());
        Checks adminCell = checks.countingAgainst(Matrix.ADMIN);
        try (AdminChecks admin = new AdminChecks(options.bootstrap(), adminCell)) {
            runWorkload(admin);
            // The eager group's live describe counts for the admin cell; the emptied group is
            // described, listed and deleted by the admin steps below.
            GroupScenario eager = new GroupScenario(options.bootstrap(), admin, GroupScenario.Kind.EAGER,
                    checks.countingAgainst(Matrix.GROUP_REBALANCE), adminCell);
            boolean eagerRan = runGroup(eager);
            runGroup(new GroupScenario(options.bootstrap(), admin, GroupScenario.Kind.COOPERATIVE,
                    checks.countingAgainst(Matrix.GROUP_COOPERATIVE), null));
            runCommits(admin);
            runAdmin(admin, eager.groupId(), eagerRan);
            runCompaction(admin);
        }
        Stage.enter("done");
    }

    /** Admin basics, then the codec workload: produce, consume, list offsets, delete the topic. */
    private void runWorkload(AdminChecks admin) {
        WorkloadCells cells = new WorkloadCells(checks);
        List<String> setupCells = new ArrayList<>(WorkloadCells.scenarios());
        setupCells.add(Matrix.ADMIN);
        // Without the cluster and the topic, nothing of the workload can run.
        boolean ready = step("describeCluster, createTopics " + topic + ", describeTopics",
                checks.countingAgainst(setupCells.toArray(String[]::new)), () -> {
                    nodeIds = admin.checkCluster(summary);
                    createTopic(admin);
                });
        boolean produced = ready && step("produce " + Workload.CODECS.size() + " x " + options.recordsPerCodec()
                + " records, one idempotent producer per codec", cells.everyCodecAndIdempotence(), () -> produceAll(cells));
        if (produced) {
            step("consume " + log.size() + " records (assign + seekToBeginning, no group)", cells.everyCodec(),
                    () -> consumeAll(cells));
            step("listOffsets earliest / latest / forTimestamp / maxTimestamp", checks.countingAgainst(Matrix.ADMIN),
                    () -> admin.checkListOffsets(topic, log));
        }
        if (ready) {
            step("deleteTopics", checks.countingAgainst(Matrix.ADMIN), () -> admin.deleteTopic(topic));
        }
        WorkloadCells.scenarios().forEach(scenario -> matrix.report(scenario, checks));
    }

    private void createTopic(AdminChecks admin) throws InterruptedException {
        Uuid topicId = admin.createTopic(topic, options.partitions());
        admin.checkCreateAgainFails(topic, options.partitions());
        TopicDescription description = admin.awaitLeaders(topic, options.partitions());
        admin.checkDescribedTopic(description, options.partitions(), nodeIds, topicId);
        admin.checkUnknownTopic(topic + "-never-created");
    }

    private void produceAll(WorkloadCells cells) throws InterruptedException {
        long base = Workload.baseTimestampBefore(System.currentTimeMillis(), options.recordsPerCodec());
        Workload workload = new Workload(options.recordsPerCodec(), options.partitions(), base, options.seed());
        Producing producing = new Producing(options.bootstrap(), topic);
        ProducedLog produced = new ProducedLog(options.partitions());
        List<String> lines = new ArrayList<>();
        for (String codec : Workload.CODECS) {
            long started = System.nanoTime();
            List<SentRecord> sent = producing.produce(codec, workload.plan(codec), cells.acknowledged(codec));
            long millis = (System.nanoTime() - started) / 1_000_000;
            sent.forEach(record -> produced.add(record, cells.acknowledged(codec)));
            lines.add(String.format("%s %d/%d acked in %d ms", codec, sent.size(), options.recordsPerCodec(), millis));
        }
        produced.checkAcknowledgedOffsetsContiguous(cells::acknowledged);
        summary.put("produced", String.join(", ", lines));
        summary.put("per partition", perPartition(produced));
        log = produced;
    }

    private void consumeAll(WorkloadCells cells) {
        long started = System.nanoTime();
        Consuming consuming = new Consuming(options.bootstrap(), topic, log, cells);
        consuming.readAndVerify(Duration.ofSeconds(120));
        long millis = (System.nanoTime() - started) / 1_000_000;
        summary.put("consumed", consuming.consumed() + " records in " + millis + " ms " + consuming.consumedPerCodec());
    }

    /** Runs and reports a group scenario; true if it ran to its end. */
    private boolean runGroup(GroupScenario scenario) {
        GroupScenario.Kind kind = scenario.kind();
        boolean ran = step(kind.scenario + ": " + kind.assignorName + " assignor, members join and leave while records flow",
                checks.countingAgainst(kind.scenario), scenario::run);
        summary.put(kind.scenario, scenario.summary());
        matrix.report(kind.scenario, checks);
        return ran;
    }

    private void runCommits(AdminChecks admin) {
        Checks cell = checks.countingAgainst(Matrix.COMMITS);
        step("commits: commitSync, committed(), listConsumerGroupOffsets, resume", cell,
                () -> new CommitsScenario(options.bootstrap(), admin, cell).run());
        matrix.report(Matrix.COMMITS, checks);
    }

    /** The admin calls beyond the workload's; the admin cell also holds the workload's admin checks. */
    private void runAdmin(AdminChecks admin, String groupId, boolean groupScenarioRan) {
        Checks cell = checks.countingAgainst(Matrix.ADMIN);
        step("admin: createTopics with configs, describeConfigs, incrementalAlterConfigs, createPartitions", cell,
                () -> new TopicConfigChecks(admin, cell).run());
        if (groupScenarioRan) {
            step("admin: describe, list and delete the emptied group " + groupId, cell,
                    () -> new GroupAdminChecks(admin.client()).checkEmptyThenDelete(cell, groupId));
        } else {
            // Not checked is not passed: the cell says why these calls were not made.
            cell.fail("consumer group admin calls not made", Matrix.GROUP_REBALANCE
                    + " stopped early, leaving no emptied group to describe, list and delete");
        }
        matrix.report(Matrix.ADMIN, checks);
    }

    private void runCompaction(AdminChecks admin) {
        Checks cell = checks.countingAgainst(Matrix.COMPACTION);
        CompactionScenario scenario = new CompactionScenario(options.bootstrap(), admin, cell);
        step("compaction: compacted topic, segment.ms 1000, read until each key appears once", cell, scenario::run);
        summary.put("compaction", scenario.summary());
        matrix.report(Matrix.COMPACTION, checks);
    }

    /**
     * Runs one step; true if it ran to its end. A step that stops on a failed requirement has
     * recorded it already; any other exception is recorded here, against the step's cells.
     */
    private static boolean step(String name, Checks cells, Body body) {
        Stage.enter(name);
        try {
            body.run();
            return true;
        } catch (ScenarioStopped e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            cells.fail("step interrupted", name);
            return false;
        } catch (Exception e) {
            // A CheckException's message already names the call and the client's exception.
            cells.fail("step aborted by an exception", name + ": " + (e instanceof CheckException ? e.getMessage() : e));
            e.printStackTrace();
            return false;
        }
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
        summary.forEach((key, value) -> out.printf("  %-18s %s%n", key, value));
    }
}
