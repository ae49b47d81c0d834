package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/assemble"
	"github.com/auditns/auditns/internal/enrich"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/publish"
)

// getppid returns the records of one audited getppid of this process
// (SYSCALL, PROCTITLE, EOE), as the kernel sends them, with sequence seq.
// The bench's generator passes arguments that differ from call to call (a
// counter and a tag): so does this.
func getppid(seq int, now time.Time) [][]byte {
	hdr := fmt.Sprintf("audit(%d.%03d:%d): ", now.Unix(), now.Nanosecond()/1e6, seq)
	pid, ppid := os.Getpid(), os.Getppid()
	return [][]byte{
		fmt.Appendf(nil, `%sarch=c000003e syscall=110 success=yes exit=%d a0=%x a1=%x a2=0 a3=0 items=0 ppid=%d pid=%d auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="auditns-bench" exe="/work/main/bin/auditns-bench" key="auditns-bench"`, hdr, ppid, seq, 0x18b4ad3bf6a05f0e+seq*0x9e3779b9, ppid, pid),
		[]byte(hdr + `proctitle=62696E2F61756469746E732D62656E636800676574707069642D73746F726D`),
		[]byte(hdr),
	}
}

var getppidTypes = []uint16{1300, 1327, 1320}

func newTestPipeline(tb testing.TB, sink publish.Sink) *Pipeline {
	e, err := enrich.New(enrich.Options{HostName: "h", BootID: "boot", Kernel: "6.18"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	return New(Options{Enricher: e, Sink: sink, HostName: "h", BootID: "boot", Kernel: "6.18"})
}

// batch does what Run does with one batch of records from the reader.
func (p *Pipeline) batchForTest(typs []uint16, recs [][]byte, flush bool) {
	now := time.Now()
	p.o.Enricher.SetClock(now)
	p.asm.FlushAt(now)
	for i, r := range recs {
		p.asm.Push(typs[i], r)
	}
	if flush {
		p.flush()
	}
}

func TestEventsReachTheSinkAfterPendingRecords(t *testing.T) {
	var out bytes.Buffer
	p := newTestPipeline(t, publish.NewWriter(&out, "buffer"))
	now := time.Now()
	var typs []uint16
	var recs [][]byte
	for seq := 1; seq <= 3; seq++ {
		typs = append(typs, getppidTypes...)
		recs = append(recs, getppid(seq, now)...)
	}
	p.Publish(publish.Message{Topic: publish.TopicNamespaces, Value: []byte(`{"registry":1}`)})
	p.batchForTest(typs, recs, true)
	lines := bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n"))
	if len(lines) != 4 || string(lines[0]) != `{"registry":1}` {
		t.Fatalf("%d lines:\n%s", len(lines), out.Bytes())
	}
	for i, l := range lines[1:] {
		if !bytes.Contains(l, []byte(`"id":"boot:`+strconv.Itoa(i+1)+`"`)) || !bytes.Contains(l, []byte(`"name":"getppid"`)) {
			t.Fatalf("line %d: %s", i+1, l)
		}
	}
	if p.Stats().Events.Load() != 3 || p.Stats().Registry.Load() != 1 {
		t.Fatalf("events %d registry %d", p.Stats().Events.Load(), p.Stats().Registry.Load())
	}
	// Nothing pending: the next batch writes its events only.
	out.Reset()
	p.batchForTest(getppidTypes, getppid(4, now), true)
	if n := bytes.Count(out.Bytes(), []byte("\n")); n != 1 {
		t.Fatalf("%d lines:\n%s", n, out.Bytes())
	}
}

// BenchmarkPipelineGetppid is the processing goroutine's work per event
// of the getppid storm, from the reader's records to the bytes in the file
// sink's buffer: batches of 64 events (192 records), each pushed into the
// assembler, enriched, encoded, and written to the sink (a file sink on
// io.Discard) once per batch, as Run does when the queue is empty. The
// records are made beforehand. ns/event is the figure to read (an op is
// a batch).
func BenchmarkPipelineGetppid(b *testing.B) {
	const perBatch = 64
	p := newTestPipeline(b, publish.NewWriter(io.Discard, "discard"))
	now := time.Now()
	var batches [16]struct {
		typs []uint16
		recs [][]byte
	}
	seq := 1
	for i := range batches {
		for j := 0; j < perBatch; j++ {
			batches[i].typs = append(batches[i].typs, getppidTypes...)
			batches[i].recs = append(batches[i].recs, getppid(seq, now)...)
			seq++
		}
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		bt := &batches[n%len(batches)]
		p.batchForTest(bt.typs, bt.recs, true)
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perBatch), "ns/event")
	if p.Stats().Events.Load() != uint64(b.N*perBatch) {
		b.Fatalf("%d events, want %d", p.Stats().Events.Load(), b.N*perBatch)
	}
}

// keySink keeps copies of the messages it is given.
type keySink struct{ keys, values [][]byte }

func (s *keySink) Write(msgs []publish.Message) (int, error) {
	for _, m := range msgs {
		s.keys = append(s.keys, bytes.Clone(m.Key))
		s.values = append(s.values, bytes.Clone(m.Value))
	}
	return 0, nil
}
func (s *keySink) Close(context.Context) error { return nil }
func (s *keySink) Name() string                { return "keys" }

// A per-event key shares the batch arena with the values: each message's
// key is its event id, and no value carries a key's bytes.
func TestEventKeysBesideValues(t *testing.T) {
	sink := &keySink{}
	e, err := enrich.New(enrich.Options{HostName: "h", BootID: "boot", Kernel: "6.18"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	p := New(Options{Enricher: e, Sink: sink, HostName: "h", BootID: "boot", Kernel: "6.18", Key: "event"})
	now := time.Now()
	var typs []uint16
	var recs [][]byte
	for seq := 1; seq <= 3; seq++ {
		typs = append(typs, getppidTypes...)
		recs = append(recs, getppid(seq, now)...)
	}
	p.batchForTest(typs, recs, true)
	if len(sink.keys) != 3 {
		t.Fatalf("%d messages", len(sink.keys))
	}
	for i, k := range sink.keys {
		id := "boot:" + strconv.Itoa(i+1)
		if string(k) != id {
			t.Fatalf("message %d: key %q, want %q", i, k, id)
		}
		v := sink.values[i]
		if !json.Valid(v) || v[len(v)-1] != '}' || !bytes.Contains(v, []byte(`"id":"`+id+`"`)) {
			t.Fatalf("message %d: value %s", i, v)
		}
	}
}

// refusing is a sink that refuses everything while full, counting it.
type refusing struct {
	full  bool
	lines [][]byte
}

func (s *refusing) Write(msgs []publish.Message) (int, error) {
	if s.full {
		return len(msgs), nil
	}
	for _, m := range msgs {
		s.lines = append(s.lines, append([]byte(nil), m.Value...))
	}
	return 0, nil
}
func (s *refusing) Close(context.Context) error { return nil }
func (s *refusing) Name() string                { return "refusing" }

// A loss event the sink refuses keeps its count: the next one that gets
// through carries it with what was lost since, so the counts written add
// up to the events refused, and the sink is degraded meanwhile.
func TestLossCountsCarryForwardUntilALossEventGetsThrough(t *testing.T) {
	sink := &refusing{full: true}
	p := newTestPipeline(t, sink)
	now := time.Now()
	seq := 1
	batch := func(n int) {
		var typs []uint16
		var recs [][]byte
		for range n {
			typs = append(typs, getppidTypes...)
			recs = append(recs, getppid(seq, now)...)
			seq++
		}
		p.batchForTest(typs, recs, true)
		p.writeLoss(true)
	}
	batch(3)
	batch(4)
	if p.Health() == nil || len(sink.lines) != 0 {
		t.Fatalf("health %v, %d lines while full", p.Health(), len(sink.lines))
	}
	sink.full = false
	batch(2)
	var sum uint64
	events := 0
	for _, l := range sink.lines {
		var ev event.Event
		if err := json.Unmarshal(l, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Loss != nil {
			sum += ev.Loss.Count
		} else {
			events++
		}
	}
	if sum != 7 || events != 2 || p.Health() != nil || p.Stats().LossOwed.Load() != 0 {
		t.Fatalf("loss counts %d (want 7), events %d, health %v, owed %d", sum, events, p.Health(), p.Stats().LossOwed.Load())
	}
}

// owedCheck is a sink that writes what it is given at once and records
// what the state on disk owed at each write of a loss event.
type owedCheck struct {
	t     *testing.T
	state string
	owed  []uint64
}

func (s *owedCheck) Write(msgs []publish.Message) (int, error) {
	for _, m := range msgs {
		if !m.Reserved {
			continue
		}
		st, err := loadState(s.state)
		if err != nil {
			s.t.Fatal(err)
		}
		var n uint64
		for _, c := range st.Owed {
			n += c
		}
		s.owed = append(s.owed, n)
	}
	return 0, nil
}
func (s *owedCheck) Close(context.Context) error { return nil }
func (s *owedCheck) Name() string                { return "owed" }

// A loss event is written under a state that no longer owes its count:
// killed between the two writes, the next run must not count it again.
func TestLossEventsAreWrittenUnderAStateThatNoLongerOwesThem(t *testing.T) {
	e, err := enrich.New(enrich.Options{HostName: "h", BootID: "boot", Kernel: "6.18"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	sink := &owedCheck{t: t, state: filepath.Join(t.TempDir(), "state")}
	p := New(Options{Enricher: e, Sink: sink, StateFile: sink.state, HostName: "h", BootID: "boot", Kernel: "6.18"})
	p.batchForTest(getppidTypes, getppid(1, time.Now()), true)
	p.ledger.owe(reasonQueueFull, 7, "")
	p.ledger.gap(assemble.Gap{From: 3, To: 4}, false)
	p.persist(false) // as the next batch's write does
	p.writeLoss(true)
	if len(sink.owed) != 2 || sink.owed[0] != 0 || sink.owed[1] != 0 {
		t.Fatalf("the state owed %v at the loss events' writes, want [0 0]", sink.owed)
	}
}

// Killed between the state write and the file write: the next run reads
// the file back and counts the batch's events that the file does not hold,
// and none that it does.
func TestBatchCutByAKillIsCountedByTheNextRun(t *testing.T) {
	e, err := enrich.New(enrich.Options{HostName: "h", BootID: "boot", Kernel: "6.18"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	dir := t.TempDir()
	out, state := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "state")
	run := func() (*Pipeline, *publish.Lines) {
		sink, err := publish.NewFile(out, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sink.Close(context.Background()) })
		return New(Options{Enricher: e, Sink: sink, StateFile: state, HostName: "h", BootID: "boot", Kernel: "6.18"}), sink
	}
	open := func(p *Pipeline) map[uint32]bool {
		_, open, _ := p.asm.Checkpoint(nil, 100)
		m := map[uint32]bool{}
		for _, n := range open {
			m[n] = true
		}
		return m
	}
	now := time.Now()
	p, sink := run()
	p.batchForTest(getppidTypes, getppid(1, now), true)
	// Events 2 and 3: the state is written as flush writes it, then the
	// run dies before the file write.
	p.batchForTest(append(getppidTypes, getppidTypes...), append(getppid(2, now), getppid(3, now)...), false)
	p.doubt = p.doubtOf(p.batchSeqs)
	p.persist(false)
	sink.Close(context.Background())

	p, _ = run()
	if o := open(p); !o[2] || !o[3] || o[1] {
		t.Fatalf("after a kill before the write, open %v: want 2 and 3, not 1", o)
	}
	// Event 4 written whole, the run dying after the write: its state
	// still names the batch, which the file holds.
	p.batchForTest(getppidTypes, getppid(4, now), true)
	p, _ = run()
	if o := open(p); o[4] {
		t.Fatalf("after a kill after the write, open %v: 4 is in the file", o)
	}
}
