package main

// The compaction scenario of the compatibility matrix ("The compaction scenario" in
// tests/matrix/README.md), the same for both clients; the judgement is a port of
// tests/compat/compaction_matrix.py. Create a 1-partition topic with compactionConfigs, produce
// compactionPlan() in order, wait compactionRollAfter, produce one compactionRollKey record (its
// append rolls the segment, which makes the first one cleanable), then read the partition from
// offset 0 to its end every second until compactionSettled (at most compactionWait) and judge
// the last read against the delivery reports with compactionJudge.

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"
)

const (
	compactionKeys       = 20
	compactionUpdates    = 200
	compactionTombstoned = 5
	compactionRollAfter  = 1500 * time.Millisecond
	compactionWait       = 60 * time.Second
	compactionReadEvery  = time.Second
)

var compactionRollKey = []byte("roll")

var compactionConfigs = map[string]string{
	"cleanup.policy":            "compact",
	"segment.ms":                "1000",
	"min.cleanable.dirty.ratio": "0.01",
	"delete.retention.ms":       "600000", // tombstones stay readable
}

// compactionRecord is one record of the plan; a nil Value is a tombstone.
type compactionRecord struct {
	Key, Value []byte
}

// compactionRead is one record as read back.
type compactionRead struct {
	Offset     int64
	Key, Value []byte
}

func compactionKey(index int) []byte { return []byte(fmt.Sprintf("key-%02d", index)) }

// compactionPlan: updates round-robin over the keys ("key-07=v3" is key-07's 4th value), then a
// tombstone for each of the first compactionTombstoned keys.
func compactionPlan() []compactionRecord {
	out := make([]compactionRecord, 0, compactionUpdates+compactionTombstoned)
	for update := 0; update < compactionUpdates; update++ {
		key := compactionKey(update % compactionKeys)
		out = append(out, compactionRecord{key, []byte(fmt.Sprintf("%s=v%d", key, update/compactionKeys))})
	}
	for i := 0; i < compactionTombstoned; i++ {
		out = append(out, compactionRecord{compactionKey(i), nil})
	}
	return out
}

// compactionSettled: each of the compactionKeys keys appears exactly once (the roll record and
// keyless records aside): the cleaner has passed over the first segment.
func compactionSettled(read []compactionRead) bool {
	counts := map[string]int{}
	for _, r := range read {
		if r.Key != nil && !bytes.Equal(r.Key, compactionRollKey) {
			counts[string(r.Key)]++
		}
	}
	if len(counts) != compactionKeys {
		return false
	}
	for _, n := range counts {
		if n != 1 {
			return false
		}
	}
	return true
}

// compactionJudge compares the last read with the plan and the offsets its delivery reports
// named (in produce order) and returns the failed checks, at most 10 (none: pass).
func compactionJudge(produced []compactionRecord, offsets []int64, rollOffset int64, read []compactionRead) []string {
	if len(offsets) != len(produced) {
		return []string{fmt.Sprintf("%d delivery reports for %d records", len(offsets), len(produced))}
	}
	type last struct {
		offset int64
		value  []byte
	}
	latest := map[string]last{}
	for i, r := range produced {
		latest[string(r.Key)] = last{offsets[i], r.Value}
	}
	var failures []string
	if !compactionSettled(read) {
		failures = append(failures, fmt.Sprintf("not compacted within %.0f s: %d records read, keys not yet unique",
			compactionWait.Seconds(), len(read)))
	}
	previous := int64(-1)
	for _, r := range read {
		if r.Offset <= previous {
			failures = append(failures, fmt.Sprintf("offset %d after %d: offsets must increase", r.Offset, previous))
		}
		previous = r.Offset
	}
	seen := map[string]compactionRead{} // the last read of each key
	for _, r := range read {
		if r.Key != nil {
			seen[string(r.Key)] = r
		}
	}
	keys := make([]string, 0, len(latest))
	for k := range latest {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		want := latest[k]
		got, ok := seen[k]
		switch {
		case !ok:
			failures = append(failures, fmt.Sprintf("%q is gone; its last record was at offset %d", k, want.offset))
		case got.Offset != want.offset || !sameNullable(got.Value, want.value):
			failures = append(failures, fmt.Sprintf("%q read as %s at %d, expected %s at %d",
				k, showBytes(got.Value), got.Offset, showBytes(want.value), want.offset))
		}
	}
	if len(read) >= len(produced)+1 {
		failures = append(failures, fmt.Sprintf("%d records read of %d produced: nothing removed", len(read), len(produced)+1))
	}
	if len(read) == 0 || !bytes.Equal(read[len(read)-1].Key, compactionRollKey) || read[len(read)-1].Offset != rollOffset {
		failures = append(failures, fmt.Sprintf("the last record read is not the roll record at offset %d", rollOffset))
	}
	return head(failures, 10)
}

// compactionScenario runs the scenario on its own topic; its checks go to r.checks.
func (r *run) compactionScenario(topic string) {
	const create = "compaction: create the compacted topic (segment.ms=1000, min.cleanable.dirty.ratio=0.01)"
	err := r.call(func(ctx context.Context) error { return r.d.CreateTopic(ctx, topic, 1, compactionConfigs) })
	if !r.checks.Err(create, err, "CreateTopics "+topic) {
		return
	}
	defer r.deleteTopic(topic)
	if _, _, ok := r.waitPartitions(topic, 1); !ok {
		return
	}
	plan := compactionPlan()
	now := time.Now().UnixMilli()
	records := make([]SentRecord, len(plan))
	for i, p := range plan {
		records[i] = SentRecord{Index: i, Codec: "compaction", Key: p.Key, Value: p.Value, TimestampMs: now}
	}
	const acked = "compaction: every record acknowledged"
	got, errs := r.send(topic, "none", records)
	offsets := make([]int64, 0, len(plan))
	for i := range plan {
		if d, ok := got[i]; ok {
			offsets = append(offsets, d.Offset)
		}
	}
	if !r.checks.Check(acked, len(errs) == 0 && len(offsets) == len(plan), "%d of %d acknowledged: %s",
		len(offsets), len(plan), joinHead(errs, 3)) {
		return
	}
	time.Sleep(compactionRollAfter)
	roll := []SentRecord{{Index: 0, Codec: "compaction", Key: compactionRollKey, Value: []byte("roll"),
		TimestampMs: time.Now().UnixMilli()}}
	got, errs = r.send(topic, "none", roll)
	d, ok := got[0]
	if !r.checks.Check(acked, len(errs) == 0 && ok, "the roll record: %s", joinHead(errs, 3)) {
		return
	}
	r.progress("compaction: %d records and the roll record (offset %d) produced", len(plan), d.Offset)

	began := time.Now()
	deadline := NewDeadline(compactionWait)
	var read []compactionRead
	var readErr error
	reads := 0
	for {
		readErr = r.call(func(ctx context.Context) error {
			consumed, err := r.d.ConsumeRange(ctx, topic, map[int32]int64{0: 0}, map[int32]int64{0: d.Offset + 1})
			if err == nil {
				read = read[:0]
				for _, c := range consumed {
					read = append(read, compactionRead{c.Offset, c.Key, c.Value})
				}
			}
			return err
		})
		reads++
		if readErr == nil && compactionSettled(read) || deadline.Expired() {
			break
		}
		time.Sleep(min(compactionReadEvery, deadline.Remaining()+time.Millisecond))
	}
	r.progress("compaction: %d records read after %.1fs (%d reads)", len(read), time.Since(began).Seconds(), reads)
	r.checks.Err("compaction: read the partition from offset 0 to its end", readErr, "the last read")
	const judged = "compaction: each key once with its last value at its offset, offsets increasing, records removed, roll last"
	failures := compactionJudge(plan, offsets, d.Offset, read)
	for _, f := range failures {
		r.checks.Fail(judged, "%s", f)
	}
	if len(failures) == 0 {
		r.checks.Check(judged, true, "")
		r.notes = append(r.notes, fmt.Sprintf("compaction: settled %.1fs after the roll record, %d of %d records left",
			time.Since(began).Seconds(), len(read), len(plan)+1))
	}
}

func joinHead(s []string, n int) string {
	out := ""
	for i, x := range head(s, n) {
		if i > 0 {
			out += "; "
		}
		out += x
	}
	if len(s) > n {
		out += "; ... " + strconv.Itoa(len(s)-n) + " more"
	}
	return out
}
