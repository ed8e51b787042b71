package main

// The records every compat program sends and the checks every one of them runs, ported from
// tests/compat/compat_common.py so that a Go client is judged exactly as the Python ones are:
// same keys, values, headers and timestamps, same check names.

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"time"
)

var codecs = []string{"none", "gzip", "snappy", "lz4", "zstd"}

// timestampBaseAge: timestamps sit 10 minutes in the past, inside Kafka's retention and far from
// log.message.timestamp.after.max.ms, as in compat_common.py.
const timestampBaseAge = 10 * time.Minute

type Header struct {
	Key   string
	Value []byte // never nil when sent; nil on read means a null header value
}

// SentRecord is one record as handed to the producer; Index is its position in send order.
type SentRecord struct {
	Index       int
	Codec       string
	Key         []byte // nil: a null key
	Value       []byte
	Headers     []Header
	TimestampMs int64
}

// Delivery is what the producer's delivery report said about one record.
type Delivery struct {
	Partition   int32
	Offset      int64
	TimestampMs int64
}

// ConsumedRecord is one record as the consumer returned it.
type ConsumedRecord struct {
	Partition     int32
	Offset        int64
	Key           []byte
	Value         []byte
	Headers       []Header
	TimestampMs   int64
	TimestampType string // "create", "log_append", "unknown", or "" when the client does not say
}

// recordValue: unique to index, of varying length, compressible, every byte value somewhere.
func recordValue(index int, codec string) []byte {
	prefix := fmt.Sprintf("%07d|%s|", index, codec)
	filler := (index * 37) % 240
	v := make([]byte, 0, len(prefix)+filler)
	v = append(v, prefix...)
	for i := 0; i < filler; i++ {
		v = append(v, byte((index+i)%256))
	}
	return v
}

// makeRecords builds one codec's records as compat_common.make_records does: keys repeat (one
// in 101 null), headers carry the codec, the index, two values under `dup` and an empty value
// (one record in 7 has none), timestamps grow by 1 ms per record.
func makeRecords(codec string, count, firstIndex int, firstTimestampMs int64) []SentRecord {
	out := make([]SentRecord, 0, count)
	for n := 0; n < count; n++ {
		index := firstIndex + n
		var key []byte
		if index%101 != 0 {
			key = []byte(fmt.Sprintf("key-%d", index%1013))
		}
		headers := []Header{
			{"codec", []byte(codec)},
			{"index", []byte(strconv.Itoa(index))},
			{"dup", []byte("first")},
			{"dup", []byte("second")},
			{"empty", []byte{}},
		}
		if index%7 == 3 {
			headers = nil
		}
		out = append(out, SentRecord{index, codec, key, recordValue(index, codec), headers, firstTimestampMs + int64(n)})
	}
	return out
}

func firstTimestampForRun() int64 { return time.Now().Add(-timestampBaseAge).UnixMilli() }

// checkDeliveries: one report per record; per partition, offsets contiguous in send order from
// the start offset; each key kept to one partition; reported timestamps are the ones sent.
func checkDeliveries(checks *Checks, sent []SentRecord, deliveries map[int]Delivery, start map[int32]int64) {
	var missing []int
	for _, r := range sent {
		if _, ok := deliveries[r.Index]; !ok {
			missing = append(missing, r.Index)
		}
	}
	checks.Check("delivery reports: one per record", len(missing) == 0,
		"%d records have no successful delivery report, e.g. indexes %v", len(missing), head(missing, 5))
	next := map[int32]int64{}
	broken := map[int32]bool{}
	keyed := map[string]map[int32]bool{}
	for _, r := range sent {
		d, ok := deliveries[r.Index]
		if !ok {
			continue
		}
		if _, seen := next[d.Partition]; !seen {
			next[d.Partition] = start[d.Partition]
		}
		if !broken[d.Partition] {
			if !checks.Check("delivery reports: offsets contiguous in send order", d.Offset == next[d.Partition],
				"partition %d: record %d reported offset %d, expected %d", d.Partition, r.Index, d.Offset, next[d.Partition]) {
				broken[d.Partition] = true
			}
			next[d.Partition]++
		}
		if r.Key != nil {
			if keyed[string(r.Key)] == nil {
				keyed[string(r.Key)] = map[int32]bool{}
			}
			keyed[string(r.Key)][d.Partition] = true
		}
		checks.Check("delivery reports: timestamp is the CreateTime sent", d.TimestampMs == r.TimestampMs,
			"record %d: delivery report timestamp %d, sent %d", r.Index, d.TimestampMs, r.TimestampMs)
	}
	var split []string
	for k, parts := range keyed {
		if len(parts) > 1 {
			split = append(split, k)
		}
	}
	sort.Strings(split)
	checks.Check("partitioner: one partition per key", len(split) == 0,
		"%d keys landed in several partitions, e.g. %v", len(split), head(split, 3))
}

// checkRoundtrip: every record read exactly once, intact, in send order per partition, at the
// offset its delivery report gave, offsets contiguous from the start offset.
func checkRoundtrip(checks *Checks, sent []SentRecord, deliveries map[int]Delivery, consumed []ConsumedRecord,
	start map[int32]int64, timestampTypeKnown bool) {
	byValue := make(map[string]*SentRecord, len(sent))
	for i := range sent {
		byValue[string(sent[i].Value)] = &sent[i]
	}
	seen := map[int]bool{}
	next := map[int32]int64{}
	for p, o := range start {
		next[p] = o
	}
	last := map[int32]int{}
	for _, rec := range consumed {
		exp := byValue[string(rec.Value)]
		if !checks.Check("consume: every record read is one we sent", exp != nil,
			"partition %d offset %d: unknown value %q", rec.Partition, rec.Offset, head(rec.Value, 40)) {
			continue
		}
		checks.Check("consume: no record read twice", !seen[exp.Index],
			"record %d read again at partition %d offset %d", exp.Index, rec.Partition, rec.Offset)
		seen[exp.Index] = true
		want := next[rec.Partition]
		checks.Check("consume: offsets contiguous from the start offset", rec.Offset == want,
			"partition %d: read offset %d, expected %d", rec.Partition, rec.Offset, want)
		next[rec.Partition] = rec.Offset + 1
		prev, hasPrev := last[rec.Partition]
		checks.Check("consume: per-partition order is send order", !hasPrev || exp.Index > prev,
			"partition %d offset %d: record %d after record %d", rec.Partition, rec.Offset, exp.Index, prev)
		last[rec.Partition] = exp.Index
		if d, ok := deliveries[exp.Index]; ok {
			checks.Check("consume: partition and offset match the delivery report",
				d.Partition == rec.Partition && d.Offset == rec.Offset,
				"record %d: delivery report said partition %d offset %d, consumer read it at partition %d offset %d",
				exp.Index, d.Partition, d.Offset, rec.Partition, rec.Offset)
		}
		checkContent(checks, rec, exp, timestampTypeKnown)
	}
	var missing []int
	for _, r := range sent {
		if !seen[r.Index] {
			missing = append(missing, r.Index)
		}
	}
	checks.Check("consume: every record sent was read", len(missing) == 0,
		"%d of %d records never read, e.g. indexes %v", len(missing), len(sent), head(missing, 5))
}

func checkContent(checks *Checks, rec ConsumedRecord, exp *SentRecord, timestampTypeKnown bool) {
	where := fmt.Sprintf("record %d (partition %d offset %d)", exp.Index, rec.Partition, rec.Offset)
	checks.Check("consume: key intact", sameNullable(rec.Key, exp.Key),
		"%s: key %s, sent %s", where, showBytes(rec.Key), showBytes(exp.Key))
	checks.Check("consume: headers intact, order and duplicates kept", sameHeaders(rec.Headers, exp.Headers),
		"%s: headers %s, sent %s", where, showHeaders(rec.Headers), showHeaders(exp.Headers))
	if timestampTypeKnown {
		checks.Check("consume: timestamp type is CreateTime", rec.TimestampType == "create",
			"%s: timestamp type %s", where, rec.TimestampType)
	}
	checks.Check("consume: timestamp is the one sent", rec.TimestampMs == exp.TimestampMs,
		"%s: timestamp %d, sent %d", where, rec.TimestampMs, exp.TimestampMs)
}

// checkWatermarks: ListOffsets earliest is the start offset, latest is start + records delivered.
func checkWatermarks(checks *Checks, source string, deliveries map[int]Delivery, partitions int32,
	earliest, latest, start map[int32]int64) {
	counts := map[int32]int64{}
	for _, d := range deliveries {
		counts[d.Partition]++
	}
	for p := int32(0); p < partitions; p++ {
		e, ok := earliest[p]
		checks.Check(fmt.Sprintf("list offsets (%s): earliest", source), ok && e == start[p],
			"partition %d: earliest %s, expected %d", p, showOffset(e, ok), start[p])
		l, ok := latest[p]
		want := start[p] + counts[p]
		checks.Check(fmt.Sprintf("list offsets (%s): latest", source), ok && l == want,
			"partition %d: latest %s, expected %d (%d records delivered)", p, showOffset(l, ok), want, counts[p])
	}
}

// checkMetadata: the topic has the partitions asked for, numbered 0..n-1, each led by a listed broker.
func checkMetadata(checks *Checks, source string, leaders map[int32]int32, brokers map[int32]bool, expected int) {
	checks.Check(fmt.Sprintf("metadata (%s): partition count", source), len(leaders) == expected,
		"%d partitions, expected %d", len(leaders), expected)
	ids := make([]int, 0, len(leaders))
	for p := range leaders {
		ids = append(ids, int(p))
	}
	sort.Ints(ids)
	numbered := true
	for i, p := range ids {
		numbered = numbered && i == p
	}
	checks.Check(fmt.Sprintf("metadata (%s): partitions numbered 0..n-1", source), numbered, "partition ids %v", ids)
	for _, p := range ids {
		leader := leaders[int32(p)]
		checks.Check(fmt.Sprintf("metadata (%s): every partition has a known leader", source), brokers[leader],
			"partition %d: leader %d, brokers %v", p, leader, sortedKeys(brokers))
	}
}

func sameNullable(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

func sameHeaders(got, sent []Header) bool {
	if len(got) != len(sent) {
		return false
	}
	for i := range got {
		if got[i].Key != sent[i].Key || !sameNullable(got[i].Value, sent[i].Value) {
			return false
		}
	}
	return true
}

func showBytes(b []byte) string {
	if b == nil {
		return "null"
	}
	return strconv.Quote(string(head(b, 40)))
}

func showHeaders(hs []Header) string {
	s := "["
	for i, h := range hs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s=%s", h.Key, showBytes(h.Value))
	}
	return s + "]"
}

func showOffset(o int64, ok bool) string {
	if !ok {
		return "missing"
	}
	return strconv.FormatInt(o, 10)
}

func head[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func sortedKeys[V any](m map[int32]V) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
