package publish

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/spool"
)

// When partitions acknowledge out of step, the spool is acknowledged only
// up to the first message not done: after a restart everything a lagging
// partition had not delivered is read again.
func TestForwarderAcksTheDonePrefix(t *testing.T) {
	dir := t.TempDir()
	s, err := spool.Open(spool.Options{Dir: dir, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultKafkaOptions()
	o.EventsTopic, o.NamespacesTopic = "e", "n"
	k := &Kafka{spool: s, opts: &o, log: slog.New(slog.DiscardHandler), acked: make(chan struct{}, 1)}

	var recs [][]byte
	for i := range 6 {
		m := testMessage("k", i, time.Now(), 0)
		recs = append(recs, appendKafkaRecord(nil, &m))
	}
	if _, err := s.Append(recs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Next(context.Background(), 10, 1<<20)
	if err != nil || len(got) != 6 {
		t.Fatalf("Next: %d records, %v", len(got), err)
	}
	f := &forwarder{k: k}
	f.admit(k.decode(nil, got))
	msgs := *f.window.Front()

	// Messages 1, 2 and 4 (other partitions) are acknowledged first:
	// nothing can be acknowledged in the spool while 0 is pending.
	for _, i := range []int{1, 2, 4} {
		msgs[i].done = true
	}
	f.advance()
	if st := s.Stats(); st.Records != 6 || k.stats.acked.Load() != 0 {
		t.Fatalf("after 1, 2, 4: spool has %d records, acked %d; want 6 and 0", st.Records, k.stats.acked.Load())
	}
	msgs[0].done = true
	f.advance()
	if st := s.Stats(); st.Records != 3 || f.winMsgs != 3 {
		t.Fatalf("after 0: spool has %d records, window %d; want 3 and 3 (up to 2)", st.Records, f.winMsgs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart reads 3, 4 and 5 again (4 is a duplicate; 3 and 5 had not
	// been delivered).
	s, err = spool.Open(spool.Options{Dir: dir, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err = s.Next(context.Background(), 10, 1<<20)
	if err != nil || len(got) != 3 {
		t.Fatalf("after restart: %d records, %v; want 3", len(got), err)
	}
	again := k.decode(nil, got)
	for j, want := range []int{3, 4, 5} {
		if v := string(again[j].id); v != testMessage("k", want, time.Now(), 0).ID {
			t.Errorf("record %d after restart is %s, want seq %d", j, v, want)
		}
	}
}
