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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Open opens (creating if needed) the spool in opts.Dir and recovers it:
// segments wholly acknowledged by the checkpoint are deleted; every record of
// the others is checked (length and CRC-32C) and a segment is truncated at its
// first bad record with one slog.Warn line naming the segment, the offset and
// the bytes cut; a missing or corrupt checkpoint means delivering again from
// the oldest segment (at-least-once). Garbage never makes it fail or panic;
// only I/O errors (and a directory in use by another Spool) do.
func Open(opts Options) (*Spool, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(opts.Dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool: directory %s is in use by another spool", opts.Dir)
		}
		return nil, fmt.Errorf("spool: lock %s: %w", opts.Dir, err)
	}
	dir, err := os.Open(opts.Dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{
		opts:     opts,
		log:      opts.Logger,
		dir:      dir,
		lock:     lock,
		kick:     make(chan struct{}, 1),
		dataCh:   make(chan struct{}, 1),
		closedCh: make(chan struct{}),
		quit:     make(chan struct{}),
		bgDone:   make(chan struct{}),
	}
	if opts.MemoryBytes > 0 {
		s.arena = make([]byte, opts.MemoryBytes)
	}
	if err := s.recover(); err != nil {
		dir.Close()
		lock.Close()
		return nil, err
	}
	go s.background()
	return s, nil
}

// readCheckpoint returns the acknowledged position, or why the checkpoint is
// unusable (found reports whether a file exists).
func readCheckpoint(path string) (pos Pos, found bool, bad string, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Pos{}, false, "", nil
	}
	if err != nil {
		return Pos{}, true, "", err
	}
	switch {
	case len(b) != ckptSize:
		return Pos{}, true, fmt.Sprintf("size %d, want %d", len(b), ckptSize), nil
	case string(b[:8]) != ckptMagic:
		return Pos{}, true, "bad magic", nil
	case crc32.Checksum(b[:24], castagnoli) != binary.LittleEndian.Uint32(b[24:]):
		return Pos{}, true, "CRC mismatch", nil
	}
	pos = Pos{binary.LittleEndian.Uint64(b[8:]), int64(binary.LittleEndian.Uint64(b[16:]))}
	if pos.Offset < 0 {
		return Pos{}, true, "negative offset", nil
	}
	return pos, true, "", nil
}

// segScan is the result of checking one segment file.
type segScan struct {
	size     int64  // file size
	valid    int64  // end of the last good record; 0: no valid header
	n        int64  // good records
	reserved int64  // of them, marked reserved
	reason   string // why the scan stopped before size
	ackBound int64  // last record boundary <= ackOff
	ackN     int64  // records ending at or before ackBound
}

// scanSegment checks every record of f. ackOff (or -1) is the checkpoint's
// offset in this segment.
func scanSegment(f *os.File, br *bufio.Reader, scratch []byte, ackOff int64) (segScan, error) {
	var r segScan
	fi, err := f.Stat()
	if err != nil {
		return r, err
	}
	r.size = fi.Size()
	br.Reset(io.NewSectionReader(f, 0, r.size))
	var h [frameHeaderSize]byte
	if r.size < segHeaderSize {
		r.reason = "short segment header"
		return r, nil
	}
	if _, err := io.ReadFull(br, h[:segHeaderSize]); err != nil {
		return r, err
	}
	if string(h[:8]) != segMagic || binary.LittleEndian.Uint32(h[8:]) != formatVersion {
		r.reason = "bad segment header"
		return r, nil
	}
	off := int64(segHeaderSize)
	r.valid, r.ackBound = off, off
	for off < r.size {
		if r.size-off < frameHeaderSize {
			r.reason = "torn record header"
			break
		}
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return r, err
		}
		l := int64(binary.LittleEndian.Uint32(h[:]))
		if l > r.size-off-frameHeaderSize {
			r.reason = fmt.Sprintf("record length %d runs past the end of the file", l)
			break
		}
		c := crc32.Update(0, castagnoli, h[8:])
		for rem := l; rem > 0; {
			k := min(rem, int64(len(scratch)))
			if _, err := io.ReadFull(br, scratch[:k]); err != nil {
				return r, err
			}
			c = crc32.Update(c, castagnoli, scratch[:k])
			rem -= k
		}
		if c != binary.LittleEndian.Uint32(h[4:]) {
			r.reason = "CRC mismatch"
			break
		}
		off += frameHeaderSize + l
		r.n++
		if binary.LittleEndian.Uint64(h[8:])&reservedBit != 0 {
			r.reserved++
		}
		r.valid = off
		if off <= ackOff {
			r.ackBound, r.ackN = off, r.n
		}
	}
	return r, nil
}

// recover rebuilds the spool's state from Dir: the checkpoint, then every
// segment file in sequence order.
func (s *Spool) recover() error {
	dir := s.opts.Dir
	ack, found, bad, err := s.recoverCheckpoint()
	if err != nil {
		return err
	}
	diskAck := ack
	seqs, err := s.listSegments(ack)
	if err != nil {
		return err
	}
	rs := recoverScan{br: bufio.NewReaderSize(nil, 1<<20), scratch: make([]byte, 64<<10)}
	for _, seq := range seqs {
		if err := s.recoverSegment(&rs, seq, &ack); err != nil {
			return err
		}
	}
	if rs.removed {
		if err := s.dir.Sync(); err != nil {
			return fmt.Errorf("spool: fsync %s: %w", dir, err)
		}
	}
	if !found && len(s.segs) > 0 {
		s.log.Info("spool: no checkpoint; delivering from the oldest segment", "dir", dir)
	}
	s.ack = ack
	s.readPos = ack
	s.ckptPos = diskAck
	if bad != "" {
		s.ckptPos = Pos{math.MaxUint64, 0} // rewrite it at the first flush
	}
	return nil
}

// recoverCheckpoint removes a checkpoint.tmp left by a crash and reads the
// checkpoint: the acknowledged position, whether the file exists, and why
// it is unusable ("" if it is not), which is logged here.
func (s *Spool) recoverCheckpoint() (ack Pos, found bool, bad string, err error) {
	dir := s.opts.Dir
	if err := os.Remove(filepath.Join(dir, ckptTmpName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return Pos{}, false, "", fmt.Errorf("spool: %w", err)
	}
	ack, found, bad, err = readCheckpoint(filepath.Join(dir, ckptName))
	if err != nil {
		return Pos{}, false, "", fmt.Errorf("spool: read checkpoint: %w", err)
	}
	if bad != "" {
		s.log.Warn("spool: checkpoint unusable; delivering again from the oldest segment (at-least-once)",
			"file", filepath.Join(dir, ckptName), "reason", bad)
	}
	return ack, found, bad, nil
}

// listSegments returns the sequence numbers of the segment files in Dir,
// ascending, and sets the next one to use past them and past ack's.
func (s *Spool) listSegments(ack Pos) ([]uint64, error) {
	dir := s.opts.Dir
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var seqs []uint64
	for _, e := range ents {
		name := e.Name()
		if len(name) != segNameDigits+len(segSuffix) || !strings.HasSuffix(name, segSuffix) || !e.Type().IsRegular() {
			continue
		}
		seq, err := strconv.ParseUint(name[:segNameDigits], 10, 64)
		if err != nil || seq == 0 {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	maxSeq := ack.Segment
	if len(seqs) > 0 {
		maxSeq = max(maxSeq, seqs[len(seqs)-1])
	}
	if maxSeq == math.MaxUint64 {
		return nil, fmt.Errorf("spool: segment sequence exhausted in %s", dir)
	}
	s.nextSeq = maxSeq + 1
	return seqs, nil
}

// recoverScan is what the segments' recovery shares: the read buffers, and
// whether a file was deleted (then the directory is fsync'd once at the end).
type recoverScan struct {
	br      *bufio.Reader
	scratch []byte
	removed bool
}

func (s *Spool) removeSegment(rs *recoverScan, seq uint64) error {
	rs.removed = true
	if err := os.Remove(s.segPath(seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// recoverSegment checks segment seq, cuts its bad tail, moves *ack to a
// record boundary if the checkpoint is in it, and keeps the segment unless
// nothing of it is left to deliver.
func (s *Spool) recoverSegment(rs *recoverScan, seq uint64, ack *Pos) error {
	if seq < ack.Segment {
		return s.removeSegment(rs, seq) // wholly acknowledged
	}
	path := s.segPath(seq)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	ackOff := int64(-1)
	if seq == ack.Segment {
		ackOff = ack.Offset
	}
	r, err := scanSegment(f, rs.br, rs.scratch, ackOff)
	if err != nil {
		err = fmt.Errorf("spool: read %s: %w", path, err)
	} else {
		err = s.cutBadTail(f, r)
	}
	f.Close()
	if err != nil {
		return err
	}
	if seq == ack.Segment {
		s.alignAck(ack, r, path)
	}
	if r.n == 0 || (seq == ack.Segment && ack.Offset >= r.valid) {
		if seq == ack.Segment {
			s.ackN = 0
		}
		return s.removeSegment(rs, seq)
	}
	g := &segment{seq: seq, end: r.valid, n: r.n, reserved: r.reserved, sealed: true}
	s.segs = append(s.segs, g)
	s.segBytes += g.end - segHeaderSize
	s.segRecords += g.n
	return nil
}

// cutBadTail truncates f after its last good record (scanned as r), with
// one log line, and counts the bytes cut as corrupt.
func (s *Spool) cutBadTail(f *os.File, r segScan) error {
	if r.valid >= r.size {
		return nil
	}
	path := f.Name()
	cut := r.size - r.valid
	s.corrupt += cut
	if r.valid == 0 && r.size == 0 {
		s.log.Info("spool: removing an empty segment (crash while it was created)", "segment", path)
	} else {
		s.log.Warn("spool: truncating torn or corrupt segment tail", "segment", path,
			"offset", r.valid, "bytes_cut", cut, "records_kept", r.n, "reason", r.reason)
	}
	if r.valid == 0 {
		return nil // no valid header: the segment is removed
	}
	if err := f.Truncate(r.valid); err != nil {
		return fmt.Errorf("spool: truncate %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: fsync %s: %w", path, err)
	}
	return nil
}

// alignAck moves the checkpoint's position in its segment (scanned as r) to
// a record boundary the segment still has, and sets the count of records
// acknowledged in it.
func (s *Spool) alignAck(ack *Pos, r segScan, path string) {
	switch {
	case ack.Offset > r.valid:
		// Acknowledged records were cut (data fsync lagged the
		// checkpoint): they were delivered, the rest is gone.
		ack.Offset = r.valid
		s.ackN = r.n
	case ack.Offset != r.ackBound:
		s.log.Warn("spool: checkpoint is not at a record boundary; delivering again from the record before it (at-least-once)",
			"segment", path, "checkpoint_offset", ack.Offset, "restart_offset", r.ackBound)
		ack.Offset = r.ackBound
		s.ackN = r.ackN
	default:
		s.ackN = r.ackN
	}
	if ack.Offset < segHeaderSize {
		ack.Offset = segHeaderSize
	}
}
