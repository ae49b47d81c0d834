package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// Backoff between failed produce rounds: doubling from retryMin to retryMax.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
	// failingAfter is how long failures last before the sink reports
	// delivery as failing.
	failingAfter = time.Second
)

var contentTypeJSON = []byte("application/json")

// errNotAttempted marks messages kafka-go did not try to send because of
// another message in the same call; they are sent again at once.
var errNotAttempted = errors.New("not attempted")

// outMsg is one spool record on its way to Kafka. Its byte fields alias the
// record's data, which the spool hands over for good.
type outMsg struct {
	pos                Pos
	topic              Topic
	key, value         []byte
	id, schema, bootID []byte // the headers
	evTime             time.Time
	size               int64 // kafka-go's size estimate, as checked against BatchBytes
	raw                []byte
	bad                error // the record could not be decoded
	done               bool  // acknowledged or dead-lettered
}

// retryState tracks a run of failures, so that the log gets one line per
// change of state instead of one per retry.
type retryState struct {
	failing bool
	since   time.Time
	kind    string
	retries int
	delay   time.Duration
}

// forward is the delivery goroutine: spool → Kafka, in order, one batch in
// flight at a time.
func (k *Kafka) forward() {
	defer close(k.done)
	var (
		carry   []outMsg
		rs      retryState
		nextErr string
	)
	for {
		if len(carry) == 0 {
			recs, err := k.spool.Next(k.ctx, k.opts.BatchSize, int(k.opts.BatchBytes))
			if err != nil {
				if k.ctx.Err() != nil {
					return
				}
				if err.Error() != nextErr {
					k.log.Error("kafka: reading the spool failed; retrying", "err", err)
					nextErr = err.Error()
				}
				if !sleepCtx(k.ctx, time.Second) {
					return
				}
				continue
			}
			nextErr = ""
			carry = k.decode(carry[:0], recs)
			carry = k.gather(carry)
		}
		n := k.takeBatch(carry)
		if !k.deliver(carry[:n], &rs) {
			// Closing: acknowledge the part of the batch that is done, so
			// that the next start sends less again.
			if d := doneCount(carry[:n]); d > 0 {
				if err := k.spool.Ack(carry[d-1].pos); err == nil {
					k.stats.acked.Add(int64(d))
				}
			}
			return
		}
		if err := k.spool.Ack(carry[n-1].pos); err != nil {
			k.log.Error("kafka: spool ack failed (the messages may be sent again after a restart)", "err", err)
		}
		k.stats.acked.Add(int64(n))
		select {
		case k.acked <- struct{}{}:
		default:
		}
		clear(carry[:n]) // let the GC have the batch
		carry = carry[n:]
	}
}

// canceledCtx makes Spool.Next return what is available without waiting.
var canceledCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// gather completes a round: unless carry already holds BatchSize messages
// or BatchBytes, it waits BatchTimeout (from the round's first read) and
// then adds what was spooled meanwhile, up to those limits. This is what
// the Writer's BatchTimeout was meant for: fewer, larger produce requests
// at a modest rate, at the price of at most BatchTimeout of latency.
// Under load a round fills at once and does not wait.
func (k *Kafka) gather(carry []outMsg) []outMsg {
	var bytes int64
	for i := range carry {
		bytes += carry[i].size
	}
	if len(carry) >= k.opts.BatchSize || bytes >= k.opts.BatchBytes || k.opts.BatchTimeout <= 0 {
		return carry
	}
	if k.lingerT == nil {
		k.lingerT = time.NewTimer(k.opts.BatchTimeout)
	} else {
		k.lingerT.Reset(k.opts.BatchTimeout)
	}
	select {
	case <-k.lingerT.C:
	case <-k.ctx.Done():
		k.lingerT.Stop()
		return carry
	}
	for len(carry) < k.opts.BatchSize && bytes < k.opts.BatchBytes {
		recs, err := k.spool.Next(canceledCtx, k.opts.BatchSize-len(carry), int(k.opts.BatchBytes-bytes))
		if err != nil || len(recs) == 0 {
			break
		}
		n := len(carry)
		carry = k.decode(carry, recs)
		for i := n; i < len(carry); i++ {
			bytes += carry[i].size
		}
	}
	return carry
}

// doneCount is the length of the prefix of batch that is done.
func doneCount(batch []outMsg) int {
	for i := range batch {
		if !batch[i].done {
			return i
		}
	}
	return len(batch)
}

// decode appends the spool records, as Kafka messages, to out. The messages
// alias the records' data, which the spool hands over for good.
func (k *Kafka) decode(out []outMsg, recs []Record) []outMsg {
	n := len(out)
	out = slices.Grow(out, len(recs))[:n+len(recs)]
	for i := range recs {
		data := recs[i].Data
		o := &out[n+i]
		*o = outMsg{pos: recs[i].Pos}
		v, err := parseKafkaRecord(data)
		if err != nil {
			o.bad, o.raw = err, data
			continue
		}
		o.topic, o.key, o.value = v.topic, v.key, v.value
		o.id, o.schema, o.bootID = v.id, v.schema, v.bootID
		o.evTime = v.time
		o.size = o.messageSize()
	}
	return out
}

// kafkaMessageSize is kafka-go's (unexported) Message.totalSize: what it
// compares with Writer.BatchBytes.
func kafkaMessageSize(m *kafka.Message) int64 {
	n := varintLen(int64(len(m.Headers)))
	for i := range m.Headers {
		h := &m.Headers[i]
		n += varintLen(int64(len(h.Key))) + len(h.Key) + varintLen(int64(len(h.Value))) + len(h.Value)
	}
	return int64(n) + 4 + 1 + 1 + 4 + int64(len(m.Key)) + 4 + int64(len(m.Value)) + 8
}

func varintLen(i int64) int {
	return uvarintLen(uint64((i << 1) ^ (i >> 63)))
}

// takeBatch returns how many messages at the head of carry make the next
// batch: at most BatchSize messages and BatchBytes bytes, at least one. A
// batch that fits these limits as a whole becomes at most one kafka-go
// batch per partition, so no part of it can be sent before an earlier part
// of the same partition.
func (k *Kafka) takeBatch(carry []outMsg) int {
	var bytes int64
	n := 0
	for n < len(carry) && n < k.opts.BatchSize {
		s := carry[n].size
		if n > 0 && bytes+s > k.opts.BatchBytes {
			break
		}
		bytes += s
		n++
	}
	return max(n, 1)
}

// deliver sends batch until every message is acknowledged or dead-lettered.
// It returns false when the sink is closing.
func (k *Kafka) deliver(batch []outMsg, rs *retryState) bool {
	// What can never be sent goes to the dead-letter file straight away.
	var dead []DeadLetter
	now := time.Now()
	for i := range batch {
		o := &batch[i]
		switch {
		case o.bad != nil:
			dead = append(dead, DeadLetter{Time: now.UTC(), Error: "undecodable spool record: " + o.bad.Error(), ValueB64: o.raw})
			o.done = true
		case o.size > k.opts.BatchBytes:
			err := fmt.Errorf("%w: message of %d bytes exceeds kafka.batch_bytes (%d)", kafka.MessageSizeTooLarge, o.size, k.opts.BatchBytes)
			dead = append(dead, k.deadLetterOf(now, o, err))
			o.done = true
		}
	}
	k.deadLetter(dead)

	idx := make([]int, 0, len(batch))
	chunk := len(batch)
	for {
		idx = idx[:0]
		for i := range batch {
			if !batch[i].done {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			return true
		}
		if k.ctx.Err() != nil {
			return false
		}
		if !k.topicsReady.Load() {
			ctx, cancel := context.WithTimeout(k.ctx, k.opts.WriteTimeout)
			err := k.ensureTopics(ctx)
			cancel()
			if err != nil {
				if k.ctx.Err() != nil || !k.retry(rs, fmt.Errorf("topics: %w", err)) {
					return false
				}
				continue
			}
		}

		sub := idx[:min(chunk, len(idx))]
		errs := k.produce(batch, sub)

		var (
			now                     = time.Now()
			retriable               error
			perRecord, notAttempted int
			dead                    []DeadLetter
			lastPerRecord           int
		)
		for j, i := range sub {
			o := &batch[i]
			err := errs[j]
			switch classify(err) {
			case classOK:
				o.done = true
				k.stats.published.Add(1)
				if k.opts.ObserveLatency != nil && !o.evTime.IsZero() {
					k.opts.ObserveLatency(now.Sub(o.evTime))
				}
			case classNotAttempted:
				notAttempted++
			case classRetriable:
				if retriable == nil {
					retriable = err
				}
			case classPerRecord:
				perRecord++
				lastPerRecord = i
			case classPerTopic:
				dead = append(dead, k.deadLetterOf(now, o, err))
				o.done = true
			}
		}
		k.deadLetter(dead)
		if k.ctx.Err() != nil {
			// Closing: what is not done stays in the spool.
			return false
		}

		switch {
		case retriable != nil:
			if errors.Is(retriable, kafka.UnknownTopicOrPartition) {
				k.topicsReady.Store(false) // deleted? create it again
			}
			if !k.retry(rs, retriable) {
				return false
			}
		case perRecord == 1:
			// Isolated: this message is refused on its own merits.
			o := &batch[lastPerRecord]
			k.deadLetter([]DeadLetter{k.deadLetterOf(now, o, errs[indexOf(sub, lastPerRecord)])})
			o.done = true
			chunk = len(batch)
		case perRecord > 1:
			// kafka-go reports a per-partition error for every message of
			// the partition's batch: halve until the culprit is alone.
			chunk = (perRecord + 1) / 2
		case notAttempted == 0:
			k.recovered(rs)
			chunk = len(batch)
		}
	}
}

func indexOf(s []int, v int) int {
	for j, x := range s {
		if x == v {
			return j
		}
	}
	return -1
}

type errClass int

const (
	classOK errClass = iota
	classNotAttempted
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
	case errors.Is(err, errNotAttempted):
		return classNotAttempted
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

// retry records a failed round, logs if the state changed, and waits the
// backoff. It returns false if the sink is closing.
//
// Failures shorter than failingAfter (a leader election, a new topic's
// first second) are logged at debug level only; past it, the sink declares
// delivery failing: one warning and an OnState("state") call, then one line
// per change of error kind, and one when delivery resumes.
func (k *Kafka) retry(rs *retryState, err error) bool {
	k.stats.errors.Add(1)
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
		k.log.Debug("kafka: produce failed; retrying", "sink", k.name, "err", err, "retries", rs.retries)
	}
	rs.kind = kind
	rs.retries++
	d := rs.delay
	rs.delay = min(2*rs.delay, retryMax)
	return sleepCtx(k.ctx, d)
}

// recovered ends a run of failures.
func (k *Kafka) recovered(rs *retryState) {
	if !rs.failing {
		if !rs.since.IsZero() {
			k.log.Debug("kafka: produce recovered", "sink", k.name, "after", time.Since(rs.since), "retries", rs.retries)
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

func (k *Kafka) deadLetterOf(now time.Time, o *outMsg, err error) DeadLetter {
	m := Message{Key: o.key, Value: o.value, Time: o.evTime,
		ID: string(o.id), Schema: string(o.schema), BootID: string(o.bootID)}
	return newDeadLetter(now, k.topicName(o.topic), &m, err)
}

// deadLetter writes entries to the dead-letter file and reports them. If the
// file cannot be written they are reported as lost: blocking the whole
// stream on one refused message would lose more.
func (k *Kafka) deadLetter(entries []DeadLetter) {
	if len(entries) == 0 {
		return
	}
	n := len(entries)
	reason := entries[0].Error
	if err := k.dead.Append(entries); err != nil {
		k.log.Error("kafka: messages refused by the broker could not be dead-lettered and are lost",
			"count", n, "reason", reason, "err", err)
		k.onState("loss", fmt.Sprintf("%d messages refused by Kafka (%s) and lost: %v", n, reason, err), n)
		return
	}
	k.stats.deadLettered.Add(int64(n))
	k.log.Error("kafka: messages refused by the broker written to the dead-letter file",
		"count", n, "reason", reason, "path", k.opts.DeadLetterPath)
	k.onState("loss", fmt.Sprintf("%d messages refused by Kafka (%s), kept in dead-letter file %s", n, reason, k.opts.DeadLetterPath), n)
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
