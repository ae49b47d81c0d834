package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestKafkaRecordRoundTrip(t *testing.T) {
	ts := time.Date(2026, 11, 28, 12, 2, 37, 994123456, time.UTC)
	cases := []Message{
		{Topic: TopicEvents, Key: []byte("web-1"), Value: []byte(`{"a":1}`), ID: "b:1", Schema: "auditns.event/1", BootID: "b", Time: ts},
		{Topic: TopicNamespaces, Key: []byte("b/12"), Value: []byte(`{}`), ID: "b/12", Schema: "auditns.namespace/1", BootID: "b", Time: ts},
		{Topic: TopicEvents, Key: nil, Value: []byte(`{"x":"y"}`)},                                          // nil key, zero time
		{Topic: TopicEvents, Key: []byte{}, Value: nil, ID: "i"},                                            // empty (not nil) key, empty value
		{Topic: TopicEvents, Key: bytes.Repeat([]byte{0xff}, 300), Value: bytes.Repeat([]byte("v"), 70000)}, // multi-byte varints
	}
	for i, m := range cases {
		rec := appendKafkaRecord(nil, &m)
		if len(rec) != kafkaRecordSize(&m) {
			t.Errorf("case %d: size %d, kafkaRecordSize %d", i, len(rec), kafkaRecordSize(&m))
		}
		got, err := decodeKafkaRecord(rec)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if got.Topic != m.Topic || !bytes.Equal(got.Key, m.Key) || (got.Key == nil) != (m.Key == nil) ||
			!bytes.Equal(got.Value, m.Value) || got.ID != m.ID || got.Schema != m.Schema || got.BootID != m.BootID ||
			!got.Time.Equal(m.Time) || got.Time.IsZero() != m.Time.IsZero() {
			t.Errorf("case %d: round trip\n got %+v\nwant %+v", i, got, m)
		}
	}
}

func TestKafkaRecordCorrupt(t *testing.T) {
	m := Message{Topic: TopicEvents, Key: []byte("k"), Value: []byte(`{"a":1}`), ID: "id", Schema: "s", BootID: "b", Time: time.Now()}
	good := appendKafkaRecord(nil, &m)
	bad := map[string][]byte{
		"empty":     nil,
		"short":     good[:5],
		"version":   append([]byte{9}, good[1:]...),
		"topic":     append([]byte{good[0], 7}, good[2:]...),
		"key len":   append(append([]byte(nil), good[:kafkaRecordHeader]...), 0xff, 0xff, 0x7f),
		"truncated": good[:kafkaRecordHeader+3],
	}
	for name, rec := range bad {
		if _, err := decodeKafkaRecord(rec); !errors.Is(err, errBadRecord) {
			t.Errorf("%s: err = %v, want errBadRecord", name, err)
		}
	}
	// Every prefix either decodes or fails cleanly (the value is the tail,
	// so prefixes that cut only the value decode to a shorter value).
	for i := range good {
		decodeKafkaRecord(good[:i])
	}
}

func FuzzParseKafkaRecord(f *testing.F) {
	m := Message{Topic: TopicNamespaces, Key: []byte("b/9"), Value: []byte(`{"serial":9}`), ID: "b/9", Schema: "auditns.namespace/1", BootID: "b", Time: time.Unix(1, 2)}
	f.Add(appendKafkaRecord(nil, &m))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeKafkaRecord(data)
		if err != nil {
			return
		}
		// Whatever decodes survives a re-encoding unchanged.
		again, err := decodeKafkaRecord(appendKafkaRecord(nil, &got))
		if err != nil || again.ID != got.ID || !bytes.Equal(again.Key, got.Key) || !bytes.Equal(again.Value, got.Value) ||
			!again.Time.Equal(got.Time) || again.Topic != got.Topic || again.Schema != got.Schema || again.BootID != got.BootID {
			t.Fatalf("re-encoding changed the record: %+v -> %+v (%v)", got, again, err)
		}
	})
}

// kafkaMessageSize must be exactly kafka-go's Message.totalSize, which
// decides whether WriteMessages rejects a message as too large before it
// touches the network.
func TestKafkaMessageSizeMatchesKafkaGo(t *testing.T) {
	msgs := []kafka.Message{
		{Value: []byte("x")},
		{Key: []byte("web-1"), Value: bytes.Repeat([]byte("v"), 600), Headers: []kafka.Header{
			{Key: "event_id", Value: []byte("55b0d7d6-0000:97")}, {Key: "content-type", Value: contentTypeJSON}}},
		{Key: bytes.Repeat([]byte("k"), 200), Value: bytes.Repeat([]byte("v"), 100000), Headers: make([]kafka.Header, 70)},
	}
	for i, m := range msgs {
		size := kafkaMessageSize(&m)
		w := &kafka.Writer{Addr: kafka.TCP("127.0.0.1:1"), Topic: "t", BatchBytes: size - 1, MaxAttempts: 1}
		var tooLarge kafka.MessageTooLargeError
		if err := w.WriteMessages(context.Background(), m); !errors.As(err, &tooLarge) {
			t.Errorf("msg %d: BatchBytes = size-1 (%d): err = %v, want MessageTooLargeError", i, size-1, err)
		}
		w.Close()
		w = &kafka.Writer{Addr: kafka.TCP("127.0.0.1:1"), Topic: "t", BatchBytes: size, MaxAttempts: 1}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := w.WriteMessages(ctx, m); errors.As(err, &tooLarge) {
			t.Errorf("msg %d: BatchBytes = size (%d): rejected as too large", i, size)
		}
		cancel()
		w.Close()
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want errClass
	}{
		{nil, classOK},
		{kafka.MessageSizeTooLarge, classPerRecord},
		{kafka.MessageTooLargeError{}, classPerRecord},
		{kafka.RecordListTooLarge, classPerRecord},
		{kafka.InvalidTimestamp, classPerRecord},
		{kafka.InvalidRecord, classPerRecord},
		{kafka.TopicAuthorizationFailed, classPerTopic},
		{kafka.InvalidTopic, classPerTopic},
		{kafka.UnknownTopicOrPartition, classRetriable},
		{kafka.NotLeaderForPartition, classRetriable},
		{kafka.RequestTimedOut, classRetriable},
		{kafka.SASLAuthenticationFailed, classRetriable},
		{context.DeadlineExceeded, classRetriable},
		{errors.New("dial tcp 127.0.0.1:19092: connect: connection refused"), classRetriable},
	}
	for _, c := range cases {
		if got := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// The forwarder partitions like kafka-go's Hash balancer, which the sink
// used through its Writer: a key keeps its partition across the change.
func TestPartitionOfMatchesKafkaGoHash(t *testing.T) {
	k := &Kafka{}
	var h kafka.Hash
	keys := [][]byte{{}, []byte("web-1"), []byte("55b0d7d6-6d0b-4a38-9c3a-2d1e5f0c9a11/13"), {0xff, 0x80, 0}}
	for i := range 2000 {
		keys = append(keys, fmt.Appendf(nil, "e%d", i))
	}
	for _, n := range []int{1, 2, 3, 7, 12, 100} {
		ps := make([]int, n)
		for i := range ps {
			ps[i] = i
		}
		for _, key := range keys {
			if got, want := k.partitionOf(key, n), h.Balance(kafka.Message{Key: key}, ps...); got != want {
				t.Fatalf("key %q, %d partitions: partition %d, kafka.Hash says %d", key, n, got, want)
			}
		}
	}
	// Nil keys: round robin over all partitions.
	seen := map[int]int{}
	for range 30 {
		seen[k.partitionOf(nil, 3)]++
	}
	if len(seen) != 3 || seen[0] != 10 || seen[1] != 10 || seen[2] != 10 {
		t.Fatalf("nil keys: partitions %v, want 10 each of 0, 1, 2", seen)
	}
}
