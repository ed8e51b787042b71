// Command compat drives a Go Kafka client — franz-go (kgo + kadm) or sarama — against a broker
// and checks what comes back, record by record, as the Python programs in tests/compat do:
//
//	compat --client franz-go|sarama --bootstrap HOST:PORT[,...] [--peer tidepool|kafka]
//	       [--records 10000] [--timeout 120] [--codecs none,gzip,snappy,lz4,zstd]
//	compat --version-info
//
// Usually run through tests/go/run.sh (or franz-go.sh, sarama.sh), which builds it first.
//
// Scenarios: admin (create a topic with 3 partitions and grow it to 4; create a compacted topic
// with configs, describe them, alter them incrementally and describe again, delete it), produce
// every codec with an idempotent acks=all producer and read everything back with a direct
// partition consumer from offset 0, consumer groups, committed offsets, compaction, ListOffsets
// before and after, and group admin at the end. Prints one line per check (ok / FAIL with
// reasons / SKIP with the reason) and a verdict; exits 1 on any failure.
//
// The compatibility matrix (tests/matrix/README.md): every scenario of tests/matrix/scenarios.json
// is one cell for client id franz-go or sarama, printed as `MATRIX <client> <scenario> <RESULT>
// <detail>` and, with TIDEPOOL_MATRIX set, appended to that file as one JSON line (matrix.go).
// A cell fails with its first failed check; a scenario that panics fails, and the run goes on;
// cells a run never reached are reported failed ("not run: ...").
//
//   - codec-none/gzip/snappy/lz4/zstd: that codec's records of the round trip, judged alone
//     (delivery reports and every consume check).
//   - idempotence: the round trip's delivery reports one per record and contiguous per
//     partition in send order, every record read once, offsets contiguous.
//   - group-rebalance: an eager assignor (franz-go kgo.RangeBalancer, sarama range): two members
//     settle at 2 partitions each, records are produced meanwhile, one leaves (LeaveGroup) and
//     the other owns all 4 within 20 s (30 s sessions); nothing skipped; commits = log end.
//   - group-cooperative: cooperative-sticky (franz-go kgo.CooperativeStickyBalancer, sarama
//     NewBalanceStrategyCooperativeSticky, which sarama 1.61 runs with the cooperative protocol):
//     the first member owns all 4, a second joins and the first one's revoke callbacks (sarama:
//     claims ended by revocation) name exactly the partitions that move, it keeps the rest; after
//     the leave the survivor owns all 4 and was revoked nothing.
//   - commits: a member reads into every partition, commits offsets mid-partition and leaves;
//     OffsetFetch (kadm FetchOffsets, sarama ClusterAdmin.ListConsumerGroupOffsets) reads them
//     back; a new member of the group starts exactly there and reads every record to the end.
//   - admin: the admin stage above, ListOffsets, plus IncrementalAlterConfigs read back
//     (kadm AlterTopicConfigs, sarama IncrementalAlterConfig), ListGroups and DescribeGroups of
//     the commits group (Empty, protocol type consumer, no members), DeleteGroups on it.
//   - compaction: tests/matrix/README.md "The compaction scenario" (compaction.go, judged like
//     tests/compat/compaction_matrix.py).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Driver is what one client library does for the scenarios; the judging is shared.
type Driver interface {
	// CreateTopic creates a topic with replication factor 1 and the given configs.
	CreateTopic(ctx context.Context, topic string, partitions int32, configs map[string]string) error
	CreatePartitions(ctx context.Context, topic string, total int32) error
	DeleteTopic(ctx context.Context, topic string) error
	// TopicMetadata asks Metadata for one topic: whether it exists, partition -> leader, and
	// the brokers listed.
	TopicMetadata(ctx context.Context, topic string) (bool, map[int32]int32, map[int32]bool, error)
	DescribeTopicConfigs(ctx context.Context, topic string) (map[string]ConfigValue, error)
	// ListOffsets asks earliest and latest per partition, through every API the client has.
	ListOffsets(ctx context.Context, topic string, partitions int32) []ListedOffsets
	NewProducer(codec string) (Producer, error)
	// ConsumeRange reads [start, end) of every partition with a direct (group-less) consumer.
	ConsumeRange(ctx context.Context, topic string, start, end map[int32]int64) ([]ConsumedRecord, error)
	// NewGroupMember starts a group member with an eager assignor (range), or cooperative-sticky.
	NewGroupMember(name, group, topic string, cooperative bool, rec *groupRecorder) (GroupMember, error)
	// Committed asks the group's committed offsets (OffsetFetch) for the topic's partitions;
	// -1 where none.
	Committed(ctx context.Context, group, topic string, partitions int32) (map[int32]int64, error)
	// CommitGroupOffsets: a member of the group reads every partition up to the offset given,
	// commits exactly those offsets (the next to read), and leaves.
	CommitGroupOffsets(ctx context.Context, group, topic string, offsets map[int32]int64) error
	// ResumeGroup: a new member of the group reads until every partition reaches end, and leaves
	// without committing; returns what it read, in order per partition.
	ResumeGroup(ctx context.Context, group, topic string, end map[int32]int64) ([]ConsumedRecord, error)
	// AlterTopicConfigs changes configs incrementally (IncrementalAlterConfigs): set these,
	// delete those (back to their defaults).
	AlterTopicConfigs(ctx context.Context, topic string, set map[string]string, remove []string) error
	// ListGroups: group id -> protocol type.
	ListGroups(ctx context.Context) (map[string]string, error)
	DescribeGroup(ctx context.Context, group string) (GroupInfo, error)
	DeleteGroup(ctx context.Context, group string) error
	// TimestampTypeKnown says whether consumed records carry their timestamp type.
	TimestampTypeKnown() bool
	Close()
}

type GroupInfo struct {
	State, ProtocolType, Protocol string
	Members                       int
}

type ConfigValue struct {
	Value  *string
	Source string // Kafka's ConfigSource name
}

type ListedOffsets struct {
	Source           string
	Earliest, Latest map[int32]int64
	Err              error
}

type Producer interface {
	// Send produces records in order and waits for every delivery report (or ctx).
	Send(ctx context.Context, topic string, records []SentRecord) (map[int]Delivery, []string)
	Close()
}

type args struct {
	client, bootstrap, peer string
	records                 int
	timeout                 time.Duration
	codecs                  []string
	partitions              int32
}

func parseArgs() args {
	var a args
	var codecList string
	var timeoutS float64
	flag.StringVar(&a.client, "client", "", "franz-go or sarama")
	flag.StringVar(&a.bootstrap, "bootstrap", "", "HOST:PORT[,HOST:PORT...]")
	flag.StringVar(&a.peer, "peer", "tidepool", "the broker under test: tidepool, kafka or librdkafka-mock")
	flag.IntVar(&a.records, "records", 10000, "records per codec")
	flag.Float64Var(&timeoutS, "timeout", 120, "seconds allowed for each wait")
	flag.StringVar(&codecList, "codecs", strings.Join(codecs, ","), "comma-separated subset of "+strings.Join(codecs, ","))
	versionInfo := flag.Bool("version-info", false, "print the client versions built in and exit")
	flag.Parse()
	if *versionInfo {
		fmt.Printf("%s, sarama %s, %s\n", franzName(), moduleVersion("github.com/IBM/sarama"), runtime.Version())
		os.Exit(0)
	}
	fail := func(format string, v ...any) {
		fmt.Fprintf(os.Stderr, "compat: "+format+"\n", v...)
		flag.Usage()
		os.Exit(2)
	}
	if a.client != "franz-go" && a.client != "sarama" {
		fail("--client must be franz-go or sarama, not %q", a.client)
	}
	if a.bootstrap == "" {
		fail("--bootstrap is required")
	}
	if a.peer != "tidepool" && a.peer != "kafka" && a.peer != "librdkafka-mock" {
		fail("--peer must be tidepool, kafka or librdkafka-mock")
	}
	if a.records < 1 || timeoutS <= 0 {
		fail("--records and --timeout must be positive")
	}
	for _, c := range strings.Split(codecList, ",") {
		if c == "" {
			continue
		}
		if !contains(codecs, c) {
			fail("unknown codec %q", c)
		}
		a.codecs = append(a.codecs, c)
	}
	if len(a.codecs) == 0 {
		fail("no codecs")
	}
	a.timeout = time.Duration(timeoutS * float64(time.Second))
	a.partitions = 4
	return a
}

func moduleVersion(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == path {
				return strings.TrimPrefix(dep.Version, "v")
			}
		}
	}
	return "?"
}

func franzName() string {
	return fmt.Sprintf("franz-go %s (kadm %s)", moduleVersion("github.com/twmb/franz-go"),
		moduleVersion("github.com/twmb/franz-go/pkg/kadm"))
}

func main() {
	a := parseArgs()
	var client string
	var newDriver func(args) (Driver, error)
	switch a.client {
	case "franz-go":
		client = franzName()
		newDriver = newFranz
	case "sarama":
		client = "sarama " + moduleVersion("github.com/IBM/sarama")
		newDriver = newSarama
	}
	checks := NewChecks(client)
	m := newMatrix(a.client)
	r := &run{began: time.Now(), a: a, checks: checks, root: checks, matrix: m}
	summary := "not run"
	// Cells this run does not cover: codecs left out with --codecs.
	notCovered := map[string]bool{}
	for _, c := range codecs {
		if !contains(a.codecs, c) {
			notCovered["codec-"+c] = true
		}
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				checks.Fail("run completed", "panic: %v\n%s", p, debug.Stack())
				summary = fmt.Sprintf("aborted by a panic: %v", p)
			}
		}()
		if a.peer == "librdkafka-mock" {
			checks.Skip("every scenario", "peer librdkafka-mock: its Metadata names controller id 0, which is "+
				"no broker, so CreateTopics/CreatePartitions/DeleteTopics never find a controller; every "+
				"scenario here starts with CreateTopics (tests/compat/README.md, 'Peers with known gaps')")
			summary = "skipped against the librdkafka mock cluster"
			return
		}
		d, err := newDriver(a)
		if err != nil {
			checks.Fail("run completed", "cannot create the %s client: %v", a.client, err)
			summary = "client not created"
			return
		}
		defer d.Close()
		r.d = d
		summary = r.all(client)
	}()
	if a.peer == "librdkafka-mock" {
		fmt.Println("   matrix: no cells against peer librdkafka-mock (the matrix compares Tidepool with Apache Kafka)")
	} else {
		m.rest("not run: "+summary, notCovered)
		for _, c := range matrixScenarios {
			if !notCovered[c] {
				continue
			}
			fmt.Printf("   matrix: %s not reported (--codecs %s)\n", c, strings.Join(a.codecs, ","))
		}
		if errs := m.writeErrors(); len(errs) > 0 {
			checks.Fail("matrix: every cell written to $TIDEPOOL_MATRIX", "%s", strings.Join(errs, "; "))
		}
	}
	os.Exit(checks.Report(summary, r.notes))
}

type run struct {
	began  time.Time
	a      args
	d      Driver
	root   *Checks // every check
	checks *Checks // where checks go now: the running scenario's scope
	matrix *matrix
	notes  []string

	// Every record of the test topic so far, by index, and where it was delivered.
	topicSent       []SentRecord
	topicDeliveries map[int]Delivery
	commitsGroup    string
}

// scenario runs f with r.checks set to scope; a panic in f is a failed check of the scope (and
// so of the run), and the run goes on. Returns the panic, "" when none.
func (r *run) scenario(what string, scope *Checks, f func()) (panicked string) {
	saved := r.checks
	r.checks = scope
	defer func() {
		if p := recover(); p != nil {
			panicked = fmt.Sprintf("%s: panic: %v", what, p)
			scope.Fail(what+": completed", "panic: %v\n%s", p, debug.Stack())
		}
		r.checks = saved
	}()
	f()
	return ""
}

// progress prints a line with the time since the start, to show where a run spends its time.
func (r *run) progress(format string, v ...any) {
	fmt.Printf("   [%5.1fs] %s\n", time.Since(r.began).Seconds(), fmt.Sprintf(format, v...))
}

// ctx is a context bounded by --timeout.
func (r *run) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.a.timeout)
}

// call runs one client call bounded by --timeout, even when the client ignores its context.
func (r *run) call(f func(ctx context.Context) error) error {
	ctx, cancel := r.ctx()
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			}
		}()
		done <- f(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(r.a.timeout + 5*time.Second):
		return fmt.Errorf("no answer within %v", r.a.timeout)
	}
}

func (r *run) all(client string) string {
	slug := strings.ReplaceAll(r.a.client, "-", "")
	topic := fmt.Sprintf("compat-%s-%d-%d", slug, time.Now().UnixMilli(), os.Getpid())
	fmt.Printf("== %s against %s (peer %s), topic %s\n", client, r.a.bootstrap, r.a.peer, topic)
	start := map[int32]int64{}
	for p := int32(0); p < r.a.partitions; p++ {
		start[p] = 0
	}

	// admin, first part: the test topic, the configs topic, ListOffsets on the empty topic. The
	// admin cell is reported at the end, after ListOffsets and the group admin.
	admin := r.root.Scope()
	created := false
	r.scenario("admin", admin, func() {
		if created = r.prepareTopic(topic); !created {
			return
		}
		r.progress("topic created with %d partitions", r.a.partitions)
		r.configsTopic(topic + "-configs")
		r.progress("configs topic created, described, altered, described and deleted")
		for _, l := range r.listOffsets(topic) {
			empty := true
			for p := int32(0); p < r.a.partitions; p++ {
				empty = empty && l.Earliest[p] == 0 && l.Latest[p] == 0
			}
			r.checks.Check(fmt.Sprintf("list offsets (%s): new topic is empty", l.Source), empty,
				"before producing: earliest %v, latest %v", l.Earliest, l.Latest)
		}
	})
	if !created {
		r.matrix.fromChecks("admin", admin, nil)
		compaction := r.root.Scope()
		r.scenario("compaction", compaction, func() { r.compactionScenario(topic + "-compaction") })
		r.matrix.fromChecks("compaction", compaction, nil)
		return "aborted: the test topic could not be created"
	}

	// The round trip: every codec, then codec-* and idempotence.
	var sent []SentRecord
	deliveries := map[int]Delivery{}
	produceErrs := map[string][]string{}
	var consumed []ConsumedRecord
	var consumeErr error
	roundTrip := func(f func()) string { return r.scenario("round trip", r.root, f) }
	panicked := roundTrip(func() {
		sent, deliveries, produceErrs = r.produceAll(topic)
		checkDeliveries(r.checks, sent, deliveries, start)
	})
	latest := nextOffsets(deliveries, r.a.partitions)
	r.scenario("admin", admin, func() {
		for _, l := range r.listOffsets(topic) {
			checkWatermarks(r.checks, l.Source, deliveries, r.a.partitions, l.Earliest, l.Latest, start)
			if len(l.Latest) > 0 {
				latest = l.Latest
			}
		}
	})
	if panicked == "" {
		panicked = roundTrip(func() {
			began := time.Now()
			consumeErr = r.call(func(ctx context.Context) error {
				var err error
				consumed, err = r.d.ConsumeRange(ctx, topic, start, latest)
				return err
			})
			r.checks.Err("consume: reached the end of every partition", consumeErr, "direct consumer from offset 0")
			r.progress("consumed %d records in %.2fs", len(consumed), time.Since(began).Seconds())
			checkRoundtrip(r.checks, sent, deliveries, consumed, start, r.d.TimestampTypeKnown())
			if !r.d.TimestampTypeKnown() {
				r.checks.Skip("consume: timestamp type is CreateTime", r.a.client+" does not expose a record's timestamp "+
					"type (a LogAppendTime batch would still fail 'timestamp is the one sent')")
			}
		})
	}
	if panicked != "" {
		for _, c := range r.a.codecs {
			r.matrix.report("codec-"+c, "fail", panicked)
		}
		r.matrix.report("idempotence", "fail", panicked)
	} else {
		r.reportCodecs(sent, deliveries, produceErrs, consumed, consumeErr, start, r.d.TimestampTypeKnown())
		r.matrix.fromChecks("idempotence", r.root, idempotenceCheck)
	}
	r.topicSent = sent
	r.topicDeliveries = map[int]Delivery{}
	for i, d := range deliveries {
		r.topicDeliveries[i] = d
	}

	// The group scenarios and commits, over the same topic (its records so far included).
	for _, mode := range []groupMode{eagerGroup, cooperativeGroup} {
		scope := r.root.Scope()
		began := time.Now()
		r.scenario(mode.scenario, scope, func() { r.groupScenario(topic, mode) })
		r.progress("%s scenario took %.1fs", mode.scenario, time.Since(began).Seconds())
		r.matrix.fromChecks(mode.scenario, scope, nil)
	}
	commits := r.root.Scope()
	r.scenario("commits", commits, func() { r.commitsScenario(topic) })
	r.matrix.fromChecks("commits", commits, nil)
	r.scenario("admin", admin, func() {
		for _, l := range r.listOffsets(topic) {
			checkWatermarks(r.checks, l.Source+" after the group runs", r.topicDeliveries, r.a.partitions, l.Earliest, l.Latest, start)
		}
	})

	compaction := r.root.Scope()
	began := time.Now()
	r.scenario("compaction", compaction, func() { r.compactionScenario(topic + "-compaction") })
	r.progress("compaction scenario took %.1fs", time.Since(began).Seconds())
	r.matrix.fromChecks("compaction", compaction, nil)

	r.scenario("admin", admin, func() {
		r.groupAdmin(r.commitsGroup, topic)
		r.deleteTopic(topic)
		r.progress("group admin done, topic deleted")
	})
	r.matrix.fromChecks("admin", admin, nil)
	return fmt.Sprintf("%d records (%d per codec: %s) and %d produced during the group runs, %d partitions, topic %s",
		len(sent), r.a.records, strings.Join(r.a.codecs, ", "), len(r.topicSent)-len(sent), r.a.partitions, topic)
}

// idempotenceCheck: the checks of the round trip the idempotence cell is made of.
func idempotenceCheck(name string) bool {
	return strings.HasPrefix(name, "produce (") || contains([]string{
		"delivery reports: one per record",
		"delivery reports: offsets contiguous in send order",
		"consume: reached the end of every partition",
		"consume: no record read twice",
		"consume: offsets contiguous from the start offset",
		"consume: every record sent was read",
		"round trip: completed",
	}, name)
}

// reportCodecs reports codec-* cells: each codec's records judged alone, with the same checks
// as the whole round trip (in a Checks of their own; the run's report has the whole).
func (r *run) reportCodecs(sent []SentRecord, deliveries map[int]Delivery, produceErrs map[string][]string,
	consumed []ConsumedRecord, consumeErr error, start map[int32]int64, timestampTypeKnown bool) {
	// Codecs were produced one after the other: per partition, each codec's records follow the
	// previous codec's.
	startOf := map[string]map[int32]int64{}
	endOf := map[string]map[int32]int64{}
	sentOf := map[string][]SentRecord{}
	codecOfValue := map[string]string{}
	next := map[int32]int64{}
	for p, o := range start {
		next[p] = o
	}
	for _, c := range r.a.codecs {
		startOf[c] = map[int32]int64{}
		for p, o := range next {
			startOf[c][p] = o
		}
		for _, s := range sent {
			if s.Codec != c {
				continue
			}
			sentOf[c] = append(sentOf[c], s)
			codecOfValue[string(s.Value)] = c
			if d, ok := deliveries[s.Index]; ok {
				next[d.Partition]++
			}
		}
		endOf[c] = map[int32]int64{}
		for p, o := range next {
			endOf[c][p] = o
		}
	}
	consumedOf := map[string][]ConsumedRecord{}
	for _, rec := range consumed {
		if c, ok := codecOfValue[string(rec.Value)]; ok {
			consumedOf[c] = append(consumedOf[c], rec)
			continue
		}
		owner := ""
		for _, c := range r.a.codecs {
			if rec.Offset >= startOf[c][rec.Partition] && rec.Offset < endOf[c][rec.Partition] {
				owner = c
			}
		}
		for _, c := range r.a.codecs {
			if owner == "" || owner == c { // a record no codec accounts for fails every one
				consumedOf[c] = append(consumedOf[c], rec)
			}
		}
	}
	for _, c := range r.a.codecs {
		checks := NewChecks(r.root.client)
		errs := produceErrs[c]
		checks.Check(fmt.Sprintf("produce (%s): every record acknowledged", c), len(errs) == 0, "%s", strings.Join(head(errs, 5), "; "))
		checks.Err("consume: reached the end of every partition", consumeErr, "direct consumer from offset 0")
		checkDeliveries(checks, sentOf[c], deliveries, startOf[c])
		checkRoundtrip(checks, sentOf[c], deliveries, consumedOf[c], startOf[c], timestampTypeKnown)
		r.matrix.fromChecks("codec-"+c, checks, nil)
	}
}

func (r *run) listOffsets(topic string) []ListedOffsets {
	var out []ListedOffsets
	err := r.call(func(ctx context.Context) error {
		out = r.d.ListOffsets(ctx, topic, r.a.partitions)
		return nil
	})
	if err != nil {
		r.checks.Fail("list offsets: answered", "%v", err)
		return nil
	}
	var ok []ListedOffsets
	for _, l := range out {
		if r.checks.Err(fmt.Sprintf("list offsets (%s): answered", l.Source), l.Err, "ListOffsets") {
			ok = append(ok, l)
		}
	}
	return ok
}

// waitPartitions polls Metadata until the topic shows `count` partitions, each with a listed
// leader (Kafka acknowledges creation before its metadata shows it).
func (r *run) waitPartitions(topic string, count int) (map[int32]int32, map[int32]bool, bool) {
	var leaders map[int32]int32
	var brokers map[int32]bool
	var lastErr error
	ok := waitUntil(NewDeadline(r.a.timeout), 100*time.Millisecond, func() bool {
		lastErr = r.call(func(ctx context.Context) error {
			var err error
			_, leaders, brokers, err = r.d.TopicMetadata(ctx, topic)
			return err
		})
		if lastErr != nil || len(leaders) < count {
			return false
		}
		for _, l := range leaders {
			if !brokers[l] {
				return false
			}
		}
		return true
	})
	if !ok {
		r.checks.Fail("metadata: topic visible with leaders", "topic %s did not show %d partitions with leaders "+
			"within %v (last: leaders %v, error %v)", topic, count, r.a.timeout, leaders, lastErr)
	}
	return leaders, brokers, ok
}

// prepareTopic creates the topic with one partition fewer than wanted, then grows it with
// CreatePartitions, so both admin calls are exercised.
func (r *run) prepareTopic(topic string) bool {
	err := r.call(func(ctx context.Context) error { return r.d.CreateTopic(ctx, topic, r.a.partitions-1, nil) })
	if !r.checks.Err("admin: create topic", err, "CreateTopics") {
		return false
	}
	if _, _, ok := r.waitPartitions(topic, int(r.a.partitions-1)); !ok {
		return false
	}
	err = r.call(func(ctx context.Context) error { return r.d.CreatePartitions(ctx, topic, r.a.partitions) })
	if !r.checks.Err("admin: create partitions", err, "CreatePartitions") {
		return false
	}
	leaders, brokers, ok := r.waitPartitions(topic, int(r.a.partitions))
	if ok {
		checkMetadata(r.checks, "Metadata", leaders, brokers, int(r.a.partitions))
	}
	return ok
}

// Set on the configs topic; both are DYNAMIC_TOPIC_CONFIG afterwards. max.message.bytes is left
// alone and must read back as Kafka's default (tests/compat/configs_common.py).
var topicConfigs = map[string]string{"cleanup.policy": "compact", "segment.ms": "3600000"}

const unsetConfig, unsetDefault = "max.message.bytes", "1048588"

// configsTopic creates a compacted topic with configs, checks DescribeConfigs reads them back
// with source DYNAMIC_TOPIC_CONFIG (and an unset one as DEFAULT_CONFIG), and deletes it.
func (r *run) configsTopic(topic string) {
	const name = "admin: create topic with configs (cleanup.policy=compact, segment.ms)"
	err := r.call(func(ctx context.Context) error { return r.d.CreateTopic(ctx, topic, 1, topicConfigs) })
	if !r.checks.Err(name, err, "CreateTopics") {
		return
	}
	if _, _, ok := r.waitPartitions(topic, 1); !ok {
		return
	}
	// Kafka answers UNKNOWN_TOPIC_OR_PARTITION for a moment after CreateTopics; retry briefly.
	var described map[string]ConfigValue
	var lastErr error
	waitUntil(NewDeadline(r.a.timeout), 100*time.Millisecond, func() bool {
		lastErr = r.call(func(ctx context.Context) error {
			var err error
			described, err = r.d.DescribeTopicConfigs(ctx, topic)
			return err
		})
		return lastErr == nil
	})
	const setName = "admin: describe configs: the values set read back, source DYNAMIC_TOPIC_CONFIG"
	const defName = "admin: describe configs: an unset config reads back Kafka's default, source DEFAULT_CONFIG"
	if r.checks.Err(setName, lastErr, "DescribeConfigs") {
		for key, want := range topicConfigs {
			got, ok := described[key]
			r.checks.Check(setName, ok && got.Value != nil && *got.Value == want && got.Source == "DYNAMIC_TOPIC_CONFIG",
				"%s: described %s, expected (%s, DYNAMIC_TOPIC_CONFIG)", key, showConfig(got, ok), want)
		}
		got, ok := described[unsetConfig]
		r.checks.Check(defName, ok && got.Value != nil && *got.Value == unsetDefault && got.Source == "DEFAULT_CONFIG",
			"%s: described %s, expected (%s, DEFAULT_CONFIG)", unsetConfig, showConfig(got, ok), unsetDefault)
	}
	r.alterConfigs(topic)
	r.deleteTopic(topic)
}

// Altered on the configs topic with IncrementalAlterConfigs: these set (DYNAMIC_TOPIC_CONFIG
// afterwards), cleanup.policy deleted (back to Kafka's default, DEFAULT_CONFIG).
var (
	alteredConfigs                = map[string]string{"segment.ms": "7200000", "retention.ms": "86400000"}
	deletedConfig, deletedDefault = "cleanup.policy", "delete"
)

const alterReadBackMax = 15 * time.Second

// alterConfigs alters the topic's configs incrementally and checks DescribeConfigs reads the
// change back (waiting a little: Kafka applies it through its metadata log).
func (r *run) alterConfigs(topic string) {
	const name = "admin: alter configs (IncrementalAlterConfigs: set segment.ms and retention.ms, delete cleanup.policy)"
	err := r.call(func(ctx context.Context) error {
		return r.d.AlterTopicConfigs(ctx, topic, alteredConfigs, []string{deletedConfig})
	})
	if !r.checks.Err(name, err, "IncrementalAlterConfigs") {
		return
	}
	matches := func(described map[string]ConfigValue) []string {
		var wrong []string
		for key, want := range alteredConfigs {
			got, ok := described[key]
			if !ok || got.Value == nil || *got.Value != want || got.Source != "DYNAMIC_TOPIC_CONFIG" {
				wrong = append(wrong, fmt.Sprintf("%s: described %s, expected (%s, DYNAMIC_TOPIC_CONFIG)", key, showConfig(got, ok), want))
			}
		}
		got, ok := described[deletedConfig]
		if !ok || got.Value == nil || *got.Value != deletedDefault || got.Source != "DEFAULT_CONFIG" {
			wrong = append(wrong, fmt.Sprintf("%s (deleted): described %s, expected (%s, DEFAULT_CONFIG)",
				deletedConfig, showConfig(got, ok), deletedDefault))
		}
		return wrong
	}
	var wrong []string
	var lastErr error
	waitUntil(NewDeadline(alterReadBackMax), 200*time.Millisecond, func() bool {
		var described map[string]ConfigValue
		lastErr = r.call(func(ctx context.Context) error {
			var err error
			described, err = r.d.DescribeTopicConfigs(ctx, topic)
			return err
		})
		if lastErr != nil {
			return false
		}
		wrong = matches(described)
		return len(wrong) == 0
	})
	const readBack = "admin: describe configs after the alteration: set ones DYNAMIC_TOPIC_CONFIG, the deleted one its default"
	if r.checks.Err(readBack, lastErr, "DescribeConfigs") {
		r.checks.Check(readBack, len(wrong) == 0, "within %v: %s", alterReadBackMax, strings.Join(wrong, "; "))
	}
}

func showConfig(c ConfigValue, ok bool) string {
	if !ok {
		return "nothing"
	}
	v := "null"
	if c.Value != nil {
		v = *c.Value
	}
	return fmt.Sprintf("(%s, %s)", v, c.Source)
}

// deleteTopic: DeleteTopics, then Metadata must stop listing the topic.
func (r *run) deleteTopic(topic string) {
	const name = "admin: delete topic"
	err := r.call(func(ctx context.Context) error { return r.d.DeleteTopic(ctx, topic) })
	if !r.checks.Err(name, err, "DeleteTopics "+topic) {
		return
	}
	var lastErr error
	gone := waitUntil(NewDeadline(r.a.timeout), 100*time.Millisecond, func() bool {
		var exists bool
		lastErr = r.call(func(ctx context.Context) error {
			var err error
			exists, _, _, err = r.d.TopicMetadata(ctx, topic)
			return err
		})
		return lastErr == nil && !exists
	})
	r.checks.Check(name, gone, "topic %s still listed by Metadata %v after DeleteTopics (last error %v)",
		topic, r.a.timeout, lastErr)
}

// produceAll sends every codec in turn, one producer each (so InitProducerId runs per codec).
func (r *run) produceAll(topic string) ([]SentRecord, map[int]Delivery, map[string][]string) {
	var sent []SentRecord
	deliveries := map[int]Delivery{}
	errsOf := map[string][]string{}
	first := firstTimestampForRun()
	for _, codec := range r.a.codecs {
		records := makeRecords(codec, r.a.records, len(sent), first+int64(len(sent)))
		began := time.Now()
		got, errs := r.send(topic, codec, records)
		errsOf[codec] = errs
		r.checks.Check(fmt.Sprintf("produce (%s): every record acknowledged", codec), len(errs) == 0,
			"%s", strings.Join(head(errs, 5), "; "))
		r.progress("produced %d/%d %s records in %.2fs", len(got), len(records), codec, time.Since(began).Seconds())
		sent = append(sent, records...)
		for i, d := range got {
			deliveries[i] = d
		}
	}
	return sent, deliveries, errsOf
}

func (r *run) send(topic, codec string, records []SentRecord) (map[int]Delivery, []string) {
	producer, err := r.d.NewProducer(codec)
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: cannot create the producer: %v", codec, err)}
	}
	defer producer.Close()
	var got map[int]Delivery
	var errs []string
	err = r.call(func(ctx context.Context) error {
		got, errs = producer.Send(ctx, topic, records)
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Sprintf("%s: %v", codec, err))
	}
	return got, errs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// isContextErr: the error only says our own bounded wait ended.
func isContextErr(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
