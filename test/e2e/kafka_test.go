package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/testenv"
)

// readUntil reads every partition of topic from the start until pred
// returns true for a message or the deadline passes.
func readUntil(t *testing.T, brokers, topic string, within time.Duration, pred func(kafka.Message) bool) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	// The sink creates the topic, possibly after a retry: wait for it.
	var parts []kafka.Partition
	for {
		conn, err := kafka.DialContext(ctx, "tcp", brokers)
		if err == nil {
			parts, err = conn.ReadPartitions(topic)
			conn.Close()
		}
		if err == nil && len(parts) > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("partitions of %s: %v", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	found := make(chan []kafka.Message, len(parts))
	for _, p := range parts {
		go func(p int) {
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{brokers}, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
			defer r.Close()
			var got []kafka.Message
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					found <- got
					return
				}
				got = append(got, m)
				if pred(m) {
					cancel()
				}
			}
		}(p.ID)
	}
	var all []kafka.Message
	for range parts {
		all = append(all, <-found...)
	}
	return all
}

// kafkaSinkYAML configures auditns's output to Kafka: events to topic,
// registry records to namespaces, spooled in spoolDir.
func kafkaSinkYAML(brokers, topic, namespaces, spoolDir string) string {
	return fmt.Sprintf("output:\n  sink: kafka\nkafka:\n  brokers: [%s]\n  topic: %s\n  namespaces_topic: %s\n  spool:\n    dir: %s\n",
		brokers, topic, namespaces, spoolDir)
}

func header(m kafka.Message, k string) string {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// Round trip: a marker exec read back from the events topic with the
// specified key and headers; its namespaces' registry records on the
// compacted registry topic.
func TestKafkaRoundTrip(t *testing.T) {
	requireKernel(t)
	brokers := testenv.KafkaBrokers(t)
	suffix := fmt.Sprintf("%x", rand.Uint32())
	events, names := "e2e.events."+suffix, "e2e.ns."+suffix
	spool := filepath.Join(t.TempDir(), "spool")
	r := start(t, kafkaSinkYAML(brokers, events, names, spool))
	m := marker()
	cmd := exec.Command("unshare", "--net", "/bin/sh", "-c", "sleep 0.3", m)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	var got *event.Event
	var msg kafka.Message
	readUntil(t, brokers, events, 20*time.Second, func(km kafka.Message) bool {
		var ev event.Event
		if json.Unmarshal(km.Value, &ev) == nil && hasArg(&ev, m) && ev.Process.Name == "sh" {
			got, msg = &ev, km
			return true
		}
		return false
	})
	if got == nil {
		t.Fatalf("marker event not on %s within 20s", events)
	}
	host, _ := os.Hostname()
	if string(msg.Key) != host || header(msg, "event_id") != got.Event.ID || header(msg, "schema") != event.Schema ||
		header(msg, "boot_id") != bootID(t) || header(msg, "content-type") != "application/json" {
		t.Fatalf("key %q headers %v", msg.Key, msg.Headers)
	}
	if d := msg.Time.Sub(got.Event.Created); d > time.Millisecond || d < -time.Millisecond {
		t.Fatalf("message time %v, event created %v", msg.Time, got.Event.Created)
	}
	netSerial := got.NS.Net.Serial
	want := fmt.Sprintf("%s/%d", bootID(t), netSerial)
	var rec serial.Record
	readUntil(t, brokers, names, 20*time.Second, func(km kafka.Message) bool {
		if string(km.Key) == want {
			return json.Unmarshal(km.Value, &rec) == nil
		}
		return false
	})
	if rec.Serial != netSerial || rec.Type != serial.Net || rec.Inum != got.NS.Net.Inum {
		t.Fatalf("registry record for %s: %+v", want, rec)
	}
	r.stop(t)
}
