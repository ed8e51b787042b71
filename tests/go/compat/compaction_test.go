package main

// compactionJudge catches what it is for: a lost key, a stale value, a tombstone read as an
// empty value, a log the cleaner never compacted, a missing roll record.

import (
	"strings"
	"testing"
)

// compactedFixture: the plan with offsets 0..204, the roll record at 205, and the read a correct
// cleaner leaves: each key's last record, in offset order, then the roll record.
func compactedFixture() ([]compactionRecord, []int64, int64, []compactionRead) {
	plan := compactionPlan()
	offsets := make([]int64, len(plan))
	lastAt := map[string]int{}
	for i, r := range plan {
		offsets[i] = int64(i)
		lastAt[string(r.Key)] = i
	}
	var read []compactionRead
	for i, r := range plan {
		if lastAt[string(r.Key)] == i {
			read = append(read, compactionRead{int64(i), r.Key, r.Value})
		}
	}
	roll := int64(len(plan))
	read = append(read, compactionRead{roll, compactionRollKey, []byte("roll")})
	return plan, offsets, roll, read
}

func TestCompactionPlan(t *testing.T) {
	plan := compactionPlan()
	if len(plan) != compactionUpdates+compactionTombstoned {
		t.Fatalf("%d records", len(plan))
	}
	if string(plan[27].Key) != "key-07" || string(plan[27].Value) != "key-07=v1" {
		t.Errorf("record 27: %q=%q", plan[27].Key, plan[27].Value)
	}
	if string(plan[200].Key) != "key-00" || plan[200].Value != nil {
		t.Errorf("record 200 is not key-00's tombstone: %q=%q", plan[200].Key, plan[200].Value)
	}
}

func TestCompactionJudge(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(read []compactionRead) []compactionRead
		want   string // a substring of a failure, or "" for none
	}{
		{"compacted", func(read []compactionRead) []compactionRead { return read }, ""},
		{"lost key", func(read []compactionRead) []compactionRead {
			var out []compactionRead
			for _, r := range read {
				if string(r.Key) != "key-07" {
					out = append(out, r)
				}
			}
			return out
		}, `"key-07" is gone`},
		{"stale value", func(read []compactionRead) []compactionRead {
			for i := range read {
				if string(read[i].Key) == "key-09" { // last at 189 as key-09=v9
					read[i] = compactionRead{169, read[i].Key, []byte("key-09=v8")}
				}
			}
			return read
		}, `"key-09" read as "key-09=v8" at 169, expected "key-09=v9" at 189`},
		{"tombstone read as an empty value", func(read []compactionRead) []compactionRead {
			for i := range read {
				if string(read[i].Key) == "key-03" {
					read[i].Value = []byte{}
				}
			}
			return read
		}, `"key-03" read as "" at 203, expected null at 203`},
		{"not compacted", func(read []compactionRead) []compactionRead {
			plan := compactionPlan()
			out := make([]compactionRead, 0, len(plan)+1)
			for i, r := range plan {
				out = append(out, compactionRead{int64(i), r.Key, r.Value})
			}
			return append(out, read[len(read)-1])
		}, "nothing removed"},
		{"roll record missing", func(read []compactionRead) []compactionRead { return read[:len(read)-1] },
			"not the roll record"},
		{"offsets out of order", func(read []compactionRead) []compactionRead {
			read[3], read[4] = read[4], read[3]
			return read
		}, "offsets must increase"},
	}
	for _, tc := range cases {
		plan, offsets, roll, read := compactedFixture()
		failures := compactionJudge(plan, offsets, roll, tc.mutate(read))
		got := strings.Join(failures, "\n")
		if tc.want == "" && got != "" {
			t.Errorf("%s: unexpected failures:\n%s", tc.name, got)
		}
		if tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: want %q among the failures, got:\n%s", tc.name, tc.want, got)
		}
	}
	// Not yet compacted is also what compactionSettled says, so the wait goes on.
	plan, _, _, read := compactedFixture()
	if !compactionSettled(read) {
		t.Errorf("a compacted read is not settled")
	}
	dirty := append([]compactionRead{{0, plan[0].Key, plan[0].Value}}, read...)
	if compactionSettled(dirty) {
		t.Errorf("a read with key-00 twice is settled")
	}
	// Delivery reports missing: one failure saying so.
	if f := compactionJudge(plan, []int64{0, 1}, 205, read); len(f) != 1 || !strings.Contains(f[0], "delivery reports") {
		t.Errorf("missing delivery reports: %q", f)
	}
}
