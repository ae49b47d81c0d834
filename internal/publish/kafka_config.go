package publish

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/auditns/auditns/internal/kafkaauth"
	"github.com/auditns/auditns/internal/spool"
)

// Defaults of KafkaOptions. A zero field takes the default when NewKafka
// validates the options, except CreateTopics (see there).
const (
	DefaultKafkaEventsTopic     = "auditns.events"
	DefaultKafkaNamespacesTopic = "auditns.namespaces"
	DefaultKafkaPartitions      = 3
	// DefaultKafkaReplicationFactor 0: min(3, the brokers in the cluster).
	DefaultKafkaReplicationFactor = 0
	// DefaultKafkaRetention is the events topic's retention.ms: the replay
	// window.
	DefaultKafkaRetention    = 90 * 24 * time.Hour
	DefaultKafkaCompression  = "lz4"
	DefaultKafkaBatchTimeout = 10 * time.Millisecond
	DefaultKafkaBatchSize    = 1000
	DefaultKafkaBatchBytes   = 1 << 20
	DefaultKafkaWriteTimeout = 10 * time.Second
	// DefaultDeadLetterName is the dead-letter file's name inside the spool
	// directory when KafkaOptions.DeadLetterPath is empty.
	DefaultDeadLetterName = "deadletter.jsonl"
	// DefaultDeadLetterMaxBytes caps the dead-letter file.
	DefaultDeadLetterMaxBytes = 256 << 20
)

// KafkaOptions configures the Kafka sink. Each field names its config key.
// Start from DefaultKafkaOptions; NewKafka fills other zero fields with their
// defaults and rejects bad values with a one-line error naming the key.
type KafkaOptions struct {
	// Brokers are the bootstrap brokers, "host:port" each (kafka.brokers).
	// Required. The sink discovers the rest of the cluster from them.
	Brokers []string

	// EventsTopic receives auditns.event/2 messages (kafka.topic).
	// Default DefaultKafkaEventsTopic.
	EventsTopic string

	// NamespacesTopic receives auditns.namespace/1 registry records, keyed
	// by "<boot_id>/<serial>" (kafka.namespaces_topic). It is created with
	// cleanup.policy=compact; an existing topic that is not compacted gets a
	// warning in the log. Default DefaultKafkaNamespacesTopic. Must differ
	// from EventsTopic.
	NamespacesTopic string

	// CreateTopics creates EventsTopic and NamespacesTopic when they do not
	// exist (kafka.create_topics), through the cluster's controller, with
	// Partitions and ReplicationFactor. Default true in DefaultKafkaOptions
	// and in the config; the zero KafkaOptions has it false, and then
	// missing topics are an error that is logged while events stay spooled.
	// Existing topics are never altered. If the broker cannot be reached at
	// start-up, creation is retried once it can.
	CreateTopics bool

	// Partitions is the partition count of topics the sink creates
	// (kafka.partitions). Default DefaultKafkaPartitions.
	Partitions int

	// ReplicationFactor is the replication factor of topics the sink
	// creates (kafka.replication_factor). 0 (the default): as many as
	// there are brokers, up to 3.
	ReplicationFactor int

	// Retention is the events topic's retention.ms when the sink creates
	// it (kafka.topic_config.retention): how far back a replay can go.
	// Negative: kept forever (-1). Default DefaultKafkaRetention. The
	// namespaces topic is compacted and never expires.
	Retention time.Duration

	// MinInsyncReplicas is min.insync.replicas of the topics the sink
	// creates (kafka.topic_config.min_insync_replicas): with acks=all, a
	// message is acknowledged once that many replicas have it. 0 (the
	// default): 2 when the replication factor is 3 or more, else 1.
	MinInsyncReplicas int

	// Compression codec of produced batches (kafka.compression): none, gzip,
	// snappy, lz4 or zstd. Default DefaultKafkaCompression.
	Compression string

	// BatchTimeout is the longest a partial batch waits before it is sent
	// (kafka.batch_timeout). Default DefaultKafkaBatchTimeout (kafka-go's
	// own default of 1s is far too slow for a live audit stream). A produce
	// round that does not start with BatchSize messages or BatchBytes waits
	// this long from its first message, then takes everything spooled
	// meanwhile (up to those limits): lower it (e.g. 2ms) for lower latency
	// at the price of more, smaller requests.
	BatchTimeout time.Duration

	// BatchSize is the most messages sent in one produce round
	// (kafka.batch_size). Default DefaultKafkaBatchSize.
	BatchSize int

	// BatchBytes is the most bytes (kafka-go's message size estimate) sent
	// in one produce round (kafka.batch_bytes). It is also the largest
	// message the sink sends: a bigger one goes to the dead-letter file. It
	// should not exceed the broker's message.max.bytes (default 1048588).
	// Default DefaultKafkaBatchBytes.
	BatchBytes int64

	// WriteTimeout bounds one produce request, acknowledgement by all
	// in-sync replicas included (kafka.write_timeout). Default
	// DefaultKafkaWriteTimeout.
	// RequiredAcks is always "all" and is not configurable.
	WriteTimeout time.Duration

	// TLS configures encryption and certificate verification (kafka.tls.*).
	TLS KafkaTLS

	// SASL configures authentication (kafka.sasl.*).
	SASL KafkaSASL

	// Spool configures the durable on-disk spool every message goes through
	// (kafka.spool.*). Spool.Dir is required. A nil Spool.Logger gets
	// Logger. Note that a zero Spool.SyncInterval makes every Write fsync;
	// DefaultKafkaOptions sets spool.DefaultSyncInterval.
	Spool spool.Options

	// DeadLetterPath is the JSON-lines file (mode 0600) that receives
	// messages the broker refuses for good, with the reason
	// (kafka.dead_letter). Default DefaultDeadLetterName in Spool.Dir.
	DeadLetterPath string

	// DeadLetterMaxBytes caps the dead-letter file
	// (kafka.dead_letter_max_bytes). Messages refused past it are lost,
	// and reported as a loss with their count. Default
	// DefaultDeadLetterMaxBytes; `auditns deadletter resend` empties the
	// file.
	DeadLetterMaxBytes int64

	// Logger receives the sink's log lines: one per change of delivery
	// state, never one per retry, and never a secret. Default
	// slog.Default().
	Logger *slog.Logger

	// OnState, if set, is called when something the stream's consumers
	// should know about happens, so that the pipeline can emit an event:
	// kind "loss" (count messages were dead-lettered, or dropped because
	// the dead-letter file could not be written) or kind "state" (delivery
	// to Kafka stopped or resumed; count is the spooled backlog). Spool
	// drops are not reported here: Write returns them. Called from the
	// delivery goroutine: it must not block and must not call Write
	// synchronously.
	OnState func(kind, msg string, count int)

	// ObserveLatency, if set, is called once for every message the broker
	// acknowledged, with the time from Message.Time (when the kernel
	// recorded the event) to the acknowledgement. Called from the delivery
	// goroutine: it must be cheap. Messages with a zero Time are skipped.
	ObserveLatency func(time.Duration)
}

// KafkaTLS configures TLS to the brokers (kafka.tls.*); see kafkaauth.TLS.
type KafkaTLS = kafkaauth.TLS

// KafkaSASL configures SASL authentication (kafka.sasl.*); see
// kafkaauth.SASL. Its password is never logged or printed: String,
// GoString, LogValue and MarshalJSON redact it.
type KafkaSASL = kafkaauth.SASL

// LogValue describes the options for slog without secrets.
func (o KafkaOptions) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("brokers", strings.Join(o.Brokers, ",")),
		slog.String("topic", o.EventsTopic),
		slog.String("namespaces_topic", o.NamespacesTopic),
		slog.Bool("create_topics", o.CreateTopics),
		slog.String("compression", o.Compression),
		slog.Duration("batch_timeout", o.BatchTimeout),
		slog.Bool("tls", o.TLS.Enabled),
		slog.String("sasl", o.SASL.String()),
		slog.String("spool", o.Spool.Dir),
	)
}

// DefaultKafkaOptions returns the defaults, with CreateTopics true and the
// spool's group fsync every spool.DefaultSyncInterval; Brokers and Spool.Dir
// are left to the caller.
func DefaultKafkaOptions() KafkaOptions {
	return KafkaOptions{
		EventsTopic:       DefaultKafkaEventsTopic,
		NamespacesTopic:   DefaultKafkaNamespacesTopic,
		CreateTopics:      true,
		Partitions:        DefaultKafkaPartitions,
		ReplicationFactor: DefaultKafkaReplicationFactor,
		Retention:         DefaultKafkaRetention,
		Compression:       DefaultKafkaCompression,
		BatchTimeout:      DefaultKafkaBatchTimeout,
		BatchSize:         DefaultKafkaBatchSize,
		BatchBytes:        DefaultKafkaBatchBytes,
		WriteTimeout:      DefaultKafkaWriteTimeout,
		Spool:             spool.Options{SyncInterval: spool.DefaultSyncInterval},
	}
}

// kafkaCompressions maps kafka.compression values to kafka-go codecs.
var kafkaCompressions = map[string]kafka.Compression{
	"none":   0,
	"gzip":   kafka.Gzip,
	"snappy": kafka.Snappy,
	"lz4":    kafka.Lz4,
	"zstd":   kafka.Zstd,
}

// kafkaConfig is what validation derives from KafkaOptions.
type kafkaConfig struct {
	opts        KafkaOptions // defaults filled in, password resolved
	compression kafka.Compression
	tls         *tls.Config
	sasl        sasl.Mechanism
}

// configErr is a one-line configuration error naming the key.
func configErr(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...))
}

// validate checks opts, fills defaults and builds TLS and SASL. It logs
// warnings (never secrets) on log.
func (opts KafkaOptions) validate(log *slog.Logger) (*kafkaConfig, error) {
	c := &kafkaConfig{}

	if len(opts.Brokers) == 0 {
		return nil, configErr("kafka.brokers", "required (host:port, ...)")
	}
	brokers := make([]string, 0, len(opts.Brokers))
	for _, b := range opts.Brokers {
		b = strings.TrimSpace(b)
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			return nil, configErr("kafka.brokers", "expected host:port, got %q", b)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return nil, configErr("kafka.brokers", "expected a port 1-65535 in %q", b)
		}
		brokers = append(brokers, b)
	}
	opts.Brokers = brokers

	if opts.EventsTopic == "" {
		opts.EventsTopic = DefaultKafkaEventsTopic
	}
	if opts.NamespacesTopic == "" {
		opts.NamespacesTopic = DefaultKafkaNamespacesTopic
	}
	if err := checkTopicName(opts.EventsTopic); err != nil {
		return nil, configErr("kafka.topic", "%v", err)
	}
	if err := checkTopicName(opts.NamespacesTopic); err != nil {
		return nil, configErr("kafka.namespaces_topic", "%v", err)
	}
	if opts.EventsTopic == opts.NamespacesTopic {
		return nil, configErr("kafka.namespaces_topic", "must differ from kafka.topic (%q): it is compacted", opts.EventsTopic)
	}

	switch {
	case opts.Partitions == 0:
		opts.Partitions = DefaultKafkaPartitions
	case opts.Partitions < 0:
		return nil, configErr("kafka.partitions", "expected a count >= 1, got %d", opts.Partitions)
	}
	if opts.ReplicationFactor < 0 || opts.ReplicationFactor > 32767 {
		return nil, configErr("kafka.replication_factor", "expected 0 (as many as brokers, up to 3) or 1-32767, got %d", opts.ReplicationFactor)
	}
	switch {
	case opts.Retention == 0:
		opts.Retention = DefaultKafkaRetention
	case opts.Retention > 0 && opts.Retention < time.Hour:
		return nil, configErr("kafka.topic_config.retention", "expected at least 1h (or a negative value: forever), got %v", opts.Retention)
	}
	switch {
	case opts.MinInsyncReplicas < 0:
		return nil, configErr("kafka.topic_config.min_insync_replicas", "expected 0 (automatic) or a count >= 1, got %d", opts.MinInsyncReplicas)
	case opts.ReplicationFactor > 0 && opts.MinInsyncReplicas > opts.ReplicationFactor:
		return nil, configErr("kafka.topic_config.min_insync_replicas", "expected at most kafka.replication_factor (%d), got %d",
			opts.ReplicationFactor, opts.MinInsyncReplicas)
	}

	if opts.Compression == "" {
		opts.Compression = DefaultKafkaCompression
	}
	opts.Compression = strings.ToLower(opts.Compression)
	codec, ok := kafkaCompressions[opts.Compression]
	if !ok {
		return nil, configErr("kafka.compression", "expected none, gzip, snappy, lz4 or zstd, got %q", opts.Compression)
	}
	c.compression = codec

	switch {
	case opts.BatchTimeout == 0:
		opts.BatchTimeout = DefaultKafkaBatchTimeout
	case opts.BatchTimeout < 0:
		return nil, configErr("kafka.batch_timeout", "expected a positive duration, got %v", opts.BatchTimeout)
	}
	switch {
	case opts.BatchSize == 0:
		opts.BatchSize = DefaultKafkaBatchSize
	case opts.BatchSize < 0:
		return nil, configErr("kafka.batch_size", "expected a count >= 1, got %d", opts.BatchSize)
	}
	switch {
	case opts.BatchBytes == 0:
		opts.BatchBytes = DefaultKafkaBatchBytes
	case opts.BatchBytes < 1024 || opts.BatchBytes > 1<<30:
		return nil, configErr("kafka.batch_bytes", "expected 1024 to 1073741824 bytes, got %d", opts.BatchBytes)
	}
	switch {
	case opts.WriteTimeout == 0:
		opts.WriteTimeout = DefaultKafkaWriteTimeout
	case opts.WriteTimeout < 100*time.Millisecond:
		return nil, configErr("kafka.write_timeout", "expected at least 100ms, got %v", opts.WriteTimeout)
	}

	if opts.Spool.Dir == "" {
		return nil, configErr("kafka.spool.dir", "required")
	}
	if opts.DeadLetterPath == "" {
		opts.DeadLetterPath = filepath.Join(opts.Spool.Dir, DefaultDeadLetterName)
	}
	switch {
	case opts.DeadLetterMaxBytes == 0:
		opts.DeadLetterMaxBytes = DefaultDeadLetterMaxBytes
	case opts.DeadLetterMaxBytes < 4096:
		return nil, configErr("kafka.dead_letter_max_bytes", "expected at least 4096 bytes, got %d", opts.DeadLetterMaxBytes)
	}

	var err error
	if c.tls, err = opts.TLS.Build(log); err != nil {
		return nil, err
	}
	if c.sasl, opts.SASL, err = opts.SASL.Build(log, opts.TLS.Enabled); err != nil {
		return nil, err
	}
	c.opts = opts
	return c, nil
}

// checkTopicName applies Kafka's rules for topic names.
func checkTopicName(t string) error {
	if len(t) > 249 {
		return fmt.Errorf("topic name longer than 249 characters")
	}
	if t == "." || t == ".." {
		return fmt.Errorf("topic name %q is not allowed", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("expected a topic name of [a-zA-Z0-9._-], got %q", t)
		}
	}
	return nil
}
