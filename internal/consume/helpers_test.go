package consume

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/testenv"
)

const testBoot = "7d2c55b0-aaaa-4bbb-8ccc-0123456789ab"

var nonTopic = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// newTopic creates a topic with a name unique to this test run.
func newTopic(t *testing.T, brokers string, partitions int, compact bool) string {
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
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	if err := res.Errors[name]; err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	t.Cleanup(func() {
		c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{name}})
	})
	// Wait for the metadata to show every partition with a leader.
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

// testEvent is an exec event of testBoot with sequence seq, created at
// created, in net namespace net (0: the initial one, 7).
func testEvent(seq uint32, created time.Time, net uint64) *event.Event {
	if net == 0 {
		net = 7
	}
	return &event.Event{
		Schema: event.Schema,
		Event: event.Meta{ID: testBoot + ":" + strconv.FormatUint(uint64(seq), 10), Sequence: seq, Created: created.UTC(),
			Kind: event.KindEvent, Category: []string{"process"}, Action: "executed", Outcome: "success", Type: "SYSCALL"},
		Host:    event.Host{Name: "web-1", Boot: event.Boot{ID: testBoot}, Kernel: "6.18.0"},
		Tags:    []string{"exec"},
		Process: &event.Process{PID: 1000 + int(seq), Parent: &event.Parent{PID: 1}, Name: "true", Executable: "/usr/bin/true", Args: []string{"true", strconv.Itoa(int(seq))}},
		User:    &event.User{ID: "0", Name: "root", Audit: &event.Entity{ID: "4294967295"}, Effective: &event.Entity{ID: "0", Name: "root"}},
		Syscall: &event.Syscall{Name: "execve", Nr: 59, Arch: "x86_64"},
		NS: &event.NS{IPC: event.NSRef{Serial: 1, Inum: 4026531839}, PID: event.NSRef{Serial: 4, Inum: 4026531836},
			Net: event.NSRef{Serial: net, Inum: 4026532000 + net}, Mnt: event.NSRef{Serial: 8, Inum: 4026531832}},
		NSSrc: "observed",
	}
}

// eventMessage is the message the daemon publishes for e, on partition p.
func eventMessage(e *event.Event, p int) kafka.Message {
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

// registryMessage is the registry record message of r.
func registryMessage(r *serial.Record) kafka.Message {
	v, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return kafka.Message{Key: []byte(r.ID), Value: v, Time: r.LastSeen.Time, Headers: []kafka.Header{
		{Key: "schema", Value: []byte(serial.Schema)}, {Key: "boot_id", Value: []byte(r.Host.BootID)},
		{Key: "content-type", Value: []byte("application/json")},
	}}
}

// produce writes msgs in order, each to its Partition.
func produce(t *testing.T, brokers, topic string, msgs ...kafka.Message) {
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

func dial(t *testing.T) (*Client, string) {
	t.Helper()
	// Not while another test stops or restarts the shared broker.
	testenv.LockKafka(t)
	brokers := testenv.KafkaBrokers(t)
	var warns []string
	c, err := Dial(context.Background(), Options{Brokers: strings.Split(brokers, ","), Warn: func(s string) { warns = append(warns, s) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, brokers
}
