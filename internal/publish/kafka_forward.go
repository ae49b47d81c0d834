package publish

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/fifo"
	"github.com/auditns/auditns/internal/spool"
)

// Delivery. A reader goroutine takes records from the spool in order and
// hands them to the forwarder goroutine, which puts each message in the
// queue of its topic-partition (a lane) and keeps, per lane, one produce
// request in flight: a partition's next batch is never sent before the one
// before it was acknowledged, so order per partition holds, while the
// lanes do not wait for one another. A lane whose leader is gone retries
// on its own (backoff laneRetryMin doubling to laneRetryMax, with a
// metadata refresh each time) and only its messages wait.
//
// The spool has one read position and one acknowledged position. The
// forwarder keeps every message it read in a window, in spool order, and
// acknowledges the spool up to the first message that is not done
// (acknowledged by the brokers or dead-lettered): the minimum over the
// partitions of their first unacknowledged position. After a crash the
// spool therefore sends again what a lagging partition had not delivered
// and, of the other partitions, what followed it: at least once, in order
// per partition. The window is bounded (windowMessages, windowBytes): past
// that, reading stops until the lagging partition moves, and the other
// partitions then wait too, with their messages safe in the spool.

// Backoff between failures.
const (
	// retryMin and retryMax: topic set-up and metadata failures.
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
	// laneRetryMin and laneRetryMax: a partition's failed produce. Short,
	// because each retry first refreshes the metadata, and a new leader
	// should be used within half a second of its election.
	laneRetryMin = 50 * time.Millisecond
	laneRetryMax = 500 * time.Millisecond
	// failingAfter is how long failures last before the sink (or a
	// partition) is reported failing.
	failingAfter = time.Second
	// windowMessages and windowBytes bound what the forwarder holds in
	// memory beyond the spool while a partition lags.
	windowMessages = 50000
	windowBytes    = 64 << 20
)

var contentTypeJSON = []byte("application/json")

// outMsg is one spool record on its way to Kafka. Its byte fields alias the
// record's data, which the spool hands over for good.
type outMsg struct {
	pos                spool.Pos
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

// lane is the delivery state of one topic-partition, owned by the
// forwarder goroutine except for the fields metrics read (atomics).
type lane struct {
	topic     Topic
	name      string
	partition int
	q         fifo.Queue[*outMsg] // in spool order; the first inflight are being sent
	inflight  int
	sending   []*outMsg // the request's messages (one request at a time)
	chunk     int       // > 0: at most this many per request (isolating a refused record)

	since   time.Time // first failure of the current run; zero when healthy
	err     error     // the last failure
	delay   time.Duration
	next    time.Time // no request before
	retries int
	warned  bool

	stat laneStat
}

// laneResult is a finished produce request.
type laneResult struct {
	l   *lane
	err error
}

// forwarder is the forwarder goroutine's state.
type forwarder struct {
	k       *Kafka
	lanes   [2][]*lane             // by Topic, then partition
	pending [2]fifo.Queue[*outMsg] // not yet given a partition (topic metadata missing)
	window  fifo.Queue[[]outMsg]   // read, not yet acknowledged, in spool order
	head    int                    // done prefix of window.Front()
	winMsgs int
	winSize int64
	busy    int // requests in flight
	results chan laneResult

	parts     [2]int     // partition count by Topic; 0: to be looked up
	rs        retryState // topic set-up and metadata
	nextSetup time.Time
	failing   bool // the sink reported delivery failing
}

// forward is the delivery goroutine.
func (k *Kafka) forward() {
	defer close(k.done)
	f := &forwarder{k: k, results: make(chan laneResult, 16)}
	in := make(chan []outMsg)
	readerDone := make(chan struct{})
	go k.read(in, readerDone)
	defer func() { <-readerDone }()

	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	for {
		now := time.Now()
		f.assign(now)
		next := f.dispatch(now)
		var inCh chan []outMsg
		if f.winMsgs < windowMessages && f.winSize < windowBytes {
			inCh = in
		}
		if !next.IsZero() {
			wake.Reset(max(time.Until(next), time.Millisecond))
		}
		select {
		case msgs := <-inCh:
			f.admit(msgs)
		case r := <-f.results:
			f.busy--
			f.finish(r)
		case <-wake.C:
		case <-tick.C:
			f.watch(time.Now())
		case <-k.ctx.Done():
			// Closing: requests in flight end with the context; what
			// they delivered is acknowledged, so that the next start
			// sends less again.
			for f.busy > 0 {
				r := <-f.results
				f.busy--
				f.finish(r)
			}
			f.advance()
			return
		}
		f.advance()
	}
}

// read is the reader goroutine: spool → forwarder, in order.
func (k *Kafka) read(in chan<- []outMsg, done chan<- struct{}) {
	defer close(done)
	var nextErr string
	for {
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
		msgs := k.gather(k.decode(nil, recs))
		select {
		case in <- msgs:
		case <-k.ctx.Done():
			return
		}
	}
}

// admit adds what the reader read to the window: what can never be sent
// goes to the dead-letter file at once, the rest waits for a partition.
func (f *forwarder) admit(msgs []outMsg) {
	k := f.k
	f.window.PushBack(msgs)
	var dead []DeadLetter
	now := time.Now()
	for i := range msgs {
		o := &msgs[i]
		f.winMsgs++
		f.winSize += o.size
		switch {
		case o.bad != nil:
			dead = append(dead, DeadLetter{Time: now.UTC(), Error: "undecodable spool record: " + o.bad.Error(), ValueB64: o.raw})
			o.done = true
		case o.size > k.opts.BatchBytes:
			err := fmt.Errorf("%w: message of %d bytes exceeds kafka.batch_bytes (%d)", kafka.MessageSizeTooLarge, o.size, k.opts.BatchBytes)
			dead = append(dead, k.deadLetterOf(now, o, err))
			o.done = true
		default:
			f.pending[o.topic].PushBack(o)
		}
	}
	k.deadLetter(dead)
}

// assign gives the pending messages their partitions, once the topics are
// ready. A topic's partition count is looked up once (and again after the
// topic went missing): the lookup may wait for a fresh route's metadata,
// and the forwarder must not wait while the other partitions' answers come
// in. Partitions added to a topic later are used after a restart.
func (f *forwarder) assign(now time.Time) {
	k := f.k
	if now.Before(f.nextSetup) {
		return
	}
	if !k.topicsReady.Load() {
		if f.winMsgs == 0 {
			return // nothing to send
		}
		ctx, cancel := context.WithTimeout(k.ctx, k.opts.WriteTimeout)
		err := k.ensureTopics(ctx)
		cancel()
		if err != nil {
			if k.ctx.Err() == nil {
				f.nextSetup = now.Add(k.failed(&f.rs, fmt.Errorf("topics: %w", err)))
			}
			return
		}
		f.parts = [2]int{}
	}
	for t := range f.pending {
		p := &f.pending[t]
		if p.Len() == 0 {
			continue
		}
		if f.parts[t] == 0 {
			name := k.topicName(Topic(t))
			ctx, cancel := context.WithTimeout(k.ctx, k.opts.WriteTimeout)
			n, err := k.partitionCount(ctx, name)
			cancel()
			if err != nil {
				if k.ctx.Err() == nil {
					if errors.Is(err, kafka.UnknownTopicOrPartition) {
						k.topicsReady.Store(false)
					}
					k.refreshMetadata()
					f.nextSetup = now.Add(k.failed(&f.rs, fmt.Errorf("topic %s: %w", name, err)))
				}
				return
			}
			f.parts[t] = n
		}
		for p.Len() > 0 {
			o := *p.Front()
			p.PopFront()
			l := f.lane(Topic(t), k.partitionOf(o.key, f.parts[t]))
			l.q.PushBack(o)
			l.stat.queued.Add(1)
			if l.q.Len() == 1 {
				l.stat.oldest.Store(o.evTime.UnixNano())
			}
		}
	}
	k.recovered(&f.rs)
}

// lane returns topic's partition's lane, making it.
func (f *forwarder) lane(t Topic, p int) *lane {
	ls := f.lanes[t]
	if p < len(ls) && ls[p] != nil {
		return ls[p]
	}
	if p >= len(ls) {
		ls = append(ls, make([]*lane, p+1-len(ls))...)
		f.lanes[t] = ls
	}
	l := &lane{topic: t, name: f.k.topicName(t), partition: p}
	ls[p] = l
	f.k.lanesMu.Lock()
	f.k.lanes = append(f.k.lanes, l)
	f.k.lanesMu.Unlock()
	return l
}

// dispatch starts a request on every idle lane that has messages and is
// not backing off. It returns when the earliest backing-off lane may go
// (zero if none).
func (f *forwarder) dispatch(now time.Time) (next time.Time) {
	k := f.k
	if !k.topicsReady.Load() {
		return f.nextSetup
	}
	for t := range f.lanes {
		for _, l := range f.lanes[t] {
			if l == nil || l.inflight > 0 || l.q.Len() == 0 {
				continue
			}
			if now.Before(l.next) {
				if next.IsZero() || l.next.Before(next) {
					next = l.next
				}
				continue
			}
			limit := k.opts.BatchSize
			if l.chunk > 0 {
				limit = min(limit, l.chunk)
			}
			var bytes int64
			msgs := l.sending[:0]
			for i := 0; i < l.q.Len() && len(msgs) < limit; i++ {
				o := *l.q.At(i)
				if len(msgs) > 0 && bytes+o.size > k.opts.BatchBytes {
					break
				}
				bytes += o.size
				msgs = append(msgs, o)
			}
			l.sending = msgs
			l.inflight = len(msgs)
			f.busy++
			go func() {
				err := k.produce(l, msgs)
				f.results <- laneResult{l: l, err: err}
			}()
		}
	}
	if !f.nextSetup.IsZero() && (f.pending[0].Len() > 0 || f.pending[1].Len() > 0) &&
		(next.IsZero() || f.nextSetup.Before(next)) {
		next = f.nextSetup
	}
	return next
}

// finish handles a finished request.
func (f *forwarder) finish(r laneResult) {
	k, l := f.k, r.l
	msgs := l.sending[:l.inflight]
	l.inflight = 0
	if r.err != nil && k.ctx.Err() != nil {
		return // closing: the messages stay in the spool
	}
	now := time.Now()
	switch classify(r.err) {
	case classOK:
		var bytes int64
		for _, o := range msgs {
			o.done = true
			bytes += int64(len(o.key) + len(o.value))
			if k.opts.ObserveLatency != nil && !o.evTime.IsZero() {
				k.opts.ObserveLatency(now.Sub(o.evTime))
			}
		}
		k.stats.published.Add(int64(len(msgs)))
		k.stats.ackedBytes.Add(bytes)
		f.pop(l, len(msgs))
		l.chunk = 0
		f.laneRecovered(l, now)
	case classPerRecord:
		if len(msgs) == 1 {
			// Isolated: this message is refused on its own merits.
			k.deadLetter([]DeadLetter{k.deadLetterOf(now, msgs[0], r.err)})
			msgs[0].done = true
			f.pop(l, 1)
			l.chunk = 0
		} else {
			// The broker reports one error for the request: halve until
			// the culprit is alone.
			l.chunk = (len(msgs) + 1) / 2
		}
		k.countError(r.err)
	case classPerTopic:
		dead := make([]DeadLetter, 0, len(msgs))
		for _, o := range msgs {
			dead = append(dead, k.deadLetterOf(now, o, r.err))
			o.done = true
		}
		k.deadLetter(dead)
		f.pop(l, len(msgs))
		k.countError(r.err)
	default:
		k.countError(r.err)
		k.stats.retries.Add(1)
		if errors.Is(r.err, kafka.UnknownTopicOrPartition) {
			k.topicsReady.Store(false) // deleted? create it again
			f.parts[l.topic] = 0
		}
		// Whatever failed, the leader may have moved: the next attempt
		// asks the cluster where the partition is now.
		k.refreshMetadata()
		f.laneFailed(l, r.err, now)
	}
}

// pop removes the first n (done) messages of l's queue.
func (f *forwarder) pop(l *lane, n int) {
	for range n {
		l.q.PopFront()
	}
	l.stat.queued.Add(int64(-n))
	if l.q.Len() > 0 {
		l.stat.oldest.Store((*l.q.Front()).evTime.UnixNano())
	} else {
		l.stat.oldest.Store(0)
	}
}

// advance acknowledges the spool up to the first message that is not done.
func (f *forwarder) advance() {
	k := f.k
	var (
		last  spool.Pos
		moved int
	)
	for f.window.Len() > 0 {
		w := *f.window.Front()
		for f.head < len(w) && w[f.head].done {
			f.winMsgs--
			f.winSize -= w[f.head].size
			last = w[f.head].pos
			f.head++
			moved++
		}
		if f.head < len(w) {
			break
		}
		clear(w) // let the GC have the batch
		f.window.PopFront()
		f.head = 0
	}
	if moved == 0 {
		return
	}
	if err := k.spool.Ack(last); err != nil {
		k.log.Error("kafka: spool ack failed (the messages may be sent again after a restart)", "err", err)
	}
	k.stats.acked.Add(int64(moved))
	select {
	case k.acked <- struct{}{}:
	default:
	}
}

// laneFailed records a failed request of l and schedules the retry.
func (f *forwarder) laneFailed(l *lane, err error, now time.Time) {
	k := f.k
	if l.since.IsZero() {
		l.since, l.delay, l.retries = now, laneRetryMin, 0
		l.stat.failing.Store(true)
	}
	if l.warned && errKind(err) != errKind(l.err) {
		k.log.Warn("kafka: partition still failing, for another reason", "sink", k.name, "topic", l.name,
			"partition", l.partition, "broker", k.leaderOf(l.name, l.partition), "err", err, "retries", l.retries)
	}
	l.err = err
	l.retries++
	l.next = now.Add(l.delay)
	l.delay = min(2*l.delay, laneRetryMax)
	if !l.warned {
		k.log.Debug("kafka: produce failed; retrying", "sink", k.name, "topic", l.name, "partition", l.partition,
			"err", err, "retries", l.retries)
	}
	f.watch(now)
}

// laneRecovered ends a run of failures of l.
func (f *forwarder) laneRecovered(l *lane, now time.Time) {
	k := f.k
	if l.since.IsZero() {
		return
	}
	if l.warned {
		k.log.Info("kafka: partition recovered", "sink", k.name, "topic", l.name, "partition", l.partition,
			"broker", k.leaderOf(l.name, l.partition), "after", now.Sub(l.since).Round(time.Millisecond),
			"retries", l.retries, "queued", l.q.Len())
	}
	l.since, l.err, l.retries, l.warned, l.next = time.Time{}, nil, 0, false, time.Time{}
	l.stat.failing.Store(false)
	f.watch(now)
}

// watch warns about every partition failing for failingAfter, and reports
// the sink failing while one is (or while the topics cannot be set up),
// and resumed when none is.
func (f *forwarder) watch(now time.Time) {
	k := f.k
	var failing []string
	for t := range f.lanes {
		for _, l := range f.lanes[t] {
			if l == nil || l.since.IsZero() || now.Sub(l.since) < failingAfter {
				continue
			}
			if !l.warned {
				l.warned = true
				k.log.Warn("kafka: partition failing; its messages wait in the spool, the other partitions keep flowing",
					"sink", k.name, "topic", l.name, "partition", l.partition, "broker", k.leaderOf(l.name, l.partition),
					"err", l.err, "since", l.since.Format(time.RFC3339Nano), "queued", l.q.Len())
			}
			failing = append(failing, fmt.Sprintf("%s/%d", l.name, l.partition))
		}
	}
	switch {
	case len(failing) > 0 && !f.failing:
		f.failing = true
		if !f.rs.failing {
			k.stats.failing.Store(true)
			k.onState("state", fmt.Sprintf("kafka delivery failing for partitions %s: their events are spooled",
				strings.Join(failing, ",")), int(k.spool.Stats().Records))
		}
	case len(failing) == 0 && f.failing:
		f.failing = false
		if !f.rs.failing {
			k.stats.failing.Store(false)
			k.onState("state", "kafka delivery resumed on every partition", int(k.spool.Stats().Records))
		}
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

// decode appends the spool records, as Kafka messages, to out. The messages
// alias the records' data, which the spool hands over for good.
func (k *Kafka) decode(out []outMsg, recs []spool.Record) []outMsg {
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
