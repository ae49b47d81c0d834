package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/testenv/kafkatest"
)

// replayFixture publishes 90 events over 3 partitions, seq i created at
// t0 + i seconds (+ i ms), with skew and duplicates, and the registry of
// their namespaces. Every 5th event is in net namespace 13, which was
// created by an unshare and is gone (a later registry record says so).
func replayFixture(t *testing.T, brokers string) (events, registry string, t0 time.Time) {
	t.Helper()
	events = kafkatest.NewTopic(t, brokers, 3, false)
	registry = kafkatest.NewTopic(t, brokers, 2, true)
	t0 = time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Second)

	ev := func(seq int) *event.Event {
		net := uint64(0)
		if seq%5 == 0 {
			net = 13
		}
		e := kafkatest.Event(uint32(seq), t0.Add(time.Duration(seq)*(time.Second+time.Millisecond)), net)
		if seq == 42 {
			hostile(e)
		}
		return e
	}
	var msgs []kafka.Message
	for seq := 1; seq <= 90; seq++ {
		msgs = append(msgs, kafkatest.EventMessage(ev(seq), seq%3))
	}
	// Skew within partitions (2 to 3 s, inside the 5 s window).
	msgs[11], msgs[14] = msgs[14], msgs[11]
	msgs[30], msgs[33] = msgs[33], msgs[30]
	msgs[61], msgs[64] = msgs[64], msgs[61]
	// Duplicates: the same event again, soon after, in its partition, and
	// one in another partition.
	var dups []kafka.Message
	for _, seq := range []int{20, 21, 22, 30} {
		dups = append(dups, kafkatest.EventMessage(ev(seq), seq%3))
	}
	dups = append(dups, kafkatest.EventMessage(ev(25), 2))
	rest := append([]kafka.Message(nil), msgs[32:]...)
	msgs = append(append(msgs[:32], dups...), rest...)
	kafkatest.Produce(t, brokers, events, msgs...)

	created := &serial.CreatedBy{Event: kafkatest.Boot + ":3", Op: "unshare", PID: 4242, Exe: "/usr/bin/unshare"}
	net := &serial.Record{Schema: serial.Schema, ID: kafkatest.Boot + "/13", Host: serial.Host{Name: "web-1", BootID: kafkatest.Boot},
		Type: serial.Net, Serial: 13, Inum: 4026532013, Dev: "0:4", IDSrc: "kernel",
		FirstSeen: serial.MakeTime(t0), FirstEvent: serial.EventRef(kafkatest.Boot + ":3"), CreatedBy: created, LastSeen: serial.MakeTime(t0)}
	netLater := *net
	gone := serial.MakeTime(t0.Add(95 * time.Second))
	netLater.LastSeen, netLater.Gone = serial.MakeTime(t0.Add(91*time.Second)), &gone
	var recs []kafka.Message
	for _, typ := range serial.Types {
		if typ == serial.Net {
			continue
		}
		s := uint64(typ) + 1
		r := &serial.Record{Schema: serial.Schema, ID: kafkatest.Boot + "/" + string(rune('0'+s)), Host: serial.Host{Name: "web-1", BootID: kafkatest.Boot},
			Type: typ, Serial: s, Inum: 4026531830 + s, Dev: "0:4", IDSrc: "kernel", IsInit: true,
			FirstSeen: serial.MakeTime(t0.Add(-time.Hour)), LastSeen: serial.MakeTime(t0)}
		recs = append(recs, kafkatest.RegistryMessage(r))
	}
	netInit := &serial.Record{Schema: serial.Schema, ID: kafkatest.Boot + "/7", Host: serial.Host{Name: "web-1", BootID: kafkatest.Boot},
		Type: serial.Net, Serial: 7, Inum: 4026531840, Dev: "0:4", IDSrc: "kernel", IsInit: true,
		FirstSeen: serial.MakeTime(t0.Add(-time.Hour)), LastSeen: serial.MakeTime(t0)}
	recs = append(recs, kafkatest.RegistryMessage(net), kafkatest.RegistryMessage(netInit), kafkatest.RegistryMessage(&netLater))
	kafkatest.Produce(t, brokers, registry, recs...)
	return events, registry, t0
}

// decodeLines decodes JSON lines into events, failing t on anything else.
func decodeLines(t *testing.T, out string) []event.Event {
	t.Helper()
	var evs []event.Event
	for _, l := range lines(out) {
		var e event.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not an event: %v: %s", err, l)
		}
		evs = append(evs, e)
	}
	return evs
}

func runReplay(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	r := start(t, replayCmd(), args...)
	err = r.wait(t)
	return r.stdout.String(), r.stderr.String(), err
}

func TestReplayRangeOnceInOrderAnnotated(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	events, registry, t0 := replayFixture(t, brokers)
	from, to := t0.Add(20*time.Second), t0.Add(50*time.Second)

	stdout, stderr, err := runReplay(t, "--kafka-brokers", brokers, "--topic", events, "--namespaces-topic", registry,
		"--from", from.Format(time.RFC3339Nano), "--to", to.Format(time.RFC3339Nano))
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr)
	}
	evs := decodeLines(t, stdout)
	// [t0+20s, t0+50s): seq i is at t0 + i*1.001s, so 20 ... 49.
	var got, want []int
	for _, e := range evs {
		got = append(got, int(e.Event.Sequence))
	}
	for i := 20; i <= 49; i++ {
		want = append(want, i)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed seq %v\nwant %v", got, want)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Event.Created.Before(evs[i-1].Event.Created) {
			t.Fatalf("not in time order at %d", i)
		}
	}
	// Annotated from the registry: net 13 is explained though gone; the
	// initial namespaces too.
	for _, e := range evs {
		in := e.NSInfo
		if in == nil || in.IPC == nil || !in.IPC.IsInit || in.Mnt == nil || in.PID == nil || in.Net == nil {
			t.Fatalf("seq %d: ns_info incomplete: %+v", e.Event.Sequence, in)
		}
		if e.Event.Sequence%5 == 0 {
			n := in.Net
			if n.ID != kafkatest.Boot+"/13" || n.Type != "net" || n.CreatedBy == nil || n.CreatedBy.Op != "unshare" || n.CreatedBy.PID != 4242 ||
				!n.Gone.Equal(t0.Add(95*time.Second)) || !n.LastSeen.Equal(t0.Add(91*time.Second)) || !n.FirstSeen.Equal(t0) {
				t.Fatalf("seq %d: ns_info.net %+v", e.Event.Sequence, n)
			}
		} else if in.Net.ID != kafkatest.Boot+"/7" || !in.Net.IsInit || !in.Net.Gone.IsZero() {
			t.Fatalf("seq %d: ns_info.net %+v", e.Event.Sequence, in.Net)
		}
	}
	// The annotated value is the original one plus ns_info, the last
	// member of its auditns object.
	for _, l := range lines(stdout) {
		var e event.Event
		json.Unmarshal([]byte(l), &e)
		if e.Event.Sequence != 42 {
			continue
		}
		orig := string(hostile(kafkatest.Event(42, t0.Add(42*(time.Second+time.Millisecond)), 0)).AppendJSON(nil))
		if !strings.HasPrefix(l, orig[:len(orig)-2]+`,"ns_info":{`) || !strings.HasSuffix(l, "}}") {
			t.Fatalf("annotated value does not start with the original:\n%s\n%s", l, orig)
		}
	}
	if !strings.Contains(stderr, "30 events written from 3 partitions") || !strings.Contains(stderr, "5 duplicates dropped") {
		t.Fatalf("summary: %s", stderr)
	}
	if !strings.Contains(stderr, "registry: 9 namespaces, 0 events with a namespace it does not know") {
		t.Fatalf("registry summary: %s", stderr)
	}
}

func TestReplayFiltersFileAndTopicOutput(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	events, registry, t0 := replayFixture(t, brokers)
	from, to := t0.Format(time.RFC3339), t0.Add(time.Hour).Format(time.RFC3339)
	path := filepath.Join(t.TempDir(), "out.jsonl")

	_, stderr, err := runReplay(t, "--kafka-brokers", brokers, "--topic", events, "--namespaces-topic", registry,
		"--from", from, "--to", to, "--ns", "net:13", "--output", "file:"+path, "-q")
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr)
	}
	if stderr != "" {
		t.Fatalf("-q: stderr %q", stderr)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, e := range decodeLines(t, string(b)) {
		got = append(got, int(e.Event.Sequence))
	}
	if want := []int{5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90}; !reflect.DeepEqual(got, want) {
		t.Fatalf("--ns net:13 replayed %v, want %v", got, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("output mode %v, want 0600", fi.Mode().Perm())
	}
	// The file is not overwritten.
	_, _, err = runReplay(t, "--kafka-brokers", brokers, "--topic", events, "--from", from, "--output", "file:"+path)
	var u usageError
	if !errors.As(err, &u) || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("existing file: %v", err)
	}

	// To another topic (created with one partition): same values, in
	// order, with key, time and headers kept.
	dest := "test.replay-out." + strings.TrimPrefix(events, "test.")
	t.Cleanup(func() {
		(&kafka.Client{Addr: kafka.TCP(brokers)}).DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{dest}})
	})
	_, stderr, err = runReplay(t, "--kafka-brokers", brokers, "--topic", events, "--namespaces-topic", registry,
		"--from", from, "--to", to, "--pid", "1042", "--pid", "1043", "--output", "kafka-topic:"+dest)
	if err != nil {
		t.Fatalf("replay to topic: %v\n%s", err, stderr)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{brokers}, Topic: dest, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for i, seq := range []uint32{42, 43} {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var e event.Event
		if err := json.Unmarshal(m.Value, &e); err != nil || e.Event.Sequence != seq || e.NSInfo == nil {
			t.Fatalf("message %d: seq %d (want %d), ns_info %v, err %v", i, e.Event.Sequence, seq, e.NSInfo, err)
		}
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		if h["event_id"] != e.Event.ID || h["schema"] != event.Schema || h["content-type"] != "application/json" ||
			!strings.HasPrefix(h["replayed_from"], events+"/") || string(m.Key) != "web-1" || !m.Time.Equal(e.Event.Created.Truncate(time.Millisecond)) {
			t.Fatalf("message %d: key %q time %v headers %v", i, m.Key, m.Time, h)
		}
	}
}

func TestReplayBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"--kafka-brokers", "127.0.0.1:1"},
		{"--kafka-brokers", "127.0.0.1:1", "--from", "2h", "--to", "3h"},
		{"--kafka-brokers", "127.0.0.1:1", "--from", "2h", "--output", "kafka:x"},
		{"--kafka-brokers", "127.0.0.1:1", "--from", "2h", "--output", "kafka-topic:a b"},
		{"--kafka-brokers", "127.0.0.1:1", "--from", "tomorrow"},
		{"--kafka-brokers", "127.0.0.1:1", "--from", "2h", "--syscall", "-1"},
		{"--kafka-brokers", "127.0.0.1:1", "--from", "2h", "--window", "0s"},
	} {
		cmd := replayCmd()
		cmd.SetArgs(args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.Execute()
		var u usageError
		if !errors.As(err, &u) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: err %v, want a one-line usage error (exit 2)", args, err)
		}
	}
}
