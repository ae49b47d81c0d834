package publish

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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
