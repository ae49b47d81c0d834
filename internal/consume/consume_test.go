package consume

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/config"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/filter"
	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/testenv/kafkatest"
)

func TestDedupBounds(t *testing.T) {
	t0 := time.Unix(1800000000, 0)
	d := NewDedup(time.Minute, 3)
	if d.Seen("a", t0) || !d.Seen("a", t0) {
		t.Fatal("second a must be a duplicate")
	}
	d.Seen("b", t0)
	d.Seen("c", t0)
	d.Seen("d", t0) // over Max: a is forgotten
	if d.Len() != 3 || d.Seen("a", t0) {
		t.Fatalf("a should have been forgotten (len %d)", d.Len())
	}
	// Time: an event two minutes newer evicts everything older than a
	// minute before it.
	d = NewDedup(time.Minute, 100)
	d.Seen("old", t0)
	d.Seen("new", t0.Add(2*time.Minute))
	if d.Len() != 1 || d.Seen("old", t0) {
		t.Fatalf("old should have been forgotten (len %d)", d.Len())
	}
	if !d.Seen("new", t0.Add(2*time.Minute)) {
		t.Fatal("new must be remembered")
	}
	// Long run: memory stays bounded.
	d = NewDedup(time.Second, 1000)
	for i := range 100000 {
		d.Seen(fmt.Sprint("id", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	if d.Len() > 1001 || cap(d.fifo) > 20000 {
		t.Fatalf("dedup grew: len %d cap %d", d.Len(), cap(d.fifo))
	}
}

// The registry annotation goes through the hand-written encoder; it must
// agree with encoding/json, which decodes it.
func TestNSInfoEncoderAgreesWithEncodingJSON(t *testing.T) {
	e := kafkatest.Event(5, time.Date(2026, 11, 28, 12, 0, 0, 123456000, time.UTC), 13)
	e.NSInfo = &event.NSInfos{
		Net: &event.NSInfo{ID: kafkatest.Boot + "/13", Type: "net", CreatedBy: &event.NSCreator{Event: kafkatest.Boot + ":3", Op: "unshare", PID: 42, Exe: "/usr/bin/unshare\x1b"},
			FirstSeen: time.Date(2026, 11, 28, 11, 0, 0, 654321000, time.UTC), LastSeen: time.Date(2026, 11, 28, 12, 0, 0, 111111000, time.UTC),
			Gone: time.Date(2026, 11, 28, 12, 30, 0, 222222000, time.UTC)},
		IPC: &event.NSInfo{ID: kafkatest.Boot + "/1", Type: "ipc", IsInit: true, FirstSeen: time.Date(2026, 11, 28, 10, 0, 0, 100001000, time.UTC)},
	}
	b := e.AppendJSON(nil)
	var got event.Event
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.NSInfo, e.NSInfo) {
		t.Fatalf("round trip differs: %s", b)
	}
	std, _ := json.Marshal(e.NSInfo)
	var x, y any
	json.Unmarshal(e.NSInfo.AppendJSON(nil), &x)
	json.Unmarshal(std, &y)
	if !reflect.DeepEqual(x, y) {
		t.Fatalf("encoders disagree:\nours %s\nstd  %s", e.NSInfo.AppendJSON(nil), std)
	}
}

func TestAppendAnnotated(t *testing.T) {
	e := kafkatest.Event(5, time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), 13)
	raw := e.AppendJSON(nil)
	info := &event.NSInfos{Net: &event.NSInfo{ID: kafkatest.Boot + "/13", Type: "net"}}
	out := AppendAnnotated(nil, raw, e, info)
	if !bytes.HasPrefix(out, raw[:len(raw)-2]) || !bytes.HasSuffix(out, []byte(`,"ns_info":{"net":{"id":"`+kafkatest.Boot+`/13","type":"net"}}}}`)) {
		t.Fatalf("annotated: %s", out)
	}
	var back event.Event
	if err := json.Unmarshal(out, &back); err != nil || back.NSInfo == nil || back.NSInfo.Net.ID != kafkatest.Boot+"/13" {
		t.Fatalf("annotated value does not decode: %v", err)
	}
	// Unknown fields survive, wherever auditns is; an already annotated
	// value or a non-object is left alone.
	in := []byte(`{"auditns":{"schema":"auditns.event/2","future":{"x":1}},"later":[{"}":1}]} ` + "\n")
	if got := AppendAnnotated(nil, in, e, info); !bytes.Contains(got, []byte(`"future":{"x":1},"ns_info":`)) ||
		!bytes.HasSuffix(got, []byte(`}}},"later":[{"}":1}]} `+"\n")) {
		t.Fatalf("unknown field lost: %s", got)
	}
	// A version 1 value gets ns_info at its top level.
	v1 := *e
	v1.Schema = event.SchemaV1
	in = []byte(`{"schema":"auditns.event/1","future":{"x":1}} ` + "\n")
	if got := AppendAnnotated(nil, in, &v1, info); !bytes.Contains(got, []byte(`"future":{"x":1},"ns_info":`)) {
		t.Fatalf("version 1: %s", got)
	}
	e.NSInfo = info
	if got := AppendAnnotated(nil, raw, e, info); !bytes.Equal(got, raw) {
		t.Fatal("already annotated value changed")
	}
	e.NSInfo = nil
	if got := AppendAnnotated(nil, []byte(`[1]`), e, info); string(got) != `[1]` {
		t.Fatal("non-object changed")
	}
	if got := AppendAnnotated(nil, []byte(`{}`), e, info); !json.Valid(got) {
		t.Fatalf("empty object: %s", got)
	}
}

// The merge, without Kafka: partitions skewed within the window come out
// in time order; a partition skewed beyond it is counted late.
func TestMergeReorderWindow(t *testing.T) {
	t0 := time.Unix(1800000000, 0).UTC()
	mk := func(seq int, sec float64) *Item {
		it, err := decode(&Message{Value: kafkatest.Event(uint32(seq), t0.Add(time.Duration(sec*float64(time.Second))), 0).AppendJSON(nil)})
		if err != nil {
			t.Fatal(err)
		}
		return it
	}
	run := func(parts [][]*Item, window time.Duration, maxBuf int) ([]int, *ReplayStats) {
		var streams []*partStream
		for i, items := range parts {
			s := &partStream{partition: i, ch: make(chan *Item, len(items))}
			for _, it := range items {
				s.ch <- it
			}
			close(s.ch)
			streams = append(streams, s)
		}
		stats := &ReplayStats{}
		var got []int
		err := merge(context.Background(), streams, ReplayOptions{Window: window, MaxBuffer: maxBuf, Dedup: NewDedup(0, 0)}, stats, func(it *Item) error {
			got = append(got, int(it.Event.Event.Sequence))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got, stats
	}
	parts := [][]*Item{
		{mk(1, 1), mk(4, 4), mk(7, 7), mk(2, 2), mk(9, 9)}, // 2 arrives 5 s late
		{mk(3, 3), mk(3, 3), mk(5, 5), mk(8, 8)},           // a duplicate
		{mk(6, 6), mk(10, 10)},
		{},
	}
	got, stats := run(parts, 5*time.Second, 100)
	if want := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !reflect.DeepEqual(got, want) {
		t.Fatalf("merged %v, want %v", got, want)
	}
	if stats.Duplicates.Load() != 1 || stats.Late.Load() != 0 {
		t.Fatalf("duplicates %d late %d", stats.Duplicates.Load(), stats.Late.Load())
	}
	// Skew of 5 s with a 1 s window: 2 comes after 4, counted late.
	got, stats = run(parts[:1], time.Second, 100)
	if want := []int{1, 4, 2, 7, 9}; !reflect.DeepEqual(got, want) || stats.Late.Load() != 1 {
		t.Fatalf("merged %v (late %d), want %v with 1 late", got, stats.Late.Load(), want)
	}
	// Same ids, same time: ties broken by the sequence number as a number.
	a, b := mk(9, 1), mk(10, 1)
	if !less(a, b) || less(b, a) {
		t.Fatal("seq 9 must sort before seq 10")
	}
}

func TestDialUnreachable(t *testing.T) {
	start := time.Now()
	_, err := Dial(context.Background(), Options{Brokers: []string{"127.0.0.1:1"}, DialTimeout: 2 * time.Second})
	if err == nil || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "kafka.brokers: ") || !strings.Contains(msg, "127.0.0.1:1") || strings.Contains(msg, "\n") {
		t.Fatalf("error should be one line naming kafka.brokers and the broker: %q", msg)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

// TLS and SASL settings are checked as the daemon checks them (kafkaauth):
// one line naming the key.
func TestFromConfigTLSAndSASLErrors(t *testing.T) {
	for _, c := range []struct {
		key string
		mod func(*config.Kafka)
	}{
		{"kafka.tls.ca_file", func(k *config.Kafka) { k.TLS.CAFile = "/etc/ssl/ca.pem" }}, // TLS off
		{"kafka.tls.ca_file", func(k *config.Kafka) { k.TLS = config.TLS{Enabled: true, CAFile: "/nonexistent/ca.pem"} }},
		{"kafka.tls.key_file", func(k *config.Kafka) { k.TLS = config.TLS{Enabled: true, CertFile: "/nonexistent/c.pem"} }},
		{"kafka.sasl.mechanism", func(k *config.Kafka) { k.SASL = config.SASL{Mechanism: "gssapi", Username: "u", Password: "p"} }},
		{"kafka.sasl.password", func(k *config.Kafka) { k.SASL = config.SASL{Mechanism: "scram-sha-256", Username: "u"} }},
		{"kafka.sasl.password_file", func(k *config.Kafka) {
			k.SASL = config.SASL{Mechanism: "plain", Username: "u", PasswordFile: "/nonexistent/pw"}
		}},
	} {
		k := config.Kafka{Brokers: []string{"127.0.0.1:9092"}}
		c.mod(&k)
		_, err := FromConfig(k)
		if err == nil || !strings.HasPrefix(err.Error(), c.key+": ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err %v, want one line starting with the key", c.key, err)
		}
	}
	k := config.Kafka{Brokers: []string{"127.0.0.1:9092"}, TLS: config.TLS{Enabled: true, ServerName: "kafka.test"},
		SASL: config.SASL{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p"}}
	o, err := FromConfig(k)
	if err != nil || o.TLS == nil || o.TLS.ServerName != "kafka.test" || o.SASL == nil || o.SASL.Name() != "SCRAM-SHA-512" {
		t.Fatalf("FromConfig: %+v %v", o, err)
	}
}

func TestPartitionsMissingTopic(t *testing.T) {
	c, _ := dial(t)
	_, err := c.Partitions(context.Background(), "test.no-such-topic.x")
	if !errors.Is(err, ErrNoTopic) {
		t.Fatalf("err = %v, want ErrNoTopic", err)
	}
}

// registryRecords are two versions of net namespace 13 (created by an
// unshare, later gone) and the initial mnt namespace 8.
func registryRecords(t0 time.Time) (old, latest, mnt *serial.Record) {
	created := &serial.CreatedBy{Event: kafkatest.Boot + ":3", Op: "unshare", PID: 4242, Exe: "/usr/bin/unshare"}
	old = &serial.Record{Schema: serial.Schema, ID: kafkatest.Boot + "/13", Host: serial.Host{Name: "web-1", BootID: kafkatest.Boot},
		Type: serial.Net, Serial: 13, Inum: 4026532013, Dev: "0:4", IDSrc: "kernel",
		FirstSeen: serial.MakeTime(t0), FirstEvent: serial.EventRef(kafkatest.Boot + ":3"), CreatedBy: created, LastSeen: serial.MakeTime(t0)}
	l := *old
	gone := serial.MakeTime(t0.Add(90 * time.Second))
	l.LastSeen, l.Gone = serial.MakeTime(t0.Add(80*time.Second)), &gone
	latest = &l
	mnt = &serial.Record{Schema: serial.Schema, ID: kafkatest.Boot + "/8", Host: serial.Host{Name: "web-1", BootID: kafkatest.Boot},
		Type: serial.Mnt, Serial: 8, Inum: 4026531832, Dev: "0:4", IDSrc: "kernel", IsInit: true,
		FirstSeen: serial.MakeTime(t0.Add(-time.Hour)), LastSeen: serial.MakeTime(t0)}
	return
}

func TestLoadRegistryLatestWins(t *testing.T) {
	c, brokers := dial(t)
	topic := kafkatest.NewTopic(t, brokers, 2, true)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	old, latest, mnt := registryRecords(t0)
	gone := *mnt
	gone.ID, gone.Serial = kafkatest.Boot+"/99", 99
	kafkatest.Produce(t, brokers, topic, kafkatest.RegistryMessage(old), kafkatest.RegistryMessage(mnt), kafkatest.RegistryMessage(&gone), kafkatest.RegistryMessage(latest),
		kafka.Message{Key: []byte(kafkatest.Boot + "/99")}, // tombstone
		kafka.Message{Key: []byte("junk"), Value: []byte("not json")})
	reg, err := c.LoadRegistry(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if reg.Len() != 2 || reg.Messages != 6 || reg.Bad != 1 {
		t.Fatalf("len %d messages %d bad %d", reg.Len(), reg.Messages, reg.Bad)
	}
	n := reg.Lookup(kafkatest.Boot, 13)
	if n == nil || n.Gone.IsZero() || !n.Gone.Equal(latest.Gone.Time) || n.CreatedBy == nil || n.CreatedBy.Op != "unshare" || n.Type != "net" {
		t.Fatalf("net 13: %+v", n)
	}
	if reg.Lookup(kafkatest.Boot, 99) != nil {
		t.Fatal("tombstoned record still there")
	}
	info, missing := reg.Annotate(kafkatest.Event(1, t0, 13))
	if info == nil || info.Net != n || info.Mnt == nil || !info.Mnt.IsInit || info.IPC != nil || missing != 2 {
		t.Fatalf("annotate: %+v missing %d", info, missing)
	}
}

// replayFixture publishes 60 events (seq i created at t0+i s) over 3
// partitions with skew and duplicates, and returns t0.
func replayFixture(t *testing.T, brokers, topic string) time.Time {
	t.Helper()
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	ev := func(seq int) *event.Event {
		net := uint64(0)
		if seq%5 == 0 {
			net = 13
		}
		return kafkatest.Event(uint32(seq), t0.Add(time.Duration(seq)*time.Second+time.Duration(seq)*time.Millisecond), net)
	}
	var msgs []kafka.Message
	for seq := 1; seq <= 60; seq++ {
		msgs = append(msgs, kafkatest.EventMessage(ev(seq), seq%3))
	}
	// Skew within a partition: swap neighbours 12<->15 (partition 0) and
	// 31<->34 (partition 1).
	msgs[11], msgs[14] = msgs[14], msgs[11]
	msgs[30], msgs[33] = msgs[33], msgs[30]
	// Duplicates: producer retries in the same partition, a little later,
	// and one that landed in another partition.
	var dups []kafka.Message
	for _, seq := range []int{10, 20, 21, 39, 40} {
		dups = append(dups, kafkatest.EventMessage(ev(seq), seq%3))
	}
	dups = append(dups, kafkatest.EventMessage(ev(25), 0))
	msgs = append(msgs[:45], append(dups, msgs[45:]...)...)
	kafkatest.Produce(t, brokers, topic, msgs...)
	return t0
}

func TestReplayRangeDedupOrder(t *testing.T) {
	c, brokers := dial(t)
	topic := kafkatest.NewTopic(t, brokers, 3, false)
	t0 := replayFixture(t, brokers, topic)

	var got []int
	var prev time.Time
	stats := &ReplayStats{}
	err := c.Replay(context.Background(), ReplayOptions{Topic: topic, From: t0.Add(10 * time.Second), To: t0.Add(40 * time.Second)}, stats, func(it *Item) error {
		if it.Created.Before(prev) {
			t.Errorf("out of order: %v after %v", it.Created, prev)
		}
		prev = it.Created
		got = append(got, int(it.Event.Event.Sequence))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// [t0+10s, t0+40s): seq 10 (t0+10.010s) to 39 (t0+39.039s).
	var want []int
	for i := 10; i <= 39; i++ {
		want = append(want, i)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed %v\nwant     %v", got, want)
	}
	// The copies of 10 (partition 1) and 20 (partition 2) come before the
	// first message of their partition stamped after To+Window (46, 47);
	// those of 21, 39 and 25 in partition 0 come after 45, where reading
	// stopped.
	if d := stats.Duplicates.Load(); d != 2 {
		t.Errorf("duplicates %d, want 2", d)
	}
	if stats.Late.Load() != 0 || stats.Partitions.Load() != 3 {
		t.Errorf("late %d partitions %d", stats.Late.Load(), stats.Partitions.Load())
	}
	if done, total := stats.OffsetsDone.Load(), stats.OffsetsTotal.Load(); done != total || total == 0 {
		t.Errorf("progress %d of %d", done, total)
	}

	// Reading further past To finds the copies behind 45 too; the result
	// is the same.
	replayed := got
	got, stats = nil, &ReplayStats{}
	err = c.Replay(context.Background(), ReplayOptions{Topic: topic, From: t0.Add(10 * time.Second), To: t0.Add(40 * time.Second), ReadPast: time.Hour}, stats, func(it *Item) error {
		got = append(got, int(it.Event.Event.Sequence))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, replayed) || stats.Duplicates.Load() != 5 || stats.Late.Load() != 0 {
		t.Fatalf("read past 1h: %v, %d duplicates (want 5), %d late", got, stats.Duplicates.Load(), stats.Late.Load())
	}

	// With a filter: only the events in net namespace 13.
	spec := &filter.Spec{NS: []string{"net:13"}}
	f, err := spec.Build()
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	err = c.Replay(context.Background(), ReplayOptions{Topic: topic, From: t0, To: t0.Add(time.Hour), Filter: f}, nil, func(it *Item) error {
		got = append(got, int(it.Event.Event.Sequence))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60}; !reflect.DeepEqual(got, want) {
		t.Fatalf("net:13 replayed %v, want %v", got, want)
	}

	// An empty range and a range before any message.
	if err := c.Replay(context.Background(), ReplayOptions{Topic: topic, From: t0, To: t0}, nil, nil); !errors.Is(err, ErrEmptyRange) {
		t.Fatalf("empty range: %v", err)
	}
	n := 0
	err = c.Replay(context.Background(), ReplayOptions{Topic: topic, From: t0.Add(-time.Hour), To: t0.Add(-time.Minute)}, nil, func(*Item) error { n++; return nil })
	if err != nil || n != 0 {
		t.Fatalf("range before the data: %d events, %v", n, err)
	}
}

func TestFollowSinceAndLive(t *testing.T) {
	c, brokers := dial(t)
	topic := kafkatest.NewTopic(t, brokers, 3, false)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	// Old events: seq 1-3 at t0, 4-6 at t0+30m.
	var old []kafka.Message
	for seq := 1; seq <= 6; seq++ {
		at := t0
		if seq > 3 {
			at = t0.Add(30 * time.Minute)
		}
		old = append(old, kafkatest.EventMessage(kafkatest.Event(uint32(seq), at, 0), seq%3))
	}
	kafkatest.Produce(t, brokers, topic, old...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[int]int{}
	stats := &FollowStats{}
	done := make(chan error, 1)
	go func() {
		done <- c.Follow(ctx, FollowOptions{Topic: topic, Since: t0.Add(20 * time.Minute)}, stats, func(it *Item) error {
			mu.Lock()
			seen[int(it.Event.Event.Sequence)]++
			mu.Unlock()
			return nil
		})
	}()
	// Live events, with a duplicate of 7.
	now := time.Now().UTC()
	kafkatest.Produce(t, brokers, topic, kafkatest.EventMessage(kafkatest.Event(7, now, 0), 0), kafkatest.EventMessage(kafkatest.Event(8, now, 0), 1), kafkatest.EventMessage(kafkatest.Event(7, now, 0), 0))
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow returned %v", err)
	}
	want := map[int]int{4: 1, 5: 1, 6: 1, 7: 1, 8: 1}
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("followed %v, want %v", seen, want)
	}
	if stats.Duplicates.Load() != 1 {
		t.Fatalf("duplicates %d", stats.Duplicates.Load())
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	loc := time.Local
	cases := map[string]time.Time{
		"10m":                         now.Add(-10 * time.Minute),
		"1h30m":                       now.Add(-90 * time.Minute),
		"now":                         now,
		"2026-11-28T11:00:00Z":        time.Date(2026, 11, 28, 11, 0, 0, 0, time.UTC),
		"2026-11-28T11:00:00.5+01:00": time.Date(2026, 11, 28, 10, 0, 0, 500000000, time.UTC),
		"2026-11-28 11:00":            time.Date(2026, 11, 28, 11, 0, 0, 0, loc),
		"2026-11-28T11:00:01":         time.Date(2026, 11, 28, 11, 0, 1, 0, loc),
		"2026-11-28":                  time.Date(2026, 11, 28, 0, 0, 0, 0, loc),
		"@1795000000":                 time.Unix(1795000000, 0),
	}
	for in, want := range cases {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-5m", "yesterday", "2026-13-01", "@x"} {
		if _, err := ParseTime(bad, now); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseTime(%q): err %v, want a one-line error", bad, err)
		}
	}
}

// tail and replay read events of auditns.event/1 (an older auditns on the
// topic) beside auditns.event/2: ordered by the kernel's time, filtered
// by the record type.
func TestDecodeReadsBothVersions(t *testing.T) {
	v1 := []byte(`{"schema":"auditns.event/1","event":{"id":"b:7","sequence":7,"created":"2026-11-28T12:00:00.500000Z","kind":"event","type":"SYSCALL"},"host":{"name":"h","boot":{"id":"b"}}}`)
	it1, err := decode(&Message{Value: v1})
	if err != nil {
		t.Fatal(err)
	}
	e := kafkatest.Event(8, time.Date(2026, 11, 28, 12, 0, 1, 0, time.UTC), 0)
	it2, err := decode(&Message{Value: e.AppendJSON(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if !it1.Created.Equal(time.Date(2026, 11, 28, 12, 0, 0, 500000000, time.UTC)) || !it2.Created.Equal(e.Timestamp) ||
		!less(it1, it2) || it1.Event.MessageType() != "SYSCALL" || it2.Event.MessageType() != "SYSCALL" {
		t.Fatalf("v1 %v %q, v2 %v %q", it1.Created, it1.Event.MessageType(), it2.Created, it2.Event.MessageType())
	}
	if _, err := decode(&Message{Value: []byte(`{"schema":"auditns.namespace/1","id":"b/9"}`)}); !errors.Is(err, errNotEvent) {
		t.Fatalf("a registry record: %v", err)
	}
}
