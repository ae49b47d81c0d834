package spool

import (
	"os"
	"time"
)

// Stats returns a snapshot. It may read one record header from disk (for
// OldestUnacked) and is safe to call from any goroutine.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	st := s.statsLocked()
	if st.Bytes == 0 {
		s.mu.Unlock()
		return st
	}
	p := s.firstUnackedLocked()
	if s.oldestOK && s.oldestPos == p {
		st.OldestUnacked = time.Unix(0, s.oldestTS)
		s.mu.Unlock()
		return st
	}
	if ts, ok := s.memTSLocked(p); ok {
		s.oldestPos, s.oldestTS, s.oldestOK = p, ts, true
		st.OldestUnacked = time.Unix(0, ts)
		s.mu.Unlock()
		return st
	}
	s.mu.Unlock()
	ts, ok := s.diskTS(p)
	if ok {
		s.mu.Lock()
		s.oldestPos, s.oldestTS, s.oldestOK = p, ts, true
		s.mu.Unlock()
		st.OldestUnacked = time.Unix(0, ts)
	}
	return st
}

func (s *Spool) statsLocked() Stats {
	st := Stats{
		Bytes:        s.unackedLocked(),
		Records:      s.unackedRecordsLocked(),
		Dropped:      s.dropped,
		Segments:     len(s.segs),
		CorruptBytes: s.corrupt,
		SyncErrors:   s.syncErrs,
	}
	for _, g := range s.segs {
		st.DiskBytes += g.end
	}
	return st
}

// firstUnackedLocked is where the oldest unacknowledged record starts.
func (s *Spool) firstUnackedLocked() Pos {
	for _, g := range s.segs {
		if p := s.unackedFromLocked(g); p.Offset < g.end {
			return p
		}
	}
	return Pos{}
}

func (s *Spool) diskTS(p Pos) (int64, bool) {
	f, err := os.Open(s.segPath(p.Segment))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var h [frameHeaderSize]byte
	if _, err := f.ReadAt(h[:], p.Offset); err != nil {
		return 0, false
	}
	return appendTime(h[8:]), true
}
