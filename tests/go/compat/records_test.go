package main

// The checks catch what they are for (as tests/compat/test_compat_common.py shows for the Python
// ones): lost, duplicated, reordered and mangled records, and group reads that skip or repeat.
// Run: cd tests/go && go test ./compat (with the env vars of run.sh).

import (
	"strings"
	"testing"
)

func fixture() ([]SentRecord, map[int]Delivery, []ConsumedRecord, map[int32]int64) {
	sent := makeRecords("none", 30, 0, 1_000_000)
	deliveries := map[int]Delivery{}
	next := map[int32]int64{}
	var consumed []ConsumedRecord
	for _, r := range sent {
		p := int32(r.Index % 2)
		deliveries[r.Index] = Delivery{p, next[p], r.TimestampMs}
		consumed = append(consumed, ConsumedRecord{p, next[p], r.Key, r.Value, r.Headers, r.TimestampMs, "create"})
		next[p]++
	}
	return sent, deliveries, consumed, map[int32]int64{0: 0, 1: 0}
}

func failures(t *testing.T, mutate func(sent []SentRecord, d map[int]Delivery, c []ConsumedRecord) []ConsumedRecord) string {
	t.Helper()
	sent, deliveries, consumed, start := fixture()
	consumed = mutate(sent, deliveries, consumed)
	checks := NewChecks("test")
	checkRoundtrip(checks, sent, deliveries, consumed, start, true)
	var failed []string
	for _, name := range checks.order {
		if checks.failedCount[name] > 0 {
			failed = append(failed, name)
		}
	}
	return strings.Join(failed, "; ")
}

func TestRoundtripChecks(t *testing.T) {
	cases := []struct {
		name   string
		mutate func([]SentRecord, map[int]Delivery, []ConsumedRecord) []ConsumedRecord
		want   string // a failed check's name, or "" for none
	}{
		{"intact", func(_ []SentRecord, _ map[int]Delivery, c []ConsumedRecord) []ConsumedRecord { return c }, ""},
		{"lost", func(_ []SentRecord, _ map[int]Delivery, c []ConsumedRecord) []ConsumedRecord { return c[:len(c)-1] },
			"consume: every record sent was read"},
		{"duplicated", func(_ []SentRecord, _ map[int]Delivery, c []ConsumedRecord) []ConsumedRecord {
			return append(c, c[4])
		}, "consume: no record read twice"},
		{"reordered", func(_ []SentRecord, _ map[int]Delivery, c []ConsumedRecord) []ConsumedRecord {
			c[2].Value, c[4].Value = c[4].Value, c[2].Value
			return c
		}, "consume: per-partition order is send order"},
		{"header order", func(_ []SentRecord, _ map[int]Delivery, c []ConsumedRecord) []ConsumedRecord {
			h := append([]Header(nil), c[1].Headers...)
			h[2], h[3] = h[3], h[2]
			c[1].Headers = h
			return c
		}, "consume: headers intact, order and duplicates kept"},
		{"empty header value read as null", func(_ []SentRecord, _ map[int]Delivery, c []ConsumedRecord) []ConsumedRecord {
			h := append([]Header(nil), c[1].Headers...)
			h[4].Value = nil
			c[1].Headers = h
			return c
		}, "consume: headers intact, order and duplicates kept"},
		{"null key read as empty", func(_ []SentRecord, _ map[int]Delivery, c []ConsumedRecord) []ConsumedRecord {
			c[0].Key = []byte{} // record 0 has a null key
			return c
		}, "consume: key intact"},
		{"timestamp", func(_ []SentRecord, _ map[int]Delivery, c []ConsumedRecord) []ConsumedRecord {
			c[5].TimestampMs++
			return c
		}, "consume: timestamp is the one sent"},
		{"log append time", func(_ []SentRecord, _ map[int]Delivery, c []ConsumedRecord) []ConsumedRecord {
			c[5].TimestampType = "log_append"
			return c
		}, "consume: timestamp type is CreateTime"},
		{"offset gap", func(_ []SentRecord, _ map[int]Delivery, c []ConsumedRecord) []ConsumedRecord {
			for i := range c {
				if c[i].Partition == 0 && c[i].Offset >= 3 {
					c[i].Offset++
				}
			}
			return c
		}, "consume: offsets contiguous from the start offset"},
	}
	for _, tc := range cases {
		got := failures(t, tc.mutate)
		if tc.want == "" && got != "" {
			t.Errorf("%s: unexpected failures %q", tc.name, got)
		}
		if tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: want %q among failures, got %q", tc.name, tc.want, got)
		}
	}
}

func TestGroupReadChecks(t *testing.T) {
	expected := map[[2]int64][]byte{{0, 0}: []byte("a"), {0, 1}: []byte("b"), {1, 0}: []byte("c")}
	run := func(reads []groupRead) string {
		rec := newGroupRecorder()
		for _, rd := range reads {
			rec.read(rd.member, rd.epoch, rd.partition, rd.offset, rd.value)
		}
		r := &run{checks: NewChecks("test")}
		r.checkGroupReads(rec, expected, "group")
		var failed []string
		for _, name := range r.checks.order {
			if r.checks.failedCount[name] > 0 {
				failed = append(failed, name)
			}
		}
		return strings.Join(failed, "; ")
	}
	all := []groupRead{{"m1", 1, 0, 0, []byte("a")}, {"m1", 1, 0, 1, []byte("b")}, {"m2", 1, 1, 0, []byte("c")}}
	if got := run(all); got != "" {
		t.Errorf("intact: %q", got)
	}
	if got := run(all[:2]); !strings.Contains(got, "group: none skipped") {
		t.Errorf("skipped: %q", got)
	}
	// Re-read by another member (or after a new assignment): allowed, only noted.
	if got := run(append(all, groupRead{"m1", 2, 1, 0, []byte("c")})); got != "" {
		t.Errorf("duplicate across a rebalance: %q", got)
	}
	if got := run(append(all, groupRead{"m2", 1, 1, 0, []byte("c")})); !strings.Contains(got, "without a rebalance") {
		t.Errorf("duplicate within one assignment: %q", got)
	}
	if got := run(append(all[:2], groupRead{"m2", 1, 1, 0, []byte("x")})); !strings.Contains(got, "where it was produced") {
		t.Errorf("wrong value: %q", got)
	}
}
