package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
)

// normReadLocked moves the read position past sealed segment ends and
// deleted segments, and returns the segment it is in and whether a record is
// available there.
func (s *Spool) normReadLocked() (*segment, bool) {
	for i := s.segIndexLocked(s.readPos.Segment); i < len(s.segs); i++ {
		g := s.segs[i]
		if g.seq != s.readPos.Segment || s.readPos.Offset < segHeaderSize {
			s.readPos = Pos{g.seq, segHeaderSize}
		}
		if s.readPos.Offset < g.end {
			return g, true
		}
		if !g.sealed {
			return g, false
		}
	}
	return nil, false
}

// Next returns up to maxRecs records (and, beyond the first, at most maxBytes
// bytes of data) following the read position, blocking until at least one
// is available, ctx is done (ctx.Err()) or the spool is closed
// (ErrClosed). If records are available they are returned even when ctx
// is already done, so a canceled ctx polls. maxRecs < 1 means 1; maxBytes < 1
// means DefaultNextBytes. One call returns records of one segment only.
//
// The records stay in the spool until acknowledged (Ack); the next Next
// continues after them. Next and Rewind are meant for one goroutine; Ack
// may run meanwhile in another.
func (s *Spool) Next(ctx context.Context, maxRecs int, maxBytes int) ([]Record, error) {
	if maxRecs < 1 {
		maxRecs = 1
	}
	if maxBytes < 1 {
		maxBytes = DefaultNextBytes
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		g, ok := s.normReadLocked()
		if ok {
			if recs, ok := s.memReadLocked(maxRecs, maxBytes); ok {
				s.readDoneLocked(recs)
				s.mu.Unlock()
				return recs, nil
			}
			seq, off, end, gen := g.seq, s.readPos.Offset, g.end, s.readGen
			s.mu.Unlock()

			recs, rerr := s.readDisk(seq, off, end, maxRecs, maxBytes)

			s.mu.Lock()
			if gen != s.readGen || s.readPos != (Pos{seq, off}) {
				s.mu.Unlock() // rewound or dropped meanwhile
				continue
			}
			if i := s.segIndexLocked(seq); i == len(s.segs) || s.segs[i].seq != seq {
				s.mu.Unlock() // segment dropped meanwhile
				continue
			}
			if rerr != nil {
				var ce *corruptError
				if errors.As(rerr, &ce) {
					s.corrupt += end - ce.off
					s.log.Error("spool: corrupt record on read; skipping the rest of the segment's written data (records lost)",
						"segment", s.segPath(seq), "offset", ce.off, "bytes_skipped", end-ce.off, "reason", ce.reason)
					s.readPos = Pos{seq, end}
					s.mu.Unlock()
					continue
				}
				s.mu.Unlock()
				return nil, rerr
			}
			s.readDoneLocked(recs)
			s.mu.Unlock()
			return recs, nil
		}
		s.mu.Unlock()
		select {
		case <-s.dataCh:
		case <-s.closedCh:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *Spool) readDoneLocked(recs []Record) {
	s.readPos = recs[len(recs)-1].Pos
	for i := range recs {
		s.inflight.PushBack(recs[i].Pos)
	}
}

type corruptError struct {
	off    int64
	reason string
}

func (e *corruptError) Error() string {
	return fmt.Sprintf("corrupt record at offset %d: %s", e.off, e.reason)
}

// readDisk reads records from segment seq starting at off, up to end. It
// runs without s.mu; the caller re-checks that the segment is still live.
func (s *Spool) readDisk(seq uint64, off, end int64, maxRecs, maxBytes int) ([]Record, error) {
	if s.rf == nil || s.rfSeq != seq {
		if s.rf != nil {
			s.rf.Close()
			s.rf = nil
		}
		f, err := os.Open(s.segPath(seq))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Dropped meanwhile (the caller re-checks), or deleted
				// behind the spool's back.
				return nil, &corruptError{off, "segment file missing"}
			}
			return nil, fmt.Errorf("spool: open segment: %w", err)
		}
		s.rf, s.rfSeq = f, seq
	}
	want := min(end-off, int64(maxBytes)+min(int64(maxRecs), 4096)*frameHeaderSize)
	buf := make([]byte, want)
	if n, err := s.rf.ReadAt(buf, off); n < len(buf) {
		return nil, &corruptError{off, fmt.Sprintf("short read (%d of %d bytes): %v", n, len(buf), err)}
	}
	recs := make([]Record, 0, min(maxRecs, 256))
	total := 0
	p := 0
	for len(recs) < maxRecs && p+frameHeaderSize <= len(buf) {
		l := int(binary.LittleEndian.Uint32(buf[p:]))
		if int64(l) > end-off-int64(p)-frameHeaderSize {
			if len(recs) > 0 {
				break // return the good records; the next call reports this
			}
			return nil, &corruptError{off + int64(p), fmt.Sprintf("record length %d runs past the written data", l)}
		}
		if len(recs) > 0 && total+l > maxBytes {
			break
		}
		if p+frameHeaderSize+l > len(buf) {
			if len(recs) > 0 {
				break
			}
			// One record larger than the read: read exactly it.
			buf = make([]byte, frameHeaderSize+l)
			if n, err := s.rf.ReadAt(buf, off); n < len(buf) {
				return nil, &corruptError{off, fmt.Sprintf("short read (%d of %d bytes): %v", n, len(buf), err)}
			}
			p = 0
		}
		crc := binary.LittleEndian.Uint32(buf[p+4:])
		if crc32.Update(0, castagnoli, buf[p+8:p+frameHeaderSize+l]) != crc {
			if len(recs) > 0 {
				break // return the good records; the next call reports this
			}
			return nil, &corruptError{off + int64(p), "CRC mismatch"}
		}
		d := p + frameHeaderSize
		p = d + l
		recs = append(recs, Record{Pos: Pos{seq, off + int64(p)}, Data: buf[d:p:p]})
		total += l
	}
	if len(recs) == 0 {
		return nil, &corruptError{off, "no complete record"}
	}
	return recs, nil
}

// Rewind makes the next Next start again right after the last acknowledged
// position: the forwarder calls it after a failed send, and receives the same
// unacknowledged records again, in the same order (minus any deleted by
// drop_oldest meanwhile).
func (s *Spool) Rewind() {
	s.mu.Lock()
	s.readPos = s.ack
	s.readGen++
	s.inflight.Reset()
	s.mu.Unlock()
}

// Ack records that everything up to and including pos was delivered. It does
// no I/O itself: the checkpoint is written in the background at most every
// CheckpointInterval (and by Sync and Close), and wholly acknowledged segment
// files are deleted then. Acknowledging a position at or before the current
// one is a no-op; one past the written data is an error.
func (s *Spool) Ack(pos Pos) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if !s.ack.Less(pos) {
		return nil
	}
	if len(s.segs) == 0 {
		return fmt.Errorf("spool: ack %v: nothing written", pos)
	}
	if last := s.segs[len(s.segs)-1]; last.seq < pos.Segment || (last.seq == pos.Segment && pos.Offset > last.end) {
		return fmt.Errorf("spool: ack %v is past the written data (%v)", pos, Pos{last.seq, last.end})
	}
	if i := s.segIndexLocked(pos.Segment); i < len(s.segs) && s.segs[i].seq == pos.Segment &&
		(pos.Offset > s.segs[i].end || pos.Offset < segHeaderSize) {
		return fmt.Errorf("spool: ack %v is outside segment %d", pos, pos.Segment)
	}
	if pos.Segment != s.ack.Segment {
		s.ackN = 0
	}
	s.ack = pos
	for s.inflight.Len() > 0 && !pos.Less(*s.inflight.Front()) {
		if s.inflight.Front().Segment == pos.Segment {
			s.ackN++
		}
		s.inflight.PopFront()
	}
	if s.readPos.Less(pos) {
		s.readPos = pos
		s.readGen++
		s.inflight.Reset()
	}
	s.gcLocked()
	if !s.ackKicked { // else the flusher's timer is armed for it
		s.ackKicked = true
		s.signal(s.kick)
	}
	return nil
}
