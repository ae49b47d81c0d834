package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/auditns/auditns/internal/config"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/metrics"
	"github.com/auditns/auditns/internal/publish"
	"github.com/auditns/auditns/internal/spool"
)

// KafkaOptions are the Kafka sink's options from the configuration (the
// daemon's, and `auditns deadletter resend`'s).
func KafkaOptions(cfg *config.Config, log *slog.Logger) publish.KafkaOptions {
	k := cfg.Kafka
	o := publish.DefaultKafkaOptions()
	o.Brokers = k.Brokers
	o.EventsTopic = k.Topic
	o.NamespacesTopic = k.NamespacesTopic
	o.CreateTopics = k.CreateTopics
	o.Partitions = k.Partitions
	o.ReplicationFactor = k.ReplicationFactor
	o.Retention = k.TopicRetention
	o.MinInsyncReplicas = k.TopicMinInsync
	o.Compression = k.Compression
	o.BatchTimeout = k.BatchTimeout
	o.BatchSize = k.BatchSize
	o.BatchBytes = k.BatchBytes
	o.WriteTimeout = k.WriteTimeout
	o.TLS = k.TLS
	o.SASL = k.SASL
	o.Spool = spool.Options{
		Dir:          k.Spool.Dir,
		MaxBytes:     k.Spool.MaxBytes,
		SegmentBytes: k.Spool.SegmentBytes,
		Full:         spool.FullPolicy(k.Spool.FullPolicy),
		SyncInterval: k.Spool.SyncInterval,
		MemoryBytes:  spool.DefaultMemoryBytes,
		Logger:       log,
	}
	o.DeadLetterPath = k.DeadLetter
	o.DeadLetterMaxBytes = k.DeadLetterMax
	o.Logger = log
	return o
}

// openKafka opens the Kafka sink. Its reports (dead letters, delivery
// stopped or resumed) and latencies go to the pipeline and metrics through
// the daemon, which exist only later: hence the indirection.
func (d *Daemon) openKafka(ctx context.Context, cfg *config.Config, log *slog.Logger) (publish.Sink, error) {
	o := KafkaOptions(cfg, log)
	o.OnState = func(kind, msg string, count int) {
		if p := d.pipeRef.Load(); p != nil {
			reason := "delivery"
			if kind == event.KindLoss {
				reason = "dead_letter"
			}
			p.Report(kind, reason, msg, count)
		}
	}
	o.ObserveLatency = func(l time.Duration) {
		if m := d.metricsRef.Load(); m != nil {
			m.ObserveLatency(l)
		}
	}
	sink, err := publish.NewKafka(ctx, o)
	if err != nil {
		return nil, InputError{err}
	}
	d.kafka = sink
	return sink, nil
}

// kafkaMetrics adds the Kafka sink's counters to src.
func (d *Daemon) kafkaMetrics(src *metrics.Source) {
	k := d.kafka
	if k == nil {
		return
	}
	src.Published = func() uint64 { return uint64(k.Stats().Published) }
	src.Spooled = func() uint64 { return uint64(k.Stats().Written) }
	src.SpoolBytes = func() int64 { return k.Stats().Spool.Bytes }
	src.SpoolOldest = func() time.Time { return k.Stats().Spool.OldestUnacked }
	src.Sink = func() metrics.SinkStats {
		st := k.Stats()
		s := metrics.SinkStats{
			Requests:       uint64(st.Requests),
			Errors:         map[string]uint64{},
			Retries:        uint64(st.Retries),
			MessagesAcked:  uint64(st.Published),
			BytesAcked:     uint64(st.AckedBytes),
			DeadLettered:   uint64(st.DeadLettered),
			DeadLetterLost: uint64(st.DeadLetterLost),
			SpoolRecords:   st.Spool.Records,
			SpoolOldest:    st.Spool.OldestUnacked,
			Failing:        st.Failing,
		}
		for code, n := range st.ErrorCodes {
			s.Errors[code] = uint64(n)
		}
		for _, p := range k.Partitions() {
			s.Partitions = append(s.Partitions, metrics.PartitionStats{Topic: p.Topic, Partition: p.Partition, Queued: p.Queued, Lag: p.Lag})
		}
		return s
	}
}

// sinkHealth reports a sink that cannot keep what it is given: a file that
// cannot be written, a spool at its cap drops events.
func (d *Daemon) sinkHealth() error {
	if h, ok := d.sink.(interface{ Health() error }); ok {
		if err := h.Health(); err != nil {
			return err
		}
	}
	if d.kafka == nil {
		return nil
	}
	st := d.kafka.Stats()
	if max := d.cfg.Kafka.Spool.MaxBytes; max > 0 && st.Spool.Bytes >= max {
		return fmt.Errorf("kafka spool is full (%d of %d bytes): events are being dropped", st.Spool.Bytes, max)
	}
	return nil
}
