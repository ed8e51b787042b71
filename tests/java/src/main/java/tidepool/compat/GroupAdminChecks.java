package tidepool.compat;

import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.GroupIdNotFoundException;

/**
 * The Admin calls about consumer groups: describe, list, committed offsets, delete.
 *
 * <p>Listing uses listConsumerGroups, the call consumer-group tooling has used for years; 4.x
 * deprecates it for removal in favour of {@code Admin#listGroups(ListGroupsOptions.forConsumerGroups())},
 * which is where to move once a kafka-clients release drops it.
 */
@SuppressWarnings({"deprecation", "removal"})
final class GroupAdminChecks {
    /** How long a group may take to show what its members already know (the answer is retried). */
    private static final Duration AGREE_WITHIN = Duration.ofSeconds(10);

    private final Admin admin;

    GroupAdminChecks(Admin admin) {
        this.admin = admin;
    }

    /**
     * A group with live members: describeConsumerGroups must show it Stable, with the assignor the
     * members chose and, per member (by client id), the partitions that member says it owns; and
     * listConsumerGroups must list it.
     */
    void checkLiveGroup(Checks checks, String groupId, String assignor, String topic,
                        Map<String, Set<Integer>> ownedByClientId) throws InterruptedException {
        // These checks may count for another cell than the group scenario's: an Admin call that
        // throws must fail that cell, not stop the group scenario.
        try {
            checkLiveGroupOrThrow(checks, groupId, assignor, topic, ownedByClientId);
        } catch (CheckException e) {
            checks.fail("describeConsumerGroups / listConsumerGroups of a live group threw", e.getMessage());
        }
    }

    private void checkLiveGroupOrThrow(Checks checks, String groupId, String assignor, String topic,
                                       Map<String, Set<Integer>> ownedByClientId) throws InterruptedException {
        String[] last = {"no answer"};
        boolean agreed = Waits.until(() -> {
            ConsumerGroupDescription description = describe(groupId);
            last[0] = String.valueOf(description);
            return description.groupState() == GroupState.STABLE
                    && assignor.equals(description.partitionAssignor())
                    && ownedByClientId.equals(assignments(description.members(), topic));
        }, AGREE_WITHIN);
        checks.expect(agreed, "describeConsumerGroups of a live group",
                "expected Stable, assignor " + assignor + ", assignments " + ownedByClientId + "; got " + last[0]);
        checkListed(checks, groupId, GroupState.STABLE);
    }

    /**
     * A group whose members all left, with committed offsets: Empty, listed; deleteConsumerGroups
     * succeeds, and then the group is neither listed nor described.
     */
    void checkEmptyThenDelete(Checks checks, String groupId) throws InterruptedException {
        try {
            checkEmptyThenDeleteOrThrow(checks, groupId);
        } catch (CheckException e) {
            checks.fail("describe / list / delete of an emptied group threw", groupId + ": " + e.getMessage());
        }
    }

    private void checkEmptyThenDeleteOrThrow(Checks checks, String groupId) throws InterruptedException {
        ConsumerGroupDescription description = describe(groupId);
        checks.expect(description.groupState() == GroupState.EMPTY && description.members().isEmpty(),
                "describeConsumerGroups of a group without members", "expected Empty with no members, got " + description);
        checkListed(checks, groupId, GroupState.EMPTY);
        AdminChecks.get(admin.deleteConsumerGroups(List.of(groupId)).all());
        checks.pass();
        boolean unlisted = Waits.until(() -> listed(groupId).isEmpty(), AGREE_WITHIN);
        checks.expect(unlisted, "listConsumerGroups after deleteConsumerGroups", groupId + " is still listed");
        checkGone(checks, groupId);
    }

    /** A deleted group is Dead (DescribeGroups) or not found (ConsumerGroupDescribe). */
    private void checkGone(Checks checks, String groupId) {
        try {
            ConsumerGroupDescription description = describe(groupId);
            checks.expect(description.groupState() == GroupState.DEAD && description.members().isEmpty(),
                    "describeConsumerGroups after deleteConsumerGroups", "expected Dead or not found, got " + description);
        } catch (CheckException e) {
            checks.expect(e.getCause() instanceof GroupIdNotFoundException,
                    "describeConsumerGroups after deleteConsumerGroups: wrong error", String.valueOf(e.getCause()));
        }
    }

    private void checkListed(Checks checks, String groupId, GroupState state) {
        Optional<ConsumerGroupListing> listing = listed(groupId);
        checks.expect(listing.isPresent(), "listConsumerGroups does not list the group", groupId);
        listing.ifPresent(l -> checks.expect(l.groupState().isEmpty() || l.groupState().get() == state,
                "listConsumerGroups: group state", groupId + ": expected " + state + ", got " + l));
    }

    /** Committed offsets of a group (OffsetFetch through the Admin client), offset and metadata per partition. */
    Map<TopicPartition, OffsetAndMetadata> committed(String groupId) {
        Map<TopicPartition, OffsetAndMetadata> offsets =
                AdminChecks.get(admin.listConsumerGroupOffsets(groupId).partitionsToOffsetAndMetadata());
        // The client maps a partition without a committed offset to null.
        return offsets.entrySet().stream().filter(e -> e.getValue() != null)
                .collect(Collectors.toMap(Map.Entry::getKey, Map.Entry::getValue));
    }

    ConsumerGroupDescription describe(String groupId) {
        return AdminChecks.get(admin.describeConsumerGroups(List.of(groupId)).describedGroups().get(groupId));
    }

    private Optional<ConsumerGroupListing> listed(String groupId) {
        Collection<ConsumerGroupListing> all = AdminChecks.get(admin.listConsumerGroups().all());
        return all.stream().filter(l -> l.groupId().equals(groupId)).findFirst();
    }

    private static Map<String, Set<Integer>> assignments(Collection<MemberDescription> members, String topic) {
        return members.stream().collect(Collectors.toMap(MemberDescription::clientId,
                m -> m.assignment().topicPartitions().stream().filter(tp -> tp.topic().equals(topic))
                        .map(TopicPartition::partition).collect(Collectors.toCollection(TreeSet::new)),
                (x, y) -> {
                    // Two members with one client id cannot be told apart: never equal to the expectation.
                    Set<Integer> both = new TreeSet<>(x);
                    both.add(-1);
                    return both;
                }));
    }
}
