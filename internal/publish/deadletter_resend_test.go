package publish

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/testenv"
)

// Past the cap, Append keeps what fits and counts the rest as lost.
func TestDeadLetterCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	d := newDeadLetterFile(path, 4096)
	m := testMessage("k", 1, time.Now(), 1000)
	var entries []DeadLetter
	for range 10 {
		entries = append(entries, newDeadLetter(time.Now(), "auditns.events", &m, kafka.MessageSizeTooLarge))
	}
	lost, err := d.Append(entries)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if lost < 5 || lost == 10 || fi.Size() > 4096 {
		t.Fatalf("lost %d of 10, file %d bytes (cap 4096)", lost, fi.Size())
	}
	if lost2, _ := d.Append(entries[:1]); lost2 != 1 {
		t.Fatalf("a full file took an entry (lost %d)", lost2)
	}
}

// Dead letters are sent again with their key and headers; what cannot be
// (an undecodable record) stays in the file.
func TestDeadLetterResend(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	o := testKafkaOptions(t, brokers, t.TempDir())
	k := openKafka(t, o) // creates the topics
	closeKafka(t, k, 10*time.Second)

	path := filepath.Join(o.Spool.Dir, DefaultDeadLetterName)
	d := newDeadLetterFile(path, 0)
	t0 := time.Now()
	var entries []DeadLetter
	for i := range 2 {
		m := testMessage("host-a", i, t0, 10)
		entries = append(entries, newDeadLetter(time.Now(), o.EventsTopic, &m, kafka.TopicAuthorizationFailed))
	}
	entries = append(entries, DeadLetter{Time: time.Now(), Error: "undecodable spool record", ValueB64: []byte{1}})
	if _, err := d.Append(entries); err != nil {
		t.Fatal(err)
	}

	res, err := ResendDeadLetters(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 2 || res.Kept != 1 {
		t.Fatalf("sent %d kept %d, want 2 and 1", res.Sent, res.Kept)
	}
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n != 1 || !strings.Contains(string(b), "undecodable") {
		t.Fatalf("dead-letter file after resend:\n%s", b)
	}
	if _, err := os.Stat(path + ".resending"); !os.IsNotExist(err) {
		t.Fatalf("work file left: %v", err)
	}
	got := readTopic(t, brokers, o.EventsTopic)
	n := 0
	for _, msgs := range got {
		for _, m := range msgs {
			n++
			if id, _ := header(m, headerEventID); !strings.HasPrefix(id, "boot-1:host-a:") || string(m.Key) != "host-a" {
				t.Errorf("resent message: key %q event_id %q", m.Key, id)
			}
		}
	}
	if n != 2 {
		t.Fatalf("%d messages in the topic, want 2", n)
	}
}
