package enrich

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/record"
	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/testenv"
)

// ownNS is the test process's namespaces as the inodeObserver reads them.
func ownNS(t testing.TB) *event.NS {
	set, err := (&inodeObserver{}).Observe(os.Getpid(), serial.Cause{})
	if err != nil {
		t.Fatal(err)
	}
	return set.NS()
}

// The namespaces read through a pidfd are those of /proc/<pid>/ns.
func TestNamespacesByPidfdAgreeWithLinks(t *testing.T) {
	testenv.RequireRoot(t)
	c, err := newProcCache("/proc", 100, &inodeObserver{}, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	pns := ownNS(t)
	same := exec.Command("sleep", "30")
	other := exec.Command("unshare", "--uts", "sleep", "30")
	for _, cmd := range []*exec.Cmd{same, other} {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func(cmd *exec.Cmd) { cmd.Process.Kill(); cmd.Wait() }(cmd)
	}
	time.Sleep(100 * time.Millisecond) // unshare has unshared and exec'd sleep
	for _, tc := range []struct {
		cmd  *exec.Cmd
		want bool
	}{{same, true}, {other, false}} {
		pid := tc.cmd.Process.Pid
		pidfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds := [8]int{-1, -1, -1, -1, -1, -1, -1, -1}
		got, known := c.sameByPidfd(pidfd, pns, &fds)
		for _, fd := range fds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
		unix.Close(pidfd)
		if !known {
			t.Skip("PIDFD_GET_<type>_NAMESPACE not supported (Linux < 6.11)")
		}
		if got != tc.want || c.sameByLink(pid, pns) != tc.want {
			t.Errorf("pid %d: by pidfd %v, by links %v, want %v", pid, got, c.sameByLink(pid, pns), tc.want)
		}
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// A parent whose children are compared with it pins its namespaces while
// it lives, and no longer.
func TestPinsLastAsLongAsTheParent(t *testing.T) {
	e, obs := newObservedEnricher(t)
	sh := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	out, _ := sh.StdoutPipe()
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sh.Process.Kill(); sh.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(line))
	defer unix.Kill(child, unix.SIGKILL)
	var ev event.Event
	if err := e.Enrich(syscallRecords(t, sh.Process.Pid, os.Getpid(), 1), &ev); err != nil {
		t.Fatal(err)
	}
	if err := e.Enrich(syscallRecords(t, child, sh.Process.Pid, 2), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.NSSrc != srcObserved || obs.calls.Load() != 1 {
		t.Fatalf("child: src %s, registry asked %d times (want 1: the shell only)", ev.NSSrc, obs.calls.Load())
	}
	c := e.procs
	c.mu.Lock()
	pinned, pins := c.entries[sh.Process.Pid].pinned, len(c.pins)
	c.mu.Unlock()
	if c.noNSIoctl {
		t.Skip("PIDFD_GET_<type>_NAMESPACE not supported (Linux < 6.11)")
	}
	if !pinned || pins != 8 {
		t.Fatalf("parent pinned %v, %d namespaces pinned, want 8", pinned, pins)
	}
	unix.Kill(child, unix.SIGKILL)
	sh.Process.Kill()
	sh.Wait()
	deadline := time.Now().Add(2 * time.Second)
	for {
		c.mu.Lock()
		pins = len(c.pins)
		c.mu.Unlock()
		if pins == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d namespaces still pinned 2s after the parent exited", pins)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A process that has exited (a zombie) is not observed, nor is the registry
// asked about it: its event inherits from its parent.
func TestExitedProcessInheritsWithoutReads(t *testing.T) {
	e, obs := newObservedEnricher(t)
	var ev event.Event
	if err := e.Enrich(syscallRecords(t, os.Getpid(), os.Getppid(), 1), &ev); err != nil {
		t.Fatal(err)
	}
	parent := *ev.NS
	z := exec.Command("true")
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	defer z.Wait()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(z.Process.Pid) + "/stat")
		if i := bytes.LastIndexByte(b, ')'); i > 0 && bytes.HasPrefix(b[i+1:], []byte(" Z")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child not a zombie within 2s")
		}
	}
	if err := e.Enrich(syscallRecords(t, z.Process.Pid, os.Getpid(), 2), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.NSSrc != srcInherited || *ev.NS != parent || obs.calls.Load() != 1 {
		t.Fatalf("zombie: src %s ns %+v, registry asked %d times (want inherited, 1)", ev.NSSrc, ev.NS, obs.calls.Load())
	}
}

// startedBy: a process that exists is accepted without reading its start
// time while the event is recent; for an older event the start time
// decides.
func TestStartedBy(t *testing.T) {
	testenv.RequireRoot(t)
	c, err := newProcCache("/proc", 100, nil, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	now := time.Now()
	for _, tc := range []struct {
		pid  int
		when time.Time
		want bool
	}{
		{child.Process.Pid, now, true},
		{child.Process.Pid, now.Add(-time.Hour), false}, // started after the event
		{child.Process.Pid, now.Add(-10 * time.Second), false},
		{1, now.Add(-time.Second), true}, // init started long before
	} {
		if got := c.startedBy(tc.pid, tc.when); got != tc.want {
			t.Errorf("startedBy(%d, now%+v) = %v, want %v", tc.pid, tc.when.Sub(now), got, tc.want)
		}
	}
}

// The exec storm's case: the first event of a new child of a known parent.
func BenchmarkObserveNewChild(b *testing.B) {
	testenv.RequireRoot(b)
	obs := &inodeObserver{}
	e, err := New(Options{BootID: "b", HostName: "h", Namespaces: obs})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	var ev event.Event
	e.Enrich(syscallRecords(b, os.Getpid(), os.Getppid(), 1), &ev)
	kids := make([]*exec.Cmd, b.N)
	for i := range kids {
		kids[i] = exec.Command("sleep", "30")
		if err := kids[i].Start(); err != nil {
			b.Fatal(err)
		}
	}
	defer func() {
		for _, k := range kids {
			k.Process.Kill()
			k.Wait()
		}
	}()
	time.Sleep(time.Duration(b.N) * 2 * time.Millisecond) // the children have exec'd sleep
	msgs := make([][]record.Record, b.N)
	for i, k := range kids {
		msgs[i] = syscallRecords(b, k.Process.Pid, os.Getpid(), 2+i)
	}
	var r0, r1 unix.Rusage
	b.ResetTimer()
	unix.Getrusage(unix.RUSAGE_SELF, &r0)
	for i := range kids {
		e.Enrich(msgs[i], &ev)
		if ev.NSSrc != srcObserved {
			b.Fatalf("child %d: %s", i, ev.NSSrc)
		}
	}
	unix.Getrusage(unix.RUSAGE_SELF, &r1)
	b.StopTimer()
	cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	if obs.calls.Load() != 1 {
		b.Fatalf("registry asked %d times", obs.calls.Load())
	}
}

func TestCloseFDs(t *testing.T) {
	open := func() int {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	isOpen := func(fd int) bool {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		return err == nil
	}
	// Consecutive fds, an fd of someone else's in the middle, none.
	a, b, c := open(), open(), open()
	closeFDs([]int{c, -1, a, b})
	for _, fd := range []int{a, b, c} {
		if isOpen(fd) {
			t.Fatalf("fd %d left open", fd)
		}
	}
	a, keep, c := open(), open(), open()
	defer unix.Close(keep)
	closeFDs([]int{a, c})
	if isOpen(a) || isOpen(c) || !isOpen(keep) {
		t.Fatalf("gap: %d %v, %d %v, kept %d %v", a, isOpen(a), c, isOpen(c), keep, isOpen(keep))
	}
	closeFDs([]int{-1, -1})
}

// A process met through its parent is not in the epoll set until it has a
// second event; its exit is noticed all the same: by its next event, or by
// the watcher's poll of such processes.
func TestLazyEntries(t *testing.T) {
	e, obs := newObservedEnricher(t)
	c := e.procs
	var ev event.Event
	if err := e.Enrich(syscallRecords(t, os.Getpid(), os.Getppid(), 1), &ev); err != nil {
		t.Fatal(err)
	}
	var kids [3]*exec.Cmd
	start := time.Now()
	for i := range kids {
		kids[i] = exec.Command("sleep", "30")
		if err := kids[i].Start(); err != nil {
			t.Fatal(err)
		}
		defer func(k *exec.Cmd) { k.Process.Kill(); k.Wait() }(kids[i])
		if err := e.Enrich(syscallRecords(t, kids[i].Process.Pid, os.Getpid(), 10+i), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.NSSrc != srcObserved {
			t.Fatalf("child %d: %s", i, ev.NSSrc)
		}
	}
	entry := func(k *exec.Cmd) procEntry {
		c.mu.Lock()
		defer c.mu.Unlock()
		return *c.entries[k.Process.Pid]
	}
	for i, k := range kids {
		// (after lazyPeriod, the watcher has watched those alive)
		if en := entry(k); en.pidfd < 0 || en.watched && time.Since(start) < lazyPeriod*time.Millisecond/2 {
			t.Fatalf("child %d: watched %v pidfd %d, want lazy", i, en.watched, en.pidfd)
		}
	}
	// A second event: answered from the cache, watched from now on.
	if err := e.Enrich(syscallRecords(t, kids[0].Process.Pid, os.Getpid(), 20), &ev); err != nil {
		t.Fatal(err)
	}
	if en := entry(kids[0]); ev.NSSrc != srcObserved || !en.watched {
		t.Fatalf("second event: %s, watched %v", ev.NSSrc, en.watched)
	}
	// An event after the exit: the cache's, as cached.
	kids[1].Process.Kill()
	kids[1].Wait()
	if err := e.Enrich(syscallRecords(t, kids[1].Process.Pid, os.Getpid(), 21), &ev); err != nil {
		t.Fatal(err)
	}
	if en := entry(kids[1]); ev.NSSrc != srcCached || en.pidfd >= 0 {
		t.Fatalf("event after the exit: %s, pidfd %d", ev.NSSrc, en.pidfd)
	}
	// No event: the watcher notices within its period.
	before := obs.exited.Load()
	kids[2].Process.Kill()
	kids[2].Wait()
	deadline := time.Now().Add(2 * time.Second)
	for obs.exited.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("exit of a lazy entry not noticed within 2s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if en := entry(kids[2]); en.pidfd >= 0 {
		t.Fatalf("exited lazy entry: pidfd %d", en.pidfd)
	}
	c.mu.Lock()
	n := len(c.lazy)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d entries still lazy", n)
	}
}

// read returns the whole file, whatever the buffer it starts with.
func TestReadWholeFile(t *testing.T) {
	want, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	c, err := newProcCache("/proc", 10, nil, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for _, size := range []int{1, 7, 64, 4096} {
		c.buf = make([]byte, 0, size)
		got, err := c.read(os.Getpid(), "cgroup")
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("buffer %d: %q, %v; want %q", size, got, err, want)
		}
	}
	if _, err := c.read(os.Getpid(), "no-such-file"); err == nil {
		t.Fatal("no error for a missing file")
	}
}

// A full cache forgets the processes that exited first, not live ones, and
// without a scan of the cache.
func TestFullCacheForgetsTheLongestDeadFirst(t *testing.T) {
	c, err := newProcCache("/proc", 4, nil, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	live, err := unix.Eventfd(0, unix.EFD_CLOEXEC) // stands for a pidfd
	if err != nil {
		t.Fatal(err)
	}
	c.entries[10] = &procEntry{pidfd: live, watched: true}
	c.byFD[live] = 10
	for pid := 1; pid <= 3; pid++ {
		e := &procEntry{pidfd: -1}
		c.entries[pid] = e
		c.diedLocked(pid, e, now.Add(time.Duration(pid-10)*time.Second))
	}
	c.entries[2] = &procEntry{pidfd: -1} // replaced since: its queued death is stale
	c.makeRoomLocked(now)
	if len(c.entries) != 3 || c.entries[1] != nil || c.entries[10] == nil || c.entries[2] == nil {
		t.Fatalf("after making room: %v", c.entries)
	}
	c.makeRoomLocked(now) // not full: nothing to do
	if len(c.entries) != 3 {
		t.Fatalf("not full, yet forgot: %v", c.entries)
	}
	// Past the grace period, a sweep forgets the dead (when the cache is
	// half full).
	c.sweepLocked(now.Add(deadGrace + 10*time.Second))
	if len(c.entries) != 2 || c.entries[3] != nil || c.entries[2] == nil {
		t.Fatalf("after the sweep: %v", c.entries)
	}
}
