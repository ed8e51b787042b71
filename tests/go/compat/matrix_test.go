package main

// The matrix cells: one JSON line each in $TIDEPOOL_MATRIX, codec cells judged per codec (a lost
// or mangled record fails its own codec's cell only), a cell never reported twice, and the rest
// reported failed.

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readCells(t *testing.T, path string) map[string]matrixCell {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cells := map[string]matrixCell{}
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		var c matrixCell
		if err := json.Unmarshal(lines.Bytes(), &c); err != nil {
			t.Fatalf("line %q: %v", lines.Text(), err)
		}
		if _, twice := cells[c.Scenario]; twice {
			t.Errorf("%s reported twice", c.Scenario)
		}
		cells[c.Scenario] = c
	}
	return cells
}

// codecFixture: 3 codecs of 10 records each over 2 partitions, produced one codec after the other.
func codecFixture() ([]SentRecord, map[int]Delivery, []ConsumedRecord, map[int32]int64) {
	var sent []SentRecord
	for _, c := range []string{"none", "gzip", "lz4"} {
		sent = append(sent, makeRecords(c, 10, len(sent), 1_000_000+int64(len(sent)))...)
	}
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

func TestCodecCells(t *testing.T) {
	path := filepath.Join(t.TempDir(), "matrix.jsonl")
	t.Setenv("TIDEPOOL_MATRIX", path)
	sent, deliveries, consumed, start := codecFixture()
	// gzip (records 10..19): one record lost, one with a mangled header; the others intact.
	var kept []ConsumedRecord
	for _, c := range consumed {
		switch string(c.Value[:7]) {
		case "0000013":
			continue
		case "0000016":
			c.Headers = nil
		}
		kept = append(kept, c)
	}
	r := &run{a: args{client: "franz-go", codecs: []string{"none", "gzip", "lz4"}}, root: NewChecks("test"),
		matrix: newMatrix("franz-go")}
	r.reportCodecs(sent, deliveries, map[string][]string{}, kept, nil, start, true)
	r.matrix.report("codec-none", "fail", "a second report is ignored")
	r.matrix.rest("not run: test", map[string]bool{"codec-snappy": true})
	cells := readCells(t, path)
	for _, c := range []string{"codec-none", "codec-lz4"} {
		if cells[c].Result != "pass" || cells[c].Client != "franz-go" {
			t.Errorf("%s: %+v", c, cells[c])
		}
	}
	gzip := cells["codec-gzip"]
	if gzip.Result != "fail" || !strings.HasPrefix(gzip.Detail, "consume: ") {
		t.Errorf("codec-gzip: %+v", gzip)
	}
	if _, ok := cells["codec-snappy"]; ok {
		t.Errorf("codec-snappy reported though left out")
	}
	for _, s := range []string{"idempotence", "group-rebalance", "group-cooperative", "commits", "admin", "compaction"} {
		if cells[s].Result != "fail" || cells[s].Detail != "not run: test" {
			t.Errorf("%s: %+v", s, cells[s])
		}
	}
}

func TestCellFromScope(t *testing.T) {
	root := NewChecks("test")
	scope := root.Scope()
	scope.Check("a", true, "")
	scope.Fail("b", "first reason\nsecond line")
	scope.Fail("c", "later")
	if got, failed := scope.FirstFailure(nil); !failed || got != "b: first reason\nsecond line" {
		t.Errorf("scope: %q %v", got, failed)
	}
	if _, failed := root.FirstFailure(nil); !failed {
		t.Errorf("the root did not get the scope's failure")
	}
	if got := oneLine("b: first reason\nsecond line"); got != "b: first reason" {
		t.Errorf("oneLine: %q", got)
	}
	other := root.Scope()
	other.Check("d", true, "")
	if _, failed := other.FirstFailure(nil); failed {
		t.Errorf("a scope sees a sibling's failure")
	}
}
