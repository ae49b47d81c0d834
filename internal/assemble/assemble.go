// Package assemble groups audit records into events: all records that share
// an audit serial, in order, whatever order and interleaving they arrived in.
// It builds on go-libaudit's Reassembler and adds what a loss-accounting
// pipeline needs: the exact ranges of audit sequence numbers never seen.
package assemble

import (
	"log/slog"
	"sync/atomic"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/auparse"
)

// Options configure an Assembler.
type Options struct {
	// MaxInFlight is how many incomplete events are held at once; past it
	// the oldest is emitted as it is. Default 1024.
	MaxInFlight int
	// Timeout is how long an event waits for its end (EOE) before it is
	// emitted as it is. Default 2s (auditd's own is 2s too).
	Timeout time.Duration
	// Logger receives malformed-record warnings (rate-limited by count).
	Logger *slog.Logger
}

// Gap is a run of audit sequence numbers that no record carried: events the
// kernel lost, or records dropped on the way.
type Gap struct {
	From, To uint32 // inclusive
}

// Count is the number of missing sequence numbers.
func (g Gap) Count() uint64 { return uint64(g.To-g.From) + 1 }

// Stats are the assembler's counters.
type Stats struct {
	Records   atomic.Uint64 // records pushed
	Malformed atomic.Uint64 // records that could not be parsed
	Events    atomic.Uint64 // events emitted
	Missing   atomic.Uint64 // sequence numbers in gaps
}

// Assembler turns records into events. It is not safe for concurrent use:
// one goroutine pushes and maintains it.
type Assembler struct {
	r       *libaudit.Reassembler
	emit    func(msgs []*auparse.AuditMessage)
	gap     func(Gap)
	next    uint32 // the sequence number expected next; 0 before the first
	stats   Stats
	log     *slog.Logger
	logged  uint64
	pending []*auparse.AuditMessage
}

// New returns an Assembler that calls emit for each complete event (msgs is
// not retained by the Assembler after emit returns) and gap for each run of
// missing sequence numbers, both from the goroutine that calls Push or
// Flush.
func New(opts Options, emit func(msgs []*auparse.AuditMessage), gap func(Gap)) *Assembler {
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 1024
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Assembler{emit: emit, gap: gap, log: opts.Logger}
	a.r, _ = libaudit.NewReassembler(opts.MaxInFlight, opts.Timeout, (*stream)(a))
	return a
}

// Stats returns the counters.
func (a *Assembler) Stats() *Stats { return &a.stats }

// Push adds one record. A record that cannot be parsed is counted and
// logged (the first few), never fatal: the kernel's text is untrusted.
func (a *Assembler) Push(typ uint16, data []byte) {
	a.stats.Records.Add(1)
	msg, err := auparse.Parse(auparse.AuditMessageType(typ), string(data))
	if err != nil {
		a.stats.Malformed.Add(1)
		if a.logged < 10 {
			a.logged++
			a.log.Warn("malformed audit record skipped", "type", typ, "error", err, "bytes", len(data))
		}
		return
	}
	a.r.PushMessage(msg)
}

// Flush emits events that have timed out; call it periodically (every
// ~250ms) so an event whose EOE never comes is not held forever.
func (a *Assembler) Flush() { _ = a.r.Maintain() }

// Close emits everything still held.
func (a *Assembler) Close() { _ = a.r.Close() }

// stream receives the Reassembler's callbacks.
type stream Assembler

func (s *stream) ReassemblyComplete(msgs []*auparse.AuditMessage) {
	a := (*Assembler)(s)
	if len(msgs) == 0 {
		return
	}
	seq := msgs[0].Sequence
	if seq != 0 {
		switch {
		case a.next == 0:
		case seq > a.next && seq-a.next < 1<<31:
			g := Gap{From: a.next, To: seq - 1}
			a.stats.Missing.Add(g.Count())
			if a.gap != nil {
				a.gap(g)
			}
		}
		if a.next == 0 || seq >= a.next || a.next-seq > 1<<31 {
			a.next = seq + 1
		}
	}
	a.stats.Events.Add(1)
	a.emit(msgs)
}

// EventsLost is go-libaudit's own gap count; it has no range and miscounts
// late events, so the Assembler computes gaps itself.
func (s *stream) EventsLost(int) {}
