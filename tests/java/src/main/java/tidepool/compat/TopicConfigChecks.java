package tidepool.compat;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConfigEntry.ConfigSource;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidPartitionsException;

/**
 * Admin calls on a topic's shape and configs: a topic created with configs describes them as
 * DYNAMIC_TOPIC_CONFIG, an unset one as its default; incrementalAlterConfigs SET and DELETE read
 * back; createPartitions grows the topic (and refuses to shrink it).
 */
final class TopicConfigChecks {
    private static final int PARTITIONS = 2;
    private static final int GROWN_PARTITIONS = 5;
    /** Configs apply through the controller; a describe right after an alter may still lag. */
    private static final Duration APPLIED_WITHIN = Duration.ofSeconds(10);
    private static final String RETENTION = "retention.ms";
    private static final String MAX_MESSAGE = "max.message.bytes";

    private final AdminChecks adminChecks;
    private final Admin admin;
    private final Checks checks;
    private final String topic = "tidepool-java-compat-configs-" + UUID.randomUUID().toString().substring(0, 8);
    private final ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);

    TopicConfigChecks(AdminChecks adminChecks, Checks checks) {
        this.adminChecks = adminChecks;
        this.admin = adminChecks.client();
        this.checks = checks;
    }

    void run() throws InterruptedException {
        NewTopic newTopic = new NewTopic(topic, PARTITIONS, (short) 1)
                .configs(Map.of(RETENTION, "7200000", MAX_MESSAGE, "2000000"));
        AdminChecks.get(admin.createTopics(List.of(newTopic)).all());
        adminChecks.awaitLeaders(topic, PARTITIONS);
        checkCreatedConfigs();
        checkIncrementalAlter();
        checkCreatePartitions();
    }

    private void checkCreatedConfigs() {
        Config config = describe();
        expectEntry(config, RETENTION, "7200000", ConfigSource.DYNAMIC_TOPIC_CONFIG, "created with");
        expectEntry(config, MAX_MESSAGE, "2000000", ConfigSource.DYNAMIC_TOPIC_CONFIG, "created with");
        // Not set anywhere (kafka-broker.sh leaves log.cleanup.policy alone): Kafka's own default.
        expectEntry(config, "cleanup.policy", "delete", ConfigSource.DEFAULT_CONFIG, "never set");
    }

    /** SET one config, DELETE another (back to its default), leave the rest as they were. */
    private void checkIncrementalAlter() throws InterruptedException {
        AdminChecks.get(admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry(RETENTION, "3600000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry(MAX_MESSAGE, ""), AlterConfigOp.OpType.DELETE)))).all());
        checks.pass();
        Config[] last = {null};
        boolean applied = Waits.until(() -> {
            last[0] = describe();
            ConfigEntry retention = last[0].get(RETENTION);
            ConfigEntry maxMessage = last[0].get(MAX_MESSAGE);
            return retention != null && "3600000".equals(retention.value())
                    && maxMessage != null && maxMessage.source() != ConfigSource.DYNAMIC_TOPIC_CONFIG;
        }, APPLIED_WITHIN);
        if (!checks.expect(applied, "incrementalAlterConfigs not visible in describeConfigs",
                "after " + APPLIED_WITHIN.toMillis() + " ms: " + entries(last[0]))) {
            return;
        }
        expectEntry(last[0], RETENTION, "3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG, "SET");
        // Kafka's default max.message.bytes (message.max.bytes) is 1048588.
        expectEntry(last[0], MAX_MESSAGE, "1048588", ConfigSource.DEFAULT_CONFIG, "DELETEd");
        expectEntry(last[0], "cleanup.policy", "delete", ConfigSource.DEFAULT_CONFIG, "untouched");
    }

    private void checkCreatePartitions() throws InterruptedException {
        AdminChecks.get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(GROWN_PARTITIONS))).all());
        checks.pass();
        try {
            // Returns once describeTopics shows the new count, every partition with a leader.
            TopicDescription grown = adminChecks.awaitLeaders(topic, GROWN_PARTITIONS);
            checks.expectEqual("describeTopics after createPartitions", GROWN_PARTITIONS, grown.partitions().size(), topic);
        } catch (CheckException e) {
            checks.fail("describeTopics does not show the partitions createPartitions added", e.getMessage());
        }
        try {
            AdminChecks.get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(PARTITIONS))).all());
            checks.fail("createPartitions to fewer partitions succeeded", topic);
        } catch (CheckException e) {
            checks.expect(e.getCause() instanceof InvalidPartitionsException,
                    "createPartitions to fewer partitions: wrong error", String.valueOf(e.getCause()));
        }
    }

    private Config describe() {
        return AdminChecks.get(admin.describeConfigs(List.of(resource)).all()).get(resource);
    }

    private void expectEntry(Config config, String name, String value, ConfigSource source, String how) {
        ConfigEntry entry = config.get(name);
        String actual = entry == null ? "absent" : entry.value() + " (" + entry.source() + ")";
        checks.expectEqual("describeConfigs of a config " + how, value + " (" + source + ")", actual,
                topic + " " + name);
    }

    private static String entries(Config config) {
        if (config == null) {
            return "no answer";
        }
        ConfigEntry retention = config.get(RETENTION);
        ConfigEntry maxMessage = config.get(MAX_MESSAGE);
        return RETENTION + "=" + retention + ", " + MAX_MESSAGE + "=" + maxMessage;
    }
}
