package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFileSinkFlushesWithinIntervalAndReopens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	s, err := NewFile(path, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if _, err := s.Write([]Message{{Value: []byte(`{"a":1}`)}, {Value: []byte(`{"a":2}`)}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		b, _ := os.ReadFile(path)
		if string(b) == "{\"a\":1}\n{\"a\":2}\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not on disk within 1s: %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// logrotate: move, then reopen.
	os.Rename(path, path+".1")
	if err := s.Reopen(); err != nil {
		t.Fatal(err)
	}
	s.Write([]Message{{Value: []byte(`{"a":3}`)}})
	s.Close(context.Background())
	b, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if string(b) != "{\"a\":3}\n" || strings.Count(string(old), "\n") != 2 {
		t.Fatalf("after reopen: new %q old %q", b, old)
	}
}

// fullDisk takes writes until it holds room bytes, then writes what fits
// and fails with ENOSPC, as a full file system does.
type fullDisk struct {
	got  []byte
	room int
}

func (d *fullDisk) Write(b []byte) (int, error) {
	n := min(len(b), d.room-len(d.got))
	d.got = append(d.got, b[:n]...)
	if n < len(b) {
		return n, syscall.ENOSPC
	}
	return n, nil
}

// A disk that fills: lines are written whole, once, or refused and
// counted; when it has room again the buffered lines follow.
func TestLinesDiskFullExactCount(t *testing.T) {
	d := &fullDisk{room: 1000}
	l := NewWriter(d, "disk")
	l.maxBytes = 4000
	line := func(i int) Message {
		return Message{Value: fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 70))}
	}
	dropped, sent := 0, 0
	var lastErr error
	for i := range 100 {
		n, err := l.Write([]Message{line(i)})
		dropped += n
		sent++
		if err != nil {
			lastErr = err
		}
	}
	if !errors.Is(lastErr, syscall.ENOSPC) || l.Health() == nil || dropped == 0 {
		t.Fatalf("while full: err %v, health %v, dropped %d", lastErr, l.Health(), dropped)
	}
	// A reserved line still fits.
	if n, _ := l.Write([]Message{{Value: []byte(`{"loss":1}`), Reserved: true}}); n != 0 {
		t.Fatal("a reserved line was refused")
	}
	d.room = 1 << 20
	if n, err := l.Write(nil); n != 0 || err != nil || l.Health() != nil {
		t.Fatalf("after room: %d %v %v", n, err, l.Health())
	}
	lines := strings.Split(strings.TrimSuffix(string(d.got), "\n"), "\n")
	seen := map[string]bool{}
	whole := 0
	for _, s := range lines {
		var v map[string]any
		if json.Unmarshal([]byte(s), &v) != nil {
			continue // the cut line, ended: a stdout cannot be truncated
		}
		if seen[s] {
			t.Fatalf("line twice: %s", s)
		}
		seen[s] = true
		whole++
	}
	if whole != sent-dropped+1 {
		t.Fatalf("%d lines sent, %d dropped, %d whole lines written (one reserved)", sent, dropped, whole)
	}
	t.Logf("%d sent, %d refused, %d written", sent, dropped, whole)
}

// Standard output redirected to a file opened for appending (systemd's
// StandardOutput=append:): a line a killed run cut is ended before the
// first new one, and the next run reads back what a batch left (Mark,
// LinesSince), as with the file sink. A pipe or a file not opened for
// appending gets neither.
func TestStdoutAppendedToAFileIsReadBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	if err := os.WriteFile(path, []byte("{\"a\":1}\n{\"cut"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func() *os.File {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	l := newStdout(open())
	m, ok := l.Mark()
	if !ok {
		t.Fatal("no mark for a standard output appended to a file")
	}
	if _, err := l.Write([]Message{{Value: []byte(`{"a":2}`)}, {Value: []byte(`{"a":3}`)}}); err != nil {
		t.Fatal(err)
	}
	l.Close(context.Background())
	if b, _ := os.ReadFile(path); string(b) != "{\"a\":1}\n{\"cut\n{\"a\":2}\n{\"a\":3}\n" {
		t.Fatalf("file %q", b)
	}
	var got []string
	next := newStdout(open()) // the next run, on the same file
	if ok, err := next.LinesSince(m, func(line []byte) { got = append(got, string(line)) }); !ok || err != nil {
		t.Fatalf("LinesSince: %v %v", ok, err)
	}
	// The mark was past the cut line, which the batch's write ended: its
	// end reads back as an empty line.
	if strings.Join(got, "|") != `|{"a":2}|{"a":3}` {
		t.Fatalf("read back %q", got)
	}

	f, err := os.OpenFile(path, os.O_WRONLY, 0) // not appending
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for name, out := range map[string]*os.File{"not appending": f, "pipe": w} {
		if _, ok := newStdout(out).Mark(); ok {
			t.Errorf("%s: a mark", name)
		}
	}
}
