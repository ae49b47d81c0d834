package enrich

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/auditns/auditns/internal/assemble"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/record"
)

// parseLines reads records written one per line as "TYPE text".
func parseLines(s string) []record.Record {
	var recs []record.Record
	for _, line := range strings.Split(s, "\n") {
		typ, text, _ := strings.Cut(line, " ")
		n, err := strconv.ParseUint(typ, 10, 16)
		if err != nil {
			continue
		}
		r, err := record.Parse(uint16(n), []byte(text))
		if err != nil {
			continue
		}
		recs = append(recs, *r)
	}
	return recs
}

// enrichBoth returns the JSON of Enrich and of the go-libaudit Enrich it
// replaces for the same records, warnings sorted (go-libaudit produced
// some in map order).
func enrichBoth(t testing.TB, e *Enricher, l *legacyEnricher, recs []record.Record) (got, want []byte) {
	var ev, lev event.Event
	gerr := e.Enrich(recs, &ev)
	lerr := l.Enrich(recs, &lev)
	if (gerr == nil) != (lerr == nil) {
		t.Fatalf("error %v, go-libaudit %v", gerr, lerr)
	}
	if gerr != nil {
		return nil, nil
	}
	for _, a := range []*event.Auditd{ev.Auditd, lev.Auditd} {
		if a != nil {
			slices.Sort(a.Warnings)
		}
	}
	return ev.AppendJSON(nil), lev.AppendJSON(nil)
}

func newPair(t testing.TB) (*Enricher, *legacyEnricher) {
	dir := t.TempDir()
	e, err := New(Options{HostName: "h", BootID: "boot", Kernel: "6.18", ProcRoot: dir})
	if err != nil {
		t.Fatal(err)
	}
	l, err := newLegacyEnricher(Options{HostName: "h", BootID: "boot", Kernel: "6.18", ProcRoot: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(); l.Close() })
	// event.created is the same for both.
	l.now = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	e.SetClock(l.now)
	return e, l
}

// corpusEvents are the events of the golden files, as "TYPE text" lines.
func corpusEvents(t testing.TB) []string {
	var out []string
	for _, path := range goldenFiles(t) {
		for _, recs := range loadEvents(t, path) {
			var b strings.Builder
			for _, r := range recs {
				b.WriteString(strconv.Itoa(int(r.Type)))
				b.WriteByte(' ')
				b.Write(r.Text)
				b.WriteByte('\n')
			}
			out = append(out, b.String())
		}
	}
	return out
}

// FuzzEnrichLikeGoLibaudit holds Enrich to the JSON go-libaudit's
// parsing and aucoalesce made of the same records, whatever the records.
func FuzzEnrichLikeGoLibaudit(f *testing.F) {
	for _, ev := range corpusEvents(f) {
		f.Add(ev)
	}
	e, l := newPair(f)
	f.Fuzz(func(t *testing.T, s string) {
		recs := parseLines(s)
		if len(recs) == 0 {
			return
		}
		got, want := enrichBoth(t, e, l, recs)
		if !bytes.Equal(got, want) {
			t.Fatalf("records:\n%s\n got %s\nwant %s", s, got, want)
		}
		if got != nil && !json.Valid(got) {
			t.Fatalf("invalid JSON %s", got)
		}
	})
}

// benchLines are the records of one event of the bench's storms (getppid:
// SYSCALL, PROCTITLE; exec: SYSCALL, EXECVE, CWD, 2 PATH, PROCTITLE), as
// "TYPE text" lines, by this process (so that the process cache knows it),
// stamped now, sequence seq.
func benchLines(kind string, seq int) string {
	now := time.Now()
	hdr := fmt.Sprintf("audit(%d.%03d:%d): ", now.Unix(), now.Nanosecond()/1e6, seq)
	pid, ppid := os.Getpid(), os.Getppid()
	var recs []string
	switch kind {
	case "getppid":
		recs = []string{
			fmt.Sprintf(`1300 %sarch=c000003e syscall=110 success=yes exit=%d a0=7 a1=18b4ad3bf6a05f0e a2=0 a3=0 items=0 ppid=%d pid=%d auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="auditns-bench" exe="/work/main/bin/auditns-bench" key="auditns-bench"`, hdr, ppid, ppid, pid),
			`1327 ` + hdr + `proctitle=62696E2F61756469746E732D62656E636800676574707069642D73746F726D`,
		}
	case "exec":
		recs = []string{
			fmt.Sprintf(`1300 %sarch=c000003e syscall=59 success=yes exit=0 a0=5562ac588448 a1=5562ac588088 a2=5562ac588308 a3=8 items=2 ppid=%d pid=%d auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="true" exe="/usr/bin/true" key="auditns-bench"`, hdr, ppid, pid),
			`1309 ` + hdr + `argc=1 a0="/bin/true"`,
			`1307 ` + hdr + `cwd="/work/main"`,
			`1302 ` + hdr + `item=0 name="/bin/true" inode=247845 dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0`,
			`1302 ` + hdr + `item=1 name="/lib64/ld-linux-x86-64.so.2" inode=325835 dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0`,
			`1327 ` + hdr + `proctitle=2F62696E2F74727565`,
		}
	}
	return strings.Join(recs, "\n")
}

// benchPair are an Enricher and the go-libaudit one it replaces, both with
// the process cache on the real /proc and nothing to name namespaces.
func benchPair(b *testing.B) (*Enricher, *legacyEnricher) {
	e, err := New(Options{HostName: "h", BootID: "boot", Kernel: "6.18"})
	if err != nil {
		b.Fatal(err)
	}
	l, err := newLegacyEnricher(Options{HostName: "h", BootID: "boot", Kernel: "6.18"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close(); l.Close() })
	return e, l
}

// benchEnrich runs Enrich and the encoder on one event of a process the
// cache knows; go-libaudit is the Enrich it replaces (auparse.Parse and
// Data of each record, aucoalesce, its id caches) in the same run. The
// records are parsed beforehand (the assembler's part).
func benchEnrich(b *testing.B, kind string) {
	recs := parseLines(benchLines(kind, 20))
	e, l := benchPair(b)
	buf := make([]byte, 0, 4096)
	b.Run("go-libaudit", func(b *testing.B) {
		var ev event.Event
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			if err := l.Enrich(recs, &ev); err != nil {
				b.Fatal(err)
			}
			buf = ev.AppendJSON(buf[:0])
		}
	})
	b.Run("auditns", func(b *testing.B) {
		var ev event.Event
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			if err := e.Enrich(recs, &ev); err != nil {
				b.Fatal(err)
			}
			buf = ev.AppendJSON(buf[:0])
		}
		if ev.NSSrc != srcObserved {
			b.Fatalf("process not cached: ns_src %q", ev.NSSrc)
		}
	})
}

func BenchmarkEnrichSyscallEvent(b *testing.B) { benchEnrich(b, "getppid") }

func BenchmarkEnrichExecveEvent(b *testing.B) { benchEnrich(b, "exec") }

// BenchmarkAssembleEnrichEncode is the whole per-event work of the
// pipeline's processing goroutine for a getppid and an exec event of a
// known process: the records (and EOE) pushed into the assembler, the
// event enriched and encoded. go-libaudit is the same on the code this
// replaced (auparse.Parse, libaudit.Reassembler, aucoalesce).
func BenchmarkAssembleEnrichEncode(b *testing.B) {
	for _, kind := range []string{"getppid", "exec"} {
		type rec struct {
			typ  uint16
			pre  string // up to the sequence number
			post string
		}
		var recs []rec
		for _, line := range strings.Split(benchLines(kind, 20), "\n") {
			typ, text, _ := strings.Cut(line, " ")
			n, _ := strconv.Atoi(typ)
			i := strings.Index(text, ":20)")
			recs = append(recs, rec{uint16(n), text[:i+1], text[i+3:]})
		}
		recs = append(recs, rec{typeEOE, recs[0].pre, "): "})
		bufs := make([][]byte, len(recs))
		run := func(b *testing.B, push func(typ uint16, data []byte)) {
			b.ReportAllocs()
			defer reportCPU(b)()
			seq := 1
			for b.Loop() {
				for i, r := range recs {
					bufs[i] = append(bufs[i][:0], r.pre...)
					bufs[i] = strconv.AppendInt(bufs[i], int64(seq), 10)
					bufs[i] = append(bufs[i], r.post...)
					push(r.typ, bufs[i])
				}
				seq++
			}
		}
		e, l := benchPair(b)
		out := make([]byte, 0, 64<<10)
		b.Run(kind+"/go-libaudit", func(b *testing.B) {
			var ev event.Event
			r, _ := libaudit.NewReassembler(1024, 2*time.Second, legacyStream(func(msgs []*auparse.AuditMessage) {
				if err := l.EnrichMessages(msgs, &ev); err != nil {
					b.Fatal(err)
				}
				out = ev.AppendJSON(out[:0])
			}))
			run(b, func(typ uint16, data []byte) {
				m, err := auparse.Parse(auparse.AuditMessageType(typ), string(data))
				if err != nil {
					b.Fatal(err)
				}
				r.PushMessage(m)
			})
		})
		b.Run(kind+"/auditns", func(b *testing.B) {
			var ev event.Event
			// The pipeline reads the clock once per batch of records.
			e.SetClock(time.Now())
			defer e.SetClock(time.Time{})
			a := assemble.New(assemble.Options{}, func(recs []record.Record) {
				if err := e.Enrich(recs, &ev); err != nil {
					b.Fatal(err)
				}
				out = ev.AppendJSON(out[:0])
			}, nil)
			run(b, a.Push)
			if ev.NSSrc != srcObserved {
				b.Fatalf("process not cached: ns_src %q", ev.NSSrc)
			}
		})
	}
}

// legacyStream adapts a function to go-libaudit's Stream.
type legacyStream func(msgs []*auparse.AuditMessage)

func (f legacyStream) ReassemblyComplete(msgs []*auparse.AuditMessage) { f(msgs) }
func (f legacyStream) EventsLost(int)                                  {}

// The copy of go-libaudit's normalizations is the module's file.
func TestNormalizationsAreGoLibaudits(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/elastic/go-libaudit/v2").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	mod, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "aucoalesce", "normalizations.yaml"))
	if err != nil {
		t.Skipf("go-libaudit's source: %v", err)
	}
	if !bytes.HasSuffix(normalizationsYAML, mod) {
		t.Fatal("internal/enrich/normalizations.yaml is not go-libaudit's: copy it again (keep the header)")
	}
}

// Every syscall of the x86_64 table, every record type alone, and every
// record type with a SYSCALL, come out as go-libaudit made them.
func TestNormalizationsLikeGoLibaudit(t *testing.T) {
	e, l := newPair(t)
	hdr := "audit(1795868665.170:20): "
	check := func(lines string) {
		t.Helper()
		got, want := enrichBoth(t, e, l, parseLines(lines))
		if !bytes.Equal(got, want) {
			t.Fatalf("records:\n%s\n got %s\nwant %s", lines, got, want)
		}
	}
	for nr := range auparse.AuditSyscalls["x86_64"] {
		for _, res := range []string{"success=yes exit=3", "success=no exit=-13"} {
			check(fmt.Sprintf("1300 %sarch=c000003e syscall=%d %s a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=2 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm=\"x\" exe=\"/usr/bin/x\" key=\"k\"\n"+
				"1306 %ssaddr=02000050C0000201000000000000000\n"+
				"1302 %sitem=0 name=\"/etc/x\" inode=5 dev=fe:00 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL\n"+
				"1327 %sproctitle=78", hdr, nr, res, hdr, hdr, hdr))
		}
	}
	user := `pid=1 uid=0 auid=1000 ses=1 subj=unconfined msg='op=x acct="root" id=1000 exe="/usr/bin/x" hostname=h addr=192.0.2.1 terminal=pts/0 res=success'`
	for typ := 1000; typ < 2400; typ++ {
		check(fmt.Sprintf("%d %s%s", typ, hdr, user))
		check(fmt.Sprintf("%d %s%s\n1300 %sarch=c000003e syscall=44 success=yes exit=3 a0=1 a1=2 a2=3 a3=4 items=0 ppid=1 pid=2 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm=\"x\" exe=\"/usr/bin/x\" key=(null)", typ, hdr, user, hdr))
	}
}

// reportCPU reports the process's CPU time per operation (user and system,
// every thread: the garbage collector's work included), which a busy
// machine inflates less than the wall-clock ns/op. Call it before the
// loop and its result after.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func TestSortFieldsLikeEventSort(t *testing.T) {
	keys := []string{"cap_fe", "cap_fi", "cap_fp", "cap_frootid", "cap_fver", "dev", "inode", "item", "mode", "name",
		"nametype", "ogid", "ouid", "rdev", "a", "a0", "a1", "a10", "abcdefgh", "abcdefghi", "abcdefgh_", "", "z"}
	for n := 0; n < 200; n++ {
		var f, g event.Fields
		for i := range keys {
			k := keys[(i*7+n*13)%len(keys)]
			if (i+n)%3 == 0 {
				continue
			}
			f = append(f, event.KV{Key: k})
		}
		g = append(g, f...)
		sortFields(f)
		g.Sort()
		if fmt.Sprint(f) != fmt.Sprint(g) {
			t.Fatalf("%v, want %v", f, g)
		}
	}
}

// The memo of the Enricher's sortFields orders as event.Fields.Sort does,
// over key orders that repeat (with other values), change, and hold the
// same key twice.
func TestSortMemoLikeEventSort(t *testing.T) {
	e, _ := newPair(t)
	keys := []string{"item", "name", "inode", "dev", "mode", "ouid", "ogid", "rdev", "nametype", "cap_fp", "cap_fi",
		"cap_fe", "cap_fver", "cap_frootid", "a", "a0", "abcdefgh", "abcdefghi", "abcdefgh_", "", "z", "name"}
	for n := 0; n < 1000; n++ {
		pattern := n % 7
		if n%50 == 0 {
			pattern = n // now and then one never seen
		}
		var f, g event.Fields
		for i := range keys {
			if (i+pattern)%4 == 0 {
				continue
			}
			k := strings.Clone(keys[(i*5+pattern*3)%len(keys)])
			f = append(f, event.KV{Key: k, Value: fmt.Sprint(n, "/", i)})
		}
		g = append(g, f...)
		e.sortFields(f)
		g.Sort()
		if fmt.Sprint(f) != fmt.Sprint(g) {
			t.Fatalf("pattern %d: %v, want %v", pattern, f, g)
		}
	}
}
