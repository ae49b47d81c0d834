package pipeline

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/auditns/auditns/internal/assemble"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/publish"
)

// Loss reasons, event.loss.reason.
const (
	reasonGap        = "sequence_gap"
	reasonQueueFull  = "queue_full"
	reasonKernel     = "kernel_lost"
	reasonSpoolFull  = "spool_full"
	reasonDiskFull   = "disk_full"
	reasonSinkError  = "sink_error"
	reasonBufferFull = "buffer_full"
)

var reasonMessages = map[string]string{
	reasonGap:        "audit sequence numbers missing",
	reasonQueueFull:  "events dropped: pipeline queue full",
	reasonKernel:     "the kernel lost audit events",
	reasonSpoolFull:  "the sink dropped events (spool full)",
	reasonDiskFull:   "the sink dropped events (no space left on device)",
	reasonSinkError:  "the sink dropped events (write failed)",
	reasonBufferFull: "the sink dropped events (output buffer full)",
}

// lossInterval is how often owed counts are written as loss events: it
// bounds the loss events a long outage adds to what the sink must keep.
const lossInterval = time.Second

// maxGapRanges bounds the gap ranges held for the stream; past it the
// oldest are owed as a count without their range.
const maxGapRanges = 4096

// ledger holds the lost events not yet written into the stream, by reason.
// A count leaves the ledger only when the sink has taken the loss event that
// carries it; until then it carries forward, and later losses add to it.
//
// The kernel's lost counter counts records, not events. Its growth is held
// for settleDelay before it is owed, and two kinds of records are taken off
// it first (credits): records the kernel cut from events that did arrive
// (assemble's OnPartial), and, when auditns is the audit daemon, one record
// per sequence number missing, which the kernel counted and the gap counts
// already. What remains is events the kernel dropped before numbering them.
type ledger struct {
	owed     map[string]uint64
	msgs     map[string]string // the latest message of a reported reason
	order    []string          // reasons in the order first owed
	gaps     []assemble.Gap
	lost     []dated // kernel counter growth, not yet settled
	credits  []dated
	counter  uint32 // the kernel's counter at its last growth
	delay    time.Duration
	lastEmit time.Time
}

type dated struct {
	at time.Time
	n  uint64
}

func (l *ledger) init(timeout, statusInterval time.Duration) {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if statusInterval <= 0 {
		statusInterval = time.Second
	}
	// A cut record is counted at most a window (plus one for a due EOE)
	// after the kernel counted it; the counter is read every interval.
	l.delay = 2*timeout + statusInterval + time.Second
	l.owed = map[string]uint64{}
	l.msgs = map[string]string{}
}

func (l *ledger) owe(reason string, n uint64, msg string) {
	if n == 0 && msg == "" {
		return
	}
	if _, ok := l.owed[reason]; !ok {
		l.order = append(l.order, reason)
	}
	l.owed[reason] += n
	if msg != "" {
		l.msgs[reason] = msg
	}
}

func (l *ledger) gap(g assemble.Gap, kernelCounted bool) {
	if len(l.gaps) >= maxGapRanges {
		l.owe(reasonGap, l.gaps[0].Count(), "")
		l.gaps = l.gaps[1:]
	}
	l.gaps = append(l.gaps, g)
	if kernelCounted {
		l.credit(g.Count())
	}
}

func (l *ledger) credit(n uint64) {
	l.credits = append(l.credits, dated{time.Now(), n})
}

func (l *ledger) kernelLost(n uint64, counter uint32, now time.Time) {
	l.lost = append(l.lost, dated{now, n})
	l.counter = counter
}

// settle owes the kernel's growth older than the delay, less the credits.
func (l *ledger) settle(now time.Time) {
	for len(l.lost) > 0 && now.Sub(l.lost[0].at) >= l.delay {
		l.settleOne()
	}
	// A credit that no growth matched within twice the delay is not the
	// kernel's (a record cut on the way to a multicast reader): forget it.
	for len(l.credits) > 0 && now.Sub(l.credits[0].at) > 2*l.delay {
		l.credits = l.credits[1:]
	}
}

func (l *ledger) settleAll() {
	for len(l.lost) > 0 {
		l.settleOne()
	}
	// Credits that came after their growth was owed take it back while it
	// is not written yet.
	for len(l.credits) > 0 && l.owed[reasonKernel] > 0 {
		c := &l.credits[0]
		d := min(c.n, l.owed[reasonKernel])
		l.owed[reasonKernel] -= d
		c.n -= d
		if c.n == 0 {
			l.credits = l.credits[1:]
		}
	}
}

func (l *ledger) settleOne() {
	n := l.lost[0].n
	l.lost = l.lost[1:]
	for n > 0 && len(l.credits) > 0 {
		c := &l.credits[0]
		d := min(n, c.n)
		n -= d
		c.n -= d
		if c.n == 0 {
			l.credits = l.credits[1:]
		}
	}
	if n > 0 {
		l.owe(reasonKernel, n, "")
	}
}

// total is what the ledger owes the stream.
func (l *ledger) total() uint64 {
	var n uint64
	for _, c := range l.owed {
		n += c
	}
	for _, g := range l.gaps {
		n += g.Count()
	}
	return n
}

// writeLoss writes what the ledger owes as loss events, each in a Write of
// its own so that a loss event the sink does not take keeps its count.
// Unless final, at most once per lossInterval.
func (p *Pipeline) writeLoss(final bool) {
	l := &p.ledger
	if !final && time.Since(l.lastEmit) < lossInterval {
		return
	}
	if len(l.gaps) == 0 && len(l.order) == 0 {
		return
	}
	l.lastEmit = time.Now()
	if p.state != nil {
		// The sinks write what they are given at once: the state is
		// written first, as if the loss events below were all taken, so
		// that a kill -9 between the writes loses their counts rather
		// than counts them twice (the next run owing them again). What
		// is not taken is in the state written at the end.
		n := len(l.gaps)
		if !final {
			n = min(n, 256)
		}
		gaps, owed := l.gaps, l.owed
		l.gaps, l.owed = l.gaps[n:], nil
		p.persist(false)
		l.gaps, l.owed = gaps, owed
	}
	written := 0
	for len(l.gaps) > 0 {
		g := l.gaps[0]
		if !p.writeLossEvent(&event.Loss{Reason: reasonGap, Count: g.Count(), From: g.From, To: g.To}, "") {
			break
		}
		l.gaps = l.gaps[1:]
		if written++; written >= 256 && !final {
			break
		}
	}
	keep := l.order[:0]
	for _, reason := range l.order {
		n := l.owed[reason]
		msg := l.msgs[reason]
		loss := &event.Loss{Reason: reason, Count: n}
		if reason == reasonKernel {
			loss.KernelLost = l.counter
		}
		if !p.writeLossEvent(loss, msg) {
			keep = append(keep, reason)
			continue
		}
		delete(l.owed, reason)
		delete(l.msgs, reason)
	}
	l.order = keep
	if len(l.gaps) == 0 {
		l.gaps = nil
	}
	p.stats.LossOwed.Store(l.total())
	p.persist(false)
}

// writeLossEvent writes one loss event; it reports whether the sink took
// it.
func (p *Pipeline) writeLossEvent(loss *event.Loss, msg string) bool {
	if msg == "" {
		msg = reasonMessages[loss.Reason]
	}
	ev := p.lossEvent(loss, msg)
	p.lossArena = p.enc.AppendJSON(p.lossArena[:0], ev)
	m := &p.lossBatch[0]
	*m = publish.Message{Topic: publish.TopicEvents, Value: p.lossArena, ID: ev.Event.ID,
		Schema: event.Schema, BootID: p.o.BootID, Time: ev.Event.Created, Reserved: true}
	switch p.o.Key {
	case "none":
	case "event":
		m.Key = []byte(ev.Event.ID)
	default:
		m.Key = p.hostKey
	}
	dropped, err := p.o.Sink.Write(p.lossBatch[:])
	*m = publish.Message{}
	if dropped > 0 {
		p.sinkFault.set("the sink did not take a loss event; its count carries forward", err)
		return false
	}
	// Taken: an error with nothing dropped is a sink that buffers what it
	// cannot write yet.
	p.stats.Loss.Add(1)
	if p.o.OnEvent != nil {
		p.o.OnEvent(ev)
	}
	p.log.Warn(msg, "reason", loss.Reason, "count", loss.Count, "from", loss.From, "to", loss.To)
	return true
}

func dropReason(err error) string {
	switch {
	case err == nil:
		return reasonSpoolFull
	case errors.Is(err, syscall.ENOSPC):
		return reasonDiskFull
	case errors.Is(err, publish.ErrBufferFull):
		return reasonBufferFull
	}
	return reasonSinkError
}

// faultState is a fault of the sink while it lasts: set by a Write that
// failed or dropped, cleared by one that took everything. A change is one
// log line; a fault that comes and goes (a disk freed by deliveries and
// filled again) is logged again after 10 s at the earliest.
type faultState struct {
	mu     sync.Mutex
	msg    string
	since  time.Time
	logged time.Time // when the last "degraded" line was logged
	told   bool      // the current fault was logged
	p      *Pipeline
}

func (f *faultState) set(msg string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.msg == "" {
		f.since = time.Now()
		f.told = false
		if f.p != nil && time.Since(f.logged) > 10*time.Second {
			f.p.log.Error("sink degraded", "sink", f.p.o.Sink.Name(), "why", msg, "error", err)
			f.logged, f.told = time.Now(), true
		}
	}
	if err != nil {
		msg = fmt.Sprintf("%s: %v", msg, err)
	}
	f.msg = msg
}

func (f *faultState) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.msg != "" && f.told && f.p != nil {
		f.p.log.Info("sink recovered", "sink", f.p.o.Sink.Name(), "after", time.Since(f.since).Round(time.Millisecond))
	}
	f.msg = ""
}

// Health reports a sink fault while it lasts, and lost events the stream
// does not have yet.
func (p *Pipeline) Health() error {
	p.sinkFault.mu.Lock()
	msg := p.sinkFault.msg
	p.sinkFault.mu.Unlock()
	if msg != "" {
		return errors.New(msg)
	}
	return nil
}
