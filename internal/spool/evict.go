package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
)

// eviction is what drop_oldest did to make room for one Append.
type eviction struct {
	dropped int    // ordinary unacknowledged records deleted
	carry   []byte // the reserved records of the deleted segments, as frames, oldest first
	carried int64  // records in carry
	// unlink is the deleted segments, whose files go only once the batch
	// carrying their reserved records is written: a crash in between
	// delivers them twice, never not at all.
	unlink []uint64
}

// makeRoomLocked (drop_oldest) picks the newest records of recs that fit in
// MaxBytes (recs[first:]) and deletes old records to make room for them.
func (s *Spool) makeRoomLocked(recs [][]byte) (first int, ev eviction) {
	maxBytes := s.opts.MaxBytes
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
	return first, s.evictLocked(need)
}

// evictLocked deletes segments, oldest first, until need more bytes fit
// under MaxBytes, and deletes only records nobody will deliver, so that the
// count it returns is exact:
//   - a segment whose unacknowledged records the reader has begun to take
//     is kept: they are on their way to Kafka, and deleting them would
//     count as lost what is delivered;
//   - a deleted segment's reserved records (loss events and namespace
//     registry records) are carried into the batch being appended: what
//     was lost is still said, after the events that followed it;
//   - a segment whose reserved records cannot be read back is kept.
func (s *Spool) evictLocked(need int64) eviction {
	var ev eviction
	for i := 0; i < len(s.segs) && s.unackedLocked()+need+int64(len(ev.carry)) > s.opts.MaxBytes; {
		g := s.segs[i]
		from := s.unackedFromLocked(g)
		if from.Offset >= g.end || from.Less(s.readPos) {
			i++ // nothing unacknowledged, or some of it is being delivered
			continue
		}
		carry, n, err := s.reservedFrames(g, from.Offset, ev.carry)
		if err != nil {
			s.log.Error("spool: cannot read back the reserved records of a segment drop_oldest would delete; keeping the segment",
				"segment", s.segPath(g.seq), "err", err)
			i++
			continue
		}
		unacked := g.n
		if g.seq == s.ack.Segment {
			unacked -= s.ackN
		}
		ev.carry, ev.carried = carry, ev.carried+n
		ev.dropped += int(max(unacked-n, 0))
		ev.unlink = append(ev.unlink, s.removeSegLocked(i))
		if s.readPos.Segment == g.seq {
			s.readGen++ // a read of the segment under way starts again
		}
	}
	return ev
}

// unackedFromLocked is where g's unacknowledged records start.
func (s *Spool) unackedFromLocked(g *segment) Pos {
	if g.seq == s.ack.Segment {
		return s.ack
	}
	return Pos{g.seq, segHeaderSize}
}

// reservedFrames appends to dst the frames of g's reserved records from
// offset from on (CRC checked), and returns how many it appended. It reads
// the file only if g holds reserved records.
func (s *Spool) reservedFrames(g *segment, from int64, dst []byte) ([]byte, int64, error) {
	if g.reserved == 0 {
		return dst, 0, nil
	}
	base := len(dst)
	fail := func(off int64, err error) ([]byte, int64, error) {
		return dst[:base], 0, fmt.Errorf("offset %d: %w", off, err)
	}
	f, err := os.Open(s.segPath(g.seq))
	if err != nil {
		return dst, 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(io.NewSectionReader(f, from, g.end-from), 256<<10)
	var n int64
	var h [frameHeaderSize]byte
	for off := from; off < g.end; off += frameHeaderSize + int64(binary.LittleEndian.Uint32(h[:])) {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return fail(off, err)
		}
		l := int64(binary.LittleEndian.Uint32(h[:]))
		if l > g.end-off-frameHeaderSize {
			return fail(off, fmt.Errorf("record length %d runs past the written data", l))
		}
		if binary.LittleEndian.Uint64(h[8:])&reservedBit == 0 {
			if _, err := br.Discard(int(l)); err != nil {
				return fail(off, err)
			}
			continue
		}
		at := len(dst)
		dst = append(append(dst, h[:]...), make([]byte, l)...)
		if _, err := io.ReadFull(br, dst[at+frameHeaderSize:]); err != nil {
			return fail(off, err)
		}
		if crc32.Update(0, castagnoli, dst[at+8:]) != binary.LittleEndian.Uint32(h[4:]) {
			return fail(off, errors.New("CRC mismatch"))
		}
		n++
	}
	return dst, n, nil
}
