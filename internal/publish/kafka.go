package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// ErrSinkClosed is returned by Write after Close.
var ErrSinkClosed = errors.New("publish: sink is closed")

// Kafka is the Kafka sink: Write appends every message to a durable spool
// and returns at once; one forwarder goroutine reads the spool in order and
// produces it to Kafka with kafka-go's Client.Produce (one request per
// topic-partition per round, over one long-lived Transport), and moves the
// spool past what the brokers acknowledged (acks=all).
//
// Delivery is at least once and in order per partition: the forwarder never
// sends a batch before the one before it was acknowledged, and retries a
// failed one (backoff 100ms doubling to 5s) until it goes through. A retry
// may duplicate messages the broker had already taken; consumers de-duplicate
// on the event_id header. Messages the broker refuses for good (too large,
// invalid, topic not authorised) are written to the dead-letter file and
// reported through OnState, never retried forever.
//
// Partitioning: kafka-go's Hash balancer (FNV-1a of the key, the Sarama
// "hash" partitioner), so all messages with one key go to one partition in
// order. Messages with a nil key (key strategy "none") are spread round
// robin: they have no order to keep beyond their partition's.
type Kafka struct {
	cfg   *kafkaConfig
	opts  *KafkaOptions // == &cfg.opts
	log   *slog.Logger
	name  string
	spool *Spool
	dead  *deadLetterFile

	transport *kafka.Transport
	addr      net.Addr
	admin     *kafka.Client // metadata, topics, and Produce

	// Forwarder state (see kafka_produce.go).
	roundRobin kafka.RoundRobin // partitions of nil-key messages
	partList   []int
	reqs       []partRequest
	lingerT    *time.Timer

	mu     sync.Mutex // serialises Write with Close
	closed bool
	wbuf   []byte   // Write's encoding buffer
	wrecs  [][]byte // Write's record slices into wbuf
	wres   []bool   // Write's reserved marks

	topicsReady atomic.Bool
	stats       kafkaCounters

	ctx    context.Context // the forwarder's; cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed when the forwarder has returned
	acked  chan struct{} // poked (non-blocking) after every Ack
}

// kafkaCounters are the sink's cumulative counters.
type kafkaCounters struct {
	written, dropped, published, acked, errors, deadLettered atomic.Int64
	failing                                                  atomic.Bool
}

// KafkaStats is a snapshot of the sink's counters since NewKafka.
type KafkaStats struct {
	// Written is how many messages Write was given (and did not reject).
	Written int64
	// Dropped is how many messages the spool discarded because it was full
	// (the sum of Write's dropped results).
	Dropped int64
	// Published is how many messages the brokers acknowledged; a message
	// that had to be sent again counts again.
	Published int64
	// Acked is how many spool records the sink moved past: published or
	// dead-lettered.
	Acked int64
	// Errors is how many produce rounds (or topic set-ups) failed and were
	// retried.
	Errors int64
	// DeadLettered is how many messages went to the dead-letter file.
	DeadLettered int64
	// Failing is true while delivery is failing and the sink retries.
	Failing bool
	// Spool is the spool's own view: backlog, oldest unacked, drops.
	Spool SpoolStats
}

// NewKafka validates opts, opens the spool, creates the topics if allowed
// and the brokers can be reached (otherwise it logs and creates them later:
// a broker that is down does not fail start-up, events are spooled), and
// starts delivery. ctx bounds start-up only.
func NewKafka(ctx context.Context, opts KafkaOptions) (*Kafka, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg, err := opts.validate(log)
	if err != nil {
		return nil, err
	}
	o := &cfg.opts
	o.Logger = log
	if o.Spool.Logger == nil {
		o.Spool.Logger = log
	}

	spool, err := OpenSpool(o.Spool)
	if err != nil {
		return nil, fmt.Errorf("kafka.spool: %w", err)
	}

	k := &Kafka{
		cfg:   cfg,
		opts:  o,
		log:   log,
		spool: spool,
		dead:  newDeadLetterFile(o.DeadLetterPath),
		done:  make(chan struct{}),
		acked: make(chan struct{}, 1),
	}
	k.name = k.describe()

	k.transport = &kafka.Transport{
		Dial:        (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		DialTimeout: 10 * time.Second,
		// Short, so that delivery resumes quickly once a broker is back:
		// the transport caches a failed metadata fetch until the next one.
		MetadataTTL:    3 * time.Second,
		MetadataTopics: []string{o.EventsTopic, o.NamespacesTopic},
		ClientID:       "auditns",
		TLS:            cfg.tls,
		SASL:           cfg.sasl,
	}
	k.addr = kafka.TCP(o.Brokers...)
	// The forwarder produces with RequiredAcks all, the compression
	// configured, and no retries of its own (the forwarder retries, with
	// its own backoff, and never lets a later batch overtake an earlier
	// one). WriteTimeout bounds one request.
	k.admin = &kafka.Client{Addr: k.addr, Transport: k.transport, Timeout: o.WriteTimeout}

	k.ctx, k.cancel = context.WithCancel(context.Background())

	sctx, cancel := context.WithTimeout(ctx, min(o.WriteTimeout, 15*time.Second))
	err = k.ensureTopics(sctx)
	cancel()
	if err != nil {
		log.Warn("kafka: topics not ready at start-up; spooling and retrying", "sink", k.name, "err", err)
	}

	go k.forward()
	log.Info("kafka: sink started", "sink", k.name, "spool", o.Spool.Dir, "backlog", spool.Stats().Records)
	return k, nil
}

// describe is Name's text: no credentials.
func (k *Kafka) describe() string {
	o := k.opts
	tlsOn := "off"
	if o.TLS.Enabled {
		tlsOn = "on"
	}
	mech := o.SASL.Mechanism
	if mech == "" {
		mech = "none"
	}
	return fmt.Sprintf("kafka(brokers=%s topics=%s,%s tls=%s sasl=%s)",
		strings.Join(o.Brokers, ","), o.EventsTopic, o.NamespacesTopic, tlsOn, mech)
}

// Name describes the sink without secrets.
func (k *Kafka) Name() string { return k.name }

// Write encodes msgs as spool records and appends them to the spool; it
// never waits for Kafka. dropped is what the spool discarded to make room
// (by its full policy), possibly older messages than these.
func (k *Kafka) Write(msgs []Message) (dropped int, err error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	size := 0
	for i := range msgs {
		if t := msgs[i].Topic; t != TopicEvents && t != TopicNamespaces {
			return len(msgs), fmt.Errorf("publish: kafka: message %d has unknown topic %d", i, t)
		}
		size += kafkaRecordSize(&msgs[i])
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return len(msgs), ErrSinkClosed
	}
	// The spool copies what it keeps, so the buffers are reused (a large
	// one is not kept).
	buf := k.wbuf[:0]
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	recs := k.wrecs[:0]
	for i := range msgs {
		start := len(buf)
		buf = appendKafkaRecord(buf, &msgs[i])
		recs = append(recs, buf[start:len(buf):len(buf)])
	}
	if cap(buf) <= 4<<20 {
		k.wbuf = buf
	}
	defer clear(recs)
	if cap(recs) <= 1<<16 {
		k.wrecs = recs
	}
	var reserved []bool
	for i := range msgs {
		if msgs[i].Reserved {
			if reserved == nil {
				reserved = append(k.wres[:0], make([]bool, len(msgs))...)
			}
			reserved[i] = true
		}
	}
	if reserved != nil && cap(reserved) <= 1<<16 {
		k.wres = reserved
	}
	dropped, err = k.spool.AppendReserved(recs, reserved)
	k.stats.written.Add(int64(len(msgs)))
	k.stats.dropped.Add(int64(dropped))
	if err != nil {
		return dropped, fmt.Errorf("publish: kafka spool: %w", err)
	}
	return dropped, nil
}

// Close stops accepting messages, keeps delivering until the spool is empty
// or ctx ends, and closes the writer and the spool. What was not delivered
// stays in the spool for the next start. Without a deadline on ctx, Close
// waits for Kafka as long as it takes.
func (k *Kafka) Close(ctx context.Context) error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	k.mu.Unlock()

	var errs []error
	if err := k.spool.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("kafka spool sync: %w", err))
	}

	// Drain.
	tick := time.NewTicker(50 * time.Millisecond)
drain:
	for k.spool.Stats().Records > 0 {
		select {
		case <-k.acked:
		case <-tick.C:
		case <-k.done:
			break drain
		case <-ctx.Done():
			break drain
		}
	}
	tick.Stop()
	left := k.spool.Stats().Records

	// Stop the forwarder: an in-flight produce is abandoned (and left in
	// the spool, to be sent again on the next start).
	k.cancel()
	select {
	case <-k.done:
	case <-ctx.Done():
		// The forwarder returns promptly once cancelled; wait for it so
		// that it does not touch a closed spool.
		<-k.done
	}

	k.transport.CloseIdleConnections()

	if err := k.dead.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := k.spool.Close(); err != nil {
		errs = append(errs, fmt.Errorf("kafka spool: %w", err))
	}
	if left > 0 {
		k.log.Warn("kafka: closed with undelivered messages left in the spool", "sink", k.name, "records", left)
	} else {
		k.log.Info("kafka: closed, everything delivered", "sink", k.name)
	}
	return errors.Join(errs...)
}

// Stats returns the sink's counters and the spool's.
func (k *Kafka) Stats() KafkaStats {
	return KafkaStats{
		Written:      k.stats.written.Load(),
		Dropped:      k.stats.dropped.Load(),
		Published:    k.stats.published.Load(),
		Acked:        k.stats.acked.Load(),
		Errors:       k.stats.errors.Load(),
		DeadLettered: k.stats.deadLettered.Load(),
		Failing:      k.stats.failing.Load(),
		Spool:        k.spool.Stats(),
	}
}

// topicName maps a Topic to its configured name.
func (k *Kafka) topicName(t Topic) string {
	if t == TopicNamespaces {
		return k.opts.NamespacesTopic
	}
	return k.opts.EventsTopic
}

// ensureTopics checks that both topics exist and creates the missing ones
// if allowed. It sets topicsReady on success.
func (k *Kafka) ensureTopics(ctx context.Context) error {
	o := k.opts
	topics := []string{o.EventsTopic, o.NamespacesTopic}
	md, err := k.admin.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	exists := map[string]bool{}
	for _, t := range md.Topics {
		if t.Error == nil {
			exists[t.Name] = true
		} else if !errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
	}
	var create []kafka.TopicConfig
	for _, t := range topics {
		if exists[t] {
			continue
		}
		if !o.CreateTopics {
			return fmt.Errorf("topic %s does not exist and kafka.create_topics is false", t)
		}
		tc := kafka.TopicConfig{Topic: t, NumPartitions: o.Partitions, ReplicationFactor: o.ReplicationFactor}
		if t == o.NamespacesTopic {
			tc.ConfigEntries = []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}
		}
		create = append(create, tc)
	}
	if len(create) > 0 {
		res, err := k.admin.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: create})
		if err != nil {
			return fmt.Errorf("create topics: %w", err)
		}
		for _, tc := range create {
			err := res.Errors[tc.Topic]
			switch {
			case err == nil:
				k.log.Info("kafka: created topic", "topic", tc.Topic, "partitions", tc.NumPartitions,
					"replication_factor", tc.ReplicationFactor, "compacted", tc.Topic == o.NamespacesTopic)
			case errors.Is(err, kafka.TopicAlreadyExists):
			case errors.Is(err, kafka.InvalidReplicationFactor):
				return configErr("kafka.replication_factor", "create topic %s: %v", tc.Topic, err)
			case errors.Is(err, kafka.InvalidPartitionNumber):
				return configErr("kafka.partitions", "create topic %s: %v", tc.Topic, err)
			default:
				return fmt.Errorf("create topic %s: %w", tc.Topic, err)
			}
		}
	}
	if exists[o.NamespacesTopic] {
		k.checkCompacted(ctx)
	}
	k.topicsReady.Store(true)
	return nil
}

// checkCompacted warns when an existing namespaces topic is not compacted:
// registry records would then expire with the retention.
func (k *Kafka) checkCompacted(ctx context.Context) {
	t := k.opts.NamespacesTopic
	res, err := k.admin.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{
		Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic,
			ResourceName: t,
			ConfigNames:  []string{"cleanup.policy"},
		}},
	})
	if err != nil || len(res.Resources) == 0 {
		return
	}
	for _, e := range res.Resources[0].ConfigEntries {
		if e.ConfigName == "cleanup.policy" && !strings.Contains(e.ConfigValue, "compact") {
			k.log.Warn("kafka: the namespaces topic is not compacted", "topic", t, "cleanup.policy", e.ConfigValue)
		}
	}
}
