package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Buffer limits of a Lines sink: past LinesBufferBytes of lines not yet
// written (the disk is full, the reader of stdout is stuck) ordinary lines
// are refused and counted; reserved ones (loss events, registry records)
// may use LinesReserveBytes more.
const (
	LinesBufferBytes  = 8 << 20
	LinesReserveBytes = 1 << 20
	linesWriteAt      = 256 << 10 // a buffer this full is written at once
	linesKeepBytes    = 2 << 20   // the buffer kept between writes, at most
)

// Lines writes one JSON object per line to a writer: standard output, or a
// file opened with O_APPEND. Lines are buffered and written at the end of
// every Write call (stdout, so a person watching sees events as they come)
// or at most FlushInterval after the event (file), so that an event is on
// disk within that bound without a write(2) per event.
//
// A line is written whole, once, or counted: when a write fails (ENOSPC)
// the lines not written stay buffered and are written again every interval
// until the write succeeds; a line cut by a short write is cut from the
// file again (truncate), so no partial line stays; and a Write whose lines
// do not fit in the buffer returns how many it refused. Reopen (logrotate)
// writes what is buffered to the old file before it opens the new one.
type Lines struct {
	mu       sync.Mutex
	buf      []byte // complete lines not written yet
	f        *os.File
	w        io.Writer // f, or stdout, or the writer given
	path     string
	name     string
	eager    bool
	failing  error // the last write error, until a write succeeds
	needNL   bool  // a cut line could not be truncated: end it first
	stop     chan struct{}
	stopped  chan struct{}
	closed   sync.Once
	maxBytes int
	// rd reads the file the lines go to, when they go to one: f, or
	// standard output's file (NewStdout). mark is its identity and size,
	// kept up to date.
	rd   *os.File
	mark Mark
}

// Mark is a place in an output file: its device and inode, and a size. A
// run records the mark before it writes a batch, so that the next run,
// after a kill -9, can read what that write left (LinesSince).
type Mark struct {
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
	Size int64  `json:"size"`
}

// Mark returns where the lines written from now on will land; ok is false
// for writers and a standard output that is not a file.
func (l *Lines) Mark() (m Mark, ok bool) {
	if l.rd == nil {
		return Mark{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mark, true
}

// LinesSince calls fn with each whole line the file holds past m, if the
// file at l's path is still the one m names and no shorter; ok is false
// otherwise (rotated, truncated, standard output).
func (l *Lines) LinesSince(m Mark, fn func(line []byte)) (ok bool, err error) {
	if l.rd == nil {
		return false, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mark.Dev != m.Dev || l.mark.Ino != m.Ino || l.mark.Size < m.Size {
		return false, nil
	}
	b := make([]byte, l.mark.Size-m.Size)
	if _, err := l.rd.ReadAt(b, m.Size); err != nil {
		return false, err
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break // a cut line: not written whole
		}
		fn(b[:i])
		b = b[i+1:]
	}
	return true, nil
}

// remark reads the file's identity and size again (open, truncate).
func (l *Lines) remark() {
	var st syscall.Stat_t
	if l.rd == nil || syscall.Fstat(int(l.rd.Fd()), &st) != nil {
		return
	}
	l.mark = Mark{Dev: uint64(st.Dev), Ino: st.Ino, Size: st.Size}
}

// NewStdout returns a sink that writes to standard output. When that is a
// regular file written at its end (systemd's StandardOutput=append:, a
// shell's >>), what a kill -9 leaves is handled as the file sink does: a
// line the killed run cut is ended before the first new one, and the next
// run reads back the batch the state names (Mark, LinesSince). SIGHUP does
// not reopen it: the sink does not know its path.
func NewStdout() *Lines { return newStdout(os.Stdout) }

func newStdout(out *os.File) *Lines {
	l := &Lines{w: out, name: "stdout", eager: true, maxBytes: LinesBufferBytes}
	if rd := appendedFile(out); rd != nil {
		l.rd, l.needNL = rd, cutLine(rd)
		l.remark()
	}
	return l
}

// appendedFile opens for reading the regular file out writes to with
// O_APPEND, or returns nil.
func appendedFile(out *os.File) *os.File {
	var st, rst syscall.Stat_t
	if syscall.Fstat(int(out.Fd()), &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil
	}
	if fl, err := unix.FcntlInt(out.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_APPEND == 0 {
		return nil
	}
	rd, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", out.Fd()))
	if err != nil {
		return nil
	}
	if syscall.Fstat(int(rd.Fd()), &rst) != nil || rst.Dev != st.Dev || rst.Ino != st.Ino {
		rd.Close()
		return nil
	}
	return rd
}

// NewWriter returns a sink over any writer, written at the end of each
// Write call (tests, pipes).
func NewWriter(w io.Writer, name string) *Lines {
	return &Lines{w: w, name: name, eager: true, maxBytes: LinesBufferBytes}
}

// DefaultFlushInterval is NewFile's flushInterval when it is not positive
// (and the configuration key output.flush_interval's default).
const DefaultFlushInterval = 10 * time.Millisecond

// NewFile opens path for appending (creating it 0600) and writes the buffer
// at least every flushInterval (default DefaultFlushInterval).
// Reopen reopens the path, for logrotate.
func NewFile(path string, flushInterval time.Duration) (*Lines, error) {
	if flushInterval <= 0 {
		flushInterval = DefaultFlushInterval
	}
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	l := &Lines{f: f, w: f, rd: f, path: path, name: "file:" + path, maxBytes: LinesBufferBytes,
		stop: make(chan struct{}), stopped: make(chan struct{}), needNL: cutLine(f)}
	l.remark()
	go l.flusher(flushInterval)
	return l, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("output file: %w", err)
	}
	return f, nil
}

// cutLine reports whether f ends in the middle of a line (a process
// killed in a write): the next line then starts on a line of its own.
func cutLine(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return false
	}
	var last [1]byte
	_, err = f.ReadAt(last[:], fi.Size()-1)
	return err == nil && last[0] != '\n'
}

func (l *Lines) flusher(every time.Duration) {
	defer close(l.stopped)
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			l.flushLocked()
			l.mu.Unlock()
		}
	}
}

// flushLocked writes the buffer. What a failed write did not write whole
// stays buffered.
func (l *Lines) flushLocked() {
	if len(l.buf) == 0 {
		return
	}
	if l.needNL {
		if _, err := l.w.Write([]byte{'\n'}); err != nil {
			l.failing = err
			return
		}
		l.needNL = false
		l.mark.Size++
	}
	n, err := l.w.Write(l.buf)
	l.mark.Size += int64(n)
	if err == nil && n == len(l.buf) {
		l.failing = nil
		// A pipeline batch (up to 512 events) fills a few hundred KiB:
		// keep what that needs, or every batch grows the buffer again; a
		// backlog that grew it past keepBytes gives the memory back.
		if cap(l.buf) > linesKeepBytes {
			l.buf = nil
		} else {
			l.buf = l.buf[:0]
		}
		return
	}
	if err == nil {
		err = io.ErrShortWrite
	}
	l.failing = err
	whole := bytes.LastIndexByte(l.buf[:n], '\n') + 1
	if cut := n - whole; cut > 0 {
		l.needNL = true
		if l.f != nil {
			if fi, serr := l.f.Stat(); serr == nil && l.f.Truncate(fi.Size()-int64(cut)) == nil {
				l.needNL = false
			}
			l.remark()
		}
	}
	l.buf = append(l.buf[:0], l.buf[whole:]...)
}

// Name implements Sink.
func (l *Lines) Name() string { return l.name }

// Write implements Sink. Lines that do not fit in the buffer are refused
// and counted in dropped; err is the write error while writing fails, the
// lines taken staying buffered.
func (l *Lines) Write(msgs []Message) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cause := l.failing // why the buffer is full, if it is
	dropped := 0
	for i := range msgs {
		m := &msgs[i]
		limit := l.maxBytes
		if m.Reserved {
			limit += LinesReserveBytes
		}
		if len(l.buf)+len(m.Value)+1 > limit {
			dropped++
			continue
		}
		l.buf = append(l.buf, m.Value...)
		l.buf = append(l.buf, '\n')
	}
	if l.eager || len(l.buf) >= linesWriteAt {
		l.flushLocked()
	}
	if err := l.failing; err != nil {
		return dropped, fmt.Errorf("%s: %w", l.name, err)
	}
	if dropped > 0 {
		if cause == nil {
			cause = ErrBufferFull
		}
		return dropped, fmt.Errorf("%s: %w", l.name, cause)
	}
	return dropped, nil
}

// ErrBufferFull is a Lines sink refusing lines while its buffer is full.
var ErrBufferFull = errors.New("output buffer full")

// Flush writes what is buffered now; it returns the write error while
// writing fails.
func (l *Lines) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
	return l.failing
}

// Health reports a write error while writing fails.
func (l *Lines) Health() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing != nil {
		return fmt.Errorf("%s: writing fails (%d bytes buffered): %w", l.name, len(l.buf), l.failing)
	}
	return nil
}

// Reopen writes what is buffered to the output file and opens the path
// again (after logrotate moved it): every line goes to the old file or to
// the new one, once. Lines the old file could not take go to the new one.
func (l *Lines) Reopen() error {
	if l.f == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
	f, err := openAppend(l.path)
	if err != nil {
		return err
	}
	l.f.Close()
	l.f, l.w, l.rd, l.needNL = f, f, f, cutLine(f)
	l.remark()
	return nil
}

// Close implements Sink: it writes what is buffered and closes the file.
// Lines it cannot write are reported in the error. Only the first call
// does anything.
func (l *Lines) Close(context.Context) error {
	var err error
	l.closed.Do(func() { err = l.close() })
	return err
}

func (l *Lines) close() error {
	if l.stop != nil {
		close(l.stop)
		<-l.stopped
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
	var err error
	if len(l.buf) > 0 {
		err = fmt.Errorf("%s: %d lines not written: %w", l.name, bytes.Count(l.buf, []byte{'\n'}), l.failing)
	}
	if l.f != nil {
		if serr := l.f.Sync(); err == nil {
			err = serr
		}
		if cerr := l.f.Close(); err == nil {
			err = cerr
		}
	} else if l.rd != nil {
		l.rd.Close() // standard output's file, opened for reading
	}
	return err
}
