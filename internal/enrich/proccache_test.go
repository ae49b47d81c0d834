package enrich

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/record"
	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/testenv"
)

// inodeObserver reads /proc/<pid>/ns/* inodes (the real kernel) and counts
// how often it is asked: the enricher must not ask again for a live process
// it already knows.
// newObservedEnricher is an Enricher whose namespaces come from an
// inodeObserver (as root: it reads other processes' /proc).
func newObservedEnricher(t *testing.T) (*Enricher, *inodeObserver) {
	t.Helper()
	testenv.RequireRoot(t)
	obs := &inodeObserver{}
	e, err := New(Options{BootID: "b", Namespaces: obs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, obs
}

type inodeObserver struct {
	calls  atomic.Int64
	exited atomic.Int64
}

func (o *inodeObserver) Observe(pid int, c serial.Cause) (serial.Set, error) {
	o.calls.Add(1)
	var out serial.Set
	for i, t := range event.NSTypes {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, t))
		if err != nil {
			return out, err
		}
		n, _ := strconv.ParseUint(l[strings.IndexByte(l, '[')+1:len(l)-1], 10, 64)
		out[i] = serial.Ref{Serial: n % 1000, Inum: n}
	}
	return out, nil
}

func (o *inodeObserver) Exited(int, time.Time) { o.exited.Add(1) }

// syscallRecords builds the records of one getppid() by pid, sequence seq.
func syscallRecords(t testing.TB, pid, ppid, seq int) []record.Record {
	now := time.Now()
	stamp := fmt.Sprintf("audit(%d.%03d:%d): ", now.Unix(), now.Nanosecond()/1e6, seq)
	texts := []struct {
		typ  uint16
		text string
	}{
		{1300, fmt.Sprintf(`arch=c000003e syscall=110 success=yes exit=%d a0=0 a1=0 a2=0 a3=0 items=0 ppid=%d pid=%d auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="bench" exe="/usr/bin/bench" key="bench"`, ppid, ppid, pid)},
		{1327, "proctitle=62656E6368"},
	}
	var out []record.Record
	for _, r := range texts {
		m, err := record.Parse(r.typ, []byte(stamp+r.text))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *m)
	}
	return out
}

func TestKnownProcessIsNotReadAgainAndExitIsNoticed(t *testing.T) {
	e, obs := newObservedEnricher(t)
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var ev event.Event
	for i := 0; i < 100; i++ {
		if err := e.Enrich(syscallRecords(t, child.Process.Pid, os.Getpid(), 100+i), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.NSSrc != srcObserved || ev.NS == nil || ev.NS.Net.Inum == 0 {
			t.Fatalf("event %d: src %s ns %+v", i, ev.NSSrc, ev.NS)
		}
	}
	if n := obs.calls.Load(); n != 1 {
		t.Fatalf("namespaces read %d times for 100 events of one live process, want 1", n)
	}
	child.Process.Kill()
	child.Wait()
	deadline := time.Now().Add(2 * time.Second)
	for obs.exited.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("exit not noticed within 2s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A late event of the exited process: its last known namespaces.
	if err := e.Enrich(syscallRecords(t, child.Process.Pid, os.Getpid(), 500), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.NSSrc != srcCached || ev.NS == nil {
		t.Fatalf("late event: src %s", ev.NSSrc)
	}
}

// The hot path: events of a process whose namespaces are known. Reported
// beside the cost of the first observation (which reads /proc).
func BenchmarkEnrichKnownProcess(b *testing.B) {
	testenv.RequireRoot(b)
	obs := &inodeObserver{}
	e, err := New(Options{BootID: "b", HostName: "h", Namespaces: obs})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	msgs := syscallRecords(b, os.Getpid(), os.Getppid(), 1)
	var ev event.Event
	e.Enrich(msgs, &ev)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		e.Enrich(msgs, &ev)
		buf = ev.AppendJSON(buf[:0])
	}
	if obs.calls.Load() != 1 {
		b.Fatalf("namespaces read %d times", obs.calls.Load())
	}
}

// The cost the cache avoids: observing a process's namespaces from /proc.
func BenchmarkObserveFromProc(b *testing.B) {
	obs := &inodeObserver{}
	b.ReportAllocs()
	for b.Loop() {
		obs.Observe(os.Getpid(), serial.Cause{})
	}
}

// A new child in all of its live parent's namespaces is recognised by
// comparing inode numbers, without asking the registry; a child in a new
// namespace is not.
func TestChildInParentsNamespacesSkipsTheRegistry(t *testing.T) {
	e, obs := newObservedEnricher(t)
	var ev event.Event
	// The parent (this test process) is met first.
	if err := e.Enrich(syscallRecords(t, os.Getpid(), os.Getppid(), 1), &ev); err != nil {
		t.Fatal(err)
	}
	parent := *ev.NS
	same := exec.Command("sleep", "30")
	other := exec.Command("unshare", "--uts", "sleep", "30")
	for _, c := range []*exec.Cmd{same, other} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func(c *exec.Cmd) { c.Process.Kill(); c.Wait() }(c)
	}
	time.Sleep(100 * time.Millisecond) // unshare has unshared and exec'd sleep
	if err := e.Enrich(syscallRecords(t, same.Process.Pid, os.Getpid(), 2), &ev); err != nil {
		t.Fatal(err)
	}
	if *ev.NS != parent || ev.NSSrc != srcObserved || obs.calls.Load() != 1 {
		t.Fatalf("child in the parent's namespaces: ns %+v src %s, registry asked %d times (want 1: the parent only)", ev.NS, ev.NSSrc, obs.calls.Load())
	}
	if err := e.Enrich(syscallRecords(t, other.Process.Pid, os.Getpid(), 3), &ev); err != nil {
		t.Fatal(err)
	}
	if obs.calls.Load() != 2 || ev.NS.UTS == parent.UTS || ev.NS.Net != parent.Net {
		t.Fatalf("child in a new uts namespace: ns %+v, registry asked %d times (want 2)", ev.NS, obs.calls.Load())
	}
}
