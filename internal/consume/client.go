// Package consume reads what the daemon publishes to Kafka, for `auditns
// tail` and `auditns replay` (SPEC section 6): it follows every partition of
// the events topic live, reads a time range of it with the start and end
// offsets of each partition looked up by time, de-duplicates on event.id
// (delivery is at-least-once), merges the partitions into time order with
// bounded memory, and loads the namespace registry topic.
//
// It uses kafka-go's Client (Metadata, ListOffsets, Fetch) over one
// Transport, which carries TLS and SASL; no consumer group is joined and no
// offset is committed, so any number of analysts can tail or replay at once
// without affecting each other or a SIEM's group.
package consume

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/auditns/auditns/internal/config"
)

// Options configures a Client.
type Options struct {
	// Brokers are the bootstrap brokers, host:port (kafka.brokers).
	Brokers []string
	// TLS, when not nil, encrypts every connection (kafka.tls.*).
	TLS *tls.Config
	// SASL, when not nil, authenticates every connection (kafka.sasl.*).
	SASL sasl.Mechanism
	// ClientID is sent to the brokers. Default "auditns".
	ClientID string
	// DialTimeout bounds connecting to a broker (TLS and SASL included).
	// Default 5s.
	DialTimeout time.Duration
	// Topics, when set, are the only topics whose metadata the client
	// keeps (kafka-go's Transport caches metadata and serves metadata
	// requests from that cache; listing the topics keeps its refresh
	// cheap on a large cluster). Default: every topic.
	Topics []string
	// Warn receives one line when something degrades or recovers (a
	// partition's leader is unreachable, messages were deleted by
	// retention). Default: nothing.
	Warn func(msg string)
}

// FromConfig builds Options from the kafka.* configuration. Errors are one
// line and name the key. TLS and SASL are built by kafkaauth, as for the
// daemon's Kafka sink: TLS and SASL settings the daemon refuses are refused
// here too, with the same error. FromConfig has no logger: kafkaauth's
// warnings (insecure_skip_verify, plain in clear text, a password file
// readable by others) are dropped.
func FromConfig(c config.Kafka) (Options, error) {
	o := Options{}
	for _, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			return o, fmt.Errorf("kafka.brokers: expected host:port, got %q", b)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return o, fmt.Errorf("kafka.brokers: expected a port 1-65535 in %q", b)
		}
		o.Brokers = append(o.Brokers, b)
	}
	if len(o.Brokers) == 0 {
		return o, errors.New("kafka.brokers: required (--kafka-brokers H:P,..., env AUDITNS_KAFKA_BROKERS, or the config file)")
	}
	var err error
	if o.TLS, err = c.TLS.Build(nil); err != nil {
		return o, err
	}
	if o.SASL, _, err = c.SASL.Build(nil, c.TLS.Enabled); err != nil {
		return o, err
	}
	return o, nil
}

// Client reads topics. It is safe for concurrent use.
type Client struct {
	opts      Options
	transport *kafka.Transport
	addr      net.Addr
	kc        *kafka.Client
}

// Message is one Kafka message.
type Message struct {
	Partition int
	Offset    int64
	Time      time.Time
	Key       []byte // nil when the message has none
	Value     []byte // nil for a tombstone
	Headers   []kafka.Header
}

// Header returns the value of header k, or "".
func (m *Message) Header(k string) string {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// ErrUnreachable wraps the error of Dial when no broker answered.
var ErrUnreachable = errors.New("no Kafka broker answered")

// Dial returns a Client after checking, within DialTimeout, that a broker
// answers a metadata request. The error names the brokers and the
// kafka.brokers key.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if len(opts.Brokers) == 0 {
		return nil, errors.New("kafka.brokers: required")
	}
	if opts.ClientID == "" {
		opts.ClientID = "auditns"
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.Warn == nil {
		opts.Warn = func(string) {}
	}
	c := &Client{opts: opts}
	c.transport = &kafka.Transport{
		Dial:           (&net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		DialTimeout:    opts.DialTimeout,
		IdleTimeout:    60 * time.Second,
		MetadataTTL:    metadataTTL,
		MetadataTopics: opts.Topics,
		ClientID:       opts.ClientID,
		TLS:            opts.TLS,
		SASL:           opts.SASL,
	}
	c.addr = kafka.TCP(opts.Brokers...)
	c.kc = &kafka.Client{Addr: c.addr, Transport: c.transport}

	cctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	if _, err := c.kc.Metadata(cctx, &kafka.MetadataRequest{Topics: []string{}}); err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("kafka.brokers: %w at %s (waited up to %v): %s", ErrUnreachable, strings.Join(opts.Brokers, ","), opts.DialTimeout, cause(err))
	}
	return c, nil
}

// cause drops kafka-go's "kafka.(*Client).Metadata: " style prefixes and
// keeps the error on one line.
func cause(err error) string {
	s := err.Error()
	for strings.HasPrefix(s, "kafka.(") {
		i := strings.Index(s, ": ")
		if i < 0 {
			break
		}
		s = s[i+2:]
	}
	if errors.Is(err, context.DeadlineExceeded) {
		s = "no answer (timeout)"
	}
	return strings.Join(strings.Fields(s), " ")
}

// Close releases the connections.
func (c *Client) Close() {
	c.transport.CloseIdleConnections()
}

// Brokers returns the bootstrap brokers.
func (c *Client) Brokers() []string { return c.opts.Brokers }

// ErrNoTopic wraps the error of Partitions for a topic that does not exist.
var ErrNoTopic = errors.New("topic does not exist")

// metadataTTL bounds how old the Transport's cached metadata may be (it
// refreshes at random times within it).
const metadataTTL = 3 * time.Second

// Partitions returns the sorted partition ids of topic. A missing topic is
// an error wrapping ErrNoTopic, after waiting up to one metadata refresh
// for a topic created moments ago.
func (c *Client) Partitions(ctx context.Context, topic string) ([]int, error) {
	deadline := time.Now().Add(metadataTTL + time.Second)
	for {
		ids, err := c.partitions(ctx, topic)
		if !errors.Is(err, ErrNoTopic) || time.Now().After(deadline) {
			return ids, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Client) partitions(ctx context.Context, topic string) ([]int, error) {
	res, err := c.kc.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("topic %s: metadata: %s", topic, cause(err))
	}
	for _, t := range res.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
				return nil, fmt.Errorf("topic %q on %s: %w", topic, strings.Join(c.opts.Brokers, ","), ErrNoTopic)
			}
			return nil, fmt.Errorf("topic %s: %v", topic, t.Error)
		}
		ids := make([]int, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			ids = append(ids, p.ID)
		}
		sort.Ints(ids)
		if len(ids) == 0 {
			return nil, fmt.Errorf("topic %q: %w (no partitions)", topic, ErrNoTopic)
		}
		return ids, nil
	}
	return nil, fmt.Errorf("topic %q on %s: %w", topic, strings.Join(c.opts.Brokers, ","), ErrNoTopic)
}

// Offsets of one partition.
type Offsets struct {
	First int64 // log start offset
	Last  int64 // high watermark: the offset the next message will get
}

// Bounds returns the first and the next offset of each partition.
func (c *Client) Bounds(ctx context.Context, topic string, parts []int) (map[int]Offsets, error) {
	reqs := make([]kafka.OffsetRequest, 0, 2*len(parts))
	for _, p := range parts {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	res, err := c.kc.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("topic %s: list offsets: %s", topic, cause(err))
	}
	out := make(map[int]Offsets, len(parts))
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("topic %s partition %d: list offsets: %v", topic, po.Partition, po.Error)
		}
		out[po.Partition] = Offsets{First: po.FirstOffset, Last: po.LastOffset}
	}
	for _, p := range parts {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("topic %s partition %d: no offsets in the answer", topic, p)
		}
	}
	return out, nil
}

// OffsetsAt returns, for each partition, the earliest offset whose message
// timestamp is at or after t (Kafka's ListOffsets by timestamp), or the
// partition's high watermark when no message is that recent.
func (c *Client) OffsetsAt(ctx context.Context, topic string, parts []int, t time.Time) (map[int]int64, error) {
	bounds, err := c.Bounds(ctx, topic, parts)
	if err != nil {
		return nil, err
	}
	reqs := make([]kafka.OffsetRequest, 0, len(parts))
	for _, p := range parts {
		reqs = append(reqs, kafka.TimeOffsetOf(p, t))
	}
	res, err := c.kc.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("topic %s: list offsets at %s: %s", topic, t.UTC().Format(time.RFC3339), cause(err))
	}
	out := make(map[int]int64, len(parts))
	for _, p := range parts {
		out[p] = bounds[p].Last
	}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("topic %s partition %d: list offsets at %s: %v", topic, po.Partition, t.UTC().Format(time.RFC3339), po.Error)
		}
		for off := range po.Offsets {
			if off >= 0 {
				out[po.Partition] = off
			}
		}
	}
	return out, nil
}

// fetch settings.
const (
	fetchMaxBytes = 1 << 20
	fetchMaxWait  = 500 * time.Millisecond
	backoffMin    = 200 * time.Millisecond
	backoffMax    = 5 * time.Second
)

// errStop ends a fetch loop without error.
var errStop = errors.New("stop")

// readPartition reads partition part of topic from offset and calls fn for
// each message, in offset order, until ctx ends (returning ctx.Err()), fn
// returns an error (returned, errStop as nil), or, with end >= 0, the
// partition is read up to end (exclusive) or up to its high watermark,
// whichever comes first. Broker errors are retried with back-off and
// reported through Warn once per episode. progress, when not nil, is
// called with the next offset after each fetch.
func (c *Client) readPartition(ctx context.Context, topic string, part int, offset, end int64, fn func(*Message) error, progress func(int64)) error {
	failing := ""
	wait := backoffMin
	empty := 0
	for {
		if end >= 0 && offset >= end {
			return nil
		}
		res, err := c.kc.Fetch(ctx, &kafka.FetchRequest{
			Topic: topic, Partition: part, Offset: offset,
			MinBytes: 1, MaxBytes: fetchMaxBytes, MaxWait: fetchMaxWait,
		})
		if err == nil && res.Error != nil {
			err = res.Error
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if errors.Is(err, kafka.OffsetOutOfRange) && res != nil && offset < res.LogStartOffset {
				c.opts.Warn(fmt.Sprintf("%s partition %d: offsets %d to %d were deleted (retention) before they could be read", topic, part, offset, res.LogStartOffset-1))
				offset = res.LogStartOffset
				continue
			}
			if msg := cause(err); msg != failing {
				failing = msg
				c.opts.Warn(fmt.Sprintf("%s partition %d: %s; retrying", topic, part, msg))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			wait = min(2*wait, backoffMax)
			continue
		}
		if failing != "" {
			c.opts.Warn(fmt.Sprintf("%s partition %d: reading again", topic, part))
			failing, wait = "", backoffMin
		}
		n := 0
		for {
			r, err := res.Records.ReadRecord()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					c.opts.Warn(fmt.Sprintf("%s partition %d offset %d: %v", topic, part, offset, err))
				}
				break
			}
			if r.Offset < offset {
				closeRecord(r)
				continue
			}
			if end >= 0 && r.Offset >= end {
				closeRecord(r)
				if progress != nil {
					progress(end)
				}
				return nil
			}
			m := Message{Partition: part, Offset: r.Offset, Time: r.Time}
			m.Key, _ = readBytes(r.Key)
			m.Value, err = readBytes(r.Value)
			if len(r.Headers) > 0 {
				m.Headers = append([]kafka.Header(nil), r.Headers...)
			}
			closeRecord(r)
			if err != nil {
				c.opts.Warn(fmt.Sprintf("%s partition %d offset %d: reading the value: %v", topic, part, r.Offset, err))
				break
			}
			offset = r.Offset + 1
			n++
			if err := fn(&m); err != nil {
				if progress != nil {
					progress(offset)
				}
				if errors.Is(err, errStop) {
					return nil
				}
				return err
			}
		}
		if progress != nil {
			progress(offset)
		}
		if end >= 0 && n == 0 {
			// Nothing left below end: the log was truncated under us, end
			// was beyond what the partition holds, or only control records
			// or compacted gaps remain.
			if empty++; offset >= res.HighWatermark || empty >= 3 {
				return nil
			}
		} else {
			empty = 0
		}
	}
}

func readBytes(b protocol.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	return protocol.ReadAll(b)
}

func closeRecord(r *kafka.Record) {
	if r.Key != nil {
		r.Key.Close()
	}
	if r.Value != nil {
		r.Value.Close()
	}
}
