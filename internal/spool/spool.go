// Spool: a durable, ordered, size-capped write-ahead log between the pipeline
// and Kafka.
//
// # On-disk format (version 1)
//
// Dir holds segment files, a checkpoint and a lock file (all mode 0600, Dir
// 0700):
//
//	00000000000000000001.seg   segments, named by a 20-digit zero-padded
//	00000000000000000002.seg   sequence number (1, 2, ...; never reused)
//	checkpoint                 the acknowledged position
//	checkpoint.tmp             written, fsync'd, then renamed over checkpoint
//	LOCK                       flock(2)ed while a Spool has the directory open
//
// A segment starts with a 16-byte header, then records back to back:
//
//	header: "ANSSPOOL" | u32 version (1) | u32 reserved (0)
//	record: u32 length | u32 crc | u64 append time | data[length]
//
// All integers are little endian. The append time is Unix nanoseconds (the same
// for every record of one Append call; it feeds Stats.OldestUnacked). crc
// is the CRC-32C (Castagnoli) of the 8 time bytes followed by the data, so a
// damaged length, time or payload is detected. A Pos is the byte offset just
// after a record in its segment; positions order like (Segment, Offset).
//
// The checkpoint is 28 bytes: "ANSCKPT1" | u64 segment | u64 offset |
// u32 CRC-32C of the preceding 24 bytes. It holds the last acknowledged Pos.
// The first checkpoint after Open replaces the file through
// checkpoint.tmp; later ones overwrite it in place (see writeCheckpoint).
//
// Recovery (Open) deletes segments that are wholly acknowledged, checks
// every other record's length and CRC, and truncates a segment at its first
// bad record with one slog.Warn line (a torn tail after a crash or power loss).
// Appends after a reopen always go to a new segment, so a recovered segment is
// never written again.

package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/auditns/auditns/internal/fifo"
)

const (
	segHeaderSize   = 16
	frameHeaderSize = 16
	segMagic        = "ANSSPOOL"
	formatVersion   = 1
	ckptMagic       = "ANSCKPT1"
	ckptSize        = 28
	ckptName        = "checkpoint"
	ckptTmpName     = "checkpoint.tmp"
	lockName        = "LOCK"
	segSuffix       = ".seg"
	segNameDigits   = 20

	// DefaultSegmentBytes is the default Options.SegmentBytes.
	DefaultSegmentBytes = 64 << 20
	// DefaultMaxBytes is the default Options.MaxBytes.
	DefaultMaxBytes = 1 << 30
	// DefaultMemoryBytes is the default Options.MemoryBytes.
	DefaultMemoryBytes = 16 << 20
	// DefaultSyncInterval is the group-fsync interval the daemon should
	// configure (Options.SyncInterval's zero value means "fsync every
	// Append").
	DefaultSyncInterval = 50 * time.Millisecond
	// DefaultCheckpointInterval is the default
	// Options.CheckpointInterval.
	// A checkpoint write is a write and an fdatasync (see writeCheckpoint);
	// every 10ms, with a rename and a directory fsync each time, they were
	// half the Kafka sink's CPU at 10,000 events/s.
	DefaultCheckpointInterval = 100 * time.Millisecond
	// DefaultNextBytes is the byte limit Next applies when called with
	// maxBytes <= 0.
	DefaultNextBytes = 1 << 20

	minSegmentBytes = 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed is returned by Spool methods called after Close, and by a
// Next that was waiting when Close was called.
var ErrClosed = errors.New("spool: closed")

// FullPolicy says what Append does when the unacknowledged bytes on disk
// would exceed Options.MaxBytes.
type FullPolicy string

const (
	// FullDropNewest refuses the records that do not fit (the newest) and
	// keeps everything already spooled. Append reports how many it refused.
	FullDropNewest FullPolicy = "drop_newest"
	// FullDropOldest deletes whole segments, oldest first, including
	// unacknowledged records, until the new records fit. Append reports how
	// many unacknowledged records were deleted.
	FullDropOldest FullPolicy = "drop_oldest"
)

// Options configures Open. Zero values select the defaults noted.
type Options struct {
	// Dir is the spool directory (required). It is created with mode 0700
	// if missing; files in it are created 0600. One Spool at a time may use
	// a directory (enforced with flock on Dir/LOCK).
	Dir string

	// SegmentBytes is the size at which the spool starts a new segment file.
	// A segment is rolled before an Append batch that would overflow it, so
	// each batch is one write(2); a single batch larger than SegmentBytes
	// gets a segment of its own. Default 64 MiB, minimum 64 bytes.
	SegmentBytes int64

	// MaxBytes caps the unacknowledged bytes on disk (record framing
	// included). When an Append would exceed it, Full decides. The disk
	// may hold up to one further segment's worth of acknowledged bytes (the
	// partly acknowledged oldest segment). A record larger than MaxBytes is
	// always dropped. Default 1 GiB.
	MaxBytes int64

	// Full is the policy when MaxBytes is reached: FullDropNewest (the
	// default) or FullDropOldest. Either way Append returns the number of
	// records dropped so that the caller can publish a loss event.
	Full FullPolicy

	// ReserveBytes is the part of MaxBytes kept for reserved records
	// (AppendReserved: loss events and registry records): under
	// FullDropNewest other records are refused once they would leave less
	// than this, so that the loss event saying so still fits. Default
	// MaxBytes/16, at most 1 MiB; negative is none.
	ReserveBytes int64

	// SyncInterval bounds the time between an Append and the fsync(2) that
	// makes it durable against power loss (group commit, done by a
	// background goroutine, never by Append). The zero value fsyncs inside
	// every Append call instead: durable on return, but Append then waits for
	// the disk. The daemon's configured default is DefaultSyncInterval
	// (50ms). A process crash (kill -9) loses nothing that Append returned,
	// whatever this setting: the data is in the page cache. fsync errors
	// are logged, counted in Stats.SyncErrors and returned by Sync.
	// Negative is invalid.
	SyncInterval time.Duration

	// MemoryBytes is the size of the in-memory copy of the most recently
	// appended records, from which Next reads while the forwarder keeps up
	// (it reads the segment files only when it falls further behind).
	// Default 16 MiB; negative disables the copy (Next always reads disk).
	MemoryBytes int64

	// CheckpointInterval is the least time between two checkpoint writes
	// (each one is a write in place and an fdatasync, see writeCheckpoint). The latest Ack is
	// always written by Sync and Close. After a crash, records acknowledged
	// within this interval may be delivered again. Default 100ms; negative is
	// invalid.
	CheckpointInterval time.Duration

	// Logger receives recovery warnings and I/O errors. Default
	// slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("spool: Options.Dir is required")
	}
	switch {
	case o.SegmentBytes == 0:
		o.SegmentBytes = DefaultSegmentBytes
	case o.SegmentBytes < minSegmentBytes:
		return o, fmt.Errorf("spool: Options.SegmentBytes must be at least %d, got %d", minSegmentBytes, o.SegmentBytes)
	}
	switch {
	case o.MaxBytes == 0:
		o.MaxBytes = DefaultMaxBytes
	case o.MaxBytes < 0:
		return o, fmt.Errorf("spool: Options.MaxBytes must be positive, got %d", o.MaxBytes)
	}
	switch o.Full {
	case "":
		o.Full = FullDropNewest
	case FullDropNewest, FullDropOldest:
	default:
		return o, fmt.Errorf("spool: Options.Full must be %q or %q, got %q", FullDropNewest, FullDropOldest, o.Full)
	}
	if o.SyncInterval < 0 {
		return o, fmt.Errorf("spool: Options.SyncInterval must not be negative, got %v", o.SyncInterval)
	}
	switch {
	case o.ReserveBytes == 0:
		o.ReserveBytes = min(o.MaxBytes/16, 1<<20)
	case o.ReserveBytes < 0:
		o.ReserveBytes = 0
	case o.ReserveBytes >= o.MaxBytes:
		return o, fmt.Errorf("spool: Options.ReserveBytes must be less than MaxBytes (%d), got %d", o.MaxBytes, o.ReserveBytes)
	}
	if o.MemoryBytes == 0 {
		o.MemoryBytes = DefaultMemoryBytes
	}
	switch {
	case o.CheckpointInterval == 0:
		o.CheckpointInterval = DefaultCheckpointInterval
	case o.CheckpointInterval < 0:
		return o, fmt.Errorf("spool: Options.CheckpointInterval must not be negative, got %v", o.CheckpointInterval)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Pos is the position just after a record: its segment's sequence number and
// the byte offset in that segment. Positions are comparable and ordered like
// (Segment, Offset).
type Pos struct {
	Segment uint64
	Offset  int64
}

// Less reports whether p is before q.
func (p Pos) Less(q Pos) bool {
	return p.Segment < q.Segment || (p.Segment == q.Segment && p.Offset < q.Offset)
}

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Segment, p.Offset) }

// Record is one spooled message. Data belongs to the caller (Next allocates it
// freshly; the spool never touches it again). Pos is what to pass to Ack once
// the record (and all before it) are delivered.
type Record struct {
	Pos  Pos
	Data []byte
}

// Stats is a snapshot for metrics and loss accounting.
type Stats struct {
	// Bytes is the unacknowledged bytes on disk, framing included (the
	// quantity MaxBytes caps).
	Bytes int64
	// DiskBytes is the total size of the live segment files, including the
	// acknowledged part of the oldest one.
	DiskBytes int64
	// Records is the number of unacknowledged records: exact as long as the
	// forwarder acknowledges positions that Next returned (an Ack past what
	// was read makes it count high until those segments are deleted). It is
	// 0 exactly when Bytes is 0.
	Records int64
	// OldestUnacked is the append time of the oldest unacknowledged record;
	// zero when nothing is unacknowledged.
	OldestUnacked time.Time
	// Dropped is the total number of records not stored since Open:
	// refused or deleted by the full policy, and batches whose write failed.
	Dropped int64
	// Segments is the number of live segment files.
	Segments int
	// CorruptBytes counts bytes cut on recovery or skipped as corrupt by
	// Next since Open (their records are lost).
	CorruptBytes int64
	// SyncErrors counts failed fsync(2) calls since Open.
	SyncErrors int64
}

type segment struct {
	seq    uint64
	end    int64 // bytes of valid, published records (file offset)
	n      int64 // records in the segment
	sealed bool  // no more appends: the writer moved on
}

// memBlock is one Append batch kept in the in-memory arena, exactly as written
// to the segment (frames with headers).
type memBlock struct {
	seq        uint64
	start, end int64 // segment offsets
	at         int   // offset in the arena
}

// Spool is a durable, ordered, size-capped write-ahead log of messages. One
// goroutine appends (Append); one other goroutine reads (Next, Rewind) and
// one acknowledges (Ack), which may be the reader or a third one (the Kafka
// sink reads in one goroutine and acknowledges in another); Stats and Sync
// may be called from any goroutine. See the format notes at the top of spool.go.
type Spool struct {
	opts Options
	log  *slog.Logger
	dir  *os.File // for fsync of the directory
	lock *os.File // flock'ed

	// Writer state, owned by Append (wmu). active, activeSeq also change
	// under mu, and are read under mu by the flusher.
	wmu     sync.Mutex
	wbuf    []byte
	wEnd    int64 // write offset in the active segment
	nextSeq uint64

	// Reader state owned by Next (rmu).
	rmu   sync.Mutex
	rf    *os.File
	rfSeq uint64

	// ioMu serialises flushes (fsync, close, unlink, checkpoint).
	ioMu sync.Mutex

	mu         sync.Mutex
	closed     bool
	segs       []*segment // live segments, ascending; the last is active when active != nil
	active     *os.File
	activeSeq  uint64
	ack        Pos
	ackN       int64 // records acknowledged in segs[0] when segs[0].seq == ack.Segment
	readPos    Pos
	readGen    uint64          // bumped by Rewind, Ack past the reader and drops
	inflight   fifo.Queue[Pos] // positions of records returned by Next, not yet acknowledged
	segBytes   int64           // Σ (end - header) over segs
	segRecords int64           // Σ n over segs
	dropped    int64
	corrupt    int64
	syncErrs   int64
	syncErr    error // first fsync error since the last Sync

	arena  []byte
	blocks fifo.Queue[memBlock]

	dirty      bool
	dirtySince time.Time
	toSync     []*os.File // sealed segments: fsync, then close
	toClose    []*os.File // dropped segments: close without fsync
	toUnlink   []uint64
	dirDirty   bool
	ckptPos    Pos // what the checkpoint file holds
	ckptAt     time.Time
	ckptFile   *os.File   // the checkpoint, open for writes in place (under ioMu)
	ackKicked  bool       // the flusher knows about an unwritten Ack
	flushFiles []*os.File // reused by flush (under ioMu)

	oldestPos Pos
	oldestTS  int64
	oldestOK  bool

	kick     chan struct{} // wakes the flusher
	dataCh   chan struct{} // wakes Next (one token)
	closedCh chan struct{}
	quit     chan struct{}
	bgDone   chan struct{}
}

func (s *Spool) segPath(seq uint64) string {
	return filepath.Join(s.opts.Dir, segName(seq))
}

func segName(seq uint64) string {
	return fmt.Sprintf("%0*d%s", segNameDigits, seq, segSuffix)
}

func frameSize(data []byte) int64 { return frameHeaderSize + int64(len(data)) }

// appendFrame appends one record's framing and data to b.
func appendFrame(b []byte, data []byte, ts int64) []byte {
	off := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(ts))
	b = append(b, data...)
	binary.LittleEndian.PutUint32(b[off+4:], crc32.Update(0, castagnoli, b[off+8:]))
	return b
}

func (s *Spool) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// unackedLocked is the number of unacknowledged bytes on disk.
func (s *Spool) unackedLocked() int64 {
	u := s.segBytes
	if len(s.segs) > 0 && s.segs[0].seq == s.ack.Segment {
		u -= s.ack.Offset - segHeaderSize
	}
	return u
}

func (s *Spool) unackedRecordsLocked() int64 {
	if s.unackedLocked() == 0 {
		return 0
	}
	n := s.segRecords
	if len(s.segs) > 0 && s.segs[0].seq == s.ack.Segment {
		n -= s.ackN
	}
	return max(n, 0)
}

// segIndexLocked returns the index of the first live segment with seq >= seq.
func (s *Spool) segIndexLocked(seq uint64) int {
	i, _ := slices.BinarySearchFunc(s.segs, seq, func(g *segment, t uint64) int {
		switch {
		case g.seq < t:
			return -1
		case g.seq > t:
			return 1
		}
		return 0
	})
	return i
}

// markDirtyLocked notes unsynced data; the first note since the last fsync
// wakes the flusher, which then sleeps until the group fsync is due.
func (s *Spool) markDirtyLocked() {
	if !s.dirty {
		s.dirty = true
		s.dirtySince = time.Now()
		if s.opts.SyncInterval > 0 {
			s.signal(s.kick)
		}
	}
}

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

// ---- in-memory tail ----

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
	return int64(binary.LittleEndian.Uint64(s.arena[at+8:])), true
}

// ---- reader ----

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
		p := Pos{g.seq, segHeaderSize}
		if g.seq == s.ack.Segment {
			p.Offset = s.ack.Offset
		}
		if p.Offset < g.end {
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
	return int64(binary.LittleEndian.Uint64(h[8:])), true
}

// Sync makes everything appended and acknowledged so far durable now: it
// fsyncs the segments, writes the checkpoint and deletes wholly acknowledged
// segments. It also reports an fsync error met in the background since the
// last Sync (a later fsync of the same file can succeed although the data
// was lost).
func (s *Spool) Sync() error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	err := s.flush(true, true)
	s.mu.Lock()
	if s.syncErr != nil && s.syncErr != err {
		err = errors.Join(s.syncErr, err)
	}
	s.syncErr = nil
	s.mu.Unlock()
	return err
}

// flush does the pending background I/O: group fsync (when due or forced),
// closing sealed files, deleting segments, and the checkpoint (when due or
// forced). It never holds s.mu during I/O.
func (s *Spool) flush(forceData, forceCkpt bool) error {
	_, err := s.flushWait(forceData, forceCkpt)
	return err
}

// flushWait is flush, and returns how long until the next flush is due (0:
// nothing pending).
func (s *Spool) flushWait(forceData, forceCkpt bool) (time.Duration, error) {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()

	s.mu.Lock()
	now := time.Now()
	files := s.flushFiles[:0]
	nSealed := 0
	var wait time.Duration
	doData := forceData || (s.dirty && now.Sub(s.dirtySince) >= s.opts.SyncInterval)
	dirSync := false
	if doData {
		files = append(files, s.toSync...)
		nSealed = len(files)
		clear(s.toSync)
		s.toSync = s.toSync[:0]
		if s.active != nil {
			files = append(files, s.active)
		}
		s.dirty = false
		dirSync, s.dirDirty = s.dirDirty, false
	} else if s.dirty {
		wait = s.opts.SyncInterval - now.Sub(s.dirtySince)
	}
	toClose := s.toClose
	s.toClose = nil
	unlink := s.toUnlink
	s.toUnlink = nil
	ckpt, ckptPos := false, s.ack
	if s.ack != s.ckptPos {
		if forceCkpt || now.Sub(s.ckptAt) >= s.opts.CheckpointInterval {
			ckpt = true
		} else if w := s.opts.CheckpointInterval - now.Sub(s.ckptAt); wait == 0 || w < wait {
			wait = w
		}
	}
	s.mu.Unlock()

	var firstErr error
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	var syncErrs int64
	for i, f := range files {
		if err := f.Sync(); err != nil {
			syncErrs++
			s.log.Error("spool: fsync failed; records since the last good fsync may be lost on power failure", "file", f.Name(), "err", err)
			fail(fmt.Errorf("spool: fsync %s: %w", f.Name(), err))
		}
		if i < nSealed {
			f.Close()
		}
		files[i] = nil
	}
	s.flushFiles = files[:0]
	for _, f := range toClose {
		f.Close()
	}
	for _, seq := range unlink {
		if err := os.Remove(s.segPath(seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("spool: cannot delete segment", "segment", s.segPath(seq), "err", err)
			fail(err)
		}
	}
	var ckptErr error
	dirSynced := false
	if ckpt {
		if dirSynced, ckptErr = s.writeCheckpoint(ckptPos); ckptErr != nil {
			s.log.Error("spool: cannot write checkpoint", "dir", s.opts.Dir, "err", ckptErr)
			fail(ckptErr)
		}
	}
	if (dirSync || len(unlink) > 0) && !dirSynced {
		if err := s.dir.Sync(); err != nil {
			syncErrs++
			fail(fmt.Errorf("spool: fsync %s: %w", s.opts.Dir, err))
		}
	}

	s.mu.Lock()
	s.syncErrs += syncErrs
	if syncErrs > 0 && s.syncErr == nil {
		s.syncErr = firstErr
	}
	if ckpt {
		s.ckptAt = now
		if ckptErr == nil {
			s.ckptPos = ckptPos
		} else if wait == 0 || s.opts.CheckpointInterval < wait {
			wait = s.opts.CheckpointInterval
		}
	}
	if s.ack == s.ckptPos {
		s.ackKicked = false
	} else if wait == 0 {
		wait = s.opts.CheckpointInterval // acknowledged meanwhile
	}
	if s.dirty && wait == 0 {
		wait = s.opts.SyncInterval
	}
	s.mu.Unlock()
	return wait, firstErr
}

// writeCheckpoint durably stores pos in the checkpoint file. The first
// write after Open (or after a failed write) replaces the file
// atomically: a new file, fsync'd, renamed over the old one, and the
// directory fsync'd (dirSynced); that repairs a damaged checkpoint. Later
// writes overwrite its 28 bytes in place and fdatasync the file: one fsync
// instead of two, and no open, truncate or rename. A write in place that a
// power loss tears (28 bytes in one sector: not expected of a disk) leaves a
// checkpoint whose CRC fails, and recovery then delivers the spool again
// from its oldest segment: duplicates, never a loss.
func (s *Spool) writeCheckpoint(pos Pos) (dirSynced bool, err error) {
	var b [ckptSize]byte
	copy(b[:], ckptMagic)
	binary.LittleEndian.PutUint64(b[8:], pos.Segment)
	binary.LittleEndian.PutUint64(b[16:], uint64(pos.Offset))
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	path := filepath.Join(s.opts.Dir, ckptName)
	if f := s.ckptFile; f != nil {
		_, err := f.WriteAt(b[:], 0)
		if err == nil {
			err = syscall.Fdatasync(int(f.Fd()))
		}
		if err == nil {
			return false, nil
		}
		// Start again with a new file next time.
		f.Close()
		s.ckptFile = nil
		return false, err
	}
	tmp := filepath.Join(s.opts.Dir, ckptTmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, err
	}
	if _, err := f.Write(b[:]); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		return false, err
	}
	if err := s.dir.Sync(); err != nil {
		f.Close()
		return true, err
	}
	// The renamed file is the checkpoint: keep it for writes in place.
	s.ckptFile = f
	return true, nil
}

// background runs the flusher: group fsync and checkpoints.
func (s *Spool) background() {
	defer close(s.bgDone)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-s.quit:
			t.Stop()
			return
		case <-s.kick:
		case <-t.C:
		}
		wait, _ := s.flushWait(false, false) // errors are logged and counted
		t.Stop()
		if wait > 0 {
			t.Reset(wait)
		}
	}
}

// Close fsyncs the segments, writes the latest acknowledged position to the
// checkpoint and closes the files. A Next waiting in another goroutine
// returns ErrClosed. Closing twice is a no-op.
func (s *Spool) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closedCh)
	s.mu.Unlock()
	close(s.quit)
	<-s.bgDone

	err := s.flush(true, true)
	s.ioMu.Lock()
	if s.ckptFile != nil {
		s.ckptFile.Close()
		s.ckptFile = nil
	}
	s.ioMu.Unlock()

	s.mu.Lock()
	if s.active != nil {
		s.active.Close()
		s.active = nil
	}
	s.mu.Unlock()
	s.rmu.Lock()
	if s.rf != nil {
		s.rf.Close()
		s.rf = nil
	}
	s.rmu.Unlock()
	s.dir.Close()
	s.lock.Close() // releases the flock
	return err
}
