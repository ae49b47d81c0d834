package config

import (
	"testing"
	"time"

	"github.com/auditns/auditns/internal/assemble"
	"github.com/auditns/auditns/internal/enrich"
	"github.com/auditns/auditns/internal/netlink"
	"github.com/auditns/auditns/internal/pipeline"
	"github.com/auditns/auditns/internal/publish"
	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/spool"
)

// Every configuration default that a package also applies to a zero option
// is that package's constant: a literal put back into defaults, or a
// constant changed without the configuration (and configs/auditns.yaml,
// which TestExampleConfigDocumentsEveryKeyWithItsDefault holds to the
// defaults), fails here.
func TestDefaultsAreThePackagesConstants(t *testing.T) {
	c, err := NewLoader().Load("")
	if err != nil {
		t.Fatal(err)
	}
	d := publish.DefaultKafkaOptions()
	for _, tc := range []struct {
		key       string
		got, want any
	}{
		{"mode", c.Mode, string(netlink.Unicast)},
		{"state_dir", c.StateDir, serial.DefaultDir},
		{"output.flush_interval", c.Output.FlushInterval, publish.DefaultFlushInterval},
		{"audit.backlog_limit", c.Audit.BacklogLimit, uint32(netlink.DefaultBacklogLimit)},
		{"audit.receive_buffer", c.Audit.ReceiveBuffer, netlink.DefaultReceiveBuffer},
		{"audit.status_interval", c.Audit.StatusInterval, pipeline.DefaultStatusInterval},
		{"audit.queue_size", c.Audit.QueueSize, pipeline.DefaultQueueSize},
		{"audit.reassembly_timeout", c.Audit.ReassemblyTimeout, assemble.DefaultTimeout},
		{"audit.max_in_flight", c.Audit.MaxInFlight, assemble.DefaultMaxInFlight},
		{"enrich.process_cache", c.Enrich.ProcessCache, enrich.DefaultCacheSize},
		{"kafka.topic", c.Kafka.Topic, d.EventsTopic},
		{"kafka.namespaces_topic", c.Kafka.NamespacesTopic, d.NamespacesTopic},
		{"kafka.create_topics", c.Kafka.CreateTopics, d.CreateTopics},
		{"kafka.partitions", c.Kafka.Partitions, d.Partitions},
		{"kafka.replication_factor", c.Kafka.ReplicationFactor, d.ReplicationFactor},
		{"kafka.topic_config.retention", c.Kafka.TopicRetention, d.Retention},
		{"kafka.topic_config.min_insync_replicas", c.Kafka.TopicMinInsync, d.MinInsyncReplicas},
		{"kafka.compression", c.Kafka.Compression, d.Compression},
		{"kafka.batch_timeout", c.Kafka.BatchTimeout, d.BatchTimeout},
		{"kafka.batch_size", c.Kafka.BatchSize, d.BatchSize},
		{"kafka.batch_bytes", c.Kafka.BatchBytes, d.BatchBytes},
		{"kafka.write_timeout", c.Kafka.WriteTimeout, d.WriteTimeout},
		{"kafka.spool.max_bytes", c.Kafka.Spool.MaxBytes, int64(spool.DefaultMaxBytes)},
		{"kafka.spool.segment_bytes", c.Kafka.Spool.SegmentBytes, int64(spool.DefaultSegmentBytes)},
		{"kafka.spool.full_policy", c.Kafka.Spool.FullPolicy, string(spool.FullDropNewest)},
		{"kafka.spool.sync_interval", c.Kafka.Spool.SyncInterval, d.Spool.SyncInterval},
		{"kafka.dead_letter_max_bytes", c.Kafka.DeadLetterMax, int64(publish.DefaultDeadLetterMaxBytes)},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: the configuration's default is %v, the package's %v", tc.key, tc.got, tc.want)
		}
	}
}

// durationText writes what configs/auditns.yaml writes, which
// time.Duration.String does not for whole minutes and hours.
func TestDurationText(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Millisecond: "10ms", time.Second: "1s", 10 * time.Second: "10s",
		time.Minute: "1m", 90 * time.Minute: "1h30m", 2160 * time.Hour: "2160h", 61 * time.Second: "1m1s",
	} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%v) = %q, want %q", d, got, want)
		}
	}
}
