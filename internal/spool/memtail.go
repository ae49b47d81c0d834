package spool

import (
	"encoding/binary"
	"slices"
)

// The in-memory tail: a copy of the most recently appended batches, from
// which Next reads while the reader keeps up with the writer.

// memBlock is one Append batch kept in the in-memory arena, exactly as written
// to the segment (frames with headers).
type memBlock struct {
	seq        uint64
	start, end int64 // segment offsets
	at         int   // offset in the arena
}

// memPutLocked keeps a copy of one appended batch for the reader.
func (s *Spool) memPutLocked(seq uint64, start, end int64, frames []byte) {
	if s.arena == nil {
		return
	}
	n := len(frames)
	if n > len(s.arena) {
		s.blocks.Reset() // the copy must stay a contiguous tail of the log
		return
	}
	at := s.memAllocLocked(n)
	copy(s.arena[at:at+n], frames)
	s.blocks.PushBack(memBlock{seq: seq, start: start, end: end, at: at})
}

// memAllocLocked returns where n bytes fit in the arena, evicting the oldest
// blocks as needed.
func (s *Spool) memAllocLocked(n int) int {
	size := len(s.arena)
	for s.blocks.Len() > 0 {
		oldest := s.blocks.Front().at
		nb := s.blocks.Back()
		head := nb.at + int(nb.end-nb.start)
		if nb.at >= oldest { // free: [head, size) and [0, oldest)
			if head+n <= size {
				return head
			}
			if n <= oldest {
				return 0
			}
		} else if head+n <= oldest { // wrapped: free [head, oldest)
			return head
		}
		s.blocks.PopFront()
	}
	return 0
}

// memDropThroughLocked forgets blocks of segments <= seq.
func (s *Spool) memDropThroughLocked(seq uint64) {
	for s.blocks.Len() > 0 && s.blocks.Front().seq <= seq {
		s.blocks.PopFront()
	}
}

// memFindLocked returns the index of the block holding the record that starts
// at p, or -1.
func (s *Spool) memFindLocked(p Pos) int {
	bl := s.blocks.Items()
	if len(bl) == 0 || p.Less(Pos{bl[0].seq, bl[0].start}) {
		return -1
	}
	i, _ := slices.BinarySearchFunc(bl, p, func(b memBlock, t Pos) int {
		if t.Less(Pos{b.seq, b.start}) {
			return 1
		}
		return -1
	})
	i-- // last block starting at or before p
	if i < 0 || bl[i].seq != p.Segment || p.Offset >= bl[i].end {
		return -1
	}
	return i
}

// memReadLocked returns records starting at the read position from memory,
// all from one segment; ok is false if the position is not in memory.
func (s *Spool) memReadLocked(maxRecs, maxBytes int) (recs []Record, ok bool) {
	i := s.memFindLocked(s.readPos)
	if i < 0 {
		return nil, false
	}
	bl := s.blocks.Items()
	seq := s.readPos.Segment
	// Pass 1: count.
	count, total := 0, 0
	bi, off := i, s.readPos.Offset
scan:
	for bi < len(bl) && bl[bi].seq == seq && count < maxRecs {
		b := bl[bi]
		for off < b.end && count < maxRecs {
			at := b.at + int(off-b.start)
			l := int(binary.LittleEndian.Uint32(s.arena[at:]))
			if count > 0 && total+l > maxBytes {
				break scan
			}
			count++
			total += l
			off += frameHeaderSize + int64(l)
		}
		bi++
		if bi < len(bl) && (bl[bi].seq != seq || bl[bi].start != b.end) {
			break
		}
	}
	// Pass 2: copy.
	data := make([]byte, total)
	recs = make([]Record, 0, count)
	bi, off = i, s.readPos.Offset
	d := 0
	for len(recs) < count {
		b := bl[bi]
		for off < b.end && len(recs) < count {
			at := b.at + int(off-b.start)
			l := int(binary.LittleEndian.Uint32(s.arena[at:]))
			copy(data[d:d+l], s.arena[at+frameHeaderSize:])
			off += frameHeaderSize + int64(l)
			recs = append(recs, Record{Pos: Pos{seq, off}, Data: data[d : d+l : d+l]})
			d += l
		}
		bi++
	}
	return recs, true
}

// memTSLocked returns the append time of the record starting at p, if it is
// in memory.
func (s *Spool) memTSLocked(p Pos) (int64, bool) {
	i := s.memFindLocked(p)
	if i < 0 {
		return 0, false
	}
	b := s.blocks.At(i)
	at := b.at + int(p.Offset-b.start)
	return appendTime(s.arena[at+8:]), true
}
