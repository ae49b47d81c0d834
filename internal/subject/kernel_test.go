package subject

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/netlink"
	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/testenv"
)

func TestEntityID(t *testing.T) {
	a := EntityID("boot", 100, 5)
	if a != EntityID("boot", 100, 5) || len(a) != 32 {
		t.Fatalf("EntityID not deterministic or not 32 hex digits: %q", a)
	}
	for _, other := range []string{EntityID("boot2", 100, 5), EntityID("boot", 101, 5), EntityID("boot", 100, 6)} {
		if other == a {
			t.Fatalf("different processes share entity id %q", a)
		}
	}
}

func TestSerialBefore(t *testing.T) {
	for _, c := range []struct {
		a, b uint32
		want bool
	}{{1, 2, true}, {2, 1, false}, {5, 5, false}, {0xfffffff0, 3, true}, {3, 0xfffffff0, false}} {
		if got := serialBefore(c.a, c.b); got != c.want {
			t.Errorf("serialBefore(%d, %d) = %v", c.a, c.b, got)
		}
	}
}

type nopFallback struct{ closed bool }

func (f *nopFallback) Annotate(ev *event.Event, pid, ppid int, change *event.NSChange, ended bool) {
	ev.NSSrc = "unknown"
}
func (f *nopFallback) Close() error { f.closed = true; return nil }

type nopResolver struct{}

func (nopResolver) Identify(int, *serial.KnownSet, serial.Cause) (serial.Set, error) {
	return serial.Set{}, nil
}
func (nopResolver) Exited(int, time.Time) {}

func waitNoPrograms(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if progs, err := Loaded(); err == nil && len(progs) == 0 {
			return
		}
	}
	progs, _ := Loaded()
	t.Fatalf("programs left 5s after Close: %v", progs)
}

// The programs load on this kernel, attach, and Close releases every one
// (with its links and maps) and the fallback.
func TestLoadAndRelease(t *testing.T) {
	testenv.RequireRoot(t)
	// Other packages' tests may run auditns meanwhile: count only ours.
	testenv.LockAudit(t)
	fb := &nopFallback{}
	k, err := Load(Options{Resolver: nopResolver{}, Fallback: fb, BootID: "b"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if progs, err := Loaded(); err != nil || len(progs) != 2 {
		t.Errorf("programs loaded: %v (%v), want 2", progs, err)
	}
	// A process's exit is reported once its thread was seen: nothing is
	// seen without audit records here, so this only exercises the hooks.
	if err := exec.Command("/bin/true").Run(); err != nil {
		t.Fatal(err)
	}
	ev := &event.Event{Event: event.Meta{Sequence: 1}, Process: &event.Process{PID: os.Getpid()}}
	k.Annotate(ev, os.Getpid(), 0, nil, true)
	if ev.NSSrc != "unknown" || k.Stats().Fallbacks != 1 {
		t.Errorf("an event the kernel did not join went to the fallback: src %q, stats %+v", ev.NSSrc, k.Stats())
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !fb.closed {
		t.Error("Close did not close the fallback")
	}
	waitNoPrograms(t)
}

func TestLoadNeedsItsOptions(t *testing.T) {
	if _, err := Load(Options{}); err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Load without options: %v, want a usage error", err)
	}
}

func TestCgroupLine(t *testing.T) {
	var raw subjectState
	set := func(i int, s string) {
		raw.Cgroup[i] = [96]int8{}
		for j := 0; j < len(s); j++ {
			raw.Cgroup[i][j] = int8(s[j])
		}
	}
	set(0, "cri-containerd-"+strings.Repeat("ab", 32)+".scope")
	set(1, "kubepods-burstable-pod1.slice")
	set(2, "kubepods-burstable.slice")
	set(3, "kubepods.slice")
	want := "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-" + strings.Repeat("ab", 32) + ".scope"
	if got := string(cgroupLine(nil, "0::", &raw.Cgroup)); got != want {
		t.Fatalf("cgroupLine = %q, want %q", got, want)
	}
	if ct := containerOf(&raw); ct == nil || ct.Runtime != "containerd" || ct.ID != strings.Repeat("ab", 32) {
		t.Fatalf("containerOf: %+v", ct)
	}
	raw = subjectState{}
	set(0, "/") // the root's name
	if got := string(cgroupLine(nil, "0::", &raw.Cgroup)); got != "0::" {
		t.Fatalf("root: %q", got)
	}
	// docker's cgroupfs driver on a host with cgroup v1 hierarchies.
	id := strings.Repeat("cd", 32)
	for i, c := range []string{id, "docker"} {
		for j := 0; j < len(c); j++ {
			raw.CgroupV1[i][j] = int8(c[j])
		}
	}
	if ct := containerOf(&raw); ct == nil || ct.Runtime != "docker" || ct.ID != id {
		t.Fatalf("containerOf, v1 memory path: %+v", ct)
	}
}

// A full ring never holds up the audited process: what the programs could
// not write is counted, and events without a join go to the fallback.
func TestFullRingCountsDrops(t *testing.T) {
	testenv.RequireKernelAudit(t)
	// The shell that runs the execs waits for a line on stdin, so that the
	// rule can audit its children alone (other processes on the host exec
	// too).
	sh := exec.Command("/bin/sh", "-c", "read go; i=0; while [ $i -lt 500 ]; do i=$((i+1)); /bin/true; done")
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer sh.Wait()
	defer stdin.Close()
	rl, err := netlink.BuildRule(fmt.Sprintf("-a always,exit -F arch=b64 -S execve -F ppid=%d -F key=auditns-subject-test", sh.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// auditns's netlink connection is the audit daemon here and restores
	// the host on Close; nobody reads it, which the kernel's backlog
	// (16384) absorbs for these 500 events.
	conn, err := netlink.Open(netlink.Options{Rules: []netlink.Rule{rl}, Failure: netlink.FailurePrintk})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fb := &nopFallback{}
	k, err := Load(Options{Resolver: nopResolver{}, Fallback: fb, BootID: "b", RingBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	// 500 new processes: a state (about 1 KiB) and a join each, into a
	// 4 KiB ring that nobody drains.
	start := time.Now()
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	if err := sh.Wait(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	st := k.Stats()
	// Each event whose join was lost counts once, whatever its records
	// (about seven per exec); a 4 KiB ring takes a few of the 500.
	if st.Dropped < 450 || st.Dropped > 500 {
		t.Fatalf("%d events without a join of 500 audited execs into a 4 KiB ring; stats %+v", st.Dropped, st)
	}
	ev := &event.Event{Event: event.Meta{Sequence: 1}, Process: &event.Process{PID: os.Getpid()}}
	k.Annotate(ev, os.Getpid(), 0, nil, true)
	if ev.NSSrc != "unknown" {
		t.Errorf("an event without a join: ns_src %q, want the fallback's", ev.NSSrc)
	}
	t.Logf("500 audited execs in %v with a full ring: %d events' joins dropped and counted", took, st.Dropped)
}
