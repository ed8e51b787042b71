// Command bench-peers is the load client of `scripts/bench --only peers`: one franz-go (kgo) client with
// the same settings for every broker measured (Tidepool, Apache Kafka, librdkafka's mock cluster,
// franz-go's kfake).
//
//	bench-peers topics --partitions P
//	    Prints the benchmark's topics as NAME:PARTITIONS, one a line (for a peer that cannot create
//	    topics through the protocol, such as bench/mock_cluster.c --topic).
//	bench-peers run --peer NAME [options] -- COMMAND [ARGS...]
//	    One run against one freshly started broker: spawns COMMAND (stdin held open; it must print a
//	    line containing `bootstrap=HOST:PORT` on stdout), measures time to ready (spawn until a Metadata
//	    request from a kgo client succeeds), idle RSS, then the workloads below, the broker's peak RSS,
//	    and stops it (stdin closed, SIGTERM). Prints one `peers side=NAME key=value ...` line on stdout;
//	    progress goes to stderr.
//
// Workloads of a run, in order (see BENCHMARKS.md, "Peers"):
//
//  1. warm-up (not measured): produce --warmup records to a P-partition topic with the throughput
//     producer, then read them back with a fresh consumer;
//  2. produce throughput: --records records of --value-bytes bytes to a fresh P-partition topic with the
//     warm producer, round-robin over the partitions, acks=all, idempotent, linger --linger, no
//     compression; timed from the first Produce call to the last acknowledgement;
//  3. consume throughput: a fresh client reads that topic back (assigned partitions from offset 0, no
//     group); timed from creating the client to the last record;
//  4. produce latency: --lat-rate records/s for --lat-seconds to a 1-partition topic, linger 0; per
//     record, Produce call to acknowledgement;
//  5. end-to-end latency, at consumer fetch max wait 10 ms and again at 500 ms (fetch min bytes 1):
//     --e2e-rate records/s for --e2e-seconds to a 1-partition topic, linger 0; per record, Produce
//     call to the consumer's poll returning it.
//
// Beside the rows, the line carries what the throughput rows cost, for explaining them: the broker's
// CPU and minor page faults (/proc/PID/stat), the client's CPU (getrusage), the requests' count, sizes
// and round trips (kgo's HookBrokerE2E) and the broker's RSS after each row. --ready-only stops after
// the idle RSS (time to ready alone); --produce-only after the produce row (to profile it, with the
// broker command wrapped in `perf record --`).
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// The benchmark's topics; P is --partitions.
const (
	topicWarmup     = "peers-warmup"     // P partitions
	topicThroughput = "peers-throughput" // P partitions
	topicLatency    = "peers-latency"    // 1 partition
	topicE2E10      = "peers-e2e-10ms"   // 1 partition
	topicE2E500     = "peers-e2e-500ms"  // 1 partition
)

func topics(partitions int) [][2]string {
	p := strconv.Itoa(partitions)
	return [][2]string{{topicWarmup, p}, {topicThroughput, p}, {topicLatency, "1"}, {topicE2E10, "1"}, {topicE2E500, "1"}}
}

var base = time.Now() // the monotonic clock of end-to-end timestamps

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-peers: "+format+"\n", args...)
}

func die(format string, args ...any) {
	logf("error: "+format, args...)
	if current != nil {
		current.kill()
	}
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench-peers topics --partitions P | run --peer NAME [options] -- COMMAND [ARGS...]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "topics":
		fs := flag.NewFlagSet("topics", flag.ExitOnError)
		partitions := fs.Int("partitions", 32, "partitions of the throughput topics")
		_ = fs.Parse(os.Args[2:])
		for _, t := range topics(*partitions) {
			fmt.Printf("%s:%s\n", t[0], t[1])
		}
	case "run":
		run(os.Args[2:])
	default:
		die("unknown command %q", os.Args[1])
	}
}

type config struct {
	peer          string
	run           int
	log           string
	createTopics  bool
	records       int
	warmup        int
	partitions    int
	valueBytes    int
	linger        time.Duration
	latRate       int
	latSeconds    float64
	e2eRate       int
	e2eSeconds    float64
	idle          time.Duration
	readyTimeout  time.Duration
	workTimeout   time.Duration
	skipWorkloads bool
	produceOnly   bool
}

func run(args []string) {
	var c config
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	fs.StringVar(&c.peer, "peer", "", "name of the broker measured (the side= of the output line)")
	fs.IntVar(&c.run, "run", 1, "run number (for the output line)")
	fs.StringVar(&c.log, "log", "", "file for the broker's stdout (after the ready line) and stderr (default: discarded)")
	fs.BoolVar(&c.createTopics, "create-topics", true, "create the topics with CreateTopics (false: the broker has them already)")
	fs.IntVar(&c.records, "records", 1000000, "records of the throughput rows")
	fs.IntVar(&c.warmup, "warmup", 100000, "records of the warm-up, produced and consumed before the measured rows")
	fs.IntVar(&c.partitions, "partitions", 32, "partitions of the throughput topics")
	fs.IntVar(&c.valueBytes, "value-bytes", 100, "bytes per record value (no key)")
	fs.DurationVar(&c.linger, "linger", 5*time.Millisecond, "producer linger of the throughput rows")
	fs.IntVar(&c.latRate, "lat-rate", 1000, "records/s of the produce latency row")
	fs.Float64Var(&c.latSeconds, "lat-seconds", 5, "seconds of the produce latency row")
	fs.IntVar(&c.e2eRate, "e2e-rate", 1000, "records/s of the end-to-end latency rows")
	fs.Float64Var(&c.e2eSeconds, "e2e-seconds", 5, "seconds of each end-to-end latency row")
	fs.DurationVar(&c.idle, "idle", time.Second, "wait after ready before the idle RSS is read")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 120*time.Second, "give up if not ready by then")
	fs.DurationVar(&c.workTimeout, "timeout", 300*time.Second, "give up on a workload after this long")
	fs.BoolVar(&c.skipWorkloads, "ready-only", false, "only time to ready and idle RSS, no workloads")
	fs.BoolVar(&c.produceOnly, "produce-only", false, "stop after the produce throughput row (to profile it)")
	_ = fs.Parse(args)
	command := fs.Args()
	if c.peer == "" || len(command) == 0 {
		die("run needs --peer NAME and a command after --")
	}
	if c.valueBytes < 16 {
		die("--value-bytes must be at least 16 (the end-to-end rows carry a sequence number and a timestamp)")
	}

	fields := []string{"peers", "side=" + c.peer, "run=" + strconv.Itoa(c.run)}
	add := func(key string, value any) {
		switch v := value.(type) {
		case float64:
			fields = append(fields, fmt.Sprintf("%s=%.3f", key, v))
		default:
			fields = append(fields, fmt.Sprintf("%s=%v", key, v))
		}
	}

	// ------------------------------------------------------------------------------ start, ready
	p := spawn(command, c.log)
	current = p
	bootstrap, lineAt := p.waitLine(c.readyTimeout)
	readyAt := waitMetadata(bootstrap, p, c.readyTimeout)
	add("line_ms", ms(lineAt.Sub(p.spawned)))
	add("ready_ms", ms(readyAt.Sub(p.spawned)))
	logf("%s run %d: ready line after %.1f ms, Metadata answered after %.1f ms (bootstrap %s)",
		c.peer, c.run, ms(lineAt.Sub(p.spawned)), ms(readyAt.Sub(p.spawned)), bootstrap)
	time.Sleep(c.idle)
	target := p.largestProcess() // the JVM under tests/java/kafka-broker.sh; the spawned process otherwise
	idle := procStatusKiB(target, "VmRSS")
	add("pid_cmd", strings.ReplaceAll(procComm(target), " ", "_"))
	add("idle_rss_kib", idle)
	logf("  idle RSS %.1f MiB (pid %d, %s)", float64(idle)/1024, target, procComm(target))

	if !c.skipWorkloads {
		workloads(&c, bootstrap, target, add)
	}

	add("peak_rss_kib", procStatusKiB(target, "VmHWM"))
	add("end_rss_kib", procStatusKiB(target, "VmRSS"))
	add("total_cpu_ms", cpuMs(target))
	p.stop()
	current = nil
	fmt.Println(strings.Join(fields, " "))
}

func workloads(c *config, bootstrap string, target int, add func(string, any)) {
	ctx, cancel := context.WithTimeout(context.Background(), c.workTimeout)
	defer cancel()

	if c.createTopics {
		admin := newClient(bootstrap)
		adm := kadm.NewClient(admin)
		for _, t := range topics(c.partitions) {
			partitions, _ := strconv.Atoi(t[1])
			resp, err := adm.CreateTopics(ctx, int32(partitions), 1, nil, t[0])
			if err != nil {
				die("CreateTopics %s: %v", t[0], err)
			}
			if err := resp.Error(); err != nil {
				die("CreateTopics %s: %v", t[0], err)
			}
		}
		admin.Close()
	}
	waitTopics(ctx, bootstrap, c.partitions)

	value := make([]byte, c.valueBytes)
	for i := range value {
		value[i] = byte('a' + i%26)
	}

	produceStats := &requestStats{key: 0} // Produce
	producer := newClient(bootstrap,
		kgo.WithHooks(produceStats),
		kgo.ProducerLinger(c.linger),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent (kgo's default)
	)
	defer producer.Close()

	if c.warmup > 0 {
		elapsed := produceN(ctx, producer, topicWarmup, c.warmup, value)
		_, consumed := consumeN(ctx, bootstrap, topicWarmup, c.partitions, c.warmup)
		logf("  warm-up: %d records produced in %.0f ms, read back in %.0f ms", c.warmup, ms(elapsed), ms(consumed))
	}

	produceStats.reset()
	faults0 := minorFaults(target)
	client0 := selfCPUMs()
	cpu0 := cpuMs(target)
	elapsed := produceN(ctx, producer, topicThroughput, c.records, value)
	cpu1 := cpuMs(target)
	produceStats.add(add, "produce")
	add("produce_minflt", minorFaults(target)-faults0)
	add("produce_client_cpu_ms", selfCPUMs()-client0)
	add("produce_end_rss_kib", procStatusKiB(target, "VmRSS"))
	add("produce_end_hwm_kib", procStatusKiB(target, "VmHWM"))
	rate := float64(c.records) / elapsed.Seconds()
	add("produce_ms", ms(elapsed))
	add("produce_rps", rate)
	add("produce_mbps", rate*float64(c.valueBytes)/1e6)
	add("produce_cpu_ms", cpu1-cpu0)
	logf("  produce: %d records in %.0f ms: %.0f rec/s, %.1f MB/s (broker CPU %d ms)",
		c.records, ms(elapsed), rate, rate*float64(c.valueBytes)/1e6, cpu1-cpu0)
	if c.produceOnly {
		return
	}

	faults0 = minorFaults(target)
	client0 = selfCPUMs()
	cpu0 = cpuMs(target)
	fetchStats := &requestStats{key: 1} // Fetch
	n, consumed := consumeN(ctx, bootstrap, topicThroughput, c.partitions, c.records, kgo.WithHooks(fetchStats))
	cpu1 = cpuMs(target)
	fetchStats.add(add, "consume")
	add("consume_minflt", minorFaults(target)-faults0)
	add("consume_client_cpu_ms", selfCPUMs()-client0)
	add("consume_end_rss_kib", procStatusKiB(target, "VmRSS"))
	add("consume_end_hwm_kib", procStatusKiB(target, "VmHWM"))
	rate = float64(n) / consumed.Seconds()
	add("consume_ms", ms(consumed))
	add("consume_rps", rate)
	add("consume_mbps", rate*float64(c.valueBytes)/1e6)
	add("consume_cpu_ms", cpu1-cpu0)
	logf("  consume: %d records in %.0f ms: %.0f rec/s, %.1f MB/s (broker CPU %d ms)",
		n, ms(consumed), rate, rate*float64(c.valueBytes)/1e6, cpu1-cpu0)

	h := produceLatency(ctx, bootstrap, c, value)
	addHist(add, "lat", h)
	logf("  produce latency at %d/s: p50 %d µs, p99 %d µs, p99.9 %d µs, max %d µs (%d records)",
		c.latRate, h.ValueAtQuantile(50), h.ValueAtQuantile(99), h.ValueAtQuantile(99.9), h.Max(), h.TotalCount())

	for _, e := range []struct {
		key   string
		topic string
		wait  time.Duration
	}{{"e2e10", topicE2E10, 10 * time.Millisecond}, {"e2e500", topicE2E500, 500 * time.Millisecond}} {
		h := endToEnd(ctx, bootstrap, c, value, e.topic, e.wait)
		addHist(add, e.key, h)
		logf("  end-to-end at %d/s, fetch max wait %v: p50 %d µs, p99 %d µs, p99.9 %d µs, max %d µs (%d records)",
			c.e2eRate, e.wait, h.ValueAtQuantile(50), h.ValueAtQuantile(99), h.ValueAtQuantile(99.9), h.Max(), h.TotalCount())
	}
}

// requestStats counts one request kind (Produce or Fetch) as the client saw it: how many, their bytes,
// and their round trip (written to fully read). Diagnostics for BENCHMARKS.md, not a row of its own.
type requestStats struct {
	key                  int16
	mu                   sync.Mutex
	count                int64
	written, read        int64
	roundTrip, writeWait time.Duration
}

func (s *requestStats) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if key != s.key || e2e.WriteErr != nil || e2e.ReadErr != nil {
		return
	}
	s.mu.Lock()
	s.count++
	s.written += int64(e2e.BytesWritten)
	s.read += int64(e2e.BytesRead)
	s.roundTrip += e2e.DurationE2E()
	s.writeWait += e2e.WriteWait
	s.mu.Unlock()
}

func (s *requestStats) reset() {
	s.mu.Lock()
	s.count, s.written, s.read, s.roundTrip, s.writeWait = 0, 0, 0, 0, 0
	s.mu.Unlock()
}

func (s *requestStats) add(add func(string, any), prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	add(prefix+"_requests", s.count)
	if s.count == 0 {
		return
	}
	add(prefix+"_request_bytes_mean", s.written/s.count)
	add(prefix+"_response_bytes_mean", s.read/s.count)
	add(prefix+"_round_trip_us_mean", (s.roundTrip / time.Duration(s.count)).Microseconds())
	add(prefix+"_write_wait_us_mean", (s.writeWait / time.Duration(s.count)).Microseconds())
}

func addHist(add func(string, any), key string, h *hdrhistogram.Histogram) {
	add(key+"_count", h.TotalCount())
	add(key+"_p50_us", h.ValueAtQuantile(50))
	add(key+"_p99_us", h.ValueAtQuantile(99))
	add(key+"_p999_us", h.ValueAtQuantile(99.9))
	add(key+"_max_us", h.Max())
	add(key+"_mean_us", h.Mean())
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// newHist covers 1 µs to 100 s at 3 significant digits, HdrHistogram's usual precision.
func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 100_000_000, 3) }

// clientVersions caps kgo's request versions: ApiVersions at v2, because librdkafka's mock cluster
// answers the flexible versions (v3, and v4 which it does not know) in a form kgo cannot parse ("response
// did not contain enough data"). v2 carries the same API ranges; every other key is kgo's default
// (kversion.Stable), negotiated down to what each broker advertises, so this is the same for every peer.
func clientVersions() *kversion.Versions {
	versions := kversion.Stable()
	versions.SetMaxKeyVersion(18, 2) // ApiVersions
	return versions
}

func newClient(bootstrap string, opts ...kgo.Opt) *kgo.Client {
	all := append([]kgo.Opt{kgo.SeedBrokers(strings.Split(bootstrap, ",")...), kgo.MaxVersions(clientVersions())}, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		die("kgo.NewClient: %v", err)
	}
	return cl
}

// waitMetadata returns when a Metadata request (all topics) from a fresh kgo client gets an answer naming
// at least one broker: what a client needs before it can do anything else.
func waitMetadata(bootstrap string, p *process, timeout time.Duration) time.Time {
	cl := newClient(bootstrap, kgo.RetryBackoffFn(func(int) time.Duration { return time.Millisecond }))
	defer cl.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req := kmsg.NewPtrMetadataRequest()
		resp, err := req.RequestWith(ctx, cl)
		cancel()
		if err == nil && len(resp.Brokers) > 0 {
			return time.Now()
		}
		if p.exited() {
			die("broker exited before it answered Metadata (see its log)")
		}
		if time.Now().After(deadline) {
			die("no Metadata answer after %v: %v", timeout, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitTopics waits until every benchmark topic has its partitions, each with a leader.
func waitTopics(ctx context.Context, bootstrap string, partitions int) {
	cl := newClient(bootstrap)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	names := make([]string, 0, 5)
	want := map[string]int{}
	for _, t := range topics(partitions) {
		names = append(names, t[0])
		want[t[0]], _ = strconv.Atoi(t[1])
	}
	for {
		md, err := adm.Metadata(ctx, names...)
		missing := ""
		if err != nil {
			missing = err.Error()
		} else {
			for _, name := range names {
				td, ok := md.Topics[name]
				switch {
				case !ok || td.Err != nil:
					missing = fmt.Sprintf("%s: %v", name, td.Err)
				case len(td.Partitions) != want[name]:
					missing = fmt.Sprintf("%s: %d partitions, want %d", name, len(td.Partitions), want[name])
				default:
					for _, pd := range td.Partitions {
						if pd.Leader < 0 || pd.Err != nil {
							missing = fmt.Sprintf("%s: partition %d has no leader", name, pd.Partition)
						}
					}
				}
			}
		}
		if missing == "" {
			return
		}
		if ctx.Err() != nil {
			die("topics not ready: %s", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// produceN produces n records to topic and waits for every acknowledgement; dies on any failure.
func produceN(ctx context.Context, cl *kgo.Client, topic string, n int, value []byte) time.Duration {
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, &err)
		}
	}
	records := make([]kgo.Record, n) // allocated before the clock starts
	for i := range records {
		records[i] = kgo.Record{Topic: topic, Value: value}
	}
	start := time.Now()
	for i := range records {
		cl.Produce(ctx, &records[i], promise)
	}
	if err := cl.Flush(ctx); err != nil {
		die("flush %s: %v", topic, err)
	}
	elapsed := time.Since(start)
	if f := failed.Load(); f > 0 {
		die("%d of %d records to %s failed: %v", f, n, topic, *firstErr.Load())
	}
	return elapsed
}

// consumeN reads n records from every partition of topic from offset 0 with a fresh client (assigned
// partitions, no group); timed from creating the client to the n-th record.
func consumeN(ctx context.Context, bootstrap, topic string, partitions, n int, opts ...kgo.Opt) (int, time.Duration) {
	offsets := map[int32]kgo.Offset{}
	for p := 0; p < partitions; p++ {
		offsets[int32(p)] = kgo.NewOffset().At(0)
	}
	start := time.Now()
	cl := newClient(bootstrap, append([]kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchMaxWait(500 * time.Millisecond),
	}, opts...)...)
	defer cl.Close()
	count := 0
	for count < n {
		fetches := cl.PollFetches(ctx)
		for _, fe := range fetches.Errors() {
			die("consume %s[%d]: %v", fe.Topic, fe.Partition, fe.Err)
		}
		fetches.EachRecord(func(*kgo.Record) { count++ })
	}
	elapsed := time.Since(start)
	if count != n {
		die("consumed %d records of %s, want %d", count, topic, n)
	}
	return count, elapsed
}

func latencyProducer(bootstrap string) *kgo.Client {
	return newClient(bootstrap,
		kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)
}

// pace calls send(i) for i in [0, total) at rate per second, on a fixed schedule from the first call.
func pace(rate, total int, send func(i int)) {
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; i < total; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		send(i)
	}
}

// produceLatency: Produce call to acknowledgement, per record, at a fixed rate to a 1-partition topic.
func produceLatency(ctx context.Context, bootstrap string, c *config, value []byte) *hdrhistogram.Histogram {
	cl := latencyProducer(bootstrap)
	defer cl.Close()
	// Warm the connection, the producer ID and the topic's metadata; not recorded.
	pace(c.latRate, c.latRate/5+1, func(int) {
		cl.Produce(ctx, &kgo.Record{Topic: topicLatency, Value: value}, nil)
	})
	if err := cl.Flush(ctx); err != nil {
		die("flush: %v", err)
	}
	h := newHist()
	var mu sync.Mutex
	var failed atomic.Int64
	total := int(float64(c.latRate) * c.latSeconds)
	pace(c.latRate, total, func(int) {
		sent := time.Now()
		cl.Produce(ctx, &kgo.Record{Topic: topicLatency, Value: value}, func(_ *kgo.Record, err error) {
			us := time.Since(sent).Microseconds()
			if err != nil {
				failed.Add(1)
				return
			}
			mu.Lock()
			_ = h.RecordValue(max(us, 1))
			mu.Unlock()
		})
	})
	if err := cl.Flush(ctx); err != nil {
		die("flush: %v", err)
	}
	if f := failed.Load(); f > 0 {
		die("produce latency: %d records failed", f)
	}
	return h
}

// endToEnd: Produce call to the consumer's poll returning the record, per record, at a fixed rate to a
// 1-partition topic, the consumer started first with fetch max wait `wait` and fetch min bytes 1.
func endToEnd(ctx context.Context, bootstrap string, c *config, value []byte, topic string, wait time.Duration) *hdrhistogram.Histogram {
	const warm = uint64(1) << 63
	consumer := newClient(bootstrap,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}}),
		kgo.FetchMaxWait(wait),
		kgo.FetchMinBytes(1),
	)
	defer consumer.Close()
	producer := latencyProducer(bootstrap)
	defer producer.Close()

	warmRecords := c.e2eRate/5 + 1
	total := int(float64(c.e2eRate) * c.e2eSeconds)
	h := newHist()
	var warmSeen, seen atomic.Int64
	pollDone := make(chan struct{})
	pollCtx, stopPoll := context.WithCancel(ctx)
	go func() {
		defer close(pollDone)
		for seen.Load() < int64(total) {
			fetches := consumer.PollFetches(pollCtx)
			now := time.Since(base)
			if pollCtx.Err() != nil {
				return
			}
			for _, fe := range fetches.Errors() {
				die("end-to-end consume: %v", fe.Err)
			}
			fetches.EachRecord(func(r *kgo.Record) {
				seq := binary.BigEndian.Uint64(r.Value[0:8])
				sent := time.Duration(binary.BigEndian.Uint64(r.Value[8:16]))
				if seq&warm != 0 {
					warmSeen.Add(1)
					return
				}
				_ = h.RecordValue(max((now - sent).Microseconds(), 1))
				seen.Add(1)
			})
		}
	}()
	send := func(seq uint64) {
		v := make([]byte, c.valueBytes)
		copy(v, value)
		binary.BigEndian.PutUint64(v[0:8], seq)
		binary.BigEndian.PutUint64(v[8:16], uint64(time.Since(base)))
		producer.Produce(ctx, &kgo.Record{Topic: topic, Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				die("end-to-end produce: %v", err)
			}
		})
	}
	// Warm-up records (flagged, not recorded); the measured ones start once the consumer has them all.
	pace(c.e2eRate, warmRecords, func(i int) { send(warm | uint64(i)) })
	for warmSeen.Load() < int64(warmRecords) {
		if ctx.Err() != nil {
			die("end-to-end: warm-up records not consumed")
		}
		time.Sleep(time.Millisecond)
	}
	pace(c.e2eRate, total, func(i int) { send(uint64(i)) })
	if err := producer.Flush(ctx); err != nil {
		die("flush: %v", err)
	}
	select {
	case <-pollDone:
	case <-time.After(30 * time.Second):
		stopPoll()
		<-pollDone
		die("end-to-end: %d of %d records consumed after 30 s", seen.Load(), total)
	}
	stopPoll()
	return h
}

// ------------------------------------------------------------------------------- broker process

type process struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	spawned time.Time
	lines   chan string
	done    chan struct{}
}

var current *process

func spawn(command []string, logPath string) *process {
	cmd := exec.Command(command[0], command[1:]...)
	// Own process group, so a failure can kill the JVM under kafka-broker.sh too; and a SIGTERM to
	// the broker if this program dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	var logFile io.Writer = io.Discard
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			die("%v", err)
		}
		logFile = f
	}
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		die("%v", err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		die("%v", err)
	}
	p := &process{cmd: cmd, stdin: stdin, lines: make(chan string, 1), done: make(chan struct{})}
	p.spawned = time.Now()
	if err := cmd.Start(); err != nil {
		die("start %s: %v", command[0], err)
	}
	go func() {
		scanner := bufio.NewScanner(stdout)
		first := true
		for scanner.Scan() {
			line := scanner.Text()
			if first && strings.Contains(line, "bootstrap=") {
				p.lines <- line
				first = false
				continue
			}
			fmt.Fprintln(logFile, line)
		}
		_, _ = io.Copy(logFile, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitLine returns the bootstrap address from the broker's ready line, and when the line arrived.
func (p *process) waitLine(timeout time.Duration) (string, time.Time) {
	select {
	case line := <-p.lines:
		at := time.Now()
		rest := line[strings.Index(line, "bootstrap=")+len("bootstrap="):]
		return strings.Fields(rest)[0], at
	case <-p.done:
		die("broker exited before its ready line (see its log)")
	case <-time.After(timeout):
		die("no ready line after %v", timeout)
	}
	return "", time.Time{}
}

func (p *process) stop() {
	_ = p.stdin.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		logf("broker ignored SIGTERM for 30 s; killing its process group")
		p.kill()
	}
}

func (p *process) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// largestProcess is the process with the largest RSS among the spawned one and its descendants.
func (p *process) largestProcess() int {
	root := p.cmd.Process.Pid
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid := procPPid(pid); ppid > 0 {
			children[ppid] = append(children[ppid], pid)
		}
	}
	best, bestRSS := root, procStatusKiB(root, "VmRSS")
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, child := range children[pid] {
			if rss := procStatusKiB(child, "VmRSS"); rss > bestRSS {
				best, bestRSS = child, rss
			}
			queue = append(queue, child)
		}
	}
	return best
}

func procStat(pid int) []string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:]) // fields from the state (field 3) on
}

func procPPid(pid int) int {
	f := procStat(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func procComm(pid int) string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(data))
}

// cpuMs is the user + system CPU time of a process (all its threads) in milliseconds.
func cpuMs(pid int) int64 {
	f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return (utime + stime) * 1000 / clockTicks
}

// selfCPUMs is the load client's own user + system CPU time in milliseconds.
func selfCPUMs() int64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return (usage.Utime.Nano() + usage.Stime.Nano()) / 1e6
}

// minorFaults is the process's minor page faults so far (a fault per 4 KiB of memory touched first).
func minorFaults(pid int) int64 {
	f := procStat(pid)
	if len(f) < 8 {
		return 0
	}
	n, _ := strconv.ParseInt(f[7], 10, 64)
	return n
}

const clockTicks = 100 // sysconf(_SC_CLK_TCK) on Linux

// procStatusKiB reads a kB field (VmRSS, VmHWM) of /proc/PID/status.
func procStatusKiB(pid int, field string) int64 {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib
		}
	}
	return 0
}
