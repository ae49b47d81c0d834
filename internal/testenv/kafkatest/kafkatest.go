// Package kafkatest holds the Kafka fixtures of the tests that read the
// topics back (internal/consume, cmd/auditns tail and replay): the shared
// test broker, a fresh topic per test, events and registry records as the
// daemon publishes them, and a producer that keeps their order. Import it
// from _test.go files only.
package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/testenv"
)

// Boot is the boot id of the events Event makes.
const Boot = "5f1e0c3a-1234-4abc-9def-0123456789ab"

// Brokers returns the test broker (testenv.KafkaBrokers), holding the Kafka
// lock (testenv.LockKafka) so that tests which stop the broker wait
// meanwhile.
func Brokers(t testing.TB) string {
	t.Helper()
	testenv.LockKafka(t)
	return testenv.KafkaBrokers(t)
}

var nonTopic = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// NewTopic creates a topic named after the test, unique to this run, with
// partitions partitions (compacted if compact), and waits until its
// metadata shows every partition. It is deleted when the test ends.
func NewTopic(t testing.TB, brokers string, partitions int, compact bool) string {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	name := "test." + nonTopic.ReplaceAllString(t.Name(), "_") + "." + hex.EncodeToString(b[:])
	cfg := kafka.TopicConfig{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}
	if compact {
		cfg.ConfigEntries = []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}
	}
	c := &kafka.Client{Addr: kafka.TCP(brokers), Timeout: 10 * time.Second}
	res, err := c.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{cfg}})
	if err == nil {
		err = res.Errors[name]
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	t.Cleanup(func() {
		c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{name}})
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{name}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) == partitions {
			return name
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s not ready: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Event is an exec event of Boot on host web-1 with sequence seq (pid
// 1000+seq), recorded by the kernel at created (@timestamp) and read a
// millisecond later (event.created), in net namespace serial net (0: the
// initial one, 7).
func Event(seq uint32, created time.Time, net uint64) *event.Event {
	if net == 0 {
		net = 7
	}
	return &event.Event{
		Schema:    event.Schema,
		Timestamp: created.UTC(),
		Event: event.Meta{ID: Boot + ":" + strconv.FormatUint(uint64(seq), 10), Sequence: seq, Created: created.UTC().Add(time.Millisecond),
			Kind: event.KindEvent, Category: []string{"process"}, Type: []string{"start"}, Action: "executed", Outcome: "success"},
		Auditd:  &event.Auditd{MessageType: "SYSCALL", Result: "success"},
		Host:    event.Host{Name: "web-1", Boot: event.Boot{ID: Boot}, Kernel: "6.18.0"},
		Tags:    []string{"exec"},
		Process: &event.Process{PID: 1000 + int(seq), Parent: &event.Parent{PID: 1}, Name: "true", Executable: "/usr/bin/true", Args: []string{"true", strconv.Itoa(int(seq))}},
		User:    &event.User{ID: "0", Name: "root", Audit: &event.Entity{ID: "4294967295"}, Effective: &event.Entity{ID: "0", Name: "root"}},
		Syscall: &event.Syscall{Name: "execve", Nr: 59, Arch: "x86_64"},
		NS: &event.NS{IPC: event.NSRef{Serial: 1, Inum: 4026531839}, PID: event.NSRef{Serial: 4, Inum: 4026531836},
			Net: event.NSRef{Serial: net, Inum: 4026532000 + net}, Mnt: event.NSRef{Serial: 8, Inum: 4026531832}},
		NSSrc: "observed",
	}
}

// EventMessage is the message the daemon publishes for e (key, time and
// headers), on partition p (Produce honours it).
func EventMessage(e *event.Event, p int) kafka.Message {
	return kafka.Message{
		Partition: p,
		Key:       []byte(e.Host.Name),
		Value:     e.AppendJSON(nil),
		Time:      e.Event.Created,
		Headers: []kafka.Header{
			{Key: "event_id", Value: []byte(e.Event.ID)},
			{Key: "schema", Value: []byte(event.Schema)},
			{Key: "boot_id", Value: []byte(e.Host.Boot.ID)},
			{Key: "content-type", Value: []byte("application/json")},
		},
	}
}

// RegistryMessage is the message the daemon publishes for registry record
// r on the namespaces topic.
func RegistryMessage(r *serial.Record) kafka.Message {
	v, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return kafka.Message{Key: []byte(r.ID), Value: v, Time: r.LastSeen.Time, Headers: []kafka.Header{
		{Key: "schema", Value: []byte(serial.Schema)}, {Key: "boot_id", Value: []byte(r.Host.BootID)},
		{Key: "content-type", Value: []byte("application/json")},
	}}
}

// Produce writes msgs to topic in order, each to its Partition, acknowledged
// by all in-sync replicas; it fails t on an error.
func Produce(t testing.TB, brokers, topic string, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers),
		Topic:        topic,
		Balancer:     kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return m.Partition }),
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond,
		Compression:  kafka.Lz4,
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// One message per call keeps the order across partitions as given.
	for _, m := range msgs {
		if err := w.WriteMessages(ctx, m); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
	}
}
