// Package assemble groups audit records into events: all records that share
// an audit serial, in order, whatever order and interleaving they arrived in,
// and reports the exact ranges of audit sequence numbers never seen.
//
// Its grouping rules are go-libaudit's Reassembler's (an event ends with its
// EOE, with a PROCTITLE record, or with its only record when that is a
// user-space or anomaly type; events leave in sequence order, when complete,
// when too many are in flight, or when they time out), on its own buffers:
// each record is copied once into a buffer that belongs to its event and is
// reused once the event has been emitted, and its fields are parsed once
// (package record) into spans of that copy.
//
// Its loss accounting is its own (see seqTracker): a sequence number is
// missing only when it has not arrived within the reassembly window after
// a later one, so an event that completes late is never a gap; numbers
// whose first records auditns itself dropped (Drop) are counted as dropped
// events, not gaps; and the records the kernel cut from the end of events
// that did arrive (a SYSCALL event without its PROCTITLE or EOE) are
// counted, so that the kernel's lost counter, which counts records, can be
// turned into the number of events missing.
package assemble

import (
	"bytes"
	"log/slog"
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/auditns/auditns/internal/record"
)

// Defaults of Options (and of the configuration keys audit.max_in_flight and
// audit.reassembly_timeout). auditd's own reassembly timeout is 2s too.
const (
	DefaultMaxInFlight = 1024
	DefaultTimeout     = 2 * time.Second
)

// Options configure an Assembler.
type Options struct {
	// MaxInFlight is how many incomplete events are held at once; past it
	// the oldest is emitted as it is. Default DefaultMaxInFlight.
	MaxInFlight int
	// Timeout is how long an event waits for its end (EOE) before it is
	// emitted as it is. Default DefaultTimeout.
	Timeout time.Duration
	// Logger receives malformed-record warnings (rate-limited by count).
	Logger *slog.Logger
	// OnPartial, if set, is told of records missing from events that were
	// emitted: a SYSCALL event's PROCTITLE or EOE that never came, when
	// auditns did not drop them itself. The kernel counts such records in
	// its lost counter although their event arrived.
	OnPartial func(records int)
	// OnDropped, if set, is told of events whose first records auditns's
	// reader dropped (Drop): they are lost, and their later records are
	// discarded.
	OnDropped func(events int)
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
	Dropped   atomic.Uint64 // events lost because auditns dropped their first records
	Discarded atomic.Uint64 // records of such events that came afterwards
	Partial   atomic.Uint64 // records the kernel cut from emitted events (OnPartial)
	// Late counts records of numbers already settled that started a new
	// event: a number reported missing arriving after all (never expected
	// within the window), or an event's stray record after it was emitted.
	Late atomic.Uint64
}

// Record types that matter to grouping.
const (
	typeSyscall     = uint16(auparse.AUDIT_SYSCALL)
	typeEOE         = uint16(auparse.AUDIT_EOE)
	typeProctitle   = uint16(auparse.AUDIT_PROCTITLE)
	typePath        = uint16(auparse.AUDIT_PATH)
	typeCWD         = uint16(auparse.AUDIT_CWD)
	lastDaemon      = uint16(auparse.AUDIT_LAST_DAEMON)         // and below: user-space and daemon messages, events of one record
	firstAnomLogins = uint16(auparse.AUDIT_ANOM_LOGIN_FAILURES) // and up: anomalies and responses, likewise
)

// Assembler turns records into events. It is not safe for concurrent use:
// one goroutine pushes and maintains it.
type Assembler struct {
	emit          func(recs []record.Record)
	gap           func(Gap)
	max           int
	timeout       int64
	track         seqTracker
	awaiting      queue[awaiting] // emitted SYSCALL events whose PROCTITLE or EOE is still due
	pendingCut    int             // records awaited for events that timed out
	droppedEvents queue[droppedEvent]
	report        func(from, to uint32)
	first         uint32 // the first number pushed
	pushed        bool
	opts          Options
	stats         Stats
	log           *slog.Logger
	logged        uint64

	now   func() time.Time
	base  time.Time
	clock int64 // the last clock reading, nanoseconds since base

	lastHdr []byte        // the last header parsed, ')' included
	lastH   record.Header // and what it parsed to

	events []*pending // in flight, in sequence order
	free   []*pending
	out    []record.Record
}

// pending is an event in flight. Its records are copied into buf and their
// fields parsed into fields; both are addressed by offset until the event
// is emitted, as buf and fields grow.
type pending struct {
	seq      uint32
	expire   int64
	complete bool
	ended    bool   // its EOE came
	dropped  uint8  // kinds of records of it auditns dropped (kindSyscall...)
	late     bool   // its number was settled before its first record came
	items    int32  // its SYSCALL record's items= (the PATH records due), -1 if none
	paths    uint16 // PATH records it has, or auditns dropped
	buf      []byte
	fields   []record.Field
	recs     []pendingRec
}

type pendingRec struct {
	typ              uint16
	sec, msec        int64
	text, body       record.Span // in buf
	hasBody          bool
	fieldLo, fieldHi int
}

// New returns an Assembler that calls emit for each complete event and gap
// for each run of missing sequence numbers, both from the goroutine that
// calls Push, Flush or Close. The records given to emit, their bytes and
// their fields belong to the Assembler: they are valid until emit returns.
func New(opts Options, emit func(recs []record.Record), gap func(Gap)) *Assembler {
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Assembler{emit: emit, gap: gap, max: opts.MaxInFlight, timeout: int64(opts.Timeout),
		log: opts.Logger, now: time.Now, opts: opts}
	a.base = a.now()
	a.report = a.reportGap
	return a
}

// Stats returns the counters.
func (a *Assembler) Stats() *Stats { return &a.stats }

// Push adds one record (data is not retained). A record that cannot be
// parsed is counted and logged (the first few), never fatal: the kernel's
// text is untrusted.
func (a *Assembler) Push(typ uint16, data []byte) {
	a.stats.Records.Add(1)
	text := bytes.TrimSpace(data)
	h, err := a.header(text)
	if err != nil {
		a.stats.Malformed.Add(1)
		if a.logged < 10 {
			a.logged++
			a.log.Warn("malformed audit record skipped", "type", typ, "error", err, "bytes", len(data))
		}
		return
	}
	if typ == typeEOE {
		// The end of an event: not a record of it.
		if p := a.find(h.Seq); p != nil {
			p.complete, p.ended = true, true
		} else if a.track.isDropped(h.Seq) {
			a.discard(h.Seq, kindEOE, 0, -1)
		} else {
			a.came(h.Seq, kindEOE, 0)
		}
		a.cleanup()
		return
	}
	p := a.find(h.Seq)
	if p == nil {
		if a.track.isDropped(h.Seq) {
			a.stats.Discarded.Add(1)
			paths := 0
			if typ == typePath {
				paths = 1
			}
			a.discard(h.Seq, kindOf(typ), paths, -1)
			return
		}
		p = a.start(h.Seq)
		if !a.pushed {
			a.first, a.pushed = h.Seq, true
		}
		if !a.track.mark(h.Seq, a.clock, a.report) {
			p.late = true
			a.stats.Late.Add(1)
		}
	}
	a.add(p, typ, text, h)
	if typ == typeProctitle || typ <= lastDaemon || typ >= firstAnomLogins {
		p.complete = true
	}
	a.cleanup()
}

// header parses the header of text. The records of an event share theirs:
// one that starts with the bytes of the last header parsed the fast way,
// ')' included, followed by what ends a header, has the same.
func (a *Assembler) header(text []byte) (record.Header, error) {
	if n := len(a.lastHdr); n > 0 && len(text) > n && (text[n] == ':' || text[n] == ' ') && bytes.Equal(text[:n], a.lastHdr) {
		return a.lastH, nil
	}
	h, err := record.ParseHeader(text)
	if err == nil && h.Body == 1 && h.End < 64 {
		// The kernel's own form (Body 1: fields from the byte after
		// ')'), which the memo's test re-checks.
		a.lastHdr = append(a.lastHdr[:0], text[:h.End+1]...)
		a.lastH = h
	}
	return h, err
}

// find returns the event in flight with sequence number seq. Records come
// for the newest events, so it looks from the end.
func (a *Assembler) find(seq uint32) *pending {
	for i := len(a.events) - 1; i >= 0; i-- {
		if a.events[i].seq == seq {
			return a.events[i]
		}
	}
	return nil
}

// start puts a new event in flight, in sequence order.
func (a *Assembler) start(seq uint32) *pending {
	var p *pending
	if n := len(a.free); n > 0 {
		p, a.free = a.free[n-1], a.free[:n-1]
	} else {
		p = &pending{}
	}
	p.seq, p.complete, p.expire = seq, false, a.clock+a.timeout
	p.ended, p.dropped, p.late = false, 0, false
	p.items, p.paths = -1, 0
	i := len(a.events)
	for i > 0 && seqLess(seq, a.events[i-1].seq) {
		i--
	}
	a.events = append(a.events, nil)
	copy(a.events[i+1:], a.events[i:])
	a.events[i] = p
	return p
}

// seqLess orders sequence numbers as go-libaudit does: numbers more than
// 2^24 apart have wrapped around, and the larger one comes first.
func seqLess(a, b uint32) bool {
	const maxSortRange = 1<<24 - 1
	d := int64(a) - int64(b)
	if d > maxSortRange || d < -maxSortRange {
		return a > b
	}
	return a < b
}

func (a *Assembler) add(p *pending, typ uint16, text []byte, h record.Header) {
	var r pendingRec
	r.typ, r.sec, r.msec, r.hasBody = typ, h.Sec, h.Msec, h.Body >= 0
	start := len(p.buf)
	p.buf = append(p.buf, text...)
	r.text = record.Span{Start: uint32(start), End: uint32(len(p.buf))}
	r.fieldLo = len(p.fields)
	if r.hasBody {
		msg := p.buf[start+h.Body:]
		lo, hi, out, rewritten := record.Normalize(typ, msg, p.buf)
		p.buf = out
		if !rewritten {
			lo += start + h.Body
			hi += start + h.Body
		}
		r.body = record.Span{Start: uint32(lo), End: uint32(hi)}
		p.fields = record.Tokenize(p.buf[lo:hi], p.fields)
	}
	r.fieldHi = len(p.fields)
	p.recs = append(p.recs, r)
	switch typ {
	case typeSyscall:
		if r.hasBody {
			p.items = record.FieldItems(p.buf[r.body.Start:r.body.End], p.fields[r.fieldLo:r.fieldHi])
		}
	case typePath:
		p.paths++
	}
}

// cleanup emits the events at the head of the sequence that are complete,
// over the in-flight limit or timed out. The clock is the one read at the
// last Flush, for the events started since as for the older ones: an
// event times out between Timeout less one Flush interval and Timeout
// plus one after its first record, and a record costs no clock reading.
func (a *Assembler) cleanup() {
	for len(a.events) > 0 {
		p := a.events[0]
		if !p.complete && len(a.events) <= a.max && a.clock <= p.expire {
			return
		}
		copy(a.events, a.events[1:])
		a.events[len(a.events)-1] = nil
		a.events = a.events[:len(a.events)-1]
		a.done(p)
	}
}

// Flush emits events that have timed out; call it periodically (every
// ~250ms) so an event whose EOE never comes is not held forever, and
// before pushing records that come after a pause (the pipeline calls it
// for every batch it reads): it reads the clock the new events' timeouts
// count from.
func (a *Assembler) Flush() { a.FlushAt(a.now()) }

// FlushAt is Flush with the clock read by the caller.
func (a *Assembler) FlushAt(now time.Time) {
	a.clock = int64(now.Sub(a.base))
	a.cleanup()
	a.expireAwaiting()
	a.expireDropped()
	a.track.settle(a.clock, a.timeout, a.report)
}

// Close emits everything still held, in sequence order, and reports the
// numbers still missing: nothing more will arrive. Records still awaited
// are not counted as cut: the connection closed before they could be read.
func (a *Assembler) Close() { a.close(false) }

// CloseDrained is Close for a connection read to its end (the kernel had
// nothing more queued when reading stopped): the records still awaited did
// not come because the kernel cut them, and they are counted so.
func (a *Assembler) CloseDrained() { a.close(true) }

func (a *Assembler) close(drained bool) {
	for len(a.events) > 0 {
		p := a.events[0]
		copy(a.events, a.events[1:])
		a.events[len(a.events)-1] = nil
		a.events = a.events[:len(a.events)-1]
		a.done(p)
	}
	if drained {
		a.clock = math.MaxInt64
		a.expireAwaiting()
		a.expireDropped()
	}
	a.awaiting = queue[awaiting]{}
	a.pendingCut = 0
	a.droppedEvents = queue[droppedEvent]{}
	a.track.finish(a.report)
}

// DroppedRecord is a record auditns dropped before it reached the
// Assembler: its sequence number and type.
type DroppedRecord struct {
	Seq  uint32
	Type uint16
	// Items is a SYSCALL record's items= (netlink.Dropped.Items), or -1.
	Items int32
}

// Kinds of records, as far as the accounting of an event's records goes.
const (
	kindSyscall uint8 = 1 << iota
	kindTitle
	kindEOE
	kindCWD
	kindOther
)

func kindOf(typ uint16) uint8 {
	switch typ {
	case typeSyscall:
		return kindSyscall
	case typeProctitle:
		return kindTitle
	case typeEOE:
		return kindEOE
	case typeCWD:
		return kindCWD
	}
	return kindOther
}

// Drop tells the Assembler that auditns dropped these records before they
// reached it (the reader's queue was full). Call it where the records would
// have been pushed. A number whose event has not started is lost: it is
// counted (OnDropped) and its later records are discarded. An event
// already started keeps what it has. Either way the records auditns
// dropped are not taken for records the kernel cut.
func (a *Assembler) Drop(recs []DroppedRecord) {
	n := 0
	for i := 0; i < len(recs); {
		seq := recs[i].Seq
		var kinds uint8
		paths, items := 0, int32(-1)
		for ; i < len(recs) && recs[i].Seq == seq; i++ {
			kinds |= kindOf(recs[i].Type)
			switch recs[i].Type {
			case typePath:
				paths++
			case typeSyscall:
				items = recs[i].Items
			}
		}
		if p := a.find(seq); p != nil {
			p.dropped |= kinds
			p.paths += uint16(paths)
			continue
		}
		if a.track.isDropped(seq) {
			// More of an event already dropped (the reader's drops
			// straddled a batch that got through).
			a.discard(seq, kinds, paths, items)
			continue
		}
		if a.track.isSeen(seq) {
			// Its event was emitted: what it still awaited was not cut.
			a.came(seq, kinds, paths)
			continue
		}
		a.track.markDropped(seq, a.clock, a.report)
		a.droppedEvents.pushBack(droppedEvent{seq: seq, kinds: kinds, items: items, paths: uint16(paths), expire: a.clock + a.timeout})
		n++
	}
	if n > 0 {
		a.stats.Dropped.Add(uint64(n))
		if a.opts.OnDropped != nil {
			a.opts.OnDropped(n)
		}
	}
}

// droppedEvent is an event whose first records auditns dropped: the kinds
// of its records seen (dropped, or discarded later) until it expires.
type droppedEvent struct {
	seq    uint32
	kinds  uint8
	items  int32  // its SYSCALL record's items=, -1 if not known
	paths  uint16 // its PATH records dropped or discarded
	expire int64
}

// discard takes note of records of a dropped event: kinds, paths PATH
// records, and its SYSCALL record's items= if known (else -1).
func (a *Assembler) discard(seq uint32, kinds uint8, paths int, itemsOf int32) {
	items := a.droppedEvents.items()
	for i := len(items) - 1; i >= 0; i-- {
		if items[i].seq == seq {
			items[i].kinds |= kinds
			items[i].paths += uint16(paths)
			if itemsOf >= 0 {
				items[i].items = itemsOf
			}
			return
		}
	}
}

// expireDropped counts the records the kernel cut from events auditns
// dropped: the records a SYSCALL event has (accountRecords) that were
// neither dropped nor discarded within the window.
func (a *Assembler) expireDropped() {
	n := 0
	for a.droppedEvents.len() > 0 && a.clock > a.droppedEvents.front().expire {
		d := *a.droppedEvents.front()
		a.droppedEvents.popFront()
		if d.kinds&kindSyscall == 0 {
			continue
		}
		n += bits.OnesCount8((kindTitle | kindEOE) &^ d.kinds)
		if d.items > 0 {
			n += bits.OnesCount8(kindCWD &^ d.kinds)
			n += max(int(d.items)-int(d.paths), 0)
		}
	}
	a.partial(n)
}

// Resume makes counting start at seq, as if every number before it had
// been settled (a restart that knows where the last run stopped).
func (a *Assembler) Resume(seq uint32) { a.track.start(seq) }

// Checkpoint describes what a run that stops now leaves open: top, one
// past the highest number seen, and the numbers below it whose events were
// not emitted (in flight) or have not come. A run killed right after its
// emitted events were written, resumed with ResumeFrom, counts exactly the
// events it did not write. ok is false when more than max numbers are
// open (a run resumed from top alone then counts fewer).
func (a *Assembler) Checkpoint(open []uint32, max int) (top uint32, _ []uint32, ok bool) {
	if !a.track.started {
		return 0, open[:0], false
	}
	open, ok = a.track.unseen(open[:0], max)
	for _, p := range a.events {
		if len(open) >= max {
			return a.track.top, open, false
		}
		if !p.late {
			open = append(open, p.seq)
		}
	}
	return a.track.top, open, ok
}

// First returns the first sequence number pushed, if any.
func (a *Assembler) First() (uint32, bool) { return a.first, a.pushed }

// ResumeFrom starts counting where a checkpoint left off: the numbers in
// open are expected (missing after the window unless they come), the other
// numbers below top were written, and counting goes on from top.
func (a *Assembler) ResumeFrom(top uint32, open []uint32) {
	low := top
	for _, s := range open {
		if after(low, s) && low != s {
			low = s
		}
	}
	a.track.start(low)
	isOpen := make(map[uint32]bool, len(open))
	for _, s := range open {
		isOpen[s] = true
	}
	for s := low; s != top; s++ {
		if !isOpen[s] {
			a.track.mark(s, a.clock, a.report)
		}
	}
	if low != top && isOpen[top-1] {
		// The last numbers are open: a run up to top-1 that a later
		// number would have opened.
		a.track.holes.pushBack(hole{from: a.track.top, to: top - 1, since: a.clock})
		a.track.top = top
		a.track.seen.cover(a.track.low, a.track.top)
		a.track.dropped.cover(a.track.low, a.track.top)
	}
}

func (a *Assembler) reportGap(from, to uint32) {
	g := Gap{From: from, To: to}
	a.stats.Missing.Add(g.Count())
	if a.gap != nil {
		a.gap(g)
	}
}

// awaiting is an emitted SYSCALL event whose records have not all come:
// an event is emitted on its PROCTITLE before its EOE, and an event held
// past the in-flight limit before the rest of its records, some of which
// auditns's reader may have dropped (named in a marker that comes with the
// next batch). What has neither come nor been named dropped within a
// window was cut by the kernel.
type awaiting struct {
	seq      uint32
	missing  uint8  // kinds (PROCTITLE, EOE, CWD)
	paths    uint16 // PATH records
	timedOut bool   // the event left on its timeout (PendingCut)
	expire   int64
}

func (w *awaiting) count() int { return bits.OnesCount8(w.missing) + int(w.paths) }

// came takes note of records of kinds, and of paths PATH records, for seq,
// whose event was emitted already: they came late, or auditns's reader
// dropped them; either way the kernel did not cut them. Records of an
// emitted event come soon after it: the search from the newest is short.
func (a *Assembler) came(seq uint32, kinds uint8, paths int) {
	items := a.awaiting.items()
	for i := len(items) - 1; i >= 0; i-- {
		w := &items[i]
		if w.seq != seq {
			continue
		}
		before := w.count()
		w.missing &^= kinds
		w.paths -= uint16(min(int(w.paths), paths))
		if w.timedOut {
			a.pendingCut -= before - w.count()
		}
		if w.count() == 0 {
			copy(items[1:i+1], items[:i])
			a.awaiting.popFront()
		}
		return
	}
}

// expireAwaiting counts the records that did not come within the window.
func (a *Assembler) expireAwaiting() {
	n := 0
	for a.awaiting.len() > 0 && a.clock > a.awaiting.front().expire {
		w := a.awaiting.front()
		n += w.count()
		if w.timedOut {
			a.pendingCut -= w.count()
		}
		a.awaiting.popFront()
	}
	a.partial(n)
}

func (a *Assembler) partial(n int) {
	if n > 0 {
		a.stats.Partial.Add(uint64(n))
		if a.opts.OnPartial != nil {
			a.opts.OnPartial(n)
		}
	}
}

// done accounts for an event leaving (sequence gaps), emits it and
// recycles its buffers.
func (a *Assembler) done(p *pending) {
	if len(p.recs) > 0 {
		a.accountRecords(p)
		a.stats.Events.Add(1)
		// The records are written in place, field by field (a composite
		// literal is built aside and copied).
		out := slices.Grow(a.out[:0], len(p.recs))[:len(p.recs)]
		for i := range p.recs {
			r := &p.recs[i]
			rec := &out[i]
			rec.Type, rec.Seq, rec.Sec, rec.Msec = r.typ, p.seq, r.sec, r.msec
			rec.Text = p.buf[r.text.Start:r.text.End:r.text.End]
			rec.Fields = p.fields[r.fieldLo:r.fieldHi:r.fieldHi]
			rec.Body = nil
			if r.hasBody {
				rec.Body = p.buf[r.body.Start:r.body.End:r.body.End]
			}
		}
		a.out = out
		a.emit(out)
		clear(a.out)
	}
	p.buf, p.fields, p.recs = p.buf[:0], p.fields[:0], p.recs[:0]
	if cap(p.buf) > 256<<10 || cap(p.fields) > 8<<10 {
		// A huge event (a long argv) grew them: give the memory back.
		p.buf, p.fields = nil, nil
	}
	a.free = append(a.free, p)
}

// accountRecords notes the records a SYSCALL event was emitted without:
// every one ends with a PROCTITLE and an EOE, and one with items=N has N
// PATH records after a CWD record (the kernel writes the working directory
// when the syscall looked a name up; measured on 23,931 events of 40
// kinds of commands, without exception). What it lacks and auditns did not
// drop is awaited for one window before it is counted as cut by the
// kernel (expireAwaiting). Its other records (EXECVE, SOCKADDR, ...) are
// not counted by the SYSCALL record: one the kernel cut is not seen.
func (a *Assembler) accountRecords(p *pending) {
	kinds := p.dropped
	for i := range p.recs {
		kinds |= kindOf(p.recs[i].typ)
	}
	if p.ended {
		kinds |= kindEOE
	}
	if p.late || p.recs[0].typ != typeSyscall {
		// Records that came after their event left (or a record of an
		// event that has no SYSCALL): none of them was cut.
		a.came(p.seq, kinds, int(p.paths))
		return
	}
	missing := (kindTitle | kindEOE) &^ kinds
	var paths uint16
	if p.items > 0 {
		missing |= kindCWD &^ kinds
		if int(p.paths) < int(p.items) {
			paths = uint16(p.items) - p.paths
		}
	}
	if missing == 0 && paths == 0 {
		return
	}
	// An event that timed out lacks records the kernel almost surely cut
	// (a window has passed since its first record), but a marker of the
	// reader's drops may still name them: they are awaited too, and
	// PendingCut offers them to the run state a kill -9 leaves.
	timedOut := !p.complete && a.clock > p.expire
	w := awaiting{seq: p.seq, missing: missing, paths: paths, timedOut: timedOut, expire: a.clock + a.timeout}
	if timedOut {
		a.pendingCut += w.count()
	}
	a.awaiting.pushBack(w)
}

// PendingCut is how many records events that timed out still lack: they
// are counted as cut once their window ends, unless they come or are named
// dropped first. A run state written now takes them for cut.
func (a *Assembler) PendingCut() int { return a.pendingCut }
