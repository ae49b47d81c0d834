package spool

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"time"
)

// Append stores recs, in order, with one write(2), and returns how many of
// them were dropped by the full policy (their data is not stored: the caller
// turns the count into a loss event). With FullDropOldest the count is the
// number of unacknowledged records deleted to make room (some of them may
// already be in flight and still be delivered: the count errs high, never
// low). On error nothing of the batch is stored and dropped counts all of
// recs (plus any records deleted by drop_oldest first).
//
// Append never waits for the reader or for fsync (unless SyncInterval is
// zero); it holds the spool's lock only to publish the batch. It does not
// keep recs.
func (s *Spool) Append(recs [][]byte) (dropped int, err error) {
	return s.AppendReserved(recs, nil)
}

// AppendReserved is Append where reserved[i] marks recs[i] as one that may
// use the room ReserveBytes keeps (reserved nil: none). Refusals and
// failures count as in Append.
func (s *Spool) AppendReserved(recs [][]byte, reserved []bool) (dropped int, err error) {
	if len(recs) == 0 {
		return 0, nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()

	maxBytes := s.opts.MaxBytes
	first := 0   // records before first are dropped (drop_oldest, batch > MaxBytes)
	evicted := 0 // unacknowledged records deleted (drop_oldest)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return len(recs), ErrClosed
	}
	if s.opts.Full == FullDropOldest {
		// Keep the newest records that fit in MaxBytes, then make room for
		// them by deleting the oldest segments.
		var need int64
		first = len(recs)
		for i := len(recs) - 1; i >= 0; i-- {
			fs := frameSize(recs[i])
			if fs > maxBytes || len(recs[i]) > math.MaxUint32 {
				continue
			}
			if need+fs > maxBytes {
				break
			}
			need += fs
			first = i
		}
		evicted = s.evictLocked(need)
	}
	room := maxBytes - s.unackedLocked()
	s.mu.Unlock()
	if evicted > 0 {
		s.log.Warn("spool: full; deleted the oldest unacknowledged records (drop_oldest)", "records", evicted, "max_bytes", maxBytes)
	}
	// failed accounts for a batch that could not be written.
	failed := func() int {
		n := evicted + len(recs)
		s.mu.Lock()
		s.dropped += int64(n)
		s.mu.Unlock()
		return n
	}

	now := time.Now().UnixNano()
	buf := s.wbuf[:0]
	dropped = evicted + first
	kept := 0
	reserve := s.opts.ReserveBytes
	if s.opts.Full == FullDropOldest {
		reserve = 0 // room is made by evicting
	}
	for i, r := range recs[first:] {
		fs := frameSize(r)
		limit := room - reserve
		if reserved != nil && reserved[first+i] {
			limit = room
		}
		if fs > limit || len(r) > math.MaxUint32 {
			dropped++
			continue
		}
		room -= fs
		buf = appendFrame(buf, r, now)
		kept++
	}
	s.wbuf = buf
	if cap(s.wbuf) > 8<<20 {
		s.wbuf = nil // do not pin one huge batch's buffer
	}
	if kept == 0 {
		s.mu.Lock()
		s.dropped += int64(dropped)
		s.mu.Unlock()
		return dropped, nil
	}

	if s.active == nil || (s.wEnd > segHeaderSize && s.wEnd+int64(len(buf)) > s.opts.SegmentBytes) {
		if err := s.roll(); err != nil {
			return failed(), fmt.Errorf("spool: new segment: %w", err)
		}
	}

	if n, err := s.active.WriteAt(buf, s.wEnd); err != nil {
		s.writeFailed(n)
		return failed(), fmt.Errorf("spool: write segment %d: %w", s.activeSeq, err)
	}

	s.mu.Lock()
	seg := s.segs[len(s.segs)-1]
	start := s.wEnd
	s.wEnd += int64(len(buf))
	seg.end = s.wEnd
	seg.n += int64(kept)
	s.segBytes += int64(len(buf))
	s.segRecords += int64(kept)
	s.dropped += int64(dropped)
	s.memPutLocked(seg.seq, start, s.wEnd, buf)
	s.markDirtyLocked()
	s.mu.Unlock()
	s.signal(s.dataCh)

	if s.opts.SyncInterval == 0 {
		// The batch is stored either way: an fsync error is logged and
		// counted (Stats.SyncErrors), as with group fsync.
		s.flush(true, false)
	}
	return dropped, nil
}

// writeFailed handles a failed write of n bytes: it cuts a partial write
// and seals the segment at its last good record, so that the next Append
// starts a new segment (on a new file: a broken descriptor or a bad block is
// not retried). If the cut fails, recovery will cut the garbage later.
func (s *Spool) writeFailed(n int) {
	if n > 0 {
		if err := s.active.Truncate(s.wEnd); err != nil {
			s.log.Error("spool: cannot undo a partial write", "segment", s.segPath(s.activeSeq), "offset", s.wEnd, "err", err)
		}
	}
	s.mu.Lock()
	s.sealActiveLocked()
	s.mu.Unlock()
}

func (s *Spool) sealActiveLocked() {
	if s.active == nil {
		return
	}
	if n := len(s.segs); n > 0 && s.segs[n-1].seq == s.activeSeq {
		s.segs[n-1].sealed = true
	}
	s.toSync = append(s.toSync, s.active)
	s.active = nil
	s.markDirtyLocked()
}

// roll seals the active segment (if any) and starts a new one.
func (s *Spool) roll() error {
	seq := s.nextSeq
	path := s.segPath(seq)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	var hdr [segHeaderSize]byte
	copy(hdr[:], segMagic)
	binary.LittleEndian.PutUint32(hdr[8:], formatVersion)
	if _, err := f.WriteAt(hdr[:], 0); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	s.nextSeq++
	s.mu.Lock()
	s.sealActiveLocked()
	s.active, s.activeSeq, s.wEnd = f, seq, segHeaderSize
	s.segs = append(s.segs, &segment{seq: seq, end: segHeaderSize})
	s.dirDirty = true
	s.markDirtyLocked()
	s.gcLocked() // the sealed segment may be wholly acknowledged already
	s.mu.Unlock()
	return nil
}

// removeFrontLocked forgets segs[0]; its file is deleted by the flusher.
func (s *Spool) removeFrontLocked() *segment {
	g := s.segs[0]
	s.segs[0] = nil
	s.segs = s.segs[1:]
	if len(s.segs) == 0 {
		s.segs = s.segs[:0:0]
	}
	s.segBytes -= g.end - segHeaderSize
	s.segRecords -= g.n
	if g.seq == s.ack.Segment {
		s.ackN = 0
	}
	if s.active != nil && g.seq == s.activeSeq {
		s.toClose = append(s.toClose, s.active)
		s.active = nil
	}
	s.toUnlink = append(s.toUnlink, g.seq)
	s.memDropThroughLocked(g.seq)
	return g
}

// gcLocked deletes the segments that are wholly acknowledged.
func (s *Spool) gcLocked() {
	for len(s.segs) > 0 {
		g := s.segs[0]
		if g.seq < s.ack.Segment || (g.seq == s.ack.Segment && g.sealed && s.ack.Offset >= g.end) {
			s.removeFrontLocked()
			continue
		}
		return
	}
}

// evictLocked deletes the oldest segments (drop_oldest) until need more bytes
// fit under MaxBytes, and returns the number of unacknowledged records
// deleted.
func (s *Spool) evictLocked(need int64) int {
	dropped := int64(0)
	for len(s.segs) > 0 && s.unackedLocked()+need > s.opts.MaxBytes {
		n := s.segs[0].n
		if s.segs[0].seq == s.ack.Segment {
			n -= s.ackN
		}
		g := s.removeFrontLocked()
		dropped += max(n, 0)
		if s.ack.Less(Pos{g.seq, g.end}) {
			// Nothing of this segment will be delivered any more: treat it
			// as acknowledged (a late Ack for it is a no-op).
			s.ack, s.ackN = Pos{g.seq, g.end}, 0
		}
		if s.readPos.Less(s.ack) {
			s.readPos = s.ack
			s.readGen++
			s.inflight.Reset()
		}
	}
	return int(dropped)
}
