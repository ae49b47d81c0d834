package spool

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"time"
)

// Append stores recs, in order, with one write(2), and returns how many of
// them were dropped by the full policy (their data is not stored: the caller
// turns the count into a loss event). With FullDropOldest the count also
// holds, exactly, the unacknowledged records deleted to make room (see
// evictLocked: never reserved ones, never ones the reader has taken). On
// error nothing of the batch is stored and dropped counts all of recs (plus
// the records drop_oldest deleted first, and the reserved ones it was
// carrying into the batch).
//
// Append never waits for the reader or for fsync (unless SyncInterval is
// zero); it holds the spool's lock only to publish the batch. It does not
// keep recs.
func (s *Spool) Append(recs [][]byte) (dropped int, err error) {
	return s.AppendReserved(recs, nil)
}

// AppendReserved is Append where reserved[i] marks recs[i] as reserved
// (reserved nil: none): a record that may use the room ReserveBytes keeps,
// and that drop_oldest never deletes. Refusals and failures count as in
// Append.
func (s *Spool) AppendReserved(recs [][]byte, reserved []bool) (dropped int, err error) {
	if len(recs) == 0 {
		return 0, nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return len(recs), ErrClosed
	}
	first := 0 // records before first are dropped (drop_oldest, batch > MaxBytes)
	var ev eviction
	if s.opts.Full == FullDropOldest {
		first, ev = s.makeRoomLocked(recs)
	}
	room := s.opts.MaxBytes - s.unackedLocked()
	s.mu.Unlock()
	if ev.dropped > 0 || ev.carried > 0 {
		s.log.Warn("spool: full; deleted the oldest unread records (drop_oldest), keeping the reserved ones",
			"records", ev.dropped, "reserved_kept", ev.carried, "max_bytes", s.opts.MaxBytes)
	}

	b := s.frameBatch(recs, reserved, first, room, ev)
	dropped = ev.dropped + first + b.refused
	if b.records > 0 {
		if err = s.writeBatch(&b); err != nil {
			dropped = ev.dropped + len(recs) + int(ev.carried)
		}
	}
	s.mu.Lock()
	s.dropped += int64(dropped)
	s.toUnlink = append(s.toUnlink, ev.unlink...)
	s.mu.Unlock()
	if b.records > 0 && err == nil && s.opts.SyncInterval == 0 {
		// The batch is stored either way: an fsync error is logged and
		// counted (Stats.SyncErrors), as with group fsync.
		s.flush(true, false)
	}
	return dropped, err
}

// appendBatch is one Append's frames, written with one write(2).
type appendBatch struct {
	buf      []byte
	records  int64 // frames in buf
	reserved int64 // of them, reserved
	refused  int   // records the room did not take
}

// frameBatch frames recs[first:] behind the reserved records ev carries,
// refusing the records that do not fit in room (ordinary ones: in room less
// ReserveBytes, under drop_newest).
func (s *Spool) frameBatch(recs [][]byte, reserved []bool, first int, room int64, ev eviction) appendBatch {
	b := appendBatch{buf: append(s.wbuf[:0], ev.carry...), records: ev.carried, reserved: ev.carried}
	room -= int64(len(ev.carry))
	reserve := s.opts.ReserveBytes
	if s.opts.Full == FullDropOldest {
		reserve = 0 // room is made by evicting
	}
	now := time.Now().UnixNano()
	for i := first; i < len(recs); i++ {
		r := recs[i]
		res := reserved != nil && reserved[i]
		fs := frameSize(r)
		limit := room - reserve
		if res {
			limit = room
		}
		if fs > limit || len(r) > math.MaxUint32 {
			b.refused++
			continue
		}
		room -= fs
		b.buf = appendFrame(b.buf, r, now, res)
		b.records++
		if res {
			b.reserved++
		}
	}
	s.wbuf = b.buf
	if cap(s.wbuf) > 8<<20 {
		s.wbuf = nil // do not pin one huge batch's buffer
	}
	return b
}

// writeBatch writes b to the active segment (a new one if it would
// overflow) and publishes it to the reader.
func (s *Spool) writeBatch(b *appendBatch) error {
	if s.active == nil || (s.wEnd > segHeaderSize && s.wEnd+int64(len(b.buf)) > s.opts.SegmentBytes) {
		if err := s.roll(); err != nil {
			return fmt.Errorf("spool: new segment: %w", err)
		}
	}
	if n, err := s.active.WriteAt(b.buf, s.wEnd); err != nil {
		s.writeFailed(n)
		return fmt.Errorf("spool: write segment %d: %w", s.activeSeq, err)
	}

	s.mu.Lock()
	seg := s.segs[len(s.segs)-1]
	start := s.wEnd
	s.wEnd += int64(len(b.buf))
	seg.end = s.wEnd
	seg.n += b.records
	seg.reserved += b.reserved
	s.segBytes += int64(len(b.buf))
	s.segRecords += b.records
	s.memPutLocked(seg.seq, start, s.wEnd, b.buf)
	s.markDirtyLocked()
	s.mu.Unlock()
	s.signal(s.dataCh)
	return nil
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

// removeSegLocked forgets segs[i] and returns its sequence number: the
// caller queues its file for the flusher to delete (toUnlink).
func (s *Spool) removeSegLocked(i int) uint64 {
	g := s.segs[i]
	if i == 0 {
		s.segs[0] = nil
		s.segs = s.segs[1:]
		if len(s.segs) == 0 {
			s.segs = s.segs[:0:0]
		}
	} else {
		s.segs = slices.Delete(s.segs, i, i+1)
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
	s.memDropThroughLocked(g.seq)
	return g.seq
}

// gcLocked deletes the segments that are wholly acknowledged.
func (s *Spool) gcLocked() {
	for len(s.segs) > 0 {
		g := s.segs[0]
		if g.seq < s.ack.Segment || (g.seq == s.ack.Segment && g.sealed && s.ack.Offset >= g.end) {
			s.toUnlink = append(s.toUnlink, s.removeSegLocked(0))
			continue
		}
		return
	}
}
