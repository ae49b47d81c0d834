package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// What a failed delivery means (classify), how failures are backed off,
// logged and counted, and where messages the brokers refuse for good go
// (the dead-letter file).

type errClass int

const (
	classOK errClass = iota
	classRetriable
	// classPerRecord: the broker refused the record batch because of what
	// is in it (size, timestamp, record validation). kafka-go reports one
	// error for the whole per-partition batch, so the culprit has to be
	// isolated before it is dead-lettered.
	classPerRecord
	// classPerTopic: every message to the topic would be refused the same
	// way, whatever the batching: dead-letter them at once.
	classPerTopic
)

// classify decides what a per-message error means. Everything not known to
// be permanent is retried: network errors, timeouts, leadership changes,
// missing topics, authentication failures (a credential fix should not cost
// the spooled events).
func classify(err error) errClass {
	switch {
	case err == nil:
		return classOK
	case errors.Is(err, kafka.MessageSizeTooLarge),
		errors.Is(err, kafka.RecordListTooLarge),
		errors.Is(err, kafka.InvalidTimestamp),
		errors.Is(err, kafka.InvalidRecord):
		return classPerRecord
	case errors.Is(err, kafka.TopicAuthorizationFailed),
		errors.Is(err, kafka.InvalidTopic),
		errors.Is(err, kafka.UnsupportedForMessageFormat),
		errors.Is(err, kafka.UnsupportedCompressionType):
		return classPerTopic
	default:
		return classRetriable
	}
}

// errKind names an error coarsely, for state-change logging.
func errKind(err error) string {
	var kerr kafka.Error
	var nerr net.Error
	switch {
	case errors.As(err, &kerr):
		return kerr.Title()
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "unreachable"
	case errors.As(err, &nerr):
		return "network"
	default:
		for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(err) {
			err = u
		}
		return fmt.Sprintf("%T", err)
	}
}

// failed records a failed topic set-up or metadata lookup, logs if the
// state changed, and returns the backoff before the next attempt.
//
// Failures shorter than failingAfter (a leader election, a new topic's
// first second) are logged at debug level only; past it, the sink declares
// delivery failing: one warning and an OnState("state") call, then one line
// per change of error kind, and one when delivery resumes.
func (k *Kafka) failed(rs *retryState, err error) time.Duration {
	k.stats.errors.Add(1)
	k.stats.retries.Add(1)
	kind := errKind(err)
	now := time.Now()
	if rs.since.IsZero() {
		rs.since, rs.retries, rs.delay = now, 0, retryMin
	}
	switch {
	case !rs.failing && now.Sub(rs.since) >= failingAfter:
		rs.failing = true
		k.stats.failing.Store(true)
		backlog := int(k.spool.Stats().Records)
		k.log.Warn("kafka: delivery failing; events stay in the spool, retrying with backoff",
			"sink", k.name, "err", err, "since", rs.since.Format(time.RFC3339Nano), "backlog", backlog)
		k.onState("state", fmt.Sprintf("kafka delivery failing (%s): events are spooled", kind), backlog)
	case rs.failing && kind != rs.kind:
		k.log.Warn("kafka: delivery still failing, for another reason", "sink", k.name, "err", err,
			"since", rs.since.Format(time.RFC3339Nano), "retries", rs.retries)
	case !rs.failing:
		k.log.Debug("kafka: set-up failed; retrying", "sink", k.name, "err", err, "retries", rs.retries)
	}
	rs.kind = kind
	rs.retries++
	d := rs.delay
	rs.delay = min(2*rs.delay, retryMax)
	return d
}

// recovered ends a run of set-up failures.
func (k *Kafka) recovered(rs *retryState) {
	if !rs.failing {
		if !rs.since.IsZero() {
			k.log.Debug("kafka: set-up recovered", "sink", k.name, "after", time.Since(rs.since), "retries", rs.retries)
			*rs = retryState{}
		}
		return
	}
	backlog := int(k.spool.Stats().Records)
	outage := time.Since(rs.since).Round(time.Millisecond)
	k.log.Info("kafka: delivery resumed", "sink", k.name, "after", outage, "retries", rs.retries, "backlog", backlog)
	k.onState("state", fmt.Sprintf("kafka delivery resumed after %v", outage), backlog)
	*rs = retryState{}
	k.stats.failing.Store(false)
}

// countError counts a failed request by error code.
func (k *Kafka) countError(err error) {
	k.stats.errors.Add(1)
	code := errCode(err)
	k.errMu.Lock()
	k.errCodes[code]++
	k.errMu.Unlock()
}

// errCode names an error for the errors-by-code metric: the Kafka protocol
// error's name (NOT_LEADER_OR_FOLLOWER, ...) or a coarse kind.
func errCode(err error) string {
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		return strings.ToUpper(strings.ReplaceAll(kerr.Title(), " ", "_"))
	}
	switch errKind(err) {
	case "unreachable":
		return "UNREACHABLE"
	case "network":
		return "NETWORK"
	}
	return "OTHER"
}

func (k *Kafka) deadLetterOf(now time.Time, o *outMsg, err error) DeadLetter {
	m := Message{Key: o.key, Value: o.value, Time: o.evTime,
		ID: string(o.id), Schema: string(o.schema), BootID: string(o.bootID)}
	return newDeadLetter(now, k.topicName(o.topic), &m, err)
}

// deadLetter writes entries to the dead-letter file and reports them. What
// cannot be written (the file is at kafka.dead_letter_max_bytes, or cannot
// be written at all) is reported as lost, with its exact count: blocking
// the whole stream on refused messages would lose more.
func (k *Kafka) deadLetter(entries []DeadLetter) {
	if len(entries) == 0 {
		return
	}
	n := len(entries)
	reason := entries[0].Error
	lost, err := k.dead.Append(entries)
	if kept := n - lost; kept > 0 {
		k.stats.deadLettered.Add(int64(kept))
		k.log.Error("kafka: messages refused by the broker written to the dead-letter file",
			"count", kept, "reason", reason, "path", k.opts.DeadLetterPath)
		k.onState("loss", fmt.Sprintf("%d messages refused by Kafka (%s), kept in dead-letter file %s", kept, reason, k.opts.DeadLetterPath), kept)
	}
	if lost == 0 {
		return
	}
	k.stats.deadLetterLost.Add(int64(lost))
	why := fmt.Sprintf("the dead-letter file is full (kafka.dead_letter_max_bytes %d)", k.opts.DeadLetterMaxBytes)
	if err != nil {
		why = err.Error()
	}
	k.log.Error("kafka: messages refused by the broker could not be dead-lettered and are lost",
		"count", lost, "reason", reason, "why", why, "path", k.opts.DeadLetterPath)
	k.onState("loss", fmt.Sprintf("%d messages refused by Kafka (%s) and lost: %s", lost, reason, why), lost)
}

func (k *Kafka) onState(kind, msg string, count int) {
	if k.opts.OnState != nil {
		k.opts.OnState(kind, msg, count)
	}
}

// sleepCtx sleeps d or until ctx ends; false if ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
