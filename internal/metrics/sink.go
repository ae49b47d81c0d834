package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SinkStats is a sink's delivery health, read at scrape time.
type SinkStats struct {
	Requests       uint64            // produce requests sent
	Errors         map[string]uint64 // failed requests by error code
	Retries        uint64
	MessagesAcked  uint64 // acknowledged by the brokers
	BytesAcked     uint64
	DeadLettered   uint64
	DeadLetterLost uint64 // refused and not kept (dead-letter file full)
	SpoolRecords   int64
	SpoolOldest    time.Time // append time of the oldest unacknowledged record
	Failing        bool
	Partitions     []PartitionStats
}

// PartitionStats is one topic-partition's delivery state.
type PartitionStats struct {
	Topic     string
	Partition int
	Queued    int64         // messages read from the spool, not yet acknowledged
	Lag       time.Duration // age of the oldest of them (0: none)
}

// sinkCollector exports SinkStats with a "sink" label.
type sinkCollector struct {
	name string
	f    func() SinkStats

	requests, errors, retries, acked, bytes, dead, deadLost,
	spoolRecords, spoolOldest, failing, lag, queued *prometheus.Desc
}

func newSinkCollector(name string, f func() SinkStats) *sinkCollector {
	d := func(n, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("auditns_sink_"+n, help, append([]string{"sink"}, labels...), nil)
	}
	return &sinkCollector{
		name:         name,
		f:            f,
		requests:     d("produce_requests_total", "Produce requests sent."),
		errors:       d("produce_errors_total", "Produce requests that failed, by Kafka error code (or UNREACHABLE, NETWORK, OTHER).", "code"),
		retries:      d("retries_total", "Failed requests (or topic set-ups) tried again."),
		acked:        d("messages_acked_total", "Messages acknowledged by the brokers (a message sent again counts again)."),
		bytes:        d("bytes_acked_total", "Key and value bytes of the acknowledged messages."),
		dead:         d("dead_lettered_total", "Messages refused for good and written to the dead-letter file."),
		deadLost:     d("dead_letter_lost_total", "Messages refused for good that the dead-letter file could not take (full): lost."),
		spoolRecords: d("spool_records", "Unacknowledged records in the spool."),
		spoolOldest:  d("spool_oldest_seconds", "Age of the oldest unacknowledged record in the spool."),
		failing:      d("failing", "1 while delivery to a partition (or the topics' set-up) has been failing for a second or more."),
		lag:          d("partition_lag_seconds", "Age of the oldest message waiting for a partition's acknowledgement: its delivery lag.", "topic", "partition"),
		queued:       d("partition_queued", "Messages waiting for a partition's acknowledgement.", "topic", "partition"),
	}
}

func (c *sinkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.errors, c.retries, c.acked, c.bytes, c.dead, c.deadLost,
		c.spoolRecords, c.spoolOldest, c.failing, c.lag, c.queued} {
		ch <- d
	}
}

func (c *sinkCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.f()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{c.name}, labels...)...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{c.name}, labels...)...)
	}
	counter(c.requests, s.Requests)
	for code, n := range s.Errors {
		counter(c.errors, n, code)
	}
	counter(c.retries, s.Retries)
	counter(c.acked, s.MessagesAcked)
	counter(c.bytes, s.BytesAcked)
	counter(c.dead, s.DeadLettered)
	counter(c.deadLost, s.DeadLetterLost)
	gauge(c.spoolRecords, float64(s.SpoolRecords))
	oldest := 0.0
	if !s.SpoolOldest.IsZero() {
		oldest = time.Since(s.SpoolOldest).Seconds()
	}
	gauge(c.spoolOldest, oldest)
	failing := 0.0
	if s.Failing {
		failing = 1
	}
	gauge(c.failing, failing)
	for _, p := range s.Partitions {
		part := strconv.Itoa(p.Partition)
		gauge(c.lag, p.Lag.Seconds(), p.Topic, part)
		gauge(c.queued, float64(p.Queued), p.Topic, part)
	}
}
