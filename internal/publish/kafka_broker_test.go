package publish

// Tests against the real broker (scripts/kafka/start.sh). Each test uses its
// own topics. Tests that stop the broker are in kafka_outage_test.go.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/testenv"
	"github.com/segmentio/kafka-go"
)

// testTopics returns unique event and namespace topic names for t.
func testTopics(t testing.TB) (events, namespaces string) {
	var b [4]byte
	rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	base := "test." + name + "." + hex.EncodeToString(b[:])
	return base + ".events", base + ".ns"
}

// testLogger logs to t at debug level when -v, else warnings and up.
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// stateLog records OnState calls.
type stateLog struct {
	mu    sync.Mutex
	calls []stateCall
}

type stateCall struct {
	kind, msg string
	count     int
}

func (s *stateLog) on(kind, msg string, count int) {
	s.mu.Lock()
	s.calls = append(s.calls, stateCall{kind, msg, count})
	s.mu.Unlock()
}

func (s *stateLog) count(kind string) (calls, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.calls {
		if c.kind == kind {
			calls++
			total += c.count
		}
	}
	return calls, total
}

func testKafkaOptions(t testing.TB, brokers, dir string) KafkaOptions {
	o := DefaultKafkaOptions()
	o.Brokers = []string{brokers}
	o.EventsTopic, o.NamespacesTopic = testTopics(t)
	o.Spool.Dir = dir
	o.Logger = testLogger(t)
	return o
}

func openKafka(t testing.TB, o KafkaOptions) *Kafka {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, err := NewKafka(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// closeKafka closes k and fails t unless everything was delivered.
func closeKafka(t testing.TB, k *Kafka, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := k.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if st := k.Stats(); st.Spool.Records != 0 {
		t.Fatalf("Close left %d records in the spool (stats %+v)", st.Spool.Records, st)
	}
}

// readTopic reads every message of every partition of topic, up to the
// high-water marks at the time of the call.
func readTopic(t testing.TB, brokers, topic string) map[int][]kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A transport of its own: kafka-go's default one caches metadata.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers), Transport: tr}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
		t.Fatalf("metadata %s: %v %+v", topic, err, md)
	}
	req := map[string][]kafka.OffsetRequest{}
	for _, p := range md.Topics[0].Partitions {
		req[topic] = append(req[topic], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		t.Fatalf("list offsets %s: %v", topic, err)
	}
	out := map[int][]kafka.Message{}
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			t.Fatalf("offsets %s/%d: %v", topic, po.Partition, po.Error)
		}
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: []string{brokers}, Topic: topic, Partition: po.Partition,
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond,
		})
		r.SetOffset(po.FirstOffset)
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, po.Partition, err)
			}
			out[po.Partition] = append(out[po.Partition], m)
			if m.Offset+1 >= po.LastOffset {
				break
			}
		}
		r.Close()
	}
	return out
}

func header(m kafka.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// testValue is the JSON value the tests send.
type testValue struct {
	Key string `json:"k"`
	Seq int    `json:"seq"`
	Pad string `json:"pad,omitempty"`
}

func testMessage(key string, seq int, t0 time.Time, pad int) Message {
	v, _ := json.Marshal(testValue{Key: key, Seq: seq, Pad: strings.Repeat("x", pad)})
	m := Message{
		Topic:  TopicEvents,
		Value:  v,
		ID:     fmt.Sprintf("boot-1:%s:%d", key, seq),
		Schema: "auditns.event/1",
		BootID: "boot-1",
		Time:   t0.Add(time.Duration(seq) * time.Millisecond),
	}
	if key != "" {
		m.Key = []byte(key)
	}
	return m
}

// orderCheck verifies, per partition, that every key's first occurrences
// come in sequence order with no gap, and counts duplicates.
type orderCheck struct {
	seen map[string]map[int]bool
	next map[string]int // next expected first-seen seq per key
	dups int
}

func newOrderCheck() *orderCheck {
	return &orderCheck{seen: map[string]map[int]bool{}, next: map[string]int{}}
}

func (c *orderCheck) add(t testing.TB, partition int, v testValue) {
	t.Helper()
	s := c.seen[v.Key]
	if s == nil {
		s = map[int]bool{}
		c.seen[v.Key] = s
	}
	if s[v.Seq] {
		c.dups++
		return
	}
	if v.Seq != c.next[v.Key] {
		t.Fatalf("partition %d, key %q: seq %d arrived first where %d was expected (order broken or message lost)",
			partition, v.Key, v.Seq, c.next[v.Key])
	}
	s[v.Seq] = true
	c.next[v.Key]++
}

func TestKafkaRoundTrip(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	o := testKafkaOptions(t, brokers, t.TempDir())
	var latMu sync.Mutex
	var lat []time.Duration
	o.ObserveLatency = func(d time.Duration) { latMu.Lock(); lat = append(lat, d); latMu.Unlock() }
	k := openKafka(t, o)

	keys := []string{"host-a", "host-b", "host-c", "host-d", "host-e", "", ""} // "" = nil key
	const perKey = 300
	t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	var sent []Message
	seq := map[string]int{}
	for i := 0; i < perKey*len(keys); i++ {
		key := keys[i%len(keys)]
		sent = append(sent, testMessage(key, seq[key], t0, 0))
		seq[key]++
	}
	// Registry records for the compacted topic.
	for s := 9; s < 29; s++ {
		id := fmt.Sprintf("boot-1/%d", s)
		sent = append(sent, Message{Topic: TopicNamespaces, Key: []byte(id), Value: []byte(fmt.Sprintf(`{"serial":%d}`, s)),
			ID: id, Schema: "auditns.namespace/1", BootID: "boot-1", Time: t0})
	}
	for i := 0; i < len(sent); i += 97 { // uneven Write batches
		if dropped, err := k.Write(sent[i:min(i+97, len(sent))]); err != nil || dropped != 0 {
			t.Fatalf("Write: dropped %d, %v", dropped, err)
		}
	}
	closeKafka(t, k, 60*time.Second)
	st := k.Stats()
	if st.Written != int64(len(sent)) || st.Acked != int64(len(sent)) || st.Published != int64(len(sent)) || st.DeadLettered != 0 {
		t.Errorf("stats %+v, want %d written/acked/published", st, len(sent))
	}
	if len(lat) != len(sent) {
		t.Errorf("ObserveLatency called %d times, want %d", len(lat), len(sent))
	}

	// Events: values, keys, headers, timestamps; order per key.
	want := map[string]Message{}
	for _, m := range sent {
		want[m.ID] = m
	}
	check := newOrderCheck()
	got := 0
	keyPartition := map[string]int{}
	for p, msgs := range readTopic(t, brokers, o.EventsTopic) {
		for _, m := range msgs {
			got++
			id, _ := header(m, "event_id")
			w, ok := want[id]
			if !ok {
				t.Fatalf("unexpected message %q", id)
			}
			if string(m.Value) != string(w.Value) || string(m.Key) != string(w.Key) || (m.Key == nil) != (w.Key == nil) {
				t.Errorf("%s: key %q value %s, want key %q value %s", id, m.Key, m.Value, w.Key, w.Value)
			}
			if !m.Time.Equal(w.Time) {
				t.Errorf("%s: timestamp %v, want %v", id, m.Time, w.Time)
			}
			for h, v := range map[string]string{"event_id": w.ID, "schema": w.Schema, "boot_id": w.BootID, "content-type": "application/json"} {
				if got, ok := header(m, h); !ok || got != v {
					t.Errorf("%s: header %s = %q, want %q", id, h, got, v)
				}
			}
			var v testValue
			json.Unmarshal(m.Value, &v)
			if v.Key != "" {
				if kp, ok := keyPartition[v.Key]; ok && kp != p {
					t.Errorf("key %q in partitions %d and %d", v.Key, kp, p)
				}
				keyPartition[v.Key] = p
				check.add(t, p, v)
			}
		}
	}
	if got != perKey*len(keys) || check.dups != 0 {
		t.Errorf("read %d events (%d duplicates), want %d", got, check.dups, perKey*len(keys))
	}

	// Namespaces: created compacted, same partitions.
	ns := readTopic(t, brokers, o.NamespacesTopic)
	n := 0
	for _, msgs := range ns {
		for _, m := range msgs {
			n++
			if id, _ := header(m, "event_id"); id != string(m.Key) {
				t.Errorf("namespace record key %q, event_id %q", m.Key, id)
			}
		}
	}
	if n != 20 {
		t.Errorf("read %d namespace records, want 20", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers), Transport: tr}
	dc, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: o.NamespacesTopic, ConfigNames: []string{"cleanup.policy"}},
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: o.EventsTopic, ConfigNames: []string{"cleanup.policy"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	policy := map[string]string{}
	for _, r := range dc.Resources {
		for _, e := range r.ConfigEntries {
			policy[r.ResourceName] = e.ConfigValue
		}
	}
	if policy[o.NamespacesTopic] != "compact" || policy[o.EventsTopic] != "delete" {
		t.Errorf("cleanup.policy = %v, want namespaces compact, events delete", policy)
	}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{o.EventsTopic, o.NamespacesTopic}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range md.Topics {
		if len(tp.Partitions) != 3 {
			t.Errorf("%s has %d partitions, want 3", tp.Name, len(tp.Partitions))
		}
	}
}

// A message the broker refuses goes to the dead-letter file, OnState is
// told, and the stream goes on after it, in order.
func TestKafkaTooLarge(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	for _, tc := range []struct {
		name        string
		batchBytes  int64  // kafka.batch_bytes: above the broker's limit, the broker refuses
		compression string // none: the broker's limit applies to the compressed batch
	}{
		{"broker", 4 << 20, "none"},
		{"client", 0, "lz4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testKafkaOptions(t, brokers, dir)
			o.BatchBytes = tc.batchBytes
			o.Compression = tc.compression
			o.BatchTimeout = 50 * time.Millisecond // so the big one shares its batch
			var states stateLog
			o.OnState = states.on
			k := openKafka(t, o)

			t0 := time.Now().Truncate(time.Millisecond)
			var msgs []Message
			for i := 0; i < 200; i++ {
				pad := 100
				if i == 100 {
					pad = 1<<20 + 1000 // > message.max.bytes (1048588)
				}
				msgs = append(msgs, testMessage("host-a", i, t0, pad))
			}
			// A registry record without a key: the compacted topic refuses it.
			noKey := Message{Topic: TopicNamespaces, Value: []byte(`{"serial":9}`), ID: "boot-1/9", Schema: "auditns.namespace/1", BootID: "boot-1", Time: t0}
			ok := Message{Topic: TopicNamespaces, Key: []byte("boot-1/10"), Value: []byte(`{"serial":10}`), ID: "boot-1/10", Schema: "auditns.namespace/1", BootID: "boot-1", Time: t0}
			msgs = append(msgs, noKey, ok)
			if _, err := k.Write(msgs); err != nil {
				t.Fatal(err)
			}
			closeKafka(t, k, 60*time.Second)

			st := k.Stats()
			if st.DeadLettered != 2 || st.Acked != int64(len(msgs)) {
				t.Errorf("stats %+v: want 2 dead-lettered, %d acked", st, len(msgs))
			}
			if calls, total := states.count("loss"); calls != 2 || total != 2 {
				t.Errorf("OnState loss: %d calls, count %d; want 2, 2 (%+v)", calls, total, states.calls)
			}

			f, err := os.Open(filepath.Join(dir, "deadletter.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if fi, _ := f.Stat(); fi.Mode().Perm() != 0o600 {
				t.Errorf("dead-letter file mode %v", fi.Mode().Perm())
			}
			ids := map[string]DeadLetter{}
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 8<<20)
			for sc.Scan() {
				var d DeadLetter
				if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
					t.Fatal(err)
				}
				ids[d.EventID] = d
			}
			big, ok1 := ids["boot-1:host-a:100"]
			nk, ok2 := ids["boot-1/9"]
			if len(ids) != 2 || !ok1 || !ok2 {
				t.Fatalf("dead letters %v", ids)
			}
			var v testValue
			if json.Unmarshal(big.Value, &v); v.Seq != 100 || len(v.Pad) != 1<<20+1000 || big.Topic != o.EventsTopic ||
				!strings.Contains(big.Error, "Message Size Too Large") {
				t.Errorf("big dead letter: seq %d pad %d topic %s error %q", v.Seq, len(v.Pad), big.Topic, big.Error)
			}
			if !strings.Contains(nk.Error, "Invalid Record") || nk.Topic != o.NamespacesTopic {
				t.Errorf("no-key dead letter: %+v", nk)
			}
			t.Logf("dead-letter errors: %q / %q", big.Error, nk.Error)

			check := newOrderCheck()
			check.next["host-a"] = 0
			n := 0
			for p, ms := range readTopic(t, brokers, o.EventsTopic) {
				for _, m := range ms {
					var v testValue
					json.Unmarshal(m.Value, &v)
					if v.Seq == 100 {
						t.Fatalf("the too-large message arrived")
					}
					if v.Seq == 101 {
						check.next["host-a"] = 101 // skip the dead-lettered one
					}
					check.add(t, p, v)
					n++
				}
			}
			if n != 199 {
				t.Errorf("read %d events, want 199", n)
			}
		})
	}
}

// Crash: a child process writes with Kafka unreachable (or while
// delivering), and is SIGKILLed; a new sink on the same spool delivers
// everything the child's Write accepted.
const crashChildEnv = "AUDITNS_TEST_KAFKA_CRASH_CHILD"

func TestKafkaCrash(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	brokers := testenv.KafkaBrokers(t)
	for _, tc := range []struct {
		name    string
		brokers string
	}{
		// Nothing listens on port 1: the same as a stopped broker for the
		// sink, without disturbing other tests that use the broker.
		{"spooling", "127.0.0.1:1"},
		{"delivering", brokers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testKafkaOptions(t, brokers, dir)
			cmd := exec.Command(os.Args[0], "-test.run=^TestKafkaCrash$")
			cmd.Env = append(os.Environ(), crashChildEnv+"=1",
				"CRASH_DIR="+dir, "CRASH_BROKERS="+tc.brokers, "CRASH_TOPIC="+o.EventsTopic, "CRASH_NS_TOPIC="+o.NamespacesTopic)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The child prints the last seq whose Write returned; kill it
			// mid-stream.
			sc := bufio.NewScanner(out)
			acked := -1
			deadline := time.Now().Add(30 * time.Second)
			for sc.Scan() {
				if n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "wrote ")); err == nil {
					acked = n
				}
				if acked >= 20000 || time.Now().After(deadline) {
					break
				}
			}
			cmd.Process.Signal(syscall.SIGKILL)
			go io.Copy(io.Discard, out)
			cmd.Wait()
			if acked < 1000 {
				t.Fatalf("child wrote only %d messages before the kill", acked)
			}
			t.Logf("child killed after Write returned for seq 0..%d", acked)

			k := openKafka(t, o)
			closeKafka(t, k, 60*time.Second)
			check := newOrderCheck()
			for p, ms := range readTopic(t, brokers, o.EventsTopic) {
				for _, m := range ms {
					var v testValue
					json.Unmarshal(m.Value, &v)
					check.add(t, p, v)
				}
			}
			if got := check.next["host-a"]; got <= acked {
				t.Fatalf("delivered seq 0..%d, but the child's Write returned for 0..%d", got-1, acked)
			}
			t.Logf("delivered seq 0..%d (%d duplicates)", check.next["host-a"]-1, check.dups)
		})
	}
}

func crashChild() {
	o := DefaultKafkaOptions()
	o.Brokers = []string{os.Getenv("CRASH_BROKERS")}
	o.EventsTopic, o.NamespacesTopic = os.Getenv("CRASH_TOPIC"), os.Getenv("CRASH_NS_TOPIC")
	o.Spool.Dir = os.Getenv("CRASH_DIR")
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	k, err := NewKafka(ctx, o)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(1)
	}
	t0 := time.Now()
	w := bufio.NewWriter(os.Stdout)
	for seq := 0; ; seq += 10 {
		batch := make([]Message, 10)
		for i := range batch {
			batch[i] = testMessage("host-a", seq+i, t0, 200)
		}
		if dropped, err := k.Write(batch); err != nil || dropped != 0 {
			fmt.Fprintln(os.Stderr, "crash child: Write:", dropped, err)
			os.Exit(1)
		}
		fmt.Fprintf(w, "wrote %d\n", seq+9)
		w.Flush()
		time.Sleep(100 * time.Microsecond)
	}
}
