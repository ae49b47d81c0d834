// Package pipeline runs auditns's stages: the kernel reader goroutine feeds
// a bounded queue; one processing goroutine assembles records into events,
// enriches and encodes them and hands them to the sink in batches. What is
// lost on the way (kernel lost counter, sequence gaps, queue overflow,
// sink drops) is written into the stream as events of kind "loss", counted
// in events, each lost event once (see loss.go and docs/LOSS.md).
package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"

	"github.com/auditns/auditns/internal/assemble"
	"github.com/auditns/auditns/internal/enrich"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/netlink"
	"github.com/auditns/auditns/internal/publish"
	"github.com/auditns/auditns/internal/record"
)

// Defaults of Options (and of the configuration keys audit.queue_size and
// audit.status_interval).
const (
	// DefaultQueueSize batches of up to 128 records hold about 32,000
	// records, some 10 MiB at most: a burst of several seconds at a busy
	// host's rate, without the memory of a deeper queue.
	DefaultQueueSize      = 256
	DefaultStatusInterval = time.Second
)

// Options configure a Pipeline.
type Options struct {
	Conn     *netlink.Conn
	Enricher *enrich.Enricher
	Sink     publish.Sink
	Assemble assemble.Options
	// QueueSize is how many record batches wait between the reader and
	// the processing goroutine; default DefaultQueueSize.
	QueueSize int
	// StatusInterval is how often the kernel's lost counter is polled;
	// default DefaultStatusInterval.
	StatusInterval time.Duration
	// Key chooses the Kafka message key: "host" (default), "pidns",
	// "event" or "none".
	Key string
	// Unicast says auditns is the kernel's audit daemon: a sequence gap
	// is then a record the kernel counted in its lost counter too.
	Unicast bool
	// StateFile, if set, is where the run's loss accounting state is kept
	// after every write to the sink, so that a run after a kill -9 counts
	// what this one had read and not written.
	StateFile string
	HostName  string
	BootID    string
	Kernel    string
	Logger    *slog.Logger
	// OnEvent, if set, sees every event after it is encoded (metrics).
	OnEvent func(ev *event.Event)
	// OnDrained, if set, is called once in a clean stop, when the
	// kernel's audit queue has been read to its end, on a goroutine of
	// its own while events are still processed. What it makes the kernel
	// write (the records of auditns's own BPF programs unloaded) is then
	// read to its end too, before auditns stops being the audit daemon.
	OnDrained func()
}

// Stats are the pipeline's counters, safe to read while it runs.
type Stats struct {
	Reader     netlink.ReaderStats
	Events     atomic.Uint64 // events written to the sink
	Registry   atomic.Uint64 // namespace registry records written
	Loss       atomic.Uint64 // loss events written
	SinkErrors atomic.Uint64
	SinkDrops  atomic.Uint64
	KernelLost atomic.Uint64 // growth of the kernel's lost counter since start
	Backlog    atomic.Uint64 // kernel backlog at the last poll
	Gaps       atomic.Uint64 // sequence numbers missing
	// LossOwed is the count of lost events not yet in the stream (loss
	// events the sink could not take yet).
	LossOwed atomic.Uint64
	// ReaderDown is set when the kernel reader has stopped (shutdown, or
	// the connection failed): the health check reports it.
	ReaderDown atomic.Bool
}

// Pipeline moves events from the kernel to a sink.
type Pipeline struct {
	o     Options
	log   *slog.Logger
	stats Stats
	asm   *assemble.Assembler

	pendMu  sync.Mutex
	pending []publish.Message // registry records waiting for the next write
	reports []report          // loss/state reports from other goroutines
	// hasPending is set while pending or reports hold something: the
	// processing goroutine looks at it for every event, and takes the
	// lock only when it is set.
	hasPending atomic.Bool
	events     uint64 // events queued since Stats.Events was last added to

	batch   []publish.Message
	arena   []byte
	ev      event.Event
	enc     event.Encoder
	lossSeq uint64
	started int64

	hostKey []byte // the "host" message key, made once

	lastLost   uint32
	haveLost   bool
	lastErrLog time.Time

	ledger    ledger
	drops     []netlink.Dropped
	dropRecs  []assemble.DroppedRecord
	lossBatch [1]publish.Message
	lossArena []byte
	sinkFault faultState
	state     *stateFile
	stateBuf  runState
	openBuf   []uint32
	resumed   bool
	// batchSeqs are the sequence numbers of the batch's events; doubt,
	// while set, is the batch about to be written (runState.Doubt).
	batchSeqs []uint32
	doubt     *doubt
	doubtBuf  doubt
	// stoppedCleanly: Run ended by itself; the state stays marked clean.
	stoppedCleanly bool
}

// New returns a Pipeline; call Run.
func New(o Options) *Pipeline {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = DefaultStatusInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	p := &Pipeline{o: o, log: o.Logger, started: time.Now().UnixNano(), hostKey: []byte(o.HostName)}
	p.ledger.init(o.Assemble.Timeout, o.StatusInterval)
	p.sinkFault.p = p
	ao := o.Assemble
	ao.OnPartial = p.onPartial
	ao.OnDropped = p.onDropped
	p.asm = assemble.New(ao, p.onEvent, p.onGap)
	if o.StateFile != "" {
		p.resume()
		p.state = &stateFile{path: o.StateFile}
		if f, err := os.OpenFile(o.StateFile, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
			// Written when it can be (persist logs the failure).
			p.state.err = err
			p.state.failing.Store(&err)
			p.log.Error("cannot open the loss accounting state; a kill -9 would go uncounted", "file", o.StateFile, "error", err)
		} else {
			p.state.f = f
		}
	}
	return p
}

// Stats returns the live counters.
func (p *Pipeline) Stats() *Stats { return &p.stats }

// Assembler exposes the assembler's counters.
func (p *Pipeline) Assembler() *assemble.Assembler { return p.asm }

// Publish queues a message produced outside the event flow (a namespace
// registry record); it is written before the next event, so a record always
// precedes the first event that carries its serial. Safe from any
// goroutine.
func (p *Pipeline) Publish(m publish.Message) {
	p.pendMu.Lock()
	p.pending = append(p.pending, m)
	p.hasPending.Store(true)
	p.pendMu.Unlock()
}

type report struct {
	kind, reason, msg string
	count             int
}

// Report queues a loss or state event from another goroutine (the Kafka
// sink's delivery loop: dead-lettered messages, delivery stopped or
// resumed). kind is event.KindLoss or event.KindState.
func (p *Pipeline) Report(kind, reason, msg string, count int) {
	p.pendMu.Lock()
	p.reports = append(p.reports, report{kind, reason, msg, count})
	p.hasPending.Store(true)
	p.pendMu.Unlock()
}

// Run reads, processes and publishes until ctx is done, then drains what
// was read and returns. It does not close the sink or the connection.
func (p *Pipeline) Run(ctx context.Context) error {
	queue := make(chan []netlink.Record, p.o.QueueSize)
	// The reader outlives ctx by the drain of a clean stop.
	readCtx, stopReader := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReader()
	readErr := make(chan error, 1)
	go func() {
		err := p.o.Conn.Run(readCtx, queue, &p.stats.Reader)
		p.stats.ReaderDown.Store(true)
		if err != nil && readCtx.Err() == nil {
			p.log.Error("kernel audit connection failed", "error", err)
		}
		close(queue)
		readErr <- err
	}()

	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	// The kernel's status is asked on its own goroutine: go-libaudit's
	// reply wait sleeps in 50 ms steps, which must not stall the events.
	statuses := make(chan *libaudit.AuditStatus, 1)
	go p.pollStatus(readCtx, statuses)

	stopping := ctx.Done()
	var drainedC chan bool
	var drainStart time.Time
	drained := false
	for {
		select {
		case <-stopping:
			stopping = nil
			// A clean stop: no rule makes new events, and what the
			// kernel queued is read to its end, so that nothing it
			// numbered is left unread and the records events still
			// await are known to be cut.
			if ok, err := p.o.Conn.RemoveRules(); err != nil {
				p.log.Error("stopping", "error", err)
				stopReader()
			} else if !ok {
				stopReader()
			} else {
				drainedC = make(chan bool, 1)
				drainStart = time.Now()
				go p.drain(queue, drainedC)
			}
		case drained = <-drainedC:
			drainedC = nil
			if drained {
				p.log.Info("read the kernel's audit queue to its end", "took", time.Since(drainStart).Round(time.Millisecond))
			} else {
				p.log.Warn("stopping before the kernel's audit queue was read to its end", "waited", drainTimeout)
			}
			stopReader()
		case batch, ok := <-queue:
			if !ok {
				// Reader finished: flush what is held and report, the
				// kernel's lost counter read once more.
				if drained {
					p.asm.CloseDrained()
				} else {
					p.asm.Close()
				}
				if st, err := p.o.Conn.Status(); err == nil {
					p.observeStatus(st)
				}
				p.ledger.settleAll()
				p.flush()
				p.writeLoss(true)
				p.persist(true)
				err := <-readErr
				if err != nil && ctx.Err() == nil {
					return fmt.Errorf("kernel connection: %w", err)
				}
				return nil
			}
			// One clock reading per batch: the assembler's timeouts and
			// the enricher's name caches count from it.
			now := time.Now()
			p.o.Enricher.SetClock(now)
			p.asm.FlushAt(now)
			for _, r := range batch {
				if r.Type == netlink.TypeDropped {
					p.dropRecords(r.Data)
					continue
				}
				p.asm.Push(r.Type, r.Data)
			}
			// Write when the queue is momentarily empty or the batch is
			// big: batches grow under load and stay small when idle.
			if len(queue) == 0 || len(p.batch) >= 512 {
				p.flush()
			}
		case <-tick.C:
			now := time.Now()
			p.o.Enricher.SetClock(now)
			p.asm.FlushAt(now)
			if len(queue) == 0 {
				// Only when caught up: records still queued may show
				// that the kernel cut records of events that arrived.
				p.ledger.settle(now)
			}
			p.flush()
			p.writeLoss(false)
			if p.state != nil && p.state.err != nil {
				p.persist(false) // idle: learn when it can be written again
			}
		case st := <-statuses:
			p.observeStatus(st)
			p.flush()
		}
	}
}

// drainTimeout bounds the drain of a clean stop: other processes' messages
// (user space, BPF, rules that were not auditns's) may keep the kernel's
// queue from ever being empty.
const drainTimeout = 5 * time.Second

// drain reports true once the kernel's queue has been read to its end: its
// backlog empty, the reader's queue empty and nothing read, twice in a row
// 20 ms apart (a record the kernel was handing over is then read); false
// after drainTimeout. It asks the kernel on its own goroutine, as
// pollStatus does.
func (p *Pipeline) drain(queue chan []netlink.Record, done chan<- bool) {
	deadline := time.Now().Add(drainTimeout)
	last, idle := p.stats.Reader.Records.Load(), 0
	hook := p.o.OnDrained
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		st, err := p.o.Conn.Status()
		n := p.stats.Reader.Records.Load()
		if err == nil && st.Backlog == 0 && len(queue) == 0 && n == last {
			if idle++; idle == 2 && hook != nil {
				hook()
				hook, idle = nil, 0
				n = p.stats.Reader.Records.Load()
			} else if idle == 2 {
				done <- true
				return
			}
		} else {
			idle = 0
		}
		last = n
	}
	done <- false
}

// onEvent is the assembler's callback: enrich, encode, queue. The records
// are the assembler's until this returns; the encoded event is a copy.
func (p *Pipeline) onEvent(recs []record.Record) {
	ev := &p.ev
	if err := p.o.Enricher.Enrich(recs, ev); err != nil {
		p.log.Warn("event not enriched", "error", err)
		return
	}
	p.takePending()
	p.add(ev, publish.TopicEvents)
	p.events++
	if ev.Event.Sequence != 0 {
		p.batchSeqs = append(p.batchSeqs, ev.Event.Sequence)
	}
}

func (p *Pipeline) takePending() {
	if !p.hasPending.Load() {
		return
	}
	p.pendMu.Lock()
	p.hasPending.Store(false)
	reports := p.reports
	p.reports = nil
	p.pendMu.Unlock()
	for _, r := range reports {
		if r.kind == event.KindLoss {
			p.ledger.owe(r.reason, uint64(r.count), r.msg)
		} else {
			p.State(r.reason, r.msg)
		}
	}
	p.pendMu.Lock()
	if len(p.pending) > 0 {
		for _, m := range p.pending {
			start := len(p.arena)
			p.arena = append(p.arena, m.Value...)
			m.Value = p.arena[start:len(p.arena):len(p.arena)]
			m.Reserved = true
			p.batch = append(p.batch, m)
			p.stats.Registry.Add(1)
		}
		p.pending = p.pending[:0]
	}
	p.pendMu.Unlock()
}

func (p *Pipeline) add(ev *event.Event, topic publish.Topic) {
	start := len(p.arena)
	p.arena = p.enc.AppendJSON(p.arena, ev)
	// The message is written in place, field by field: a composite
	// literal is built on the stack and copied, which stalls on store
	// forwarding and, while the collector marks, costs a bulk write
	// barrier over the whole struct.
	n := len(p.batch)
	if n == cap(p.batch) {
		p.batch = append(p.batch, publish.Message{})
	} else {
		p.batch = p.batch[:n+1]
	}
	m := &p.batch[n]
	m.Topic = topic
	m.Value = p.arena[start:len(p.arena):len(p.arena)]
	m.Key = p.key(ev) // after Value: a key may be appended to the arena
	m.ID = ev.Event.ID
	m.Schema = event.Schema
	m.BootID = p.o.BootID
	m.Time = ev.Event.Created
	if p.o.OnEvent != nil {
		p.o.OnEvent(ev)
	}
}

func (p *Pipeline) key(ev *event.Event) []byte {
	// Keys that vary per event are written into the batch arena, like the
	// value, rather than allocated one by one.
	start := len(p.arena)
	switch p.o.Key {
	case "none":
		return nil
	case "event":
		p.arena = append(p.arena, ev.Event.ID...)
		return p.arena[start:len(p.arena):len(p.arena)]
	case "pidns":
		if ev.NS != nil && ev.NS.PID.Serial != 0 {
			p.arena = append(p.arena, p.o.BootID...)
			p.arena = append(p.arena, '/')
			p.arena = strconv.AppendUint(p.arena, ev.NS.PID.Serial, 10)
			return p.arena[start:len(p.arena):len(p.arena)]
		}
	}
	return p.hostKey
}

// flush writes the batch. The arena is reused: sinks do not retain what
// they are given.
func (p *Pipeline) flush() {
	p.takePending()
	if p.events > 0 {
		p.stats.Events.Add(p.events)
		p.events = 0
	}
	if len(p.batch) == 0 {
		return
	}
	// The state is written first: it takes the batch for written. Killed
	// between the two writes, the next run would count a batch too few
	// rather than numbers that are in the output; with a file sink the
	// state names the batch and where it goes, and the next run looks.
	p.doubt = p.doubtOf(p.batchSeqs)
	p.persist(false)
	p.doubt = nil
	p.batchSeqs = p.batchSeqs[:0]
	dropped, err := p.o.Sink.Write(p.batch)
	if f, ok := p.o.Sink.(interface{ Flush() error }); ok && p.state != nil {
		f.Flush() // a failure is the sink's to report (Write's error)
	}
	p.sinkResult(dropped, err, len(p.batch))
	clear(p.batch)
	p.batch = p.batch[:0]
	if cap(p.arena) > 8<<20 {
		p.arena = nil // a burst grew it; give the memory back
	} else {
		p.arena = p.arena[:0]
	}
}

// sinkResult accounts for what a sink Write did not take: the count is owed
// to the stream, and the sink is degraded until a Write takes everything.
func (p *Pipeline) sinkResult(dropped int, err error, n int) {
	if err != nil {
		p.stats.SinkErrors.Add(1)
		if time.Since(p.lastErrLog) > 10*time.Second {
			p.lastErrLog = time.Now()
			p.log.Error("sink write failed", "sink", p.o.Sink.Name(), "error", err, "messages", n, "dropped", dropped)
		}
	}
	if dropped > 0 {
		p.stats.SinkDrops.Add(uint64(dropped))
		reason := dropReason(err)
		p.ledger.owe(reason, uint64(dropped), "")
		p.sinkFault.set(fmt.Sprintf("sink %s dropped %d events (%s)", p.o.Sink.Name(), dropped, reason), err)
	} else if err == nil {
		p.sinkFault.clear()
	}
}

// dropRecords tells the assembler which records the reader dropped.
func (p *Pipeline) dropRecords(marker []byte) {
	p.drops = netlink.DroppedRecords(marker, p.drops[:0])
	p.dropRecs = p.dropRecs[:0]
	for _, d := range p.drops {
		p.dropRecs = append(p.dropRecs, assemble.DroppedRecord{Seq: d.Seq, Type: d.Type, Items: d.Items})
	}
	p.asm.Drop(p.dropRecs)
}

// onGap owes audit sequence numbers that never arrived.
func (p *Pipeline) onGap(g assemble.Gap) {
	p.stats.Gaps.Add(g.Count())
	// Numbers before the first this run read, after a run that was killed,
	// were lost with it (its socket, its queue) or while no daemon read:
	// the kernel did not count them.
	first, ok := p.asm.First()
	kernel := p.o.Unicast && !(p.resumed && (!ok || g.To-first >= 1<<31))
	p.ledger.gap(g, kernel)
}

// onPartial: records the kernel cut from events that arrived; its lost
// counter counts them, but no event is missing.
func (p *Pipeline) onPartial(n int) { p.ledger.credit(uint64(n)) }

// onDropped owes events whose records the reader dropped.
func (p *Pipeline) onDropped(n int) { p.ledger.owe(reasonQueueFull, uint64(n), "") }

// pollStatus reads the kernel's lost counter and backlog every
// StatusInterval until ctx ends, handing each answer to out (dropping it if
// the previous one was not taken yet: only the latest matters).
func (p *Pipeline) pollStatus(ctx context.Context, out chan<- *libaudit.AuditStatus) {
	t := time.NewTicker(p.o.StatusInterval)
	defer t.Stop()
	for {
		st, err := p.o.Conn.Status()
		if err != nil {
			p.log.Debug("kernel audit status", "error", err)
		} else {
			select {
			case out <- st:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Pipeline) observeStatus(st *libaudit.AuditStatus) {
	p.stats.Backlog.Store(uint64(st.Backlog))
	if p.haveLost && st.Lost != p.lastLost {
		n := st.Lost - p.lastLost // the counter wraps at 2^32
		p.stats.KernelLost.Add(uint64(n))
		p.ledger.kernelLost(uint64(n), st.Lost, time.Now())
	}
	p.lastLost, p.haveLost = st.Lost, true
}

// lossEvent builds an event of kind "loss".
func (p *Pipeline) lossEvent(l *event.Loss, msg string) *event.Event {
	p.lossSeq++
	id := fmt.Sprintf("%s:auditns-loss-%d-%d", p.o.BootID, p.started, p.lossSeq)
	if l.Reason == reasonGap && l.From != 0 {
		// Deterministic, so duplicates of the same gap de-duplicate.
		id = fmt.Sprintf("%s:gap-%d-%d", p.o.BootID, l.From, l.To)
	}
	return &event.Event{
		Schema:  event.Schema,
		Event:   event.Meta{ID: id, Created: time.Now(), Kind: event.KindLoss, Action: l.Reason, Outcome: "failure"},
		Host:    event.Host{Name: p.o.HostName, Boot: event.Boot{ID: p.o.BootID}, Kernel: p.o.Kernel},
		Message: msg,
		Loss:    l,
	}
}

// State queues an event of kind "state" about auditns itself (start, stop).
func (p *Pipeline) State(action, msg string) {
	ev := &event.Event{
		Schema:  event.Schema,
		Event:   event.Meta{ID: fmt.Sprintf("%s:auditns-state-%d-%s", p.o.BootID, time.Now().UnixNano(), action), Created: time.Now(), Kind: event.KindState, Action: action, Outcome: "success"},
		Host:    event.Host{Name: p.o.HostName, Boot: event.Boot{ID: p.o.BootID}, Kernel: p.o.Kernel},
		Message: msg,
	}
	p.add(ev, publish.TopicEvents)
}

// Flush writes whatever is queued (for State events outside Run).
func (p *Pipeline) Flush() { p.flush() }
