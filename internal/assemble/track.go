package assemble

// seqTracker decides which audit sequence numbers are missing. A number
// is missing only once a later number has been seen and the number itself
// has not arrived within the reassembly window since: an event whose first
// record comes late, behind other processes' events, is not a gap.
//
// It keeps a low watermark (every number before it is settled: seen,
// dropped by auditns, or reported missing), the top (one past the highest
// number seen), a ring bitmap of the numbers seen in [low, top), and the
// runs of numbers that were unseen when a later one arrived, each with the
// clock at that moment. The watermark moves over seen numbers as they
// come, and over an unseen one only when the run holding it is older than
// the window; then the numbers of the run still unseen are missing.
type seqTracker struct {
	started bool
	low     uint32
	top     uint32
	seen    bitRing
	dropped bitRing // numbers whose records auditns's reader discarded
	holes   queue[hole]
}

type hole struct {
	from, to uint32 // the run (inclusive)
	since    int64  // clock when a later number was first seen
}

// maxSpan bounds [low, top): past it the oldest numbers are settled early
// (16M numbers: seconds of the heaviest load the kernel can produce).
const maxSpan = 1 << 24

// after reports whether a comes at or after b, sequence numbers wrapping.
func after(a, b uint32) bool { return a-b < 1<<31 }

// start sets the watermark where counting begins.
func (t *seqTracker) start(at uint32) {
	t.started, t.low, t.top = true, at, at
	t.seen.reset()
	t.dropped.reset()
	t.holes = queue[hole]{}
}

// mark notes that seq arrived (or was dropped, for markDropped). It
// reports false for a number before the watermark: already settled.
func (t *seqTracker) mark(seq uint32, clock int64, settle func(from, to uint32)) bool {
	if !t.started {
		t.start(seq)
	}
	if !after(seq, t.low) {
		return false
	}
	if after(seq, t.top) {
		if seq != t.top {
			t.holes.pushBack(hole{from: t.top, to: seq - 1, since: clock})
		}
		t.top = seq + 1
		if t.top-t.low > maxSpan {
			t.force(t.top-maxSpan, settle)
		}
		t.seen.cover(t.low, t.top)
		t.dropped.cover(t.low, t.top)
	}
	t.seen.set(seq)
	return true
}

// isSeen reports whether seq is settled or was seen.
func (t *seqTracker) isSeen(seq uint32) bool {
	if !t.started || !after(seq, t.low) {
		return true
	}
	return !after(seq, t.top) && t.seen.get(seq)
}

// isDropped reports whether records of seq are to be discarded: auditns
// dropped its first ones.
func (t *seqTracker) isDropped(seq uint32) bool {
	return t.started && after(seq, t.low) && !after(seq, t.top) && t.dropped.get(seq)
}

func (t *seqTracker) markDropped(seq uint32, clock int64, settle func(from, to uint32)) {
	if t.mark(seq, clock, settle) {
		t.dropped.set(seq)
	}
}

// settle moves the watermark: over seen numbers, and over runs of unseen
// ones older than window (at clock), reporting the unseen numbers in runs.
func (t *seqTracker) settle(clock, window int64, report func(from, to uint32)) {
	for t.started && t.low != t.top {
		if t.seen.get(t.low) {
			t.seen.clear(t.low)
			t.dropped.clear(t.low)
			t.low++
			continue
		}
		for t.holes.len() > 0 && !after(t.holes.front().to, t.low) {
			t.holes.popFront()
		}
		if t.holes.len() == 0 {
			// Cannot happen: an unseen number below top is in a run.
			t.low++
			continue
		}
		h := *t.holes.front()
		if clock-h.since <= window {
			return
		}
		t.holes.popFront()
		t.through(h.to, report)
	}
}

// through settles every number up to and including to, reporting the
// unseen ones.
func (t *seqTracker) through(to uint32, report func(from, to uint32)) {
	end := to + 1
	for t.low != end {
		if t.seen.get(t.low) {
			t.seen.clear(t.low)
			t.dropped.clear(t.low)
			t.low++
			continue
		}
		from := t.low
		for t.low != end && !t.seen.get(t.low) {
			t.low++
		}
		report(from, t.low-1)
	}
}

// force settles everything before at, however recent.
func (t *seqTracker) force(at uint32, report func(from, to uint32)) {
	for t.holes.len() > 0 && !after(t.holes.front().to, at) {
		t.holes.popFront()
	}
	t.through(at-1, report)
}

// finish settles everything: nothing more will arrive.
func (t *seqTracker) finish(report func(from, to uint32)) {
	if !t.started || t.low == t.top {
		return
	}
	t.holes = queue[hole]{}
	t.through(t.top-1, report)
}

// unseen appends the numbers in [low, top) not seen yet, at most max of
// them; ok is false past max.
func (t *seqTracker) unseen(into []uint32, max int) ([]uint32, bool) {
	for _, h := range t.holes.items() {
		if !after(h.to, t.low) {
			continue // settled, not popped yet
		}
		from := h.from
		if after(t.low, from) {
			from = t.low
		}
		for s := from; ; s++ {
			if !t.seen.get(s) {
				if len(into) >= max {
					return into, false
				}
				into = append(into, s)
			}
			if s == h.to {
				break
			}
		}
	}
	return into, true
}

// bitRing is a bitmap over a window of sequence numbers, indexed by the
// number modulo its size (a power of two, grown to cover the window).
type bitRing struct {
	words []uint64
}

func (b *bitRing) reset() { clear(b.words) }

func (b *bitRing) mask() uint32 { return uint32(len(b.words)*64 - 1) }

func (b *bitRing) get(s uint32) bool {
	i := s & b.mask()
	return b.words[i>>6]&(1<<(i&63)) != 0
}

func (b *bitRing) set(s uint32) {
	i := s & b.mask()
	b.words[i>>6] |= 1 << (i & 63)
}

func (b *bitRing) clear(s uint32) {
	i := s & b.mask()
	b.words[i>>6] &^= 1 << (i & 63)
}

// cover grows the ring so that it holds [low, top), keeping the bits.
func (b *bitRing) cover(low, top uint32) {
	n := uint64(len(b.words)) * 64
	span := uint64(top - low)
	if span <= n && n > 0 {
		return
	}
	size := max(n, 1<<12)
	for size < span {
		size *= 2
	}
	nw := make([]uint64, size/64)
	if len(b.words) > 0 {
		m := uint32(size - 1)
		for s := low; s != top; s++ {
			if b.get(s) {
				i := s & m
				nw[i>>6] |= 1 << (i & 63)
			}
		}
	}
	b.words = nw
}

// queue is a FIFO on a reused slice.
type queue[T any] struct {
	buf  []T
	head int
}

func (q *queue[T]) len() int   { return len(q.buf) - q.head }
func (q *queue[T]) front() *T  { return &q.buf[q.head] }
func (q *queue[T]) items() []T { return q.buf[q.head:] }
func (q *queue[T]) pushBack(v T) {
	if q.head > 0 && len(q.buf) == cap(q.buf) {
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, v)
}
func (q *queue[T]) popFront() {
	var zero T
	q.buf[q.head] = zero
	q.head++
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	}
}
