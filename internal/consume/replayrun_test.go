package consume

import (
	"bytes"
	"testing"
	"time"
)

func TestReplayProgressLine(t *testing.T) {
	from := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	s := &ReplayStats{}
	s.Messages.Store(1200)
	s.Emitted.Store(1000)
	s.Duplicates.Store(3)
	s.OffsetsTotal.Store(4000)
	s.OffsetsDone.Store(1000)
	s.Position.Store(from.Add(15 * time.Minute).UnixNano())
	got := s.ProgressLine(from, from.Add(time.Hour))
	want := "replay: 1200 messages read, 1000 events written, 3 duplicates; at 2026-11-28T12:15:00.000Z: 25% of the time range, 25% of the messages"
	if got != want {
		t.Fatalf("progress:\n got %s\nwant %s", got, want)
	}
	// Off a terminal nothing is written before 10 s.
	var buf bytes.Buffer
	stop := ReportProgress(&buf, s, from, from.Add(time.Hour))
	time.Sleep(50 * time.Millisecond)
	stop()
	if buf.Len() != 0 {
		t.Fatalf("progress wrote %q off a terminal within 10 s", buf.String())
	}
}
