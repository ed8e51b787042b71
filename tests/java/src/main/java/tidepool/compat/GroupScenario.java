package tidepool.compat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.UUID;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.RangeAssignor;

/**
 * The group scenarios of the matrix, classic group protocol, one run per assignor:
 *
 * <ol>
 * <li>a topic with 6 partitions; a producer feeds it for the whole scenario;</li>
 * <li>member A joins alone and gets all 6;</li>
 * <li>member B joins; they settle at 3/3 (eager: A gives everything up first; cooperative: A gives
 * up only the 3 that move, and keeps the other 3 throughout);</li>
 * <li>B closes (LeaveGroup); A must own all 6 within 20 s, well inside the 30 s session timeout,
 * so only the LeaveGroup explains it (cooperative: without A revoking anything);</li>
 * <li>every record produced was read by the member owning its partition at the time, none
 * skipped (records read twice across a rebalance are allowed and counted), and the group's
 * committed offsets end at the log end.</li>
 * </ol>
 */
final class GroupScenario {
    static final int PARTITIONS = 6;
    private static final Duration SETTLE_WITHIN = Duration.ofSeconds(30);
    private static final Duration HAND_OVER_WITHIN = Duration.ofSeconds(20);
    private static final Duration READ_WITHIN = Duration.ofSeconds(15);
    private static final Duration CATCH_UP_WITHIN = Duration.ofSeconds(30);
    private static final Duration FEED_INTERVAL = Duration.ofMillis(10);

    enum Kind {
        EAGER(Matrix.GROUP_REBALANCE, RangeAssignor.class, "range"),
        COOPERATIVE(Matrix.GROUP_COOPERATIVE, CooperativeStickyAssignor.class, "cooperative-sticky");

        final String scenario;
        final Class<?> assignor;
        /** The protocol name the assignor announces, which DescribeGroups reports. */
        final String assignorName;

        Kind(String scenario, Class<?> assignor, String assignorName) {
            this.scenario = scenario;
            this.assignor = assignor;
            this.assignorName = assignorName;
        }
    }

    private final String bootstrap;
    private final AdminChecks admin;
    private final GroupAdminChecks groups;
    private final Kind kind;
    private final Checks checks;
    /** Where the describe/list checks of the live group count: the admin cell, or (null given) this scenario's. */
    private final Checks describeChecks;
    private final String topic;
    private final String groupId;
    private final List<String> notes = new ArrayList<>();

    GroupScenario(String bootstrap, AdminChecks admin, Kind kind, Checks checks, Checks describeChecks) {
        String suffix = UUID.randomUUID().toString().substring(0, 8);
        this.bootstrap = bootstrap;
        this.admin = admin;
        this.groups = new GroupAdminChecks(admin.client());
        this.kind = kind;
        this.checks = checks;
        this.describeChecks = describeChecks == null ? checks : describeChecks;
        this.topic = "tidepool-java-compat-" + kind.scenario + "-" + suffix;
        this.groupId = "tidepool-java-compat-" + kind.scenario + "-" + suffix;
    }

    Kind kind() {
        return kind;
    }

    String groupId() {
        return groupId;
    }

    /** What happened, for the summary (timings, counts, duplicates). */
    String summary() {
        return String.join("; ", notes);
    }

    void run() throws InterruptedException {
        admin.createScenarioTopic(topic, PARTITIONS, Map.of());
        GroupMember.Ownership ownership = new GroupMember.Ownership();
        List<GroupMember.Event> aEvents;
        Set<Integer> aShare;
        Map<Integer, Long> logEnds;
        try (RecordFeed feed = new RecordFeed(bootstrap, topic, PARTITIONS, kind.scenario, FEED_INTERVAL);
             GroupMember a = member("A", ownership);
             GroupMember b = member("B", ownership)) {
            feed.start();
            long started = System.nanoTime();
            a.start();
            require(() -> a.owned().size() == PARTITIONS, SETTLE_WITHIN,
                    "the first member did not get every partition", () -> a.describe(), a);
            notes.add("A alone owned all " + PARTITIONS + " after " + millisSince(started) + " ms");

            Set<Integer> aBefore = a.owned();
            int aEventsBeforeJoin = a.events().size();
            long joined = System.nanoTime();
            b.start();
            require(() -> settled(a, b), SETTLE_WITHIN,
                    "two members did not settle at 3 partitions each", () -> a.describe() + "; " + b.describe(), a, b);
            notes.add("3/3 after " + millisSince(joined) + " ms");
            aShare = a.owned();
            Set<Integer> bShare = b.owned();
            checkJoin(aBefore, aShare, bShare, eventsSince(a, aEventsBeforeJoin));
            groups.checkLiveGroup(describeChecks, groupId, kind.assignorName, topic,
                    Map.of(a.clientId(), aShare, b.clientId(), bShare));

            // Both read while they share the group, so the hand-over below moves partitions that were in use.
            int aRead = a.readCount();
            int bRead = b.readCount();
            require(() -> a.readCount() > aRead && b.readCount() > bRead, READ_WITHIN,
                    "members sharing the group read nothing", () -> a.describe() + "; " + b.describe(), a, b);

            int aEventsBeforeLeave = a.events().size();
            long leaving = System.nanoTime();
            b.stop();
            require(() -> a.owned().size() == PARTITIONS, HAND_OVER_WITHIN.minusNanos(System.nanoTime() - leaving),
                    "the partitions of a member that left (LeaveGroup) did not move within 20 s",
                    () -> "B began to close " + millisSince(leaving) + " ms ago; " + a.describe() + "; " + b.describe(), a);
            notes.add("hand-over " + millisSince(leaving) + " ms after B began to close");
            checkLeave(bShare, eventsSince(a, aEventsBeforeLeave));

            int aReadAlone = a.readCount();
            require(() -> a.readCount() > aReadAlone, READ_WITHIN,
                    "the remaining member read nothing after the hand-over", () -> a.describe(), a);
            feed.stop();
            require(() -> unread(feed.acked(), List.of(a, b)).isEmpty(), CATCH_UP_WITHIN,
                    "records produced were never read", () -> unreadSummary(unread(feed.acked(), List.of(a, b))), a);
            aEvents = a.events();
            logEnds = feed.endOffsets();
            a.stop();
            judge(feed, List.of(a, b), ownership);
        }
        if (kind == Kind.COOPERATIVE) {
            checkKeptThroughout(aShare, aEvents);
        }
        checkCommittedAtEnd(logEnds);
    }

    private static List<GroupMember.Event> eventsSince(GroupMember member, int index) {
        List<GroupMember.Event> events = member.events();
        return events.subList(index, events.size());
    }

    /**
     * Waits until {@code condition} holds; the scenario cannot go on otherwise. A member whose
     * consumer failed (its thread ended with an error) cannot bring it about: stop waiting then.
     */
    private void require(BooleanSupplier condition, Duration within, String category, Supplier<String> detail,
                         GroupMember... members) throws InterruptedException {
        Waits.until(() -> condition.getAsBoolean()
                || Arrays.stream(members).anyMatch(member -> !member.errors().isEmpty()), within);
        if (!condition.getAsBoolean()) {
            checks.fail(category, "after " + within.toMillis() + " ms: " + detail.get());
            throw new ScenarioStopped(category);
        }
        checks.pass();
    }

    private GroupMember member(String name, GroupMember.Ownership ownership) {
        String clientId = "tidepool-java-compat-" + kind.scenario + "-" + name;
        return new GroupMember(name, GroupMember.config(bootstrap, groupId, clientId, kind.assignor), topic, ownership);
    }

    private static boolean settled(GroupMember a, GroupMember b) {
        Set<Integer> aOwns = a.owned();
        Set<Integer> bOwns = b.owned();
        Set<Integer> union = new TreeSet<>(aOwns);
        union.addAll(bOwns);
        return aOwns.size() == PARTITIONS / 2 && bOwns.size() == PARTITIONS / 2 && union.size() == PARTITIONS;
    }

    /** What A's listener heard while B joined. */
    private void checkJoin(Set<Integer> aBefore, Set<Integer> aShare, Set<Integer> bShare,
                           List<GroupMember.Event> aEvents) {
        Set<Integer> revoked = union(aEvents, GroupMember.Change.REVOKED);
        if (kind == Kind.EAGER) {
            // The eager protocol: every member gives up everything before the group rebalances.
            checks.expect(revoked.equals(aBefore), "eager assignor: the first member did not give up every partition",
                    "A revoked " + revoked + " of " + aBefore + "; events " + aEvents);
            return;
        }
        // Cooperative: only what moves is revoked, never the whole assignment.
        for (GroupMember.Event event : aEvents) {
            checks.expect(event.change() != GroupMember.Change.REVOKED || event.partitions().size() < aBefore.size(),
                    "cooperative: a joining member made the first revoke everything", "A's events " + aEvents);
        }
        checks.expectEqual("cooperative: revoked partitions are not exactly those that moved", bShare, revoked,
                "A's events " + aEvents);
        Set<Integer> kept = new TreeSet<>(aBefore);
        kept.removeAll(revoked);
        checks.expectEqual("cooperative: the first member's share is not what it kept", kept, aShare,
                "A's events " + aEvents);
        checks.expect(union(aEvents, GroupMember.Change.LOST).isEmpty(), "cooperative: partitions lost",
                "A's events " + aEvents);
    }

    /** What A's listener heard while B left: cooperative survivors only gain. */
    private void checkLeave(Set<Integer> bShare, List<GroupMember.Event> aEvents) {
        if (kind != Kind.COOPERATIVE) {
            return;
        }
        checks.expect(union(aEvents, GroupMember.Change.REVOKED).isEmpty()
                        && union(aEvents, GroupMember.Change.LOST).isEmpty(),
                "cooperative: the remaining member gave up partitions when another left", "A's events " + aEvents);
        checks.expectEqual("cooperative: the remaining member was not given exactly the leaver's partitions",
                bShare, union(aEvents, GroupMember.Change.ASSIGNED), "A's events " + aEvents);
    }

    /** Cooperative: A's share while B was there it never gave up, from its first assignment until it closed. */
    private void checkKeptThroughout(Set<Integer> aShare, List<GroupMember.Event> aEvents) {
        Set<Integer> givenUp = union(aEvents, GroupMember.Change.REVOKED);
        givenUp.addAll(union(aEvents, GroupMember.Change.LOST));
        givenUp.retainAll(aShare);
        checks.expect(givenUp.isEmpty(), "cooperative: the first member gave up partitions it kept when the second joined",
                "kept " + aShare + ", gave up " + givenUp + "; A's events " + aEvents);
    }

    private static Set<Integer> union(List<GroupMember.Event> events, GroupMember.Change change) {
        Set<Integer> all = new TreeSet<>();
        events.stream().filter(e -> e.change() == change).forEach(e -> all.addAll(e.partitions()));
        return all;
    }

    /** Every record read, by the owner of its partition, with the value produced there; none unread. */
    private void judge(RecordFeed feed, List<GroupMember> members, GroupMember.Ownership ownership) {
        checks.expect(feed.errors().isEmpty(), "produce failed", String.valueOf(feed.errors()));
        Map<Long, RecordFeed.Acked> byPosition = new HashMap<>();
        for (RecordFeed.Acked acked : feed.acked()) {
            byPosition.put(position(acked.partition(), acked.offset()), acked);
        }
        Set<Long> seen = new HashSet<>();
        int reads = 0;
        int duplicates = 0;
        for (GroupMember member : members) {
            checks.expect(member.errors().isEmpty(), "consumer error", String.valueOf(member.errors()));
            for (GroupMember.Read read : member.reads()) {
                reads++;
                String where = member.name() + " read " + read.partition() + "/" + read.offset();
                checks.expect(read.owned(), "record read by a member not owning its partition", where);
                RecordFeed.Acked acked = byPosition.get(position(read.partition(), read.offset()));
                if (checks.expect(acked != null, "read a record nobody produced", where)) {
                    checks.expectEqual("value read differs from value produced", acked.value(), read.value(), where);
                }
                if (!seen.add(position(read.partition(), read.offset()))) {
                    duplicates++;
                }
            }
            if (!member.refusedCommits().isEmpty()) {
                notes.add(member.refusedCommits().size() + " commits refused around rebalances (" + member.name() + ")");
            }
        }
        List<RecordFeed.Acked> unread = unread(feed.acked(), members);
        checks.expect(unread.isEmpty(), "records produced were never read", unreadSummary(unread));
        checks.expect(ownership.conflicts().isEmpty(), "two members owned a partition at once",
                String.valueOf(ownership.conflicts()));
        notes.add(feed.acked().size() + " records produced, " + reads + " read");
        if (duplicates > 0) {
            // Allowed: a record fetched before a rebalance and committed after it is read again by its next owner.
            String note = duplicates + (duplicates == 1 ? " record" : " records") + " read twice across rebalances (allowed)";
            notes.add(note);
            System.out.println("note: " + kind.scenario + ": " + note);
        }
    }

    /**
     * The members committed after every batch they processed, so once the last one closed the
     * group's committed offsets (OffsetFetch) are the ends of the acknowledged log.
     */
    private void checkCommittedAtEnd(Map<Integer, Long> logEnds) {
        Map<Integer, Long> committed = new TreeMap<>();
        groups.committed(groupId).forEach((tp, om) -> committed.put(tp.partition(), om.offset()));
        checks.expectEqual("committed offsets after the last member closed are not the log end",
                new TreeMap<>(logEnds), committed, groupId);
    }

    private static List<RecordFeed.Acked> unread(List<RecordFeed.Acked> acked, List<GroupMember> members) {
        Set<Long> read = new HashSet<>();
        for (GroupMember member : members) {
            member.reads().forEach(r -> read.add(position(r.partition(), r.offset())));
        }
        return acked.stream().filter(a -> !read.contains(position(a.partition(), a.offset()))).toList();
    }

    private static String unreadSummary(List<RecordFeed.Acked> unread) {
        return unread.size() + " unread, e.g. " + unread.stream().limit(5)
                .map(a -> a.partition() + "/" + a.offset()).toList();
    }

    private static long position(int partition, long offset) {
        return ((long) partition << 40) | offset;
    }

    private static long millisSince(long nanos) {
        return (System.nanoTime() - nanos) / 1_000_000;
    }
}
