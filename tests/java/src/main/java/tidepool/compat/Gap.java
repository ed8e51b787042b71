package tidepool.compat;

import java.util.Arrays;
import java.util.EnumSet;
import java.util.Locale;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * A capability a broker under development may still lack. A failure in a gap's checks is excused only
 * when the run names the gap explicitly ({@code --tolerate max-timestamp,...}); it is then still
 * reported as TOLERATED. By default every check is held to Apache Kafka's behaviour.
 */
enum Gap {
    MAX_TIMESTAMP("ListOffsets MAX_TIMESTAMP (KIP-734)"),
    TIMESTAMP_LOOKUP("ListOffsets by timestamp"),
    LEADER_EPOCH("leader epochs in ListOffsets answers and fetched batches"),
    TOPIC_ID("topic ids"),
    DELETE_TOPICS("DeleteTopics");

    final String description;

    Gap(String description) {
        this.description = description;
    }

    String flagName() {
        return name().toLowerCase(Locale.ROOT).replace('_', '-');
    }

    static Set<Gap> parseList(String list) {
        Set<Gap> gaps = EnumSet.noneOf(Gap.class);
        for (String name : list.split(",")) {
            gaps.add(parse(name.trim()));
        }
        return gaps;
    }

    private static Gap parse(String flagName) {
        return Arrays.stream(values()).filter(g -> g.flagName().equals(flagName)).findFirst()
                .orElseThrow(() -> new IllegalArgumentException("unknown gap " + flagName + "; known: " + names()));
    }

    static String names() {
        return Arrays.stream(values()).map(Gap::flagName).collect(Collectors.joining(","));
    }
}
