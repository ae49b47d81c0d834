package consume

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/render"
)

// OutputSpec is a parsed --output of replay.
type OutputSpec struct {
	Kind string // "stdout", "file" or "kafka-topic"
	Arg  string // the path or the topic
}

// ParseOutput parses stdout, file:PATH or kafka-topic:NAME.
func ParseOutput(s string) (OutputSpec, error) {
	switch {
	case s == "" || s == "stdout" || s == "-":
		return OutputSpec{Kind: "stdout"}, nil
	case strings.HasPrefix(s, "file:") && len(s) > len("file:"):
		return OutputSpec{Kind: "file", Arg: s[len("file:"):]}, nil
	case strings.HasPrefix(s, "kafka-topic:") && len(s) > len("kafka-topic:"):
		t := s[len("kafka-topic:"):]
		for _, r := range t {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') || len(t) > 249 {
				return OutputSpec{}, fmt.Errorf("--output: expected a topic name of [a-zA-Z0-9._-] after kafka-topic:, got %q", t)
			}
		}
		return OutputSpec{Kind: "kafka-topic", Arg: t}, nil
	}
	return OutputSpec{}, fmt.Errorf("--output: expected stdout, file:PATH or kafka-topic:NAME, got %q", s)
}

// Output receives replayed events.
type Output interface {
	// Write delivers one event: value is its JSON (annotated), it the
	// message it came from.
	Write(it *Item, value []byte) error
	// Close flushes and releases; what was not delivered is an error.
	Close() error
}

// NewLineOutput writes one JSON value per line to w, buffered; Close
// flushes (and closes w when it is an io.Closer other than os.Stdout).
// With terminal, values go through render.TerminalJSON (w is a terminal:
// no control character may reach it); otherwise they are written byte
// for byte.
func NewLineOutput(w io.Writer, terminal bool) Output {
	return &lineOutput{w: w, b: bufio.NewWriterSize(w, 256<<10), terminal: terminal}
}

type lineOutput struct {
	w        io.Writer
	b        *bufio.Writer
	terminal bool
	buf      []byte
}

func (o *lineOutput) Write(_ *Item, value []byte) error {
	if o.terminal {
		o.buf = render.TerminalJSON(o.buf[:0], value)
		_, err := o.b.Write(o.buf)
		return err
	}
	o.b.Write(value)
	return o.b.WriteByte('\n')
}

func (o *lineOutput) Close() error {
	err := o.b.Flush()
	if c, ok := o.w.(io.Closer); ok && o.w != os.Stdout {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// OpenFile creates path (mode 0600: audit events are sensitive) for
// writing; an existing regular file is not overwritten (evidence is not
// destroyed by a typo), an existing FIFO or device is opened for writing.
func OpenFile(path string) (*os.File, error) {
	if fi, err := os.Stat(path); err == nil {
		if fi.Mode().IsRegular() {
			return nil, fmt.Errorf("--output file:%s: the file exists; refusing to overwrite it", path)
		}
		return os.OpenFile(path, os.O_WRONLY, 0)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--output file:%s: %w", path, err)
	}
	return f, nil
}

// TopicOutputOptions configures NewTopicOutput.
type TopicOutputOptions struct {
	Topic string
	// Create creates a missing topic with one partition (a single
	// partition keeps the replay's time order) and ReplicationFactor
	// (kafka.create_topics, kafka.replication_factor).
	Create            bool
	ReplicationFactor int
	// Compression of produced batches: none, gzip, snappy, lz4, zstd
	// (kafka.compression).
	Compression string
	// SourceTopic is recorded in each message's replayed_from header.
	SourceTopic string
}

// NewTopicOutput produces the replayed events to a topic, keeping each
// message's key, time and headers and adding a replayed_from header
// ("<topic>/<partition>/<offset>"). Acks: all.
func (c *Client) NewTopicOutput(ctx context.Context, o TopicOutputOptions) (Output, error) {
	if o.Topic == o.SourceTopic {
		return nil, fmt.Errorf("--output kafka-topic:%s: that is the topic being replayed", o.Topic)
	}
	if _, err := c.Partitions(ctx, o.Topic); err != nil {
		if !errors.Is(err, ErrNoTopic) {
			return nil, err
		}
		if !o.Create {
			return nil, fmt.Errorf("--output kafka-topic:%s: the topic does not exist and kafka.create_topics is false", o.Topic)
		}
		if err := c.createTopic(ctx, o.Topic, max(o.ReplicationFactor, 1)); err != nil {
			return nil, err
		}
	}
	var codec kafka.Compression
	switch strings.ToLower(o.Compression) {
	case "", "lz4":
		codec = kafka.Lz4
	case "none":
	case "gzip":
		codec = kafka.Gzip
	case "snappy":
		codec = kafka.Snappy
	case "zstd":
		codec = kafka.Zstd
	default:
		return nil, fmt.Errorf("kafka.compression: expected none, gzip, snappy, lz4 or zstd, got %q", o.Compression)
	}
	w := &kafka.Writer{
		Addr:         c.addr,
		Topic:        o.Topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
		BatchSize:    topicBatch,
		BatchBytes:   1 << 20,
		Compression:  codec,
		Transport:    c.transport,
	}
	return &topicOutput{ctx: ctx, w: w, source: o.SourceTopic}, nil
}

const topicBatch = 500

func (c *Client) createTopic(ctx context.Context, topic string, rf int) error {
	res, err := c.kc.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: 1, ReplicationFactor: rf,
	}}})
	if err != nil {
		return fmt.Errorf("create topic %s: %s", topic, cause(err))
	}
	if err := res.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %v", topic, err)
	}
	// Wait until the metadata shows it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.Partitions(ctx, topic); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("create topic %s: %v", topic, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type topicOutput struct {
	ctx    context.Context
	w      *kafka.Writer
	source string
	batch  []kafka.Message
}

func (o *topicOutput) Write(it *Item, value []byte) error {
	m := it.Msg
	hs := make([]kafka.Header, 0, len(m.Headers)+1)
	hs = append(hs, m.Headers...)
	hs = append(hs, kafka.Header{Key: "replayed_from", Value: []byte(o.source + "/" + strconv.Itoa(m.Partition) + "/" + strconv.FormatInt(m.Offset, 10))})
	o.batch = append(o.batch, kafka.Message{Key: m.Key, Value: append([]byte(nil), value...), Headers: hs, Time: m.Time})
	if len(o.batch) >= topicBatch {
		return o.flush()
	}
	return nil
}

func (o *topicOutput) flush() error {
	if len(o.batch) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(o.ctx), 30*time.Second)
	defer cancel()
	err := o.w.WriteMessages(ctx, o.batch...)
	o.batch = o.batch[:0]
	if err != nil {
		return fmt.Errorf("--output kafka-topic:%s: %s", o.w.Topic, cause(err))
	}
	return nil
}

func (o *topicOutput) Close() error {
	err := o.flush()
	if cerr := o.w.Close(); err == nil {
		err = cerr
	}
	return err
}
