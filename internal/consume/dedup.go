package consume

import (
	"hash/maphash"
	"time"
)

// Dedup remembers the event ids it has seen, within bounds: delivery to
// Kafka is at-least-once, and a copy of an event (a producer retry, or the
// daemon's spool sending again what it had not seen acknowledged) arrives
// soon after the original in the stream, with the same event.id and time.
//
// Memory is bounded two ways: an id is forgotten once the newest event
// time seen is more than Horizon past its own time, and at most Max ids are
// kept (the oldest remembered is forgotten first). Ids are kept as 64-bit
// hashes (maphash, random seed per process): about 40 bytes per id, so the
// default Max of 1<<20 costs at most ~40 MiB; the chance that two distinct
// ids among a million collide is about 3e-8.
type Dedup struct {
	horizon int64 // nanoseconds
	max     int
	seed    maphash.Seed
	seen    map[uint64]struct{}
	fifo    []dedupEntry
	head    int
	newest  int64
}

type dedupEntry struct {
	h uint64
	t int64
}

// Default bounds of NewDedup.
const (
	DefaultDedupHorizon = time.Hour
	DefaultDedupMax     = 1 << 20
)

// NewDedup returns a Dedup; zero arguments take the defaults.
func NewDedup(horizon time.Duration, max int) *Dedup {
	if horizon <= 0 {
		horizon = DefaultDedupHorizon
	}
	if max <= 0 {
		max = DefaultDedupMax
	}
	return &Dedup{horizon: int64(horizon), max: max, seed: maphash.MakeSeed(), seen: make(map[uint64]struct{})}
}

// Seen reports whether id was seen before (and is still remembered), and
// remembers it with its event time t.
func (d *Dedup) Seen(id string, t time.Time) bool {
	h := maphash.String(d.seed, id)
	if _, ok := d.seen[h]; ok {
		return true
	}
	ns := t.UnixNano()
	d.seen[h] = struct{}{}
	d.fifo = append(d.fifo, dedupEntry{h, ns})
	if ns > d.newest {
		d.newest = ns
	}
	for d.head < len(d.fifo) {
		e := d.fifo[d.head]
		if len(d.fifo)-d.head <= d.max && e.t >= d.newest-d.horizon {
			break
		}
		delete(d.seen, e.h)
		d.head++
	}
	if d.head > 4096 && d.head > len(d.fifo)/2 {
		n := copy(d.fifo, d.fifo[d.head:])
		d.fifo = d.fifo[:n]
		d.head = 0
	}
	return false
}

// Len returns how many ids are remembered.
func (d *Dedup) Len() int { return len(d.seen) }
