package publish

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Lines writes one JSON object per line to a writer: standard output, or a
// file opened with O_APPEND. Writes are buffered and flushed at the end of
// every Write call (stdout, so a person watching sees events as they come)
// or at most FlushInterval after the event (file), so that an event is on
// disk within that bound without a write(2) per event.
type Lines struct {
	mu       sync.Mutex
	w        *bufio.Writer
	f        *os.File // nil for stdout
	path     string
	name     string
	eager    bool
	dirty    bool
	stop     chan struct{}
	stopped  chan struct{}
	writeErr error
	closed   sync.Once
}

// NewStdout returns a sink that writes to standard output.
func NewStdout() *Lines {
	return &Lines{w: bufio.NewWriterSize(os.Stdout, 256<<10), name: "stdout", eager: true}
}

// NewWriter returns a sink over any writer, flushed at the end of each
// Write call (tests, pipes).
func NewWriter(w io.Writer, name string) *Lines {
	return &Lines{w: bufio.NewWriterSize(w, 256<<10), name: name, eager: true}
}

// NewFile opens path for appending (creating it 0600) and flushes the buffer
// at least every flushInterval (default 10ms, as in the configuration). Reopen reopens the path,
// for logrotate.
func NewFile(path string, flushInterval time.Duration) (*Lines, error) {
	if flushInterval <= 0 {
		flushInterval = 10 * time.Millisecond
	}
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	l := &Lines{w: bufio.NewWriterSize(f, 256<<10), f: f, path: path, name: "file:" + path,
		stop: make(chan struct{}), stopped: make(chan struct{})}
	go l.flusher(flushInterval)
	return l, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("output file: %w", err)
	}
	return f, nil
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
			if l.dirty {
				l.flushLocked()
			}
			l.mu.Unlock()
		}
	}
}

func (l *Lines) flushLocked() {
	if err := l.w.Flush(); err != nil && l.writeErr == nil {
		l.writeErr = err
	}
	l.dirty = false
}

// Name implements Sink.
func (l *Lines) Name() string { return l.name }

// Write implements Sink. A write error (disk full) is returned once and
// then retried on the next call; the lines are not dropped silently: the
// caller counts them as lost.
func (l *Lines) Write(msgs []Message) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range msgs {
		l.w.Write(msgs[i].Value)
		l.w.WriteByte('\n')
	}
	l.dirty = true
	if l.eager {
		l.flushLocked()
	}
	if err := l.writeErr; err != nil {
		l.writeErr = nil
		l.w.Reset(l.target())
		return len(msgs), fmt.Errorf("%s: %w", l.name, err)
	}
	return 0, nil
}

func (l *Lines) target() io.Writer {
	if l.f != nil {
		return l.f
	}
	return os.Stdout
}

// Reopen flushes and reopens the output file (after logrotate moved it).
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
	l.f = f
	l.w.Reset(f)
	return nil
}

// Close implements Sink: it flushes and closes the file. Only the first
// call does anything.
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
	err := l.writeErr
	if l.f != nil {
		if serr := l.f.Sync(); err == nil {
			err = serr
		}
		if cerr := l.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
