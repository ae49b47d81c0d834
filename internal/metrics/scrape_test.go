package metrics

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Scrape reads back what the server exports: unlabelled auditns_* samples
// by name, a histogram's sum and count, nothing labelled, nothing foreign.
func TestScrape(t *testing.T) {
	var unhealthy atomic.Bool
	s := New(Source{
		RecordsReceived: func() uint64 { return 12 },
		Namespaces:      func() int { return 3 },
		Sink:            func() SinkStats { return SinkStats{Requests: 7} },
		Health: func() error {
			if unhealthy.Load() {
				return errors.New("spool full")
			}
			return nil
		},
	})
	s.ObserveLatency(250 * time.Millisecond)
	if err := s.Listen("127.0.0.1:0", slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())

	st := Scrape(s.Addr(), 2*time.Second)
	if st.Health != "ok" {
		t.Fatalf("health %q", st.Health)
	}
	for k, want := range map[string]float64{
		"records_received_total": 12, "namespaces_known": 3, "healthy": 1,
		"publish_latency_seconds_count": 1, "publish_latency_seconds_sum": 0.25,
	} {
		if got, ok := st.Metrics[k]; !ok || got != want {
			t.Errorf("%s: %v (present %v), want %v", k, got, ok, want)
		}
	}
	for k := range st.Metrics {
		if strings.HasPrefix(k, "sink_") || strings.HasPrefix(k, "go_") || k == "build_info" || strings.Contains(k, "bucket") {
			t.Errorf("labelled or foreign sample %s kept", k)
		}
	}

	unhealthy.Store(true)
	if body, err := Health(s.Addr(), 2*time.Second); err == nil || body != "unhealthy: spool full" {
		t.Fatalf("unhealthy daemon: %q, %v", body, err)
	}
	if st := Scrape("127.0.0.1:1", time.Second); !strings.HasPrefix(st.Health, "not answering: ") || st.Metrics != nil {
		t.Fatalf("nothing listening: %+v", st)
	}
}
