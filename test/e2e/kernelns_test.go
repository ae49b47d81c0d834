package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/subject"
	"github.com/auditns/auditns/internal/testenv"
)

// The kernel-side source is asked for explicitly: a host where the
// programs cannot load fails these tests instead of passing them by
// chance on the /proc reader.
const bpfSource = "mode: unicast\nenrich:\n  source: bpf\n"

// allEvents decodes every audit event in path.
func allEvents(t *testing.T, path string) []*event.Event {
	t.Helper()
	b, _ := os.ReadFile(path)
	var out []*event.Event
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"schema":"auditns.event/`)) {
			continue
		}
		var ev event.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("invalid event %q: %v", line, err)
		}
		out = append(out, &ev)
	}
	return out
}

// argEvents returns the execve events whose last argument starts with
// prefix, by that argument.
func argEvents(evs []*event.Event, name, prefix string) map[string]*event.Event {
	out := map[string]*event.Event{}
	for _, ev := range evs {
		p := ev.Process
		if p == nil || p.Name != name || len(p.Args) == 0 || ev.Syscall == nil || ev.Syscall.Name != "execve" {
			continue
		}
		if a := p.Args[len(p.Args)-1]; strings.HasPrefix(a, prefix) {
			out[a] = ev
		}
	}
	return out
}

// ourPrograms lists the BPF programs of auditns loaded in the kernel.
func ourPrograms(t *testing.T) []string {
	t.Helper()
	progs, err := subject.Loaded()
	if err != nil {
		t.Fatal(err)
	}
	return progs
}

// noLeftovers checks that stopping auditns released every program (and
// with them their maps and links).
func noLeftovers(t *testing.T, r *running) {
	t.Helper()
	if progs := ourPrograms(t); len(progs) == 0 {
		t.Fatalf("no auditns BPF program loaded while it runs")
	}
	r.stop(t)
	// The kernel frees a closed program after an RCU grace period.
	var progs []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if progs = ourPrograms(t); len(progs) == 0 {
			return
		}
	}
	t.Fatalf("BPF programs left 5s after stop: %v", progs)
}

// 500 processes that each start in a new net namespace and exit at once:
// every execve carries the net namespace the process saw itself, a serial
// of its own, and the registry names the unshare that created it.
func TestKernelSourceShortLivedNamespaces(t *testing.T) {
	requireKernel(t)
	r := start(t, bpfSource)
	const n = 500
	m := marker()
	truth := filepath.Join(t.TempDir(), "truth")
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); unshare --net --fork /bin/sh -c 'echo "$(readlink /proc/self/ns/net) $1" >> %s; exec /bin/true "$1"' sh %s-$i; done`, n, truth, m)
	if out, err := exec.Command("/bin/sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := map[string]uint64{}
	b, _ := os.ReadFile(truth)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var link, arg string
		fmt.Sscan(line, &link, &arg)
		ino, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "net:["), "]"), 10, 64)
		want[arg] = ino
	}
	if len(want) != n {
		t.Fatalf("%d truths recorded, want %d", len(want), n)
	}
	var got map[string]*event.Event
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got = argEvents(allEvents(t, r.out), "true", m); len(got) == n {
			break
		}
	}
	noLeftovers(t, r)
	// Events the reader dropped (a loaded machine) are not there to
	// check; they are counted in loss events, and so must every one be.
	lost := readTally(t, "", r.out).lossSum
	serials := map[uint64]string{}
	wrong, missing, absent := 0, 0, 0
	for arg, ino := range want {
		ev := got[arg]
		switch {
		case ev == nil:
			absent++
			if lost == 0 {
				t.Errorf("%s: no execve event", arg)
			}
		case ev.NS == nil || ev.NSSrc != "kernel":
			missing++
			t.Errorf("%s: ns %+v src %s", arg, ev.NS, ev.NSSrc)
		case ev.NS.Net.Inum != ino || ev.NS.Net.Serial < 9 || ev.NS.Net.ID == 0:
			wrong++
			t.Errorf("%s: net %+v, the process saw inode %d", arg, ev.NS.Net, ino)
		default:
			if other, dup := serials[ev.NS.Net.Serial]; dup {
				t.Errorf("serial %d given to the namespaces of %s and %s", ev.NS.Net.Serial, other, arg)
			}
			serials[ev.NS.Net.Serial] = arg
		}
	}
	reg := registry(t, r.out)
	noCreator := 0
	for s := range serials {
		if rec, ok := reg[s]; !ok || rec.CreatedBy == nil || rec.CreatedBy.Op != "unshare" {
			noCreator++
		}
	}
	t.Logf("%d processes: %d events, %d without namespaces, %d wrong, %d distinct net serials, %d registry records without created_by; loss events sum to %d",
		n, len(got), missing, wrong, len(serials), noCreator, lost)
	// An unshare event that was lost cannot name itself in the registry.
	if lost > 0 && uint64(absent+noCreator) > lost {
		t.Errorf("%d execve events missing and %d registry records without created_by, more than the %d events lost", absent, noCreator, lost)
	} else if lost == 0 && noCreator > 0 {
		t.Errorf("%d of %d new net namespaces have no registry record naming their unshare", noCreator, len(serials))
	}
}

// A process that execs and unshares at once: its execve has the old
// namespaces; the unshare and what follows, the new ones.
func TestKernelSourceExecThenUnshare(t *testing.T) {
	requireKernel(t)
	r := start(t, bpfSource)
	m := marker()
	if out, err := exec.Command("unshare", "--net", "--uts", "/bin/true", m).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	un := waitEvent(t, r.out, 5*time.Second, "execve of unshare", func(e *event.Event) bool { return hasArg(e, m) && e.Process.Name == "unshare" })
	tr := waitEvent(t, r.out, 5*time.Second, "execve of true", func(e *event.Event) bool { return hasArg(e, m) && e.Process.Name == "true" })
	call := waitEvent(t, r.out, 5*time.Second, "unshare syscall", func(e *event.Event) bool {
		return e.Syscall != nil && e.Syscall.Name == "unshare" && e.Process.PID == un.Process.PID
	})
	noLeftovers(t, r)
	if un.NSSrc != "kernel" || un.NS.Net.Serial != 7 || un.NS.UTS.Serial != 2 {
		t.Errorf("execve before the unshare: net %d uts %d src %s, want the host's 7 and 2", un.NS.Net.Serial, un.NS.UTS.Serial, un.NSSrc)
	}
	if tr.NSSrc != "kernel" || tr.NS.Net.Serial < 9 || tr.NS.UTS.Serial < 9 {
		t.Errorf("execve after the unshare: net %d uts %d src %s, want new ones", tr.NS.Net.Serial, tr.NS.UTS.Serial, tr.NSSrc)
	}
	if call.NS.Net != tr.NS.Net || call.NS.UTS != tr.NS.UTS {
		t.Errorf("the unshare's own event has net %+v uts %+v, the process after it %+v %+v", call.NS.Net, call.NS.UTS, tr.NS.Net, tr.NS.UTS)
	}
	if tr.Process.EntityID == "" || tr.Process.EntityID != un.Process.EntityID {
		t.Errorf("exec keeps the process: entity_id %q then %q", un.Process.EntityID, tr.Process.EntityID)
	}
}

// nsenter joins a held namespace: the event has the holder's serial. A
// process in a new pid namespace has vpid 1 and the new namespace.
func TestKernelSourceNsenterAndPidNamespace(t *testing.T) {
	requireKernel(t)
	r := start(t, bpfSource)
	hm := marker()
	holder := exec.Command("unshare", "--net", "/bin/sh", "-c", "sleep 30", hm)
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Signal(syscall.SIGKILL); holder.Wait() }()
	held := waitEvent(t, r.out, 5*time.Second, "holder", func(e *event.Event) bool { return hasArg(e, hm) && e.Process.Name == "sh" })
	m := marker()
	if out, err := exec.Command("nsenter", "-t", strconv.Itoa(holder.Process.Pid), "-n", "/bin/true", m).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	in := waitEvent(t, r.out, 5*time.Second, "true in the held netns", func(e *event.Event) bool { return hasArg(e, m) && e.Process.Name == "true" })
	pm := marker()
	if out, err := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "/bin/true", pm).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	pt := waitEvent(t, r.out, 5*time.Second, "true in a new pid ns", func(e *event.Event) bool { return hasArg(e, pm) && e.Process.Name == "true" })
	noLeftovers(t, r)
	if held.NS.Net.Serial < 9 || in.NS.Net != held.NS.Net || in.NSSrc != "kernel" {
		t.Errorf("nsenter: net %+v (src %s), the holder's %+v", in.NS.Net, in.NSSrc, held.NS.Net)
	}
	if pt.Process.VPID != 1 || pt.NS.PID.Serial < 9 || pt.NSSrc != "kernel" {
		t.Errorf("new pid namespace: vpid %d pid ns %+v src %s", pt.Process.VPID, pt.NS.PID, pt.NSSrc)
	}
	if in.Process.VPID != in.Process.PID {
		t.Errorf("in the initial pid namespace vpid %d != pid %d", in.Process.VPID, in.Process.PID)
	}
}

// Two processes that get the same pid one after the other have different
// entity ids.
func TestKernelSourcePidReuseEntityID(t *testing.T) {
	requireKernel(t)
	r := start(t, bpfSource)
	// Take the pid after the current last one, twice, through ns_last_pid
	// (other processes may take it first: retry).
	spawn := func(arg string, pid int) bool {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/bin/true", arg)
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		return cmd.Process.Pid == pid
	}
	m := marker()
	var pid int
	ok := false
	for try := 0; try < 50 && !ok; try++ {
		b, _ := os.ReadFile("/proc/sys/kernel/ns_last_pid")
		last, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		pid = last + 1000
		ok = spawn(m+"-a", pid) && spawn(m+"-b", pid)
	}
	if !ok {
		t.Fatal("could not run two processes with the same pid in 50 tries")
	}
	a := waitEvent(t, r.out, 5*time.Second, "first", func(e *event.Event) bool { return hasArg(e, m+"-a") && e.Process.PID == pid })
	b := waitEvent(t, r.out, 5*time.Second, "second", func(e *event.Event) bool { return hasArg(e, m+"-b") && e.Process.PID == pid })
	noLeftovers(t, r)
	if a.Process.EntityID == "" || a.Process.EntityID == b.Process.EntityID {
		t.Fatalf("pid %d twice: entity ids %q and %q", pid, a.Process.EntityID, b.Process.EntityID)
	}
	if a.Process.Parent == nil || a.Process.Parent.EntityID == "" || a.Process.Parent.EntityID != b.Process.Parent.EntityID {
		t.Errorf("same parent, parent entity ids %+v and %+v", a.Process.Parent, b.Process.Parent)
	}
}

// nshelper builds testdata/nshelper.c.
func nshelper(t *testing.T) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		testenv.Missing(t, testenv.RequireKernelVar, "no C compiler (cc) for testdata/nshelper.c")
	}
	bin := filepath.Join(t.TempDir(), "nshelper")
	if out, err := exec.Command(cc, "-O2", "-Wall", "-o", bin, "testdata/nshelper.c").CombinedOutput(); err != nil {
		t.Fatalf("building nshelper: %v: %s", err, out)
	}
	return bin
}

func linkInum(t *testing.T, link string) uint64 {
	t.Helper()
	i := strings.IndexByte(link, '[')
	n, err := strconv.ParseUint(strings.TrimSuffix(link[i+1:], "]"), 10, 64)
	if i < 0 || err != nil {
		t.Fatalf("namespace link %q", link)
	}
	return n
}

// A clone3 child in new uts and net namespaces (audit cannot see clone3's
// flags): its execve carries them.
func TestKernelSourceClone3Child(t *testing.T) {
	requireKernel(t)
	bin := nshelper(t)
	r := start(t, bpfSource)
	m := marker()
	truth := filepath.Join(t.TempDir(), "truth")
	if out, err := exec.Command(bin, "clone3", m, truth).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b, err := os.ReadFile(truth)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	uts, net := linkInum(t, f[0]), linkInum(t, f[1])
	ev := waitEvent(t, r.out, 5*time.Second, "true of the clone3 child", func(e *event.Event) bool { return hasArg(e, m) && e.Process.Name == "true" })
	noLeftovers(t, r)
	if ev.NSSrc != "kernel" || ev.NS.UTS.Inum != uts || ev.NS.Net.Inum != net || ev.NS.UTS.Serial < 9 || ev.NS.Net.Serial < 9 || ev.NS.IPC.Serial != 1 {
		t.Fatalf("clone3 child: %+v (src %s); it saw uts %d net %d", ev.NS, ev.NSSrc, uts, net)
	}
}

// 2,000 sets of new uts, net and ipc namespaces, two at a time, each
// process gone at once (inode numbers are reused many times over): every
// event carries all three, equal to what the process saw, and no serial
// names two namespaces.
func TestKernelSourceNamespaceChurn(t *testing.T) {
	requireKernel(t)
	r := start(t, bpfSource+"audit:\n  backlog_wait_time: 60000\n")
	const perWorker, workers = 1000, 2
	m := marker()
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for w := 0; w < workers; w++ {
		truth := filepath.Join(dir, fmt.Sprintf("truth-%d", w))
		script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); unshare --uts --net --ipc --fork /bin/sh -c 'echo "$(readlink /proc/self/ns/uts) $(readlink /proc/self/ns/net) $(readlink /proc/self/ns/ipc) $1" >> %s; exec /bin/true "$1"' sh %s-%d-$i; done`, perWorker, truth, m, w)
		cmd := exec.Command("/bin/sh", "-c", script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	type truth struct{ uts, net, ipc uint64 }
	want := map[string]truth{}
	for w := 0; w < workers; w++ {
		b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("truth-%d", w)))
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(line)
			want[f[3]] = truth{linkInum(t, f[0]), linkInum(t, f[1]), linkInum(t, f[2])}
		}
	}
	n := perWorker * workers
	if len(want) != n {
		t.Fatalf("%d truths, want %d", len(want), n)
	}
	var got map[string]*event.Event
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if got = argEvents(allEvents(t, r.out), "true", m); len(got) == n {
			break
		}
	}
	noLeftovers(t, r)
	owner := map[uint64]string{}
	inums := map[uint64]bool{}
	bad := 0
	for arg, w := range want {
		ev := got[arg]
		if ev == nil || ev.NS == nil || ev.NSSrc != "kernel" {
			bad++
			if bad < 10 {
				t.Errorf("%s: event %v", arg, ev != nil)
			}
			continue
		}
		for _, c := range []struct {
			name string
			ref  event.NSRef
			want uint64
		}{{"uts", ev.NS.UTS, w.uts}, {"net", ev.NS.Net, w.net}, {"ipc", ev.NS.IPC, w.ipc}} {
			if c.ref.Inum != c.want || c.ref.Serial < 9 {
				bad++
				t.Errorf("%s: %s %+v, the process saw %d", arg, c.name, c.ref, c.want)
			}
			key := fmt.Sprintf("%s %s", arg, c.name)
			if other, dup := owner[c.ref.Serial]; dup {
				t.Errorf("serial %d names two namespaces: %s and %s", c.ref.Serial, other, key)
			}
			owner[c.ref.Serial] = key
			inums[c.ref.Inum] = true
		}
	}
	t.Logf("%d sets: %d events, %d wrong or missing; %d serials for %d distinct inode numbers (reused)", n, len(got), bad, len(owner), len(inums))
}

// 5,000 children that each unshare(CLONE_NEWUTS|CLONE_NEWIPC) and exit:
// 10,000 namespaces, each with a registry record naming its unshare.
func TestKernelSourceNamespaceFlood(t *testing.T) {
	requireKernel(t)
	bin := nshelper(t)
	r := start(t, bpfSource+"audit:\n  backlog_wait_time: 60000\n")
	const n = 5000
	begin := time.Now()
	if out, err := exec.Command(bin, "flood", strconv.Itoa(n)).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	took := time.Since(begin)
	created := 0
	var unshares int
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		created, unshares = 0, 0
		for _, rec := range registry(t, r.out) {
			if rec.CreatedBy != nil && rec.CreatedBy.Op == "unshare" && rec.CreatedBy.Exe == bin {
				created++
			}
		}
		for _, ev := range allEvents(t, r.out) {
			if ev.Syscall != nil && ev.Syscall.Name == "unshare" && ev.Process.Executable == bin && ev.NSSrc == "kernel" {
				unshares++
			}
		}
		if created == 2*n && unshares == n {
			break
		}
	}
	noLeftovers(t, r)
	t.Logf("%d children in %v: %d unshare events from the kernel side, %d namespaces with a registry record naming their unshare", n, took, unshares, created)
	if created != 2*n || unshares != n {
		t.Fatalf("%d registry records with created_by (want %d), %d unshare events (want %d)", created, 2*n, unshares, n)
	}
}

// A process in a docker-like cgroup: its events name the container, read
// once for its state while it lives.
func TestKernelSourceContainer(t *testing.T) {
	requireKernel(t)
	id := fmt.Sprintf("%016x%016x%016x%016x", time.Now().UnixNano(), os.Getpid(), 0xabc, 0xdef)
	// cgroup v2 alone, or beside v1 hierarchies (hybrid).
	root := "/sys/fs/cgroup"
	if _, err := os.Stat(root + "/cgroup.controllers"); err != nil {
		root += "/unified"
	}
	dir := root + "/docker/" + id
	if err := os.MkdirAll(dir, 0o755); err != nil {
		testenv.Missing(t, testenv.RequireKernelVar, "no cgroup v2 hierarchy to make a container cgroup in: "+err.Error())
	}
	defer os.Remove(root + "/docker")
	defer os.Remove(dir)
	r := start(t, bpfSource)
	m := marker()
	script := fmt.Sprintf(`echo $$ > %s/cgroup.procs && exec /bin/sh -c "sleep 0.5" %s`, dir, m)
	if out, err := exec.Command("/bin/sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	ev := waitEvent(t, r.out, 5*time.Second, "sh in the container cgroup", func(e *event.Event) bool { return hasArg(e, m) })
	// docker's cgroupfs driver on a host with cgroup v1 hierarchies names
	// the container there (the memory controller's path is reported).
	var v1 *event.Event
	id1 := strings.Replace(id, "abc", "123", 1)
	if mem := "/sys/fs/cgroup/memory"; fileExists(mem + "/cgroup.procs") {
		dir1 := mem + "/docker/" + id1
		if err := os.MkdirAll(dir1, 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(mem + "/docker")
		defer os.Remove(dir1)
		m1 := marker()
		script := fmt.Sprintf(`echo $$ > %s/cgroup.procs && exec /bin/true %s`, dir1, m1)
		if out, err := exec.Command("/bin/sh", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		v1 = waitEvent(t, r.out, 5*time.Second, "true in the v1 container cgroup", func(e *event.Event) bool { return hasArg(e, m1) })
	}
	noLeftovers(t, r)
	if ev.NSSrc != "kernel" || ev.Container == nil || ev.Container.ID != id || ev.Container.Runtime != "docker" {
		t.Fatalf("container %+v (src %s), want docker %s", ev.Container, ev.NSSrc, id)
	}
	if v1 != nil && (v1.Container == nil || v1.Container.ID != id1 || v1.Container.Runtime != "docker") {
		t.Fatalf("cgroup v1 memory path: container %+v, want docker %s", v1.Container, id1)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
