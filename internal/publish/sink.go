// Package publish delivers encoded events to their destinations: stdout, a
// file, or Kafka behind a durable spool. Every destination is a Sink.
package publish

import (
	"context"
	"time"
)

// Topic says which stream a message belongs to. Sinks that have a single
// stream (stdout, file) interleave both.
type Topic uint8

const (
	// TopicEvents carries auditns.event/2 objects.
	TopicEvents Topic = iota
	// TopicNamespaces carries auditns.namespace/1 registry records; on Kafka
	// it is a compacted topic keyed by "<boot_id>/<serial>".
	TopicNamespaces
)

// Message is one encoded object ready for a sink.
type Message struct {
	Topic Topic
	// Key is the Kafka message key, already chosen by the key strategy
	// (for TopicNamespaces always "<boot_id>/<serial>"). May be nil.
	Key []byte
	// Value is one JSON object without a trailing newline.
	Value []byte
	// ID is the event.id ("<boot_id>:<seq>") or the registry record id; it
	// becomes the event_id header.
	ID string
	// Schema is "auditns.event/2" or "auditns.namespace/1".
	Schema string
	// BootID is the host's boot_id, the boot_id header.
	BootID string
	// Time is when the kernel recorded the event; it becomes the Kafka
	// message timestamp so replays can look offsets up by time.
	Time time.Time
	// Reserved marks a message a full sink still takes, into room it keeps
	// for such messages: loss events (so that what was dropped is said)
	// and namespace registry records.
	Reserved bool
}

// Sink is a destination for messages.
//
// Write is called from a single goroutine and must not block for long: the
// pipeline behind it feeds from the kernel reader, which must never stall.
// A sink that cannot deliver right away (Kafka down) buffers durably or
// reports what it dropped. Write does not retain msgs or their byte slices
// after it returns.
type Sink interface {
	// Write delivers or durably accepts msgs, in order. dropped is how many
	// messages of msgs the sink discarded (e.g. spool full, disk full),
	// exactly, every message not taken included: the pipeline owes that
	// count to the stream as a loss event. err, when the sink is failing,
	// says why (ENOSPC: disk full), also while it still buffers what it is
	// given (dropped 0: taken).
	Write(msgs []Message) (dropped int, err error)
	// Close flushes what can be flushed before ctx ends and releases
	// resources; what could not be delivered stays durable where the sink
	// supports it.
	Close(ctx context.Context) error
	// Name describes the sink for logs, without secrets.
	Name() string
}
