package main

// franz-go: kgo for producing and consuming (a direct partition consumer, and consumer groups
// over the classic protocol with the range balancer or the cooperative-sticky one), kadm for
// admin.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type franz struct {
	a     args
	cl    *kgo.Client // admin and metadata only
	admin *kadm.Client
}

func (f *franz) base() []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(strings.Split(f.a.bootstrap, ",")...),
		kgo.ClientID("tidepool-compat-franz-go"),
		kgo.RetryTimeout(f.a.timeout),
		kgo.DialTimeout(10 * time.Second),
		// Never create topics by asking for their metadata (the default, stated).
		// kgo.AllowAutoTopicCreation() is not given.
	}
}

func newFranz(a args) (Driver, error) {
	f := &franz{a: a}
	cl, err := kgo.NewClient(f.base()...)
	if err != nil {
		return nil, err
	}
	f.cl = cl
	f.admin = kadm.NewClient(cl)
	f.admin.SetTimeoutMillis(int32(a.timeout.Milliseconds()))
	return f, nil
}

func (f *franz) Close()                   { f.cl.Close() }
func (f *franz) TimestampTypeKnown() bool { return true }

func (f *franz) CreateTopic(ctx context.Context, topic string, partitions int32, configs map[string]string) error {
	var cfg map[string]*string
	if len(configs) > 0 {
		cfg = map[string]*string{}
		for k, v := range configs {
			cfg[k] = kadm.StringPtr(v)
		}
	}
	resp, err := f.admin.CreateTopic(ctx, partitions, 1, cfg, topic)
	if err != nil {
		return err
	}
	if resp.Err != nil {
		return fmt.Errorf("%w (%s)", resp.Err, resp.ErrMessage)
	}
	if resp.NumPartitions != partitions {
		return fmt.Errorf("CreateTopics answered %d partitions, asked %d", resp.NumPartitions, partitions)
	}
	return nil
}

func (f *franz) CreatePartitions(ctx context.Context, topic string, total int32) error {
	resps, err := f.admin.UpdatePartitions(ctx, int(total), topic)
	if err != nil {
		return err
	}
	resp, ok := resps[topic]
	if !ok {
		return fmt.Errorf("no answer for %s", topic)
	}
	if resp.Err != nil {
		return fmt.Errorf("%w (%s)", resp.Err, resp.ErrMessage)
	}
	return nil
}

func (f *franz) DeleteTopic(ctx context.Context, topic string) error {
	resp, err := f.admin.DeleteTopic(ctx, topic)
	if err != nil {
		return err
	}
	if resp.Err != nil {
		return fmt.Errorf("%w (%s)", resp.Err, resp.ErrMessage)
	}
	return nil
}

// TopicMetadata sends a Metadata request itself: kadm.Metadata answers from kgo's metadata cache
// (up to MetadataMinAge, 5 s), which would hide a deletion for that long.
func (f *franz) TopicMetadata(ctx context.Context, topic string) (bool, map[int32]int32, map[int32]bool, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, f.cl)
	if err != nil {
		return false, nil, nil, err
	}
	brokers := map[int32]bool{}
	for _, b := range resp.Brokers {
		brokers[b.NodeID] = true
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return false, nil, brokers, nil
			}
			return true, nil, brokers, err
		}
		leaders := map[int32]int32{}
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 {
				leaders[p.Partition] = p.Leader
			}
		}
		return true, leaders, brokers, nil
	}
	return false, nil, brokers, nil
}

func (f *franz) DescribeTopicConfigs(ctx context.Context, topic string) (map[string]ConfigValue, error) {
	rcs, err := f.admin.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return nil, err
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return nil, err
	}
	if rc.Err != nil {
		return nil, fmt.Errorf("%w (%s)", rc.Err, rc.ErrMessage)
	}
	out := map[string]ConfigValue{}
	for _, c := range rc.Configs {
		out[c.Key] = ConfigValue{c.Value, c.Source.String()}
	}
	return out, nil
}

func (f *franz) ListOffsets(ctx context.Context, topic string, partitions int32) []ListedOffsets {
	one := func(source string, list func(context.Context, ...string) (kadm.ListedOffsets, error)) ListedOffsets {
		out := ListedOffsets{Source: source}
		listed, err := list(ctx, topic)
		if err == nil {
			err = listed.Error()
		}
		if err != nil {
			out.Err = err
			return out
		}
		offsets := map[int32]int64{}
		listed.Each(func(o kadm.ListedOffset) {
			if o.Topic == topic {
				offsets[o.Partition] = o.Offset
			}
		})
		out.Earliest, out.Latest = offsets, offsets
		return out
	}
	earliest := one("kadm ListStartOffsets/ListEndOffsets", f.admin.ListStartOffsets)
	latest := one("kadm ListStartOffsets/ListEndOffsets", f.admin.ListEndOffsets)
	res := ListedOffsets{Source: earliest.Source, Earliest: earliest.Earliest, Latest: latest.Latest, Err: errors.Join(earliest.Err, latest.Err)}
	return []ListedOffsets{res}
}

var franzCodecs = map[string]kgo.CompressionCodec{
	"none":   kgo.NoCompression(),
	"gzip":   kgo.GzipCompression(),
	"snappy": kgo.SnappyCompression(),
	"lz4":    kgo.Lz4Compression(),
	"zstd":   kgo.ZstdCompression(),
}

type franzProducer struct {
	cl *kgo.Client
}

// NewProducer: idempotence and acks=all are franz-go's defaults; stated anyway. No
// RecordDeliveryTimeout: kgo measures it from each record's Timestamp, and ours are explicit and
// 10 minutes old, so every record would time out at once; Send's context bounds the wait instead.
func (f *franz) NewProducer(codec string) (Producer, error) {
	cl, err := kgo.NewClient(append(f.base(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(franzCodecs[codec]),
		kgo.ProducerLinger(5*time.Millisecond),
	)...)
	if err != nil {
		return nil, err
	}
	return &franzProducer{cl}, nil
}

func (p *franzProducer) Close() { p.cl.Close() }

func (p *franzProducer) Send(ctx context.Context, topic string, records []SentRecord) (map[int]Delivery, []string) {
	var mu sync.Mutex
	deliveries := make(map[int]Delivery, len(records))
	var errs []string
	for _, r := range records {
		index := r.Index
		rec := &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Timestamp: time.UnixMilli(r.TimestampMs)}
		for _, h := range r.Headers {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		p.cl.Produce(ctx, rec, func(rec *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Sprintf("record %d: %v", index, err))
				return
			}
			deliveries[index] = Delivery{rec.Partition, rec.Offset, rec.Timestamp.UnixMilli()}
		})
	}
	if err := p.cl.Flush(ctx); err != nil {
		mu.Lock()
		errs = append(errs, fmt.Sprintf("flush: %v", err))
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	return deliveries, errs
}

func toConsumed(r *kgo.Record) ConsumedRecord {
	c := ConsumedRecord{Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, TimestampMs: r.Timestamp.UnixMilli()}
	for _, h := range r.Headers {
		c.Headers = append(c.Headers, Header{h.Key, h.Value})
	}
	switch r.Attrs.TimestampType() {
	case 0:
		c.TimestampType = "create"
	case 1:
		c.TimestampType = "log_append"
	default:
		c.TimestampType = "unknown"
	}
	return c
}

// ConsumeRange: ConsumePartitions at explicit offsets, no group; an out-of-range offset is an
// error (NoResetOffset), never a silent jump.
func (f *franz) ConsumeRange(ctx context.Context, topic string, start, end map[int32]int64) ([]ConsumedRecord, error) {
	offsets := map[int32]kgo.Offset{}
	pending := map[int32]bool{}
	for p, o := range start {
		offsets[p] = kgo.NewOffset().At(o)
		if end[p] > o {
			pending[p] = true
		}
	}
	cl, err := kgo.NewClient(append(f.base(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []ConsumedRecord
	for len(pending) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("partition %d: %w", p, err))
		})
		if ferr != nil {
			return out, ferr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			out = append(out, toConsumed(r))
			if r.Offset+1 >= end[r.Partition] {
				delete(pending, r.Partition)
			}
		})
	}
	if len(pending) > 0 {
		return out, fmt.Errorf("partitions %v not read to their end in time (%v)", sortedKeys(pending), ctx.Err())
	}
	return out, nil
}

func (f *franz) Committed(ctx context.Context, group, topic string, partitions int32) (map[int32]int64, error) {
	resps, err := f.admin.FetchOffsets(ctx, group)
	if err != nil {
		return nil, err
	}
	if err := resps.Error(); err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		out[p] = -1
		if o, ok := resps.Lookup(topic, p); ok {
			out[p] = o.At
		}
	}
	return out, nil
}

// franzMember: a kgo group consumer with the range balancer (eager) or the cooperative-sticky
// one, manual commits after every poll, and BlockRebalanceOnPoll so a revoke never lands between
// reading records and committing them.
type franzMember struct {
	name string
	cl   *kgo.Client
	rec  *groupRecorder

	mu       sync.Mutex
	assigned map[int32]bool
	epoch    int64
	events   []memberEvent

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	timeout   time.Duration
}

// Errors Kafka itself gives a member's commit or heartbeat around a rebalance.
func rebalanceError(err error) bool {
	return errors.Is(err, kerr.RebalanceInProgress) || errors.Is(err, kerr.IllegalGeneration) ||
		errors.Is(err, kerr.UnknownMemberID)
}

func (f *franz) NewGroupMember(name, group, topic string, cooperative bool, rec *groupRecorder) (GroupMember, error) {
	m := &franzMember{name: name, rec: rec, assigned: map[int32]bool{}, stop: make(chan struct{}),
		done: make(chan struct{}), timeout: f.a.timeout}
	balancer := kgo.RangeBalancer()
	if cooperative {
		balancer = kgo.CooperativeStickyBalancer()
	}
	update := func(what string, parts map[string][]int32, add bool) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.epoch++
		if len(parts[topic]) > 0 { // kgo calls OnPartitionsRevoked with nothing at a session's end
			m.events = append(m.events, memberEvent{what, append([]int32(nil), parts[topic]...)})
		}
		for _, p := range parts[topic] {
			if add {
				m.assigned[p] = true
			} else {
				delete(m.assigned, p)
			}
		}
	}
	cl, err := kgo.NewClient(append(f.base(),
		kgo.ClientID("tidepool-compat-franz-go-"+name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.Balancers(balancer),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(groupSessionTimeout),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
			update("assign", parts, true)
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
			// Everything polled was committed before AllowRebalance; commit again anyway, as
			// a revoke callback with manual commits should.
			if err := cl.CommitUncommittedOffsets(ctx); err != nil {
				rec.err(name, rebalanceError(err), "commit on revoke: %v", err)
			}
			update("revoke", parts, false)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
			rec.err(name, false, "partitions lost: %v", parts)
			update("lost", parts, false)
		}),
	)...)
	if err != nil {
		return nil, err
	}
	m.cl = cl
	go m.loop()
	return m, nil
}

func (m *franzMember) loop() {
	defer close(m.done)
	for {
		select {
		case <-m.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		fetches := m.cl.PollRecords(ctx, 1000)
		cancel()
		if fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !isContextErr(err) {
				m.rec.err(m.name, false, "fetch partition %d: %v", p, err)
			}
		})
		m.mu.Lock()
		epoch := m.epoch
		m.mu.Unlock()
		fetches.EachRecord(func(r *kgo.Record) { m.rec.read(m.name, epoch, r.Partition, r.Offset, r.Value) })
		if fetches.NumRecords() > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
			if err := m.cl.CommitUncommittedOffsets(ctx); err != nil {
				m.rec.err(m.name, rebalanceError(err), "commit: %v", err)
			}
			cancel()
		}
		m.cl.AllowRebalance()
	}
}

func (m *franzMember) Assigned() map[int32]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[int32]bool, len(m.assigned))
	for p := range m.assigned {
		out[p] = true
	}
	return out
}

func (m *franzMember) Events() []memberEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]memberEvent(nil), m.events...)
}

// Close stops the poll loop (its last poll is committed), then leaves the group and closes.
func (m *franzMember) Close() error {
	m.closeOnce.Do(func() {
		close(m.stop)
		select {
		case <-m.done:
		case <-time.After(m.timeout):
			m.closeErr = fmt.Errorf("poll loop still running after %v", m.timeout)
		}
		closed := make(chan struct{})
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
			defer cancel()
			m.cl.AllowRebalance()
			if err := m.cl.LeaveGroupContext(ctx); err != nil {
				m.closeErr = errors.Join(m.closeErr, fmt.Errorf("LeaveGroup: %w", err))
			}
			m.cl.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(m.timeout + 5*time.Second):
			m.closeErr = errors.Join(m.closeErr, fmt.Errorf("close did not finish within %v", m.timeout))
		}
	})
	return m.closeErr
}

// groupClient: a plain group consumer (range balancer, no autocommit) for the commits scenario.
func (f *franz) groupClient(name, group, topic string) (*kgo.Client, error) {
	return kgo.NewClient(append(f.base(),
		kgo.ClientID("tidepool-compat-franz-go-"+name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(groupSessionTimeout),
		kgo.DisableAutoCommit(),
	)...)
}

// leave: LeaveGroup, then close.
func leave(ctx context.Context, cl *kgo.Client) error {
	err := cl.LeaveGroupContext(ctx)
	cl.Close()
	if err != nil {
		return fmt.Errorf("LeaveGroup: %w", err)
	}
	return nil
}

func pollErrors(fetches kgo.Fetches) error {
	var ferr error
	fetches.EachError(func(t string, p int32, err error) {
		if !isContextErr(err) {
			ferr = errors.Join(ferr, fmt.Errorf("partition %d: %w", p, err))
		}
	})
	return ferr
}

// CommitGroupOffsets: polls until every partition has been read up to its offset, then commits
// exactly those offsets with CommitOffsetsSync and leaves.
func (f *franz) CommitGroupOffsets(ctx context.Context, group, topic string, offsets map[int32]int64) error {
	cl, err := f.groupClient("committer", group, topic)
	if err != nil {
		return err
	}
	reached := map[int32]bool{}
	for len(reached) < len(offsets) {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			cl.Close()
			return fmt.Errorf("partitions read up to their offsets: %v of %v (%w)", sortedKeys(reached), offsets, ctx.Err())
		}
		if err := pollErrors(fetches); err != nil {
			cl.Close()
			return err
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if want, ok := offsets[r.Partition]; ok && r.Offset >= want-1 {
				reached[r.Partition] = true
			}
		})
	}
	commit := map[string]map[int32]kgo.EpochOffset{topic: {}}
	for p, o := range offsets {
		commit[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: o}
	}
	var commitErr error
	cl.CommitOffsetsSync(ctx, commit, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			commitErr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					commitErr = errors.Join(commitErr, fmt.Errorf("partition %d: %w", p.Partition, err))
				}
			}
		}
	})
	return errors.Join(commitErr, leave(ctx, cl))
}

// ResumeGroup: a new member polls until every partition reaches end, then leaves.
func (f *franz) ResumeGroup(ctx context.Context, group, topic string, end map[int32]int64) ([]ConsumedRecord, error) {
	cl, err := f.groupClient("resumer", group, topic)
	if err != nil {
		return nil, err
	}
	pending := map[int32]bool{}
	for p, o := range end {
		if o > 0 {
			pending[p] = true
		}
	}
	var out []ConsumedRecord
	for len(pending) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			cl.Close()
			return out, fmt.Errorf("partitions %v not read to their end in time (%w)", sortedKeys(pending), ctx.Err())
		}
		if err := pollErrors(fetches); err != nil {
			cl.Close()
			return out, err
		}
		fetches.EachRecord(func(r *kgo.Record) {
			out = append(out, toConsumed(r))
			if r.Offset+1 >= end[r.Partition] {
				delete(pending, r.Partition)
			}
		})
	}
	return out, leave(ctx, cl)
}

func (f *franz) AlterTopicConfigs(ctx context.Context, topic string, set map[string]string, remove []string) error {
	var alter []kadm.AlterConfig
	for k, v := range set {
		alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(v)})
	}
	for _, k := range remove {
		alter = append(alter, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
	}
	resps, err := f.admin.AlterTopicConfigs(ctx, alter, topic)
	if err != nil {
		return err
	}
	resp, err := resps.On(topic, nil)
	if err != nil {
		return err
	}
	if resp.Err != nil {
		return fmt.Errorf("%w (%s)", resp.Err, resp.ErrMessage)
	}
	return nil
}

func (f *franz) ListGroups(ctx context.Context) (map[string]string, error) {
	listed, err := f.admin.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for g, l := range listed {
		out[g] = l.ProtocolType
	}
	return out, nil
}

func (f *franz) DescribeGroup(ctx context.Context, group string) (GroupInfo, error) {
	described, err := f.admin.DescribeGroups(ctx, group)
	if err != nil {
		return GroupInfo{}, err
	}
	d, ok := described[group]
	if !ok {
		return GroupInfo{}, fmt.Errorf("no description of %s", group)
	}
	if d.Err != nil {
		return GroupInfo{}, fmt.Errorf("%w (%s)", d.Err, d.ErrMessage)
	}
	return GroupInfo{d.State, d.ProtocolType, d.Protocol, len(d.Members)}, nil
}

func (f *franz) DeleteGroup(ctx context.Context, group string) error {
	resp, err := f.admin.DeleteGroup(ctx, group)
	if err != nil {
		return err
	}
	if resp.Err != nil {
		return fmt.Errorf("%w (%s)", resp.Err, resp.ErrMessage)
	}
	return nil
}
