// Package spool is a durable, ordered, size-capped write-ahead log of opaque
// records: the Kafka sink appends every message to it and returns at once,
// and its forwarder reads it in order and acknowledges what Kafka took.
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
//	record: u32 length | u32 crc | u64 mark and append time | data[length]
//
// All integers are little endian. The append time is Unix nanoseconds in the
// low 63 bits (the same for every record of one Append call; it feeds
// Stats.OldestUnacked); the top bit marks a reserved record (AppendReserved),
// which drop_oldest must not delete, after a restart too. crc is the CRC-32C
// (Castagnoli) of those 8 bytes followed by the data, so a damaged length,
// mark, time or payload is detected. A Pos is the byte offset just
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
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
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
	// DefaultMemoryBytes is the default Options.MemoryBytes. The in-memory
	// tail saves disk reads while Kafka keeps up; at 10 ms batches a few
	// MiB hold seconds of a busy host's events, and every MiB here is
	// resident memory of the daemon.
	DefaultMemoryBytes = 4 << 20
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

// reservedBit, in a record's time word, marks a reserved record. Append
// times are positive, so the bit is free.
const reservedBit = 1 << 63

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
	// unacknowledged records, until the new records fit. It keeps the
	// segments the reader has begun to take (their records are being
	// delivered) and carries the reserved records of the segments it
	// deletes into the new batch, so a loss event is never deleted. Append
	// reports exactly how many records it deleted.
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
	// always dropped. The reserved records FullDropOldest carries forward
	// are written even when they alone would exceed it. Default 1 GiB.
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
	// Default DefaultMemoryBytes; negative disables the copy (Next always
	// reads disk).
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
	seq uint64
	end int64 // bytes of valid, published records (file offset)
	n   int64 // records in the segment
	// reserved is how many of them are reserved: drop_oldest reads the
	// segment for them before deleting it only when there are some.
	reserved int64
	sealed   bool // no more appends: the writer moved on
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
func appendFrame(b []byte, data []byte, ts int64, reserved bool) []byte {
	off := len(b)
	word := uint64(ts)
	if reserved {
		word |= reservedBit
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, word)
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

// appendTime is the append time in a record's time word.
func appendTime(word []byte) int64 {
	return int64(binary.LittleEndian.Uint64(word) &^ reservedBit)
}
