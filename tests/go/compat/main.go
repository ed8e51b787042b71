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
// with configs, describe them, delete it), produce every codec with an idempotent acks=all
// producer and read everything back with a direct partition consumer from offset 0, a consumer
// group of two members of which one leaves, and ListOffsets before and after. Prints one line per
// check (ok / FAIL with reasons / SKIP with the reason) and a verdict; exits 1 on any failure.
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
	NewGroupMember(name, group, topic string, rec *groupRecorder) (GroupMember, error)
	// Committed asks the group's committed offsets (OffsetFetch) for the topic's partitions;
	// -1 where none.
	Committed(ctx context.Context, group, topic string, partitions int32) (map[int32]int64, error)
	// TimestampTypeKnown says whether consumed records carry their timestamp type.
	TimestampTypeKnown() bool
	Close()
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
	r := &run{began: time.Now(), a: a, checks: checks}
	summary := "not run"
	func() {
		defer func() {
			if p := recover(); p != nil {
				checks.Fail("run completed", "panic: %v\n%s", p, debug.Stack())
				summary = "aborted by a panic"
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
	os.Exit(checks.Report(summary, r.notes))
}

type run struct {
	began  time.Time
	a      args
	d      Driver
	checks *Checks
	notes  []string
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
	go func() { done <- f(ctx) }()
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
	if !r.prepareTopic(topic) {
		return "aborted: the test topic could not be created"
	}
	r.progress("topic created with %d partitions", r.a.partitions)
	r.configsTopic(topic + "-configs")
	r.progress("configs topic created, described and deleted")

	start := map[int32]int64{}
	for _, l := range r.listOffsets(topic) {
		empty := true
		for p := int32(0); p < r.a.partitions; p++ {
			empty = empty && l.Earliest[p] == 0 && l.Latest[p] == 0
		}
		r.checks.Check(fmt.Sprintf("list offsets (%s): new topic is empty", l.Source), empty,
			"before producing: earliest %v, latest %v", l.Earliest, l.Latest)
	}
	for p := int32(0); p < r.a.partitions; p++ {
		start[p] = 0
	}

	sent, deliveries := r.produceAll(topic)
	checkDeliveries(r.checks, sent, deliveries, start)
	latest := map[int32]int64{}
	for _, l := range r.listOffsets(topic) {
		checkWatermarks(r.checks, l.Source, deliveries, r.a.partitions, l.Earliest, l.Latest, start)
		latest = l.Latest
	}
	began := time.Now()
	var consumed []ConsumedRecord
	err := r.call(func(ctx context.Context) error {
		var err error
		consumed, err = r.d.ConsumeRange(ctx, topic, start, latest)
		return err
	})
	r.checks.Err("consume: reached the end of every partition", err, "direct consumer from offset 0")
	r.progress("consumed %d records in %.2fs", len(consumed), time.Since(began).Seconds())
	checkRoundtrip(r.checks, sent, deliveries, consumed, start, r.d.TimestampTypeKnown())
	if !r.d.TimestampTypeKnown() {
		r.checks.Skip("consume: timestamp type is CreateTime", r.a.client+" does not expose a record's timestamp "+
			"type (a LogAppendTime batch would still fail 'timestamp is the one sent')")
	}

	began = time.Now()
	streamed := r.groupScenario(topic, sent, deliveries)
	r.progress("consumer group scenario took %.1fs", time.Since(began).Seconds())
	for _, l := range r.listOffsets(topic) {
		checkWatermarks(r.checks, l.Source+" after the group run", streamed, r.a.partitions, l.Earliest, l.Latest, start)
	}
	r.deleteTopic(topic)
	r.progress("topic deleted")
	return fmt.Sprintf("%d records (%d per codec: %s) and %d produced during the group run, %d partitions, topic %s",
		len(sent), r.a.records, strings.Join(r.a.codecs, ", "), len(streamed)-len(deliveries), r.a.partitions, topic)
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
	r.deleteTopic(topic)
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
func (r *run) produceAll(topic string) ([]SentRecord, map[int]Delivery) {
	var sent []SentRecord
	deliveries := map[int]Delivery{}
	first := firstTimestampForRun()
	for _, codec := range r.a.codecs {
		records := makeRecords(codec, r.a.records, len(sent), first+int64(len(sent)))
		began := time.Now()
		got, errs := r.send(topic, codec, records)
		r.checks.Check(fmt.Sprintf("produce (%s): every record acknowledged", codec), len(errs) == 0,
			"%s", strings.Join(head(errs, 5), "; "))
		r.progress("produced %d/%d %s records in %.2fs", len(got), len(records), codec, time.Since(began).Seconds())
		sent = append(sent, records...)
		for i, d := range got {
			deliveries[i] = d
		}
	}
	return sent, deliveries
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
