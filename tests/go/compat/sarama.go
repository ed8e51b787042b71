package main

// sarama: ClusterAdmin for admin, an idempotent AsyncProducer (Idempotent, MaxOpenRequests=1,
// acks=all), a PartitionConsumer per partition, and a ConsumerGroup with the range balancer or
// the cooperative-sticky one (sarama 1.61 runs it with the cooperative protocol: a rebalance
// keeps the session, closes the Messages of revoked claims only and starts claims for added
// partitions).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

type saramaDriver struct {
	a      args
	addrs  []string
	client sarama.Client
	admin  sarama.ClusterAdmin
}

// The protocol level sarama is told the broker speaks: Kafka 4.3.1, the reference peer.
var saramaVersion = sarama.V4_3_1_0

func (s *saramaDriver) config(clientID string) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = saramaVersion
	c.ClientID = clientID
	c.Net.DialTimeout = 10 * time.Second
	c.Net.ReadTimeout = s.a.timeout
	c.Net.WriteTimeout = 30 * time.Second
	c.Metadata.AllowAutoTopicCreation = false
	c.Metadata.Retry.Max = 10
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	c.Admin.Timeout = s.a.timeout
	c.Admin.Retry.Max = 10
	c.Consumer.Return.Errors = true
	return c
}

func newSarama(a args) (Driver, error) {
	s := &saramaDriver{a: a, addrs: strings.Split(a.bootstrap, ",")}
	client, err := sarama.NewClient(s.addrs, s.config("tidepool-compat-sarama"))
	if err != nil {
		return nil, err
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		client.Close()
		return nil, err
	}
	s.client, s.admin = client, admin
	return s, nil
}

func (s *saramaDriver) Close()                   { s.admin.Close() } // closes the client too
func (s *saramaDriver) TimestampTypeKnown() bool { return false }

func (s *saramaDriver) CreateTopic(_ context.Context, topic string, partitions int32, configs map[string]string) error {
	detail := &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}
	if len(configs) > 0 {
		detail.ConfigEntries = map[string]*string{}
		for k, v := range configs {
			detail.ConfigEntries[k] = &v
		}
	}
	return s.admin.CreateTopic(topic, detail, false)
}

func (s *saramaDriver) CreatePartitions(_ context.Context, topic string, total int32) error {
	return s.admin.CreatePartitions(topic, total, nil, false)
}

func (s *saramaDriver) DeleteTopic(_ context.Context, topic string) error {
	return s.admin.DeleteTopic(topic)
}

// TopicMetadata asks a fresh Metadata through ClusterAdmin.DescribeTopics (never a cache).
func (s *saramaDriver) TopicMetadata(_ context.Context, topic string) (bool, map[int32]int32, map[int32]bool, error) {
	brokers := map[int32]bool{}
	listed, _, err := s.admin.DescribeCluster()
	if err != nil {
		return false, nil, nil, err
	}
	for _, b := range listed {
		brokers[b.ID()] = true
	}
	mds, err := s.admin.DescribeTopics([]string{topic})
	if err != nil {
		return false, nil, nil, err
	}
	for _, md := range mds {
		if md.Name != topic {
			continue
		}
		if errors.Is(md.Err, sarama.ErrUnknownTopicOrPartition) {
			return false, nil, brokers, nil
		}
		if md.Err != sarama.ErrNoError {
			return true, nil, brokers, md.Err
		}
		leaders := map[int32]int32{}
		for _, p := range md.Partitions {
			if p.Err == sarama.ErrNoError {
				leaders[p.ID] = p.Leader
			}
		}
		return true, leaders, brokers, nil
	}
	return false, nil, brokers, nil
}

var saramaSources = map[sarama.ConfigSource]string{
	sarama.SourceUnknown:              "UNKNOWN",
	sarama.SourceTopic:                "DYNAMIC_TOPIC_CONFIG",
	sarama.SourceDynamicBroker:        "DYNAMIC_BROKER_CONFIG",
	sarama.SourceDynamicDefaultBroker: "DYNAMIC_DEFAULT_BROKER_CONFIG",
	sarama.SourceStaticBroker:         "STATIC_BROKER_CONFIG",
	sarama.SourceDefault:              "DEFAULT_CONFIG",
}

func (s *saramaDriver) DescribeTopicConfigs(_ context.Context, topic string) (map[string]ConfigValue, error) {
	entries, err := s.admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	if err != nil {
		return nil, err
	}
	out := map[string]ConfigValue{}
	for _, e := range entries {
		v := e.Value
		source, ok := saramaSources[e.Source]
		if !ok {
			source = fmt.Sprintf("source %d", e.Source)
		}
		out[e.Name] = ConfigValue{&v, source}
	}
	return out, nil
}

// ListOffsets asks through ClusterAdmin.ListOffsets and through Client.GetOffset (one
// ListOffsets request per partition and spec, to the leader).
func (s *saramaDriver) ListOffsets(_ context.Context, topic string, partitions int32) []ListedOffsets {
	admin := ListedOffsets{Source: "ClusterAdmin.ListOffsets", Earliest: map[int32]int64{}, Latest: map[int32]int64{}}
	for _, spec := range []int64{sarama.OffsetOldest, sarama.OffsetNewest} {
		asked := map[int32]int64{}
		for p := int32(0); p < partitions; p++ {
			asked[p] = spec
		}
		res, err := s.admin.ListOffsets(map[string]map[int32]int64{topic: asked}, nil)
		if err != nil {
			admin.Err = errors.Join(admin.Err, err)
			continue
		}
		for p, r := range res[topic] {
			if r.Err != nil && !errors.Is(r.Err, sarama.ErrNoError) {
				admin.Err = errors.Join(admin.Err, fmt.Errorf("partition %d: %w", p, r.Err))
				continue
			}
			if spec == sarama.OffsetOldest {
				admin.Earliest[p] = r.Offset
			} else {
				admin.Latest[p] = r.Offset
			}
		}
	}
	client := ListedOffsets{Source: "Client.GetOffset", Earliest: map[int32]int64{}, Latest: map[int32]int64{}}
	if err := s.client.RefreshMetadata(topic); err != nil {
		client.Err = err
	} else {
		for p := int32(0); p < partitions; p++ {
			if o, err := s.client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
				client.Err = errors.Join(client.Err, fmt.Errorf("partition %d earliest: %w", p, err))
			} else {
				client.Earliest[p] = o
			}
			if o, err := s.client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
				client.Err = errors.Join(client.Err, fmt.Errorf("partition %d latest: %w", p, err))
			} else {
				client.Latest[p] = o
			}
		}
	}
	return []ListedOffsets{admin, client}
}

var saramaCodecs = map[string]sarama.CompressionCodec{
	"none":   sarama.CompressionNone,
	"gzip":   sarama.CompressionGZIP,
	"snappy": sarama.CompressionSnappy,
	"lz4":    sarama.CompressionLZ4,
	"zstd":   sarama.CompressionZSTD,
}

type saramaProducer struct {
	p        sarama.AsyncProducer
	mu       sync.Mutex
	waiting  map[int]chan error // index -> where its report goes
	reported map[int]Delivery
	drained  chan struct{}
}

func (s *saramaDriver) NewProducer(codec string) (Producer, error) {
	c := s.config("tidepool-compat-sarama-producer")
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Retry.Max = 10
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Compression = saramaCodecs[codec]
	c.Producer.Flush.Frequency = 5 * time.Millisecond
	c.Producer.Timeout = s.a.timeout
	p, err := sarama.NewAsyncProducer(s.addrs, c)
	if err != nil {
		return nil, err
	}
	sp := &saramaProducer{p: p, waiting: map[int]chan error{}, reported: map[int]Delivery{}, drained: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for m := range p.Successes() {
			index := m.Metadata.(int)
			sp.mu.Lock()
			sp.reported[index] = Delivery{m.Partition, m.Offset, m.Timestamp.UnixMilli()}
			ch := sp.waiting[index]
			delete(sp.waiting, index)
			sp.mu.Unlock()
			if ch != nil {
				ch <- nil
			}
		}
	}()
	go func() {
		defer wg.Done()
		for e := range p.Errors() {
			index := e.Msg.Metadata.(int)
			sp.mu.Lock()
			ch := sp.waiting[index]
			delete(sp.waiting, index)
			sp.mu.Unlock()
			if ch != nil {
				ch <- e.Err
			}
		}
	}()
	go func() { wg.Wait(); close(sp.drained) }()
	return sp, nil
}

func (p *saramaProducer) Close() {
	p.p.AsyncClose()
	select {
	case <-p.drained:
	case <-time.After(30 * time.Second):
	}
}

func (p *saramaProducer) Send(ctx context.Context, topic string, records []SentRecord) (map[int]Delivery, []string) {
	type outcome struct {
		index int
		err   error
	}
	outcomes := make(chan outcome, len(records))
	var errs []string
	sent := 0
	for _, r := range records {
		msg := &sarama.ProducerMessage{Topic: topic, Timestamp: time.UnixMilli(r.TimestampMs), Metadata: r.Index}
		if r.Value != nil { // nil: a tombstone (null value)
			msg.Value = sarama.ByteEncoder(r.Value)
		}
		if r.Key != nil {
			msg.Key = sarama.ByteEncoder(r.Key)
		}
		for _, h := range r.Headers {
			msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
		}
		ch := make(chan error, 1)
		p.mu.Lock()
		p.waiting[r.Index] = ch
		p.mu.Unlock()
		index := r.Index
		go func() {
			select {
			case err := <-ch:
				outcomes <- outcome{index, err}
			case <-ctx.Done():
				outcomes <- outcome{index, ctx.Err()}
			}
		}()
		select {
		case p.p.Input() <- msg:
			sent++
		case <-ctx.Done():
			errs = append(errs, fmt.Sprintf("record %d not accepted by the producer: %v", index, ctx.Err()))
		}
		if ctx.Err() != nil {
			break
		}
	}
	deliveries := map[int]Delivery{}
	for i := 0; i < sent; i++ {
		o := <-outcomes
		if o.err != nil {
			errs = append(errs, fmt.Sprintf("record %d: %v", o.index, o.err))
			continue
		}
		p.mu.Lock()
		deliveries[o.index] = p.reported[o.index]
		delete(p.reported, o.index)
		p.mu.Unlock()
	}
	return deliveries, errs
}

func fromSarama(m *sarama.ConsumerMessage) ConsumedRecord {
	c := ConsumedRecord{Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, TimestampMs: m.Timestamp.UnixMilli()}
	for _, h := range m.Headers {
		c.Headers = append(c.Headers, Header{string(h.Key), h.Value})
	}
	return c
}

// ConsumeRange: one PartitionConsumer per partition from its start offset, no group.
func (s *saramaDriver) ConsumeRange(ctx context.Context, topic string, start, end map[int32]int64) ([]ConsumedRecord, error) {
	c := s.config("tidepool-compat-sarama-consumer")
	consumer, err := sarama.NewConsumer(s.addrs, c)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	var out []ConsumedRecord
	for p, from := range start {
		if end[p] <= from {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, from)
		if err != nil {
			return out, fmt.Errorf("partition %d: %w", p, err)
		}
		func() {
			defer pc.AsyncClose()
			for {
				select {
				case m := <-pc.Messages():
					out = append(out, fromSarama(m))
					if m.Offset+1 >= end[p] {
						return
					}
				case e := <-pc.Errors():
					err = fmt.Errorf("partition %d: %w", p, e)
					return
				case <-ctx.Done():
					err = fmt.Errorf("partition %d not read to its end (%d) in time: %w", p, end[p], ctx.Err())
					return
				}
			}
		}()
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func (s *saramaDriver) Committed(_ context.Context, group, topic string, partitions int32) (map[int32]int64, error) {
	asked := []int32{}
	for p := int32(0); p < partitions; p++ {
		asked = append(asked, p)
	}
	resp, err := s.admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: asked})
	if err != nil {
		return nil, err
	}
	if resp.Err != sarama.ErrNoError {
		return nil, resp.Err
	}
	out := map[int32]int64{}
	for _, p := range asked {
		out[p] = -1
		if b := resp.GetBlock(topic, p); b != nil {
			if b.Err != sarama.ErrNoError {
				return nil, fmt.Errorf("partition %d: %w", p, b.Err)
			}
			out[p] = b.Offset
		}
	}
	return out, nil
}

// saramaMember: a ConsumerGroup with the range balancer or the cooperative-sticky one, offsets
// marked per message and committed (synchronously, auto-commit off) whenever the claim's buffer
// runs dry, every 500 records, and when the claim ends (before the rebalance proceeds).
type saramaMember struct {
	name    string
	topic   string
	group   sarama.ConsumerGroup
	rec     *groupRecorder
	cancel  context.CancelFunc
	done    chan struct{}
	timeout time.Duration

	mu       sync.Mutex
	assigned map[int32]bool
	epoch    int64
	events   []memberEvent

	closeOnce sync.Once
	closeErr  error
}

func (s *saramaDriver) NewGroupMember(name, group, topic string, cooperative bool, rec *groupRecorder) (GroupMember, error) {
	c := s.config("tidepool-compat-sarama-" + name)
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	if cooperative {
		c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
	}
	c.Consumer.Group.Session.Timeout = groupSessionTimeout
	c.Consumer.Group.Heartbeat.Interval = 3 * time.Second
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Enable = false
	g, err := sarama.NewConsumerGroup(s.addrs, group, c)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &saramaMember{name: name, topic: topic, group: g, rec: rec, cancel: cancel, done: make(chan struct{}),
		timeout: s.a.timeout, assigned: map[int32]bool{}}
	go func() {
		for err := range g.Errors() {
			rec.err(name, saramaRebalanceError(err), "%v", err)
		}
	}()
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, m); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) {
					return
				}
				rec.err(name, saramaRebalanceError(err), "Consume: %v", err)
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}()
	return m, nil
}

func saramaRebalanceError(err error) bool {
	return errors.Is(err, sarama.ErrRebalanceInProgress) || errors.Is(err, sarama.ErrIllegalGeneration) ||
		errors.Is(err, sarama.ErrUnknownMemberId)
}

// Setup: a session's first assignment (with the cooperative protocol, the only Setup until the
// member leaves).
func (m *saramaMember) Setup(sess sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch++
	m.assigned = map[int32]bool{}
	claims := append([]int32(nil), sess.Claims()[m.topic]...)
	for _, p := range claims {
		m.assigned[p] = true
	}
	if len(claims) > 0 {
		m.events = append(m.events, memberEvent{"assign", claims})
	}
	return nil
}

// Cleanup: the session ends (eager: every rebalance; cooperative: the member leaves); it gives
// up everything it still owns.
func (m *saramaMember) Cleanup(sess sarama.ConsumerGroupSession) error {
	sess.Commit()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch++
	if len(m.assigned) > 0 {
		m.events = append(m.events, memberEvent{"revoke", sortedKeys(m.assigned)})
	}
	m.assigned = map[int32]bool{}
	return nil
}

// ConsumeClaim: a claim that starts for a partition not owned yet is an assignment (the
// cooperative protocol adds partitions to a running session this way); its Messages closing
// while the session goes on is a revocation of that partition alone.
func (m *saramaMember) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	p := claim.Partition()
	m.mu.Lock()
	if !m.assigned[p] {
		m.epoch++
		m.assigned[p] = true
		m.events = append(m.events, memberEvent{"assign", []int32{p}})
	}
	m.mu.Unlock()
	pending := 0
	commit := func() {
		if pending > 0 {
			sess.Commit()
			pending = 0
		}
	}
	defer commit()
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				commit()
				if sess.Context().Err() == nil {
					m.mu.Lock()
					m.epoch++
					delete(m.assigned, p)
					m.events = append(m.events, memberEvent{"revoke", []int32{p}})
					m.mu.Unlock()
				}
				return nil
			}
			m.mu.Lock()
			epoch := m.epoch
			m.mu.Unlock()
			m.rec.read(m.name, epoch, msg.Partition, msg.Offset, msg.Value)
			sess.MarkMessage(msg, "")
			pending++
			if pending >= 500 || len(claim.Messages()) == 0 {
				commit()
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

func (m *saramaMember) Events() []memberEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]memberEvent(nil), m.events...)
}

func (m *saramaMember) Assigned() map[int32]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[int32]bool, len(m.assigned))
	for p := range m.assigned {
		out[p] = true
	}
	return out
}

// Close ends the session (ConsumeClaim and Cleanup commit), then Close leaves the group.
func (m *saramaMember) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		select {
		case <-m.done:
		case <-time.After(m.timeout):
			m.closeErr = fmt.Errorf("Consume still running %v after cancel", m.timeout)
		}
		closed := make(chan error, 1)
		go func() { closed <- m.group.Close() }()
		select {
		case err := <-closed:
			m.closeErr = errors.Join(m.closeErr, err)
		case <-time.After(m.timeout + 5*time.Second):
			m.closeErr = errors.Join(m.closeErr, fmt.Errorf("close did not finish within %v", m.timeout))
		}
	})
	return m.closeErr
}

// groupConfig: a plain group consumer (range balancer, no autocommit) for the commits scenario.
func (s *saramaDriver) groupConfig(name string) *sarama.Config {
	c := s.config("tidepool-compat-sarama-" + name)
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	c.Consumer.Group.Session.Timeout = groupSessionTimeout
	c.Consumer.Group.Heartbeat.Interval = 3 * time.Second
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Enable = false
	return c
}

// groupHandler adapts a function per message to sarama.ConsumerGroupHandler.
type groupHandler func(sess sarama.ConsumerGroupSession, msg *sarama.ConsumerMessage)

func (h groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h(sess, msg)
		case <-sess.Context().Done():
			return nil
		}
	}
}

// runGroup consumes with handler until done is closed or ctx ends, then closes the group
// (LeaveGroup); returns the group's errors and ctx's.
func runGroup(ctx context.Context, addrs []string, group, topic string, c *sarama.Config, handler groupHandler,
	done <-chan struct{}) error {
	g, err := sarama.NewConsumerGroup(addrs, group, c)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var errs []error
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for err := range g.Errors() {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}()
	consumeCtx, cancel := context.WithCancel(ctx)
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for consumeCtx.Err() == nil {
			if err := g.Consume(consumeCtx, []string{topic}, handler); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) {
					return
				}
				mu.Lock()
				errs = append(errs, fmt.Errorf("Consume: %w", err))
				mu.Unlock()
				select {
				case <-consumeCtx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}()
	var waitErr error
	select {
	case <-done:
	case <-ctx.Done():
		waitErr = ctx.Err()
	}
	cancel()
	<-consumed
	closeErr := g.Close()
	<-collected
	mu.Lock()
	defer mu.Unlock()
	return errors.Join(append(errs, waitErr, closeErr)...)
}

// CommitGroupOffsets: reads every partition up to its offset, marks exactly that offset and
// commits it (Commit, synchronous), then leaves.
func (s *saramaDriver) CommitGroupOffsets(ctx context.Context, group, topic string, offsets map[int32]int64) error {
	var mu sync.Mutex
	reached := map[int32]bool{}
	done := make(chan struct{})
	handler := groupHandler(func(sess sarama.ConsumerGroupSession, msg *sarama.ConsumerMessage) {
		want, ok := offsets[msg.Partition]
		mu.Lock()
		defer mu.Unlock()
		if !ok || reached[msg.Partition] || msg.Offset < want-1 {
			return
		}
		sess.MarkOffset(topic, msg.Partition, want, "")
		sess.Commit()
		reached[msg.Partition] = true
		if len(reached) == len(offsets) {
			close(done)
		}
	})
	err := runGroup(ctx, s.addrs, group, topic, s.groupConfig("committer"), handler, done)
	mu.Lock()
	defer mu.Unlock()
	if len(reached) < len(offsets) {
		err = errors.Join(err, fmt.Errorf("partitions read up to their offsets: %v of %v", sortedKeys(reached), offsets))
	}
	return err
}

// ResumeGroup: a new member reads until every partition reaches end, then leaves.
func (s *saramaDriver) ResumeGroup(ctx context.Context, group, topic string, end map[int32]int64) ([]ConsumedRecord, error) {
	var mu sync.Mutex
	var out []ConsumedRecord
	pending := map[int32]bool{}
	for p, o := range end {
		if o > 0 {
			pending[p] = true
		}
	}
	done := make(chan struct{})
	if len(pending) == 0 {
		close(done)
	}
	handler := groupHandler(func(_ sarama.ConsumerGroupSession, msg *sarama.ConsumerMessage) {
		mu.Lock()
		defer mu.Unlock()
		if len(pending) == 0 {
			return
		}
		out = append(out, fromSarama(msg))
		if msg.Offset+1 >= end[msg.Partition] && pending[msg.Partition] {
			delete(pending, msg.Partition)
			if len(pending) == 0 {
				close(done)
			}
		}
	})
	err := runGroup(ctx, s.addrs, group, topic, s.groupConfig("resumer"), handler, done)
	mu.Lock()
	defer mu.Unlock()
	if len(pending) > 0 {
		err = errors.Join(err, fmt.Errorf("partitions %v not read to their end", sortedKeys(pending)))
	}
	return out, err
}

func (s *saramaDriver) AlterTopicConfigs(_ context.Context, topic string, set map[string]string, remove []string) error {
	entries := map[string]sarama.IncrementalAlterConfigsEntry{}
	for k, v := range set {
		entries[k] = sarama.IncrementalAlterConfigsEntry{Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v}
	}
	for _, k := range remove {
		entries[k] = sarama.IncrementalAlterConfigsEntry{Operation: sarama.IncrementalAlterConfigsOperationDelete}
	}
	return s.admin.IncrementalAlterConfig(sarama.TopicResource, topic, entries, false)
}

func (s *saramaDriver) ListGroups(context.Context) (map[string]string, error) {
	return s.admin.ListConsumerGroups()
}

func (s *saramaDriver) DescribeGroup(_ context.Context, group string) (GroupInfo, error) {
	described, err := s.admin.DescribeConsumerGroups([]string{group})
	if err != nil {
		return GroupInfo{}, err
	}
	for _, d := range described {
		if d.GroupId != group {
			continue
		}
		if d.Err != sarama.ErrNoError {
			return GroupInfo{}, d.Err
		}
		return GroupInfo{d.State, d.ProtocolType, d.Protocol, len(d.Members)}, nil
	}
	return GroupInfo{}, fmt.Errorf("no description of %s", group)
}

func (s *saramaDriver) DeleteGroup(_ context.Context, group string) error {
	return s.admin.DeleteConsumerGroup(group)
}
