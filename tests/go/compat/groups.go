package main

// The consumer-group scenario: two members of one group over the 4-partition topic (which
// already holds the round trip's records), more records produced while they run, one member
// leaves (LeaveGroup) and the other must take over every partition; every record must be read
// and committed. Duplicates are allowed only across a rebalance (and are reported); a record a
// member reads twice within one assignment is a failure.

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

func (g *groupRecorder) allRead(expected map[[2]int64][]byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for where := range expected {
		if !g.seen[where] {
			return false
		}
	}
	return true
}

func describeAssignment(members []string, views []map[int32]bool) string {
	parts := make([]string, len(members))
	for i, name := range members {
		parts[i] = fmt.Sprintf("%s=%v", name, sortedKeys(views[i]))
	}
	return strings.Join(parts, ", ")
}

// groupScenario runs the scenario and returns every delivery: the round trip's and the ones
// produced while the group ran.
func (r *run) groupScenario(topic string, sent []SentRecord, deliveries map[int]Delivery) map[int]Delivery {
	all := map[int]Delivery{}
	for i, d := range deliveries {
		all[i] = d
	}
	group := topic + "-group"
	rec := newGroupRecorder()
	names := []string{"m1", "m2"}
	var members []GroupMember
	closed := map[int]bool{}
	defer func() { // whatever happened, no member is left running
		for i, m := range members {
			if !closed[i] {
				_ = m.Close()
			}
		}
	}()
	for _, name := range names {
		m, err := r.d.NewGroupMember(name, group, topic, rec)
		if !r.checks.Err("group: members join", err, "creating member "+name) {
			return all
		}
		members = append(members, m)
	}
	all4 := func(view map[int32]bool) bool {
		for p := int32(0); p < r.a.partitions; p++ {
			if !view[p] {
				return false
			}
		}
		return len(view) == int(r.a.partitions)
	}
	var views []map[int32]bool
	snapshot := func() {
		views = views[:0]
		for _, m := range members {
			views = append(views, m.Assigned())
		}
	}
	settled := waitUntil(NewDeadline(r.a.timeout), 50*time.Millisecond, func() bool {
		snapshot()
		union := map[int32]bool{}
		for _, v := range views {
			if len(v) != int(r.a.partitions)/2 {
				return false
			}
			for p := range v {
				union[p] = true
			}
		}
		return all4(union)
	})
	if !r.checks.Check("group: 2 members settle at 2 partitions each", settled,
		"not settled within %v: %s", r.a.timeout, describeAssignment(names, views)) {
		return all
	}
	before := append([]map[int32]bool(nil), views...)
	r.notes = append(r.notes, "group settled: "+describeAssignment(names, before))
	r.progress("group settled: %s", describeAssignment(names, before))

	// Records produced while the members run.
	producer, err := r.d.NewProducer(streamCodec)
	if !r.checks.Err("group: records produced while members run are acknowledged", err, "creating the producer") {
		return all
	}
	defer producer.Close()
	first := firstTimestampForRun()
	stop := make(chan struct{})
	streamDone := make(chan struct{})
	var streamErrs []string
	var streamed []SentRecord
	streamDeliveries := map[int]Delivery{}
	go func() {
		defer close(streamDone)
		next := len(sent)
		for {
			select {
			case <-stop:
				return
			case <-time.After(streamInterval):
			}
			batch := makeRecords("group-"+streamCodec, streamBatch, next, first+int64(next))
			next += streamBatch
			ctx, cancel := r.ctx()
			got, errs := producer.Send(ctx, topic, batch)
			cancel()
			streamed = append(streamed, batch...)
			streamErrs = append(streamErrs, errs...)
			for i, d := range got {
				streamDeliveries[i] = d
			}
		}
	}()
	time.Sleep(1500 * time.Millisecond)

	leftAt := time.Now()
	r.progress("m2 leaves")
	err = members[1].Close()
	closed[1] = true
	r.progress("m2 closed")
	r.checks.Err("group: the leaving member closes cleanly (LeaveGroup)", err, "closing m2")
	moved := waitUntil(NewDeadline(leaveMoveMax), 50*time.Millisecond, func() bool { return all4(members[0].Assigned()) })
	movedAfter := time.Since(leftAt)
	r.checks.Check(fmt.Sprintf("group: after the leave the other member owns every partition within %v (session timeout %v)",
		leaveMoveMax, groupSessionTimeout), moved, "after %.1fs m1 owns %v", movedAfter.Seconds(), sortedKeys(members[0].Assigned()))
	if moved {
		r.notes = append(r.notes, fmt.Sprintf("m2's partitions moved to m1 %.1fs after it left", movedAfter.Seconds()))
	}
	time.Sleep(time.Second)
	close(stop)
	select {
	case <-streamDone:
	case <-time.After(r.a.timeout + 5*time.Second):
		r.checks.Fail("group: records produced while members run are acknowledged", "producer stuck")
		return all
	}
	checkDeliveries(r.checks, streamed, streamDeliveries, nextOffsets(deliveries, r.a.partitions))
	r.checks.Check("group: records produced while members run are acknowledged", len(streamErrs) == 0 && len(streamed) > 0,
		"%d sent, errors: %s", len(streamed), strings.Join(head(streamErrs, 5), "; "))
	for i, d := range streamDeliveries {
		all[i] = d
	}

	// Every record in the topic, by (partition, offset).
	values := map[int]*SentRecord{}
	for i := range sent {
		values[sent[i].Index] = &sent[i]
	}
	for i := range streamed {
		values[streamed[i].Index] = &streamed[i]
	}
	expected := map[[2]int64][]byte{}
	for i, d := range all {
		expected[[2]int64{int64(d.Partition), d.Offset}] = values[i].Value
	}
	read := waitUntil(NewDeadline(r.a.timeout), 100*time.Millisecond, func() bool { return rec.allRead(expected) })
	r.checks.Check("group: every record read in time", read, "not all %d records read within %v", len(expected), r.a.timeout)
	r.progress("every record read")
	err = members[0].Close()
	closed[0] = true
	r.progress("m1 closed")
	r.checks.Err("group: the last member closes cleanly", err, "closing m1")

	r.checkGroupReads(rec, expected)

	end := nextOffsets(all, r.a.partitions)
	var committed map[int32]int64
	err = r.call(func(ctx context.Context) error {
		var err error
		committed, err = r.d.Committed(ctx, group, topic, r.a.partitions)
		return err
	})
	const name = "group: committed offsets (OffsetFetch) equal the log end offsets"
	if r.checks.Err(name, err, "OffsetFetch") {
		for p := int32(0); p < r.a.partitions; p++ {
			r.checks.Check(name, committed[p] == end[p], "partition %d: committed %d, log end %d", p, committed[p], end[p])
		}
	}
	return all
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

func (r *run) checkGroupReads(rec *groupRecorder, expected map[[2]int64][]byte) {
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
		r.checks.Check("group: every record read is one produced, where it was produced", ok && string(want) == string(rd.value),
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
	r.checks.Check("group: none skipped", len(missing) == 0,
		"%d of %d produced records never read, e.g. (partition, offset) %v", len(missing), len(expected), head(missing, 6))
	r.checks.Check("group: no record read twice by one member without a rebalance in between", len(badTwice) == 0,
		"%d records read twice within one assignment, e.g. (partition, offset) %v", len(badTwice), head(badTwice, 6))
	if len(twice) > 0 {
		r.notes = append(r.notes, fmt.Sprintf("%d records read twice across the rebalance (allowed), e.g. %v",
			len(twice), head(twice, 3)))
	} else {
		r.notes = append(r.notes, "group: no record read twice")
	}
	r.checks.Check("group: members report no client errors", len(rec.errors) == 0, "%s", strings.Join(head(rec.errors, 5), "; "))
	if len(rec.tolerated) > 0 {
		r.notes = append(r.notes, fmt.Sprintf("%d errors around the rebalance (allowed), e.g. %s",
			len(rec.tolerated), strings.Join(head(rec.tolerated, 3), "; ")))
	}
}
