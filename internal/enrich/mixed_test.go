package enrich

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/assemble"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/record"
)

// mixedRecord is one recorded record, split around its sequence number so
// that every pass over the recording gets new ones.
type mixedRecord struct {
	typ       uint16
	pre, post []byte // up to and after the sequence number
	seq       int64
}

// loadMixed reads testdata/mixed.records: the records a plain
// go-libaudit consumer received during the bench's mixed workload (six
// processes in parallel doing exec, open/openat under watches, connect,
// getppid, setuid and setgid; `bench -workloads mixed -keep`, baseline's
// records.txt), one a line as "TYPE text".
func loadMixed(tb testing.TB) (recs []mixedRecord, span int64) {
	data, err := os.ReadFile("testdata/mixed.records")
	if err != nil {
		tb.Fatal(err)
	}
	lo, hi := int64(-1), int64(0)
	for _, line := range bytes.Split(data, []byte("\n")) {
		typ, text, _ := bytes.Cut(line, []byte(" "))
		n, err := strconv.ParseUint(string(typ), 10, 16)
		if err != nil {
			continue
		}
		colon := bytes.IndexByte(text, ':')
		end := bytes.IndexByte(text, ')')
		if colon < 0 || end < colon {
			continue
		}
		seq, err := strconv.ParseInt(string(text[colon+1:end]), 10, 64)
		if err != nil {
			continue
		}
		if lo < 0 || seq < lo {
			lo = seq
		}
		hi = max(hi, seq)
		recs = append(recs, mixedRecord{uint16(n), text[:colon+1], text[end:], seq})
	}
	if len(recs) < 1000 {
		tb.Fatalf("testdata/mixed.records: %d records", len(recs))
	}
	return recs, hi - lo + 1
}

// BenchmarkMixed is the per-event work of the pipeline's processing
// goroutine (assemble, enrich, encode) over records of the bench's mixed
// workload, in the order the kernel sent them; one op is one event. It is
// the micro-benchmark by which the memos and unsafe sites of enrich,
// event and record are judged (docs/PERFORMANCE.md): records interleave
// from several processes and syscalls, as on a host. The processes are
// gone, so the process cache misses and enrichment comes from the records,
// the same for every variant measured.
func BenchmarkMixed(b *testing.B) {
	recs, span := loadMixed(b)
	e, err := New(Options{HostName: "h", BootID: "boot", Kernel: "6.18"})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	var ev event.Event
	var enc event.Encoder // as the pipeline encodes
	out := make([]byte, 0, 64<<10)
	events := 0
	e.SetClock(time.Now())
	a := assemble.New(assemble.Options{}, func(rs []record.Record) {
		if err := e.Enrich(rs, &ev); err != nil {
			b.Fatal(err)
		}
		out = enc.AppendJSON(out[:0], &ev)
		events++
	}, nil)
	buf := make([]byte, 0, 16<<10)
	pass := int64(0)
	push := func() {
		for _, r := range recs {
			buf = append(buf[:0], r.pre...)
			buf = strconv.AppendInt(buf, r.seq+pass*span, 10)
			buf = append(buf, r.post...)
			a.Push(r.typ, buf)
		}
		pass++
	}
	push() // the process cache and the memos as in steady state
	events = 0
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for events < b.N {
		push()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
	// On a loaded machine the process's CPU time is the steadier figure.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(events), "cpu-ns/event")
}

// processCPU is the process's user and system CPU time in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
