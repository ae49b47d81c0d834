package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/netlink"
)

// A marker exec arrives as one event with the right args, cwd, exe, pid,
// rule key and id; stopping auditns leaves no rules behind.
func TestUnicastMarkerExec(t *testing.T) {
	requireKernel(t)
	r := start(t, "mode: unicast\n")
	m := marker()
	cmd := exec.Command("/bin/true", m)
	cmd.Dir = "/tmp"
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, r.out, 10*time.Second, "for "+m, func(ev *event.Event) bool { return hasArg(ev, m) })
	p := ev.Process
	if strings.Join(p.Args, " ") != "/bin/true "+m || p.WorkingDirectory != "/tmp" || p.Executable != "/usr/bin/true" ||
		p.PID != cmd.Process.Pid || p.Parent == nil || p.Parent.PID != os.Getpid() {
		t.Fatalf("process %+v (want pid %d, parent %d)", p, cmd.Process.Pid, os.Getpid())
	}
	if len(ev.Tags) != 1 || ev.Tags[0] != "exec" {
		t.Fatalf("tags %v, want [exec] (the default rules' key)", ev.Tags)
	}
	if ev.Event.ID != fmt.Sprintf("%s:%d", bootID(t), ev.Event.Sequence) || ev.Event.Sequence == 0 {
		t.Fatalf("event id %q sequence %d", ev.Event.ID, ev.Event.Sequence)
	}
	if ev.Syscall == nil || ev.Syscall.Name != "execve" || ev.Event.Outcome != "success" || ev.Host.Boot.ID != bootID(t) {
		t.Fatalf("syscall %+v outcome %s", ev.Syscall, ev.Event.Outcome)
	}
	if ev.NS == nil || ev.NS.Net.Serial != 7 || ev.NS.Mnt.Serial != 8 || ev.NSSrc == "" || ev.NSSrc == "unknown" {
		t.Fatalf("namespaces %+v src %q: a host process is in the initial namespaces 1..8", ev.NS, ev.NSSrc)
	}
	r.stop(t)
	// The stream says auditns started and stopped.
	var started, stopped bool
	for _, e := range events(t, r.out) {
		if ev, ok := e["event"].(map[string]any); ok && ev["kind"] == "state" {
			started = started || ev["action"] == "started"
			stopped = stopped || ev["action"] == "stopped"
		}
	}
	if !started || !stopped {
		t.Fatalf("state events: started %v stopped %v", started, stopped)
	}
}

// Multicast: auditns receives the same event while another process is the
// audit daemon, and loads no rules.
func TestMulticastBesideAnotherDaemon(t *testing.T) {
	requireKernel(t)
	key := "auditns-e2e-other"
	rl, err := netlink.BuildRule("-a always,exit -F arch=b64 -S execve -F key=" + key)
	if err != nil {
		t.Fatal(err)
	}
	other, err := netlink.Open(netlink.Options{Rules: []netlink.Rule{rl}, Failure: netlink.FailurePrintk})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// The other daemon must read its socket, or the kernel's queue fills.
	stopOther := make(chan struct{})
	go func() {
		q := make(chan []netlink.Record, 16)
		var st netlink.ReaderStats
		go func() {
			for range q {
			}
		}()
		ctx, cancel := ctxUntil(stopOther)
		defer cancel()
		other.Run(ctx, q, &st)
		close(q)
	}()
	defer close(stopOther)
	_, rulesBefore := kernelState(t)

	r := start(t, "mode: multicast\nenrich:\n  source: bpf\n")
	if _, rules := kernelState(t); rules != rulesBefore {
		t.Fatalf("multicast auditns changed the rules: %d → %d", rulesBefore, rules)
	}
	m := marker()
	if err := exec.Command("/bin/true", m).Run(); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, r.out, 10*time.Second, "for "+m, func(ev *event.Event) bool { return hasArg(ev, m) })
	if len(ev.Tags) != 1 || ev.Tags[0] != key {
		t.Fatalf("tags %v, want the other daemon's key", ev.Tags)
	}
	// The kernel-side source does not depend on being the audit daemon: a
	// process that lives a moment in a new net namespace gets it.
	m2 := marker()
	if err := exec.Command("unshare", "--net", "--fork", "/bin/true", m2).Run(); err != nil {
		t.Fatal(err)
	}
	ev2 := waitEvent(t, r.out, 10*time.Second, "for "+m2, func(ev *event.Event) bool { return hasArg(ev, m2) && ev.Process.Name == "true" })
	if ev2.NSSrc != "kernel" || ev2.NS == nil || ev2.NS.Net.Serial < 9 {
		t.Fatalf("multicast, short-lived process in a new net namespace: ns %+v src %s", ev2.NS, ev2.NSSrc)
	}
}
