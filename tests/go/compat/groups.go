package main

// The consumer-group scenarios of the matrix (group-rebalance, group-cooperative): two members of
// one group over the 4-partition topic (which already holds the round trip's records), more
// records produced while they run, one member leaves (LeaveGroup) and the other must take over
// every partition; every record must be read and committed. Duplicates are allowed only across a
// rebalance (and are reported); a record a member reads twice within one assignment is a
// failure. And the commits scenario: offsets committed mid-partition are read back and a new
// member resumes exactly there.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	groupSessionTimeout = 30 * time.Second
	// A move within this time after the leave can only be the LeaveGroup's doing (the session
	// is 30 s), as in groups_common.py's member_leaves.
	leaveMoveMax   = 20 * time.Second
	streamBatch    = 20
	streamInterval = 50 * time.Millisecond
	streamCodec    = "lz4"
)

// GroupMember is one consumer-group member; it records what it reads in a groupRecorder.
type GroupMember interface {
	// Assigned returns the partitions the member owns now.
	Assigned() map[int32]bool
	// Events returns the member's assign/revoke/lost callbacks so far, in order.
	Events() []memberEvent
	// Close stops consuming, commits and leaves the group.
	Close() error
}

type groupRead struct {
	member    string
	epoch     int64 // the member's assignment epoch: bumped on every assign, revoke or loss
	partition int32
	offset    int64
	value     []byte
}

// groupRecorder collects every member's reads and errors.
type groupRecorder struct {
	mu        sync.Mutex
	reads     []groupRead
	seen      map[[2]int64]bool
	errors    []string // client errors that fail the check
	tolerated []string // errors Kafka also gives around a rebalance (reported as notes)
}

func newGroupRecorder() *groupRecorder { return &groupRecorder{seen: map[[2]int64]bool{}} }

func (g *groupRecorder) read(member string, epoch int64, partition int32, offset int64, value []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reads = append(g.reads, groupRead{member, epoch, partition, offset, append([]byte(nil), value...)})
	g.seen[[2]int64{int64(partition), offset}] = true
}

func (g *groupRecorder) err(member string, tolerated bool, format string, v ...any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	msg := member + ": " + fmt.Sprintf(format, v...)
	if tolerated {
		g.tolerated = append(g.tolerated, msg)
	} else {
		g.errors = append(g.errors, msg)
	}
}

// missing: the records of expected not read yet, by (partition, offset).
func (g *groupRecorder) missing(expected map[[2]int64][]byte) [][2]int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out [][2]int64
	for where := range expected {
		if !g.seen[where] {
			out = append(out, where)
		}
	}
	return out
}

// firstPerPartition: partition -> the lowest offset among places.
func firstPerPartition(places [][2]int64) map[int32]int64 {
	out := map[int32]int64{}
	for _, w := range places {
		if o, ok := out[int32(w[0])]; !ok || w[1] < o {
			out[int32(w[0])] = w[1]
		}
	}
	return out
}

func describeAssignment(members []string, views []map[int32]bool) string {
	parts := make([]string, len(members))
	for i, name := range members {
		parts[i] = fmt.Sprintf("%s=%v", name, sortedKeys(views[i]))
	}
	return strings.Join(parts, ", ")
}

// groupMode: the two group scenarios of the matrix share this code.
type groupMode struct {
	scenario    string // the matrix id, also in the group's name
	prefix      string // of the check names
	cooperative bool   // cooperative-sticky (incremental) instead of an eager assignor
}

var (
	eagerGroup       = groupMode{"group-rebalance", "group", false}
	cooperativeGroup = groupMode{"group-cooperative", "group (cooperative)", true}
)

// memberEvent is one assign, revoke or lost callback of a member, with its partitions of the
// topic (for sarama's cooperative protocol: a claim that started or was revoked).
type memberEvent struct {
	Kind       string // assign, revoke, lost
	Partitions []int32
}

// streamer produces batches of records into the topic until stopped.
type streamer struct {
	stop, done chan struct{}
	sent       []SentRecord
	deliveries map[int]Delivery
	errs       []string
}

func (r *run) startStream(topic string, producer Producer, firstIndex int) *streamer {
	s := &streamer{stop: make(chan struct{}), done: make(chan struct{}), deliveries: map[int]Delivery{}}
	first := firstTimestampForRun()
	go func() {
		defer close(s.done)
		next := firstIndex
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(streamInterval):
			}
			batch := makeRecords("group-"+streamCodec, streamBatch, next, first+int64(next-firstIndex))
			next += streamBatch
			ctx, cancel := r.ctx()
			got, errs := producer.Send(ctx, topic, batch)
			cancel()
			s.sent = append(s.sent, batch...)
			s.errs = append(s.errs, errs...)
			for i, d := range got {
				s.deliveries[i] = d
			}
		}
	}()
	return s
}

// finish stops the stream and says whether it ended in time.
func (s *streamer) finish(timeout time.Duration) bool {
	close(s.stop)
	select {
	case <-s.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// expectedByPlace: every record of the topic so far by (partition, offset).
func (r *run) expectedByPlace() map[[2]int64][]byte {
	expected := map[[2]int64][]byte{}
	for i, d := range r.topicDeliveries {
		expected[[2]int64{int64(d.Partition), d.Offset}] = r.topicSent[i].Value
	}
	return expected
}

// partitionSet: the union of the partitions of events of the given kinds.
func partitionSet(events []memberEvent, kinds ...string) map[int32]bool {
	out := map[int32]bool{}
	for _, e := range events {
		if contains(kinds, e.Kind) {
			for _, p := range e.Partitions {
				out[p] = true
			}
		}
	}
	return out
}

func sameSet(a, b map[int32]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for p := range a {
		if !b[p] {
			return false
		}
	}
	return true
}

// groupScenario: two members of one group over the topic, records produced while they run, one
// member leaves and the other must own every partition; every record of the topic is read.
// Eager: both join at once and settle at two partitions each. Cooperative: the first member
// owns every partition, then the second joins and the first must be revoked only the partitions
// that move, and lose nothing when the second leaves. Records produced are added to the topic's.
func (r *run) groupScenario(topic string, mode groupMode) {
	name := func(s string) string { return mode.prefix + ": " + s }
	group := topic + "-" + mode.scenario
	rec := newGroupRecorder()
	names := []string{"m1", "m2"}
	members := make([]GroupMember, len(names))
	closed := make([]bool, len(names))
	defer func() { // whatever happened, no member is left running
		for i, m := range members {
			if m != nil && !closed[i] {
				_ = m.Close()
			}
		}
	}()
	join := func(i int) bool {
		m, err := r.d.NewGroupMember(names[i], group, topic, mode.cooperative, rec)
		if !r.checks.Err(name("members join"), err, "creating member "+names[i]) {
			return false
		}
		members[i] = m
		return true
	}
	owns := func(view map[int32]bool, count int) bool {
		for p := range view {
			if p < 0 || p >= r.a.partitions {
				return false
			}
		}
		return len(view) == count
	}
	all4 := func(view map[int32]bool) bool { return owns(view, int(r.a.partitions)) }
	var views []map[int32]bool
	// settle waits until the first len(counts) members own counts[i] partitions each, all
	// partitions between them.
	settle := func(counts ...int) bool {
		return waitUntil(NewDeadline(r.a.timeout), 50*time.Millisecond, func() bool {
			views = views[:0]
			union := map[int32]bool{}
			ok := true
			for i, want := range counts {
				v := members[i].Assigned()
				views = append(views, v)
				ok = ok && owns(v, want)
				for p := range v {
					union[p] = true
				}
			}
			return ok && all4(union)
		})
	}
	half := int(r.a.partitions) / 2

	var stream *streamer
	startStream := func() bool {
		producer, err := r.d.NewProducer(streamCodec)
		if !r.checks.Err(name("records produced while members run are acknowledged"), err, "creating the producer") {
			return false
		}
		stream = r.startStream(topic, producer, len(r.topicSent))
		stopStream := stream
		go func() { <-stopStream.done; producer.Close() }()
		return true
	}
	defer func() {
		if stream != nil {
			select {
			case <-stream.stop:
			default:
				stream.finish(r.a.timeout)
			}
		}
	}()

	if !mode.cooperative {
		if !join(0) || !join(1) {
			return
		}
		if !r.checks.Check(name("2 members settle at 2 partitions each"), settle(half, half),
			"not settled within %v: %s", r.a.timeout, describeAssignment(names, views)) {
			return
		}
		r.notes = append(r.notes, name("settled: "+describeAssignment(names, views)))
		r.progress("%s: settled: %s", mode.scenario, describeAssignment(names, views))
		if !startStream() {
			return
		}
		time.Sleep(1500 * time.Millisecond)
	} else {
		if !join(0) {
			return
		}
		if !r.checks.Check(name("the first member owns every partition"), settle(int(r.a.partitions)),
			"not within %v: %s", r.a.timeout, describeAssignment(names[:1], views)) {
			return
		}
		r.progress("%s: m1 owns %v", mode.scenario, sortedKeys(views[0]))
		if !startStream() {
			return
		}
		time.Sleep(time.Second)
		before := members[0].Assigned()
		mark := len(members[0].Events())
		if !join(1) {
			return
		}
		joinedAt := time.Now()
		if !r.checks.Check(name("a second member joins: 2 partitions each"), settle(half, half),
			"not settled within %v: %s", r.a.timeout, describeAssignment(names, views)) {
			return
		}
		r.progress("%s: settled %.1fs after m2 joined: %s", mode.scenario, time.Since(joinedAt).Seconds(),
			describeAssignment(names, views))
		r.notes = append(r.notes, name("settled: "+describeAssignment(names, views)))
		events := members[0].Events()[mark:]
		revoked := partitionSet(events, "revoke", "lost")
		lost := partitionSet(events, "lost")
		kept := views[0]
		moving := map[int32]bool{}
		for p := range before {
			if !kept[p] {
				moving[p] = true
			}
		}
		r.checks.Check(name("when a member joins, the first one is revoked only the partitions that move and keeps the rest"),
			sameSet(revoked, moving) && len(lost) == 0,
			"m1 owned %v, its callbacks revoked %v (lost %v), it kept %v, moving %v", sortedKeys(before),
			sortedKeys(revoked), sortedKeys(lost), sortedKeys(kept), sortedKeys(moving))
		time.Sleep(time.Second)
	}

	mark := len(members[0].Events())
	leftAt := time.Now()
	r.progress("%s: m2 leaves", mode.scenario)
	err := members[1].Close()
	closed[1] = true
	r.checks.Err(name("the leaving member closes cleanly (LeaveGroup)"), err, "closing m2")
	moved := waitUntil(NewDeadline(leaveMoveMax), 50*time.Millisecond, func() bool { return all4(members[0].Assigned()) })
	movedAfter := time.Since(leftAt)
	r.checks.Check(name(fmt.Sprintf("after the leave the other member owns every partition within %v (session timeout %v)",
		leaveMoveMax, groupSessionTimeout)), moved, "after %.1fs m1 owns %v", movedAfter.Seconds(), sortedKeys(members[0].Assigned()))
	if moved {
		r.notes = append(r.notes, name(fmt.Sprintf("m2's partitions moved to m1 %.1fs after it left", movedAfter.Seconds())))
		r.progress("%s: m1 owns every partition %.1fs after the leave", mode.scenario, movedAfter.Seconds())
	}
	if mode.cooperative {
		events := members[0].Events()[mark:]
		revoked := partitionSet(events, "revoke", "lost")
		r.checks.Check(name("a member leaving revokes nothing from the one staying"), len(revoked) == 0,
			"m1's callbacks revoked %v after m2 left", sortedKeys(revoked))
	}
	time.Sleep(time.Second)
	stopping := time.Now()
	if !stream.finish(r.a.timeout + 5*time.Second) {
		r.checks.Fail(name("records produced while members run are acknowledged"), "producer stuck")
		return
	}
	r.progress("%s: producer stopped after %.1fs, %d records produced", mode.scenario, time.Since(stopping).Seconds(), len(stream.sent))
	checkDeliveries(r.checks, stream.sent, stream.deliveries, nextOffsets(r.topicDeliveries, r.a.partitions))
	r.checks.Check(name("records produced while members run are acknowledged"), len(stream.errs) == 0 && len(stream.sent) > 0,
		"%d sent, errors: %s", len(stream.sent), strings.Join(head(stream.errs, 5), "; "))
	r.topicSent = append(r.topicSent, stream.sent...)
	for i, d := range stream.deliveries {
		r.topicDeliveries[i] = d
	}
	r.notes = append(r.notes, name(fmt.Sprintf("%d records produced while the members ran", len(stream.sent))))

	expected := r.expectedByPlace()
	lastShown := time.Now()
	read := waitUntil(NewDeadline(r.a.timeout), 100*time.Millisecond, func() bool {
		missing := rec.missing(expected)
		if len(missing) > 0 && time.Since(lastShown) >= 5*time.Second {
			lastShown = time.Now()
			r.progress("%s: still %d records unread, first per partition %v; m1 owns %v", mode.scenario,
				len(missing), firstPerPartition(missing), sortedKeys(members[0].Assigned()))
		}
		return len(missing) == 0
	})
	r.checks.Check(name("every record read in time"), read, "not all %d records read within %v", len(expected), r.a.timeout)
	r.progress("%s: every record read", mode.scenario)
	err = members[0].Close()
	closed[0] = true
	r.progress("%s: m1 closed", mode.scenario)
	r.checks.Err(name("the last member closes cleanly"), err, "closing m1")

	r.checkGroupReads(rec, expected, mode.prefix)

	end := nextOffsets(r.topicDeliveries, r.a.partitions)
	var committed map[int32]int64
	err = r.call(func(ctx context.Context) error {
		var err error
		committed, err = r.d.Committed(ctx, group, topic, r.a.partitions)
		return err
	})
	check := name("committed offsets (OffsetFetch) equal the log end offsets")
	if r.checks.Err(check, err, "OffsetFetch") {
		for p := int32(0); p < r.a.partitions; p++ {
			r.checks.Check(check, committed[p] == end[p], "partition %d: committed %d, log end %d", p, committed[p], end[p])
		}
	}
}

// commitsScenario: a member of a new group reads into every partition and commits offsets in
// the middle of it, then leaves; OffsetFetch must read those offsets back, and a new member of
// the group must start exactly there and read every record from there to the end, once.
func (r *run) commitsScenario(topic string) {
	group := topic + "-commits"
	r.commitsGroup = group
	end := nextOffsets(r.topicDeliveries, r.a.partitions)
	commit := map[int32]int64{}
	for p := int32(0); p < r.a.partitions; p++ {
		if !r.checks.Check("commits: every partition has records to commit in", end[p] >= 2,
			"partition %d holds %d records", p, end[p]) {
			return
		}
		commit[p] = max(1, min(end[p]-1, end[p]/3+int64(p)))
	}
	err := r.call(func(ctx context.Context) error { return r.d.CommitGroupOffsets(ctx, group, topic, commit) })
	if !r.checks.Err("commits: a member reads into every partition, commits offsets there (OffsetCommit) and leaves", err,
		fmt.Sprintf("committing %v", commit)) {
		return
	}
	var committed map[int32]int64
	err = r.call(func(ctx context.Context) error {
		var err error
		committed, err = r.d.Committed(ctx, group, topic, r.a.partitions)
		return err
	})
	const readBack = "commits: committed offsets read back (OffsetFetch)"
	if r.checks.Err(readBack, err, "OffsetFetch") {
		for p := int32(0); p < r.a.partitions; p++ {
			r.checks.Check(readBack, committed[p] == commit[p], "partition %d: read back %d, committed %d", p, committed[p], commit[p])
		}
	}
	var reads []ConsumedRecord
	err = r.call(func(ctx context.Context) error {
		var err error
		reads, err = r.d.ResumeGroup(ctx, group, topic, end)
		return err
	})
	r.checks.Err("commits: a new member of the group reads on to the end", err, "consuming")
	r.progress("commits: committed %v, a new member read %d records from there", commit, len(reads))
	expected := r.expectedByPlace()
	first := map[int32]int64{}
	next := map[int32]int64{}
	for p, o := range commit {
		next[p] = o
	}
	const resumed = "commits: the new member resumes exactly at the committed offsets"
	const onward = "commits: from there every record read once, in order, as produced"
	for _, c := range reads {
		if _, ok := first[c.Partition]; !ok {
			first[c.Partition] = c.Offset
		}
		want, ok := next[c.Partition]
		r.checks.Check(onward, ok && c.Offset == want, "partition %d: read offset %d, expected %d", c.Partition, c.Offset, want)
		next[c.Partition] = c.Offset + 1
		value, ok := expected[[2]int64{int64(c.Partition), c.Offset}]
		r.checks.Check(onward, ok && string(value) == string(c.Value), "partition %d offset %d: read %s, produced %s",
			c.Partition, c.Offset, showBytes(c.Value), showBytes(value))
	}
	for p := int32(0); p < r.a.partitions; p++ {
		f, ok := first[p]
		r.checks.Check(resumed, ok && f == commit[p], "partition %d: first record read at %s, committed %d", p, showOffset(f, ok), commit[p])
		r.checks.Check(onward, next[p] == end[p], "partition %d: read up to %d, log end %d", p, next[p], end[p])
	}
}

// nextOffsets: per partition, one past the highest delivered offset (0 when none).
func nextOffsets(deliveries map[int]Delivery, partitions int32) map[int32]int64 {
	out := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		out[p] = 0
	}
	for _, d := range deliveries {
		if d.Offset+1 > out[d.Partition] {
			out[d.Partition] = d.Offset + 1
		}
	}
	return out
}

func (r *run) checkGroupReads(rec *groupRecorder, expected map[[2]int64][]byte, prefix string) {
	name := func(s string) string { return prefix + ": " + s }
	rec.mu.Lock()
	defer rec.mu.Unlock()
	type key struct {
		member string
		epoch  int64
	}
	counts := map[[2]int64]int{}
	within := map[[2]int64]map[key]int{}
	for _, rd := range rec.reads {
		where := [2]int64{int64(rd.partition), rd.offset}
		want, ok := expected[where]
		r.checks.Check(name("every record read is one produced, where it was produced"), ok && string(want) == string(rd.value),
			"%s read %q at partition %d offset %d, produced there: %q", rd.member, head(rd.value, 24), rd.partition, rd.offset, head(want, 24))
		counts[where]++
		if within[where] == nil {
			within[where] = map[key]int{}
		}
		within[where][key{rd.member, rd.epoch}]++
	}
	var missing, twice, badTwice [][2]int64
	for where := range expected {
		if counts[where] == 0 {
			missing = append(missing, where)
		}
	}
	for where, n := range counts {
		if n > 1 {
			twice = append(twice, where)
			for _, m := range within[where] {
				if m > 1 {
					badTwice = append(badTwice, where)
					break
				}
			}
		}
	}
	for _, s := range [][][2]int64{missing, twice, badTwice} {
		sort.Slice(s, func(i, j int) bool { return s[i][0] < s[j][0] || (s[i][0] == s[j][0] && s[i][1] < s[j][1]) })
	}
	r.checks.Check(name("none skipped"), len(missing) == 0,
		"%d of %d produced records never read, e.g. (partition, offset) %v", len(missing), len(expected), head(missing, 6))
	r.checks.Check(name("no record read twice by one member without a rebalance in between"), len(badTwice) == 0,
		"%d records read twice within one assignment, e.g. (partition, offset) %v", len(badTwice), head(badTwice, 6))
	if len(twice) > 0 {
		r.notes = append(r.notes, name(fmt.Sprintf("%d records read twice across the rebalance (allowed), e.g. %v",
			len(twice), head(twice, 3))))
	} else {
		r.notes = append(r.notes, name("no record read twice"))
	}
	r.checks.Check(name("members report no client errors"), len(rec.errors) == 0, "%s", strings.Join(head(rec.errors, 5), "; "))
	if len(rec.tolerated) > 0 {
		r.notes = append(r.notes, name(fmt.Sprintf("%d errors around the rebalance (allowed), e.g. %s",
			len(rec.tolerated), strings.Join(head(rec.tolerated, 3), "; "))))
	}
}
