package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/spool"
)

// ErrSinkClosed is returned by Write after Close.
var ErrSinkClosed = errors.New("publish: sink is closed")

// Kafka is the Kafka sink: Write appends every message to a durable spool
// and returns at once; a forwarder reads the spool in order and produces it
// to Kafka with kafka-go's Client.Produce, one queue and one request in
// flight per topic-partition, and moves the spool past what the brokers
// acknowledged (acks=all) on every partition (see kafka_forward.go).
//
// Delivery is at least once and in order per partition: the forwarder never
// sends a partition's batch before the one before it was acknowledged, and
// retries a failed one (backoff 50ms doubling to 500ms, the cluster's
// metadata fetched anew each time) until it goes through, while the other
// partitions go on. A retry may duplicate messages the broker had already
// taken; consumers de-duplicate on the event_id header. Messages the broker refuses for good (too large,
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
	spool *spool.Spool
	dead  *deadLetterFile

	addr        net.Addr
	routeMu     sync.Mutex
	route       *route // see kafka_route.go
	refreshedAt time.Time

	// Forwarder state (see kafka_forward.go).
	roundRobin kafka.RoundRobin // partitions of nil-key messages
	partList   []int
	lingerT    *time.Timer // the reader's

	lanesMu  sync.Mutex
	lanes    []*lane // every partition the sink produced to, for Partitions
	errMu    sync.Mutex
	errCodes map[string]int64

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
	requests, retries, ackedBytes, refreshes, deadLetterLost atomic.Int64
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
	// Requests is how many produce requests were sent.
	Requests int64
	// Errors is how many produce requests (or topic set-ups) failed;
	// ErrorCodes counts the failed requests by Kafka error name
	// (NOT_LEADER_OR_FOLLOWER, ...) or UNREACHABLE, NETWORK, OTHER.
	Errors     int64
	ErrorCodes map[string]int64
	// Retries is how many failed requests (or set-ups) were tried again.
	Retries int64
	// AckedBytes is the key and value bytes of the Published messages.
	AckedBytes int64
	// MetadataRefreshes is how many times a failure made the sink ask the
	// cluster for its current leaders.
	MetadataRefreshes int64
	// DeadLettered is how many messages went to the dead-letter file;
	// DeadLetterLost how many could not (file full or unwritable) and are
	// lost.
	DeadLettered   int64
	DeadLetterLost int64
	// Failing is true while delivery is failing and the sink retries.
	Failing bool
	// Spool is the spool's own view: backlog, oldest unacked, drops.
	Spool spool.Stats
}

// NewKafka validates opts, opens the spool, creates the topics if allowed
// and the brokers can be reached (otherwise it logs and creates them later:
// a broker that is down does not fail start-up, events are spooled), and
// starts delivery. ctx bounds start-up only.
func NewKafka(ctx context.Context, opts KafkaOptions) (*Kafka, error) {
	installLz4()
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

	sp, err := spool.Open(o.Spool)
	if err != nil {
		return nil, fmt.Errorf("kafka.spool: %w", err)
	}

	k := &Kafka{
		cfg:   cfg,
		opts:  o,
		log:   log,
		spool: sp,
		dead:  newDeadLetterFile(o.DeadLetterPath, o.DeadLetterMaxBytes),
		done:  make(chan struct{}),
		acked: make(chan struct{}, 1),

		errCodes: map[string]int64{},
	}
	k.name = k.describe()

	k.addr = kafka.TCP(o.Brokers...)
	k.route = k.newRoute()

	k.ctx, k.cancel = context.WithCancel(context.Background())

	sctx, cancel := context.WithTimeout(ctx, min(o.WriteTimeout, 15*time.Second))
	err = k.ensureTopics(sctx)
	cancel()
	if err != nil {
		log.Warn("kafka: topics not ready at start-up; spooling and retrying", "sink", k.name, "err", err)
	}

	go k.forward()
	log.Info("kafka: sink started", "sink", k.name, "spool", o.Spool.Dir, "backlog", sp.Stats().Records)
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

	k.closeRoute()

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
	k.errMu.Lock()
	codes := maps.Clone(k.errCodes)
	k.errMu.Unlock()
	return KafkaStats{
		Written:           k.stats.written.Load(),
		Dropped:           k.stats.dropped.Load(),
		Published:         k.stats.published.Load(),
		Acked:             k.stats.acked.Load(),
		Requests:          k.stats.requests.Load(),
		Errors:            k.stats.errors.Load(),
		ErrorCodes:        codes,
		Retries:           k.stats.retries.Load(),
		AckedBytes:        k.stats.ackedBytes.Load(),
		MetadataRefreshes: k.stats.refreshes.Load(),
		DeadLettered:      k.stats.deadLettered.Load(),
		DeadLetterLost:    k.stats.deadLetterLost.Load(),
		Failing:           k.stats.failing.Load(),
		Spool:             k.spool.Stats(),
	}
}

// PartitionStats is the delivery state of one topic-partition.
type PartitionStats struct {
	Topic     string
	Partition int
	// Queued is how many messages read from the spool wait for this
	// partition's acknowledgement.
	Queued int64
	// Lag is how long ago the kernel recorded the oldest of them (0 when
	// none waits): the partition's delivery lag.
	Lag time.Duration
	// Failing is true while its produce requests fail.
	Failing bool
}

// laneStat is what Partitions reads of a lane.
type laneStat struct {
	queued  atomic.Int64
	oldest  atomic.Int64 // event time (Unix ns) of the first queued message, 0 if none
	failing atomic.Bool
}

// Partitions returns the delivery state of every partition the sink has
// produced to.
func (k *Kafka) Partitions() []PartitionStats {
	now := time.Now()
	k.lanesMu.Lock()
	defer k.lanesMu.Unlock()
	out := make([]PartitionStats, 0, len(k.lanes))
	for _, l := range k.lanes {
		p := PartitionStats{Topic: l.name, Partition: l.partition, Queued: l.stat.queued.Load(), Failing: l.stat.failing.Load()}
		if t := l.stat.oldest.Load(); t != 0 && p.Queued > 0 {
			p.Lag = max(now.Sub(time.Unix(0, t)), 0)
		}
		out = append(out, p)
	}
	return out
}

// topicName maps a Topic to its configured name.
func (k *Kafka) topicName(t Topic) string {
	if t == TopicNamespaces {
		return k.opts.NamespacesTopic
	}
	return k.opts.EventsTopic
}
