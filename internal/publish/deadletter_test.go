package publish

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestDeadLetterFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "deadletter.jsonl")
	d := newDeadLetterFile(path, 0)
	evTime := time.Date(2026, 11, 28, 12, 0, 0, 123456000, time.UTC)
	good := Message{Topic: TopicEvents, Key: []byte("web-1"), Value: []byte(`{"schema":"auditns.event/1","n":1}`),
		ID: "b:1", Schema: "auditns.event/1", BootID: "b", Time: evTime}
	notJSON := Message{Key: []byte{0xff, 0xfe}, Value: []byte{0, 1, 2, '{'}}
	tooLarge := errors.Join(kafka.MessageSizeTooLarge)
	if _, err := d.Append([]DeadLetter{
		newDeadLetter(time.Now(), "auditns.events", &good, tooLarge),
		newDeadLetter(time.Now(), "auditns.events", &notJSON, kafka.InvalidRecord),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Append([]DeadLetter{{Time: time.Now(), Error: "undecodable spool record", ValueB64: []byte{9, 9}}}); err != nil {
		t.Fatal(err)
	}
	d.Close()

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", di.Mode().Perm())
	}
	f, _ := os.Open(path)
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3", len(lines))
	}
	l := lines[0]
	if l["error"] != kafka.MessageSizeTooLarge.Error() || l["topic"] != "auditns.events" || l["key"] != "web-1" ||
		l["event_id"] != "b:1" || l["schema"] != "auditns.event/1" || l["boot_id"] != "b" ||
		l["event_time"] != "2026-11-28T12:00:00.123456Z" {
		t.Errorf("line 1: %v", l)
	}
	if v, ok := l["value"].(map[string]any); !ok || v["n"] != 1.0 {
		t.Errorf("line 1: value not the original JSON object: %v", l["value"])
	}
	if lines[1]["value_b64"] != "AAECew==" || lines[1]["key_b64"] != "//4=" || lines[1]["value"] != nil {
		t.Errorf("line 2: %v", lines[1])
	}
	if _, ok := lines[1]["event_time"]; ok {
		t.Errorf("line 2: zero event_time written: %v", lines[1])
	}

	// An existing, too open file is tightened.
	os.Chmod(path, 0o644)
	d = newDeadLetterFile(path, 0)
	d.Append([]DeadLetter{{Error: "x"}})
	d.Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after reopen %v, want 0600", fi.Mode().Perm())
	}
}
