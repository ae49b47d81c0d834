package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/serial"
)

// inums reads /proc/<pid>/ns/* as the test sees them.
func inums(t *testing.T, pid int) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, typ := range event.NSTypes {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, typ))
		if err != nil {
			t.Fatalf("readlink %s of %d: %v", typ, pid, err)
		}
		// "net:[4026532177]"
		n, err := strconv.ParseUint(l[strings.IndexByte(l, '[')+1:len(l)-1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		out[typ] = n
	}
	return out
}

func registry(t *testing.T, path string) map[uint64]serial.Record {
	t.Helper()
	b, _ := os.ReadFile(path)
	out := map[uint64]serial.Record{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `"auditns.namespace/1"`) {
			continue
		}
		var r serial.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("registry record %q: %v", line, err)
		}
		out[r.Serial] = r // the latest version of each record wins
	}
	return out
}

// A process in eight new namespaces: its events carry the inodes the test
// reads itself, serials >= 9 that differ, the unshare is decoded, and the
// registry names the creator of each namespace.
func TestUnshareAllTypes(t *testing.T) {
	requireKernel(t)
	r := start(t, "mode: unicast\n")
	m := marker()
	cmd := exec.Command("unshare", "--net", "--uts", "--ipc", "--mount", "--pid", "--fork", "--user", "--map-root-user",
		"--cgroup", "--time", "/bin/sh", "-c", "sleep 4", m)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	ev := waitEvent(t, r.out, 3*time.Second, "of sh "+m, func(ev *event.Event) bool {
		return hasArg(ev, m) && ev.Process.Name == "sh"
	})
	want := inums(t, ev.Process.PID) // sh is still sleeping: its namespaces are live
	if ev.NS == nil || ev.NSSrc != "kernel" && ev.NSSrc != "observed" {
		t.Fatalf("ns %+v src %s", ev.NS, ev.NSSrc)
	}
	seen := map[uint64]string{}
	for i, typ := range event.NSTypes {
		ref := ev.NS.At(i)
		if ref.Inum != want[typ] {
			t.Errorf("%s: event inum %d, /proc says %d", typ, ref.Inum, want[typ])
		}
		if ref.Serial < 9 {
			t.Errorf("%s: serial %d, want >= 9 (a new namespace)", typ, ref.Serial)
		}
		if other, dup := seen[ref.Serial]; dup {
			t.Errorf("serial %d given to %s and %s", ref.Serial, other, typ)
		}
		seen[ref.Serial] = typ
	}
	un := waitEvent(t, r.out, 3*time.Second, "unshare syscall", func(e *event.Event) bool {
		return e.Syscall != nil && e.Syscall.Name == "unshare" && e.Process.PID == cmd.Process.Pid
	})
	if un.NSChange == nil || strings.Join(un.NSChange.Types, ",") != "ipc,uts,user,pid,cgroup,time,net,mnt" ||
		strings.Join(un.NSChange.ChildrenOnly, ",") != "pid,time" {
		t.Fatalf("unshare ns_change %+v", un.NSChange)
	}
	cmd.Process.Kill()
	cmd.Wait()
	r.stop(t)
	reg := registry(t, r.out)
	for s := uint64(1); s <= 8; s++ {
		if rec, ok := reg[s]; !ok || !rec.IsInit || rec.Type.String() != event.NSTypes[s-1] {
			t.Errorf("init serial %d: %+v", s, rec)
		}
	}
	for i, typ := range event.NSTypes {
		rec, ok := reg[ev.NS.At(i).Serial]
		if !ok {
			t.Errorf("%s: no registry record for serial %d", typ, ev.NS.At(i).Serial)
			continue
		}
		if rec.Inum != want[typ] || rec.CreatedBy == nil || rec.CreatedBy.Op != "unshare" || rec.CreatedBy.PID != cmd.Process.Pid {
			t.Errorf("%s: registry %+v created_by %+v", typ, rec, rec.CreatedBy)
		}
	}
	if u := reg[ev.NS.User.Serial]; u.Parent == nil || u.Parent.Serial != 3 {
		t.Errorf("new user namespace's parent %+v, want serial 3", u.Parent)
	}
	if n := reg[ev.NS.Net.Serial]; n.OwnerUser == nil || n.OwnerUser.Serial != ev.NS.User.Serial {
		t.Errorf("new net namespace's owner %+v, want the new user namespace %d", n.OwnerUser, ev.NS.User.Serial)
	}
}

// The /proc reader (enrich.source: proc) reads namespaces after the fact:
// for a process that exits before its event is processed it may not be
// able to tell (ns_src unknown), but it never gives the process another
// process's namespaces: what it says is the process's own last known ones
// or its parent's, which are the same here.
func TestProcFallbackShortLivedNeverWrong(t *testing.T) {
	requireKernel(t)
	r := start(t, "mode: unicast\nenrich:\n  source: proc\n")
	m := marker()
	// The child of a shell in a new uts namespace execs and exits at once.
	if err := exec.Command("unshare", "--uts", "/bin/sh", "-c", "/bin/true "+m+"; sleep 1").Run(); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, r.out, 5*time.Second, "true "+m, func(e *event.Event) bool { return hasArg(e, m) && e.Process.Name == "true" })
	if ev.NSSrc == "kernel" {
		t.Fatalf("enrich.source proc, but ns_src %s", ev.NSSrc)
	}
	if ev.NS == nil {
		if ev.NSSrc != "unknown" {
			t.Fatalf("no namespaces but ns_src %s", ev.NSSrc)
		}
		t.Logf("the process was gone before it was read: ns_src unknown (allowed for the /proc reader)")
		return
	}
	if ev.NS.UTS.Serial < 9 || ev.NS.Net.Serial != 7 {
		t.Fatalf("short-lived process in a new uts ns got uts %d net %d (src %s)", ev.NS.UTS.Serial, ev.NS.Net.Serial, ev.NSSrc)
	}
	sh := waitEvent(t, r.out, 5*time.Second, "sh", func(e *event.Event) bool {
		return e.Process != nil && e.Process.PID == ev.Process.Parent.PID && e.Process.Name == "sh"
	})
	if sh.NS.UTS != ev.NS.UTS {
		t.Fatalf("child uts %+v differs from its shell's %+v", ev.NS.UTS, sh.NS.UTS)
	}
}

// Restart within the boot: a namespace still alive keeps its serial; new
// ones continue the counter.
func TestRestartKeepsSerials(t *testing.T) {
	requireKernel(t)
	state := t.TempDir()
	holder := exec.Command("unshare", "--net", "sleep", "30")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Signal(syscall.SIGKILL); holder.Wait() }()
	time.Sleep(200 * time.Millisecond)

	enter := func(r *running) *event.Event {
		m := marker()
		if err := exec.Command("nsenter", "-t", strconv.Itoa(holder.Process.Pid), "-n", "/bin/sh", "-c", "sleep 0.5", m).Run(); err != nil {
			t.Fatal(err)
		}
		return waitEvent(t, r.out, 5*time.Second, "in the held netns", func(e *event.Event) bool { return hasArg(e, m) && e.Process.Name == "sh" })
	}
	r1 := start(t, "state_dir: "+state+"\n")
	first := enter(r1)
	r1.stop(t)

	r2 := start(t, "state_dir: "+state+"\n")
	second := enter(r2)
	if first.NS.Net.Serial < 9 || second.NS.Net.Serial != first.NS.Net.Serial {
		t.Fatalf("net serial %d before restart, %d after", first.NS.Net.Serial, second.NS.Net.Serial)
	}
	m := marker()
	if err := exec.Command("unshare", "--uts", "/bin/sh", "-c", "sleep 0.5", m).Run(); err != nil {
		t.Fatal(err)
	}
	fresh := waitEvent(t, r2.out, 5*time.Second, "new uts", func(e *event.Event) bool { return hasArg(e, m) && e.Process.Name == "sh" })
	if fresh.NS.UTS.Serial <= first.NS.Net.Serial {
		t.Fatalf("a new namespace after restart got serial %d, not above %d", fresh.NS.UTS.Serial, first.NS.Net.Serial)
	}
}
