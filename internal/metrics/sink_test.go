package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestSinkMetrics(t *testing.T) {
	s := New(Source{Sink: func() SinkStats {
		return SinkStats{
			Requests: 7, Errors: map[string]uint64{"NOT_LEADER_OR_FOLLOWER": 2}, Retries: 2,
			MessagesAcked: 100, BytesAcked: 4096, DeadLettered: 1, DeadLetterLost: 3,
			SpoolRecords: 5, SpoolOldest: time.Now().Add(-2 * time.Second), Failing: true,
			Partitions: []PartitionStats{{Topic: "auditns.events", Partition: 1, Queued: 5, Lag: 1500 * time.Millisecond}},
		}
	}})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`auditns_sink_produce_requests_total{sink="kafka"} 7`,
		`auditns_sink_produce_errors_total{code="NOT_LEADER_OR_FOLLOWER",sink="kafka"} 2`,
		`auditns_sink_retries_total{sink="kafka"} 2`,
		`auditns_sink_messages_acked_total{sink="kafka"} 100`,
		`auditns_sink_bytes_acked_total{sink="kafka"} 4096`,
		`auditns_sink_dead_lettered_total{sink="kafka"} 1`,
		`auditns_sink_dead_letter_lost_total{sink="kafka"} 3`,
		`auditns_sink_spool_records{sink="kafka"} 5`,
		`auditns_sink_failing{sink="kafka"} 1`,
		`auditns_sink_partition_lag_seconds{partition="1",sink="kafka",topic="auditns.events"} 1.5`,
		`auditns_sink_partition_queued{partition="1",sink="kafka",topic="auditns.events"} 5`,
		`auditns_sink_spool_oldest_seconds{sink="kafka"} 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("no %s in\n%s", want, grepSink(string(body)))
		}
	}
}

func grepSink(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "auditns_sink_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
