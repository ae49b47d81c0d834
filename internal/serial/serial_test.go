package serial

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/testenv"
)

var methods = []IDSource{IDKernel, IDPinned}

func TestTypes(t *testing.T) {
	want := "ipc uts user pid cgroup time net mnt"
	var got []string
	for i, ty := range Types {
		if int(ty) != i {
			t.Fatalf("Types[%d] = %d", i, ty)
		}
		got = append(got, ty.String())
		if p, ok := ParseType(ty.String()); !ok || p != ty {
			t.Errorf("ParseType(%q) = %v, %v", ty.String(), p, ok)
		}
	}
	if strings.Join(got, " ") != want {
		t.Errorf("order %q, want %q", strings.Join(got, " "), want)
	}
	if _, ok := ParseType("pid_for_children"); ok {
		t.Error("ParseType accepted pid_for_children")
	}
	if m := MaskFromCloneFlags(0x40000000 | 0x04000000); m != MaskOf(Net, UTS) {
		t.Errorf("MaskFromCloneFlags = %b", m)
	}
	if Type(9).String() != "Type(9)" {
		t.Error(Type(9).String())
	}
}

func TestRecordJSONShape(t *testing.T) {
	id := uint64(4105)
	ts := MakeTime(time.Date(2026, 11, 28, 12, 0, 0, 123456789, time.FixedZone("x", 3600)))
	rec := Record{Schema: Schema, ID: "b/12", Host: Host{"web-1", "b"}, Type: Net, Serial: 12, Inum: 4026532177,
		Dev: "0:4", NsID: &id, IDSrc: IDKernel, OwnerUser: &SerialRef{3}, FirstSeen: ts, FirstEvent: "b:97",
		CreatedBy: &CreatedBy{"b:97", "unshare", 3218, "/usr/bin/unshare"}, LastSeen: ts}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"schema":"auditns.namespace/1","id":"b/12","host":{"name":"web-1","boot_id":"b"},"type":"net","serial":12,"inum":4026532177,"dev":"0:4","ns_id":4105,"id_src":"kernel","is_init":false,"owner_user":{"serial":3},"parent":null,"first_seen":"2026-11-28T11:00:00.123456Z","first_event":"b:97","created_by":{"event":"b:97","op":"unshare","pid":3218,"exe":"/usr/bin/unshare"},"last_seen":"2026-11-28T11:00:00.123456Z","gone":null}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(back)
	if string(b2) != want {
		t.Errorf("round trip: %s", b2)
	}
	rec.NsID, rec.OwnerUser, rec.CreatedBy, rec.FirstEvent = nil, nil, nil, ""
	b, _ = json.Marshal(rec)
	for _, k := range []string{`"ns_id":null`, `"owner_user":null`, `"created_by":null`, `"first_event":null`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("%s missing in %s", k, b)
		}
	}
}

// initPID is the process whose namespaces are the reference for serials
// 1..8: PID 1, or kthreadd where this sandbox hides PID 1.
func initPID(t *testing.T) int {
	if _, err := os.Readlink("/proc/1/ns/net"); err != nil {
		t.Logf("PID 1's namespaces are unreadable here (%v): comparing with kthreadd (PID 2)", err)
		return 2
	}
	return 1
}

func TestInitNamespaces(t *testing.T) {
	testenv.RequireRoot(t)
	for _, m := range methods {
		t.Run(string(m), func(t *testing.T) {
			r := openReg(t, t.TempDir(), m)
			ref := initPID(t)
			recs := r.Records()
			if len(recs) != NumTypes {
				t.Fatalf("%d records at start, want 8", len(recs))
			}
			for i, rec := range recs {
				ty := Type(i)
				if rec.Serial != uint64(i+1) || rec.Type != ty || !rec.IsInit || rec.IDSrc != m {
					t.Errorf("record %d: serial %d type %s is_init %v id_src %s", i, rec.Serial, rec.Type, rec.IsInit, rec.IDSrc)
				}
				if want := readlinkIno(t, ref, ty.String()); rec.Inum != want {
					t.Errorf("%s: inum %d, /proc/%d/ns says %d", ty, rec.Inum, ref, want)
				}
				if rec.ID != r.BootID()+"/"+strconv.Itoa(i+1) || rec.Host.BootID != r.BootID() {
					t.Errorf("%s: id %q", ty, rec.ID)
				}
				if (m == IDKernel) != (rec.NsID != nil) {
					t.Errorf("%s: ns_id %v with method %s", ty, rec.NsID, m)
				}
				if ty == User {
					if rec.OwnerUser != nil || rec.Parent != nil {
						t.Errorf("init user: owner %v parent %v", rec.OwnerUser, rec.Parent)
					}
				} else if rec.OwnerUser == nil || rec.OwnerUser.Serial != 3 {
					t.Errorf("%s: owner_user %v, want serial 3", ty, rec.OwnerUser)
				}
				if ty == PID && rec.Parent != nil {
					t.Errorf("init pid has a parent")
				}
			}
			if got := r.rec.bySerial(1); len(got) != 1 {
				t.Errorf("OnRecord for serial 1 called %d times at Open", len(got))
			}
			// Our own process is in the initial namespaces.
			set, err := r.Observe(os.Getpid(), Cause{})
			if err != nil {
				t.Fatal(err)
			}
			for i, ref := range set {
				if ref.Serial != uint64(i+1) {
					t.Errorf("self %s: serial %d", Type(i), ref.Serial)
				}
			}
		})
	}
}

func TestObserveAllNewNamespaces(t *testing.T) {
	testenv.RequireRoot(t)
	for _, m := range methods {
		t.Run(string(m), func(t *testing.T) {
			r := openReg(t, t.TempDir(), m)
			child, _ := startNS(t, "5", "--net", "--uts", "--ipc", "--mount", "--pid", "--fork", "--user", "--map-root-user", "--cgroup", "--time")
			set, err := r.Observe(child, Cause{EventID: "boot:1"})
			if err != nil {
				t.Fatal(err)
			}
			seen := map[uint64]bool{}
			for _, ty := range Types {
				ref := set[ty]
				if want := readlinkIno(t, child, ty.String()); ref.Inum != want {
					t.Errorf("%s: inum %d, readlink %d", ty, ref.Inum, want)
				}
				if ref.Serial < 9 || seen[ref.Serial] {
					t.Errorf("%s: serial %d (not new or duplicate)", ty, ref.Serial)
				}
				seen[ref.Serial] = true
				rec, ok := r.Record(ref.Serial)
				if !ok || rec.Type != ty || rec.Inum != ref.Inum || rec.IDSrc != m || rec.FirstEvent != "boot:1" || rec.CreatedBy != nil {
					t.Errorf("%s: record %+v", ty, rec)
				}
				if got := r.rec.bySerial(ref.Serial); len(got) != 1 {
					t.Errorf("%s: OnRecord called %d times", ty, len(got))
				}
			}
			userS := set[User].Serial
			for _, ty := range Types {
				rec, _ := r.Record(set[ty].Serial)
				switch ty {
				case User:
					if rec.OwnerUser == nil || rec.OwnerUser.Serial != 3 || rec.Parent == nil || rec.Parent.Serial != 3 {
						t.Errorf("user: owner %v parent %v, want 3/3", rec.OwnerUser, rec.Parent)
					}
				case PID:
					if rec.Parent == nil || rec.Parent.Serial != 4 {
						t.Errorf("pid: parent %v, want 4", rec.Parent)
					}
					fallthrough
				default:
					if rec.OwnerUser == nil || rec.OwnerUser.Serial != userS {
						t.Errorf("%s: owner_user %v, want the new user ns %d", ty, rec.OwnerUser, userS)
					}
				}
			}
			// Nothing else was registered.
			if n := len(r.Records()); n != 16 {
				t.Errorf("%d records, want 16", n)
			}
			again, err := r.Observe(child, Cause{})
			if err != nil || again != set {
				t.Errorf("second Observe: %v %v", again, err)
			}
		})
	}
}

func TestCreatedBy(t *testing.T) {
	testenv.RequireRoot(t)
	r := openReg(t, t.TempDir(), "")
	pid, _ := startNS(t, "5", "--net", "--uts")
	set, err := r.Observe(pid, Cause{EventID: "b:7", Op: "unshare", Exe: "/usr/bin/unshare", Types: MaskOf(Net)})
	if err != nil {
		t.Fatal(err)
	}
	net, _ := r.Record(set[Net].Serial)
	if net.CreatedBy == nil || *net.CreatedBy != (CreatedBy{"b:7", "unshare", pid, "/usr/bin/unshare"}) {
		t.Errorf("net created_by %+v", net.CreatedBy)
	}
	uts, _ := r.Record(set[UTS].Serial)
	if uts.CreatedBy != nil {
		t.Errorf("uts created_by %+v though Types named only net", uts.CreatedBy)
	}
	// setns joins: never created_by.
	pid2, _ := startNS(t, "5", "--ipc")
	set2, _ := r.Observe(pid2, Cause{EventID: "b:8", Op: "setns", PID: pid2})
	if ipc, _ := r.Record(set2[IPC].Serial); ipc.CreatedBy != nil || set2[IPC].Serial < 9 {
		t.Errorf("setns: %+v", ipc)
	}
}

// A record is on disk before OnRecord sees it, and OnRecord has returned
// before Observe hands out its serial.
func TestOnRecordOrdering(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	var mu sync.Mutex
	delivered := map[uint64]bool{}
	var bad []string
	r := openReg(t, dir, "", func(o *Options) {
		o.OnRecord = func(rec *Record) {
			recs, err := LoadBoot(dir, rec.Host.BootID)
			found := false
			for _, x := range recs {
				found = found || x.Serial == rec.Serial
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil || !found {
				bad = append(bad, fmt.Sprintf("serial %d not on disk when published (%v)", rec.Serial, err))
			}
			delivered[rec.Serial] = true
		}
	})
	pid, _ := startNS(t, "5", "--net", "--uts", "--user")
	set, err := r.Observe(pid, Cause{})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, ty := range Types {
		if !delivered[set[ty].Serial] {
			t.Errorf("%s: serial %d returned before its record was published", ty, set[ty].Serial)
		}
	}
	for _, b := range bad {
		t.Error(b)
	}
}

func TestObserveGoneProcess(t *testing.T) {
	testenv.RequireRoot(t)
	r := openReg(t, t.TempDir(), "")
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	_, err := r.Observe(cmd.Process.Pid, Cause{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Observe(exited pid) = %v, want fs.ErrNotExist", err)
	}
}

// uniqueUTS creates n UTS namespaces one after another, observing each while
// it is alive; after each dies, after() runs.
func uniqueUTS(t *testing.T, r testReg, n int, after func(pid int)) (serials, inums []uint64) {
	for i := 0; i < n; i++ {
		pid, wait := startNS(t, "0.3", "--uts")
		set, err := r.Observe(pid, Cause{})
		if err != nil {
			t.Fatal(err)
		}
		if set[UTS].Serial < 9 {
			t.Fatalf("uts serial %d", set[UTS].Serial)
		}
		serials = append(serials, set[UTS].Serial)
		inums = append(inums, set[UTS].Inum)
		wait()
		after(pid)
	}
	return
}

func distinct(v []uint64) bool {
	m := map[uint64]bool{}
	for _, x := range v {
		if m[x] {
			return false
		}
		m[x] = true
	}
	return true
}

func TestInodeReusePinned(t *testing.T) {
	testenv.RequireRoot(t)
	r := openReg(t, t.TempDir(), IDPinned)
	serials, inums := uniqueUTS(t, r, 3, func(pid int) {
		r.Exited(pid, time.Now())
		r.sweep(false) // unheld once
		r.sweep(false) // confirmed: retired, pin released
	})
	t.Logf("serials %v, inodes %v", serials, inums)
	if !distinct(serials) {
		t.Errorf("a serial was reused: %v", serials)
	}
	if distinct(inums) {
		t.Logf("the kernel did not reuse an inode this time (busy host?)")
	} else {
		t.Logf("inode reused by the kernel, serials differ: ok")
	}
	for _, s := range serials {
		rec, _ := r.Record(s)
		if rec.Gone == nil {
			t.Errorf("serial %d not retired", s)
		}
		if got := r.rec.bySerial(s); len(got) != 2 || got[1].Gone == nil {
			t.Errorf("serial %d: %d emissions, want created + gone", s, len(got))
		}
	}
}

// While a namespace is pinned its inode cannot be reused, even if the
// registry is not told about the exit; a full sweep then retires it.
func TestPinPreventsReuse(t *testing.T) {
	testenv.RequireRoot(t)
	r := openReg(t, t.TempDir(), IDPinned)
	serials, inums := uniqueUTS(t, r, 3, func(int) {})
	if !distinct(serials) || !distinct(inums) {
		t.Errorf("pinned namespaces: serials %v inodes %v, want all distinct", serials, inums)
	}
	r.sweep(true)
	r.sweep(true)
	for _, s := range serials {
		if rec, _ := r.Record(s); rec.Gone == nil {
			t.Errorf("serial %d not retired by full sweeps", s)
		}
	}
	r.mu.Lock()
	pids, fds := len(r.pids), 0
	for _, e := range r.entries {
		if e != nil && e.fd >= 0 {
			fds++
		}
	}
	r.mu.Unlock()
	if fds != 0 {
		t.Errorf("%d pins still held", fds)
	}
	if pids != 0 {
		t.Errorf("%d dead pids still tracked", pids)
	}
}

// A namespace kept alive by an nsfs bind mount (ip netns add) is not
// retired when its last process exits.
func TestBindMountHolds(t *testing.T) {
	testenv.RequireRoot(t)
	r := openReg(t, t.TempDir(), IDPinned)
	dir := t.TempDir()
	target := filepath.Join(dir, "uts")
	os.WriteFile(target, nil, 0o600)
	pid, wait := startNS(t, "0.3", "--uts")
	set, err := r.Observe(pid, Cause{})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(fmt.Sprintf("/proc/%d/ns/uts", pid), target, "", syscall.MS_BIND, ""); err != nil {
		testenv.Missing(t, testenv.RequireKernelVar, fmt.Sprintf("bind mount: %v", err))
	}
	t.Cleanup(func() { syscall.Unmount(target, syscall.MNT_DETACH) })
	wait()
	r.Exited(pid, time.Now())
	r.sweep(false)
	r.sweep(false)
	if rec, _ := r.Record(set[UTS].Serial); rec.Gone != nil {
		t.Fatalf("bind-mounted namespace retired")
	}
	syscall.Unmount(target, syscall.MNT_DETACH)
	r.sweep(true)
	r.sweep(false)
	if rec, _ := r.Record(set[UTS].Serial); rec.Gone == nil {
		t.Errorf("namespace not retired after the bind mount went")
	}
}

func TestInodeReuseKernel(t *testing.T) {
	testenv.RequireRoot(t)
	r := openReg(t, t.TempDir(), IDKernel)
	serials, inums := uniqueUTS(t, r, 3, func(int) {})
	t.Logf("serials %v, inodes %v", serials, inums)
	if !distinct(serials) {
		t.Errorf("kernel ids: a serial was reused: %v (inodes %v)", serials, inums)
	}
	ids := map[uint64]bool{}
	for _, s := range serials {
		rec, _ := r.Record(s)
		if rec.NsID == nil || ids[*rec.NsID] {
			t.Errorf("serial %d: ns_id %v", s, rec.NsID)
		} else {
			ids[*rec.NsID] = true
		}
	}
	// Kernel mode marks them gone too (informational: the key is exact).
	r.sweep(true)
	r.sweep(true)
	for _, s := range serials {
		if rec, _ := r.Record(s); rec.Gone == nil {
			t.Errorf("serial %d not marked gone", s)
		}
	}
}

func TestConcurrentObserve(t *testing.T) {
	testenv.RequireRoot(t)
	for _, m := range methods {
		t.Run(string(m), func(t *testing.T) {
			r := openReg(t, t.TempDir(), m)
			var pids []int
			for i := 0; i < 4; i++ {
				pid, _ := startNS(t, "5", "--net", "--uts", "--ipc")
				pids = append(pids, pid)
			}
			var wg sync.WaitGroup
			results := make([][]Set, len(pids))
			for i, pid := range pids {
				results[i] = make([]Set, 8)
				for j := 0; j < 8; j++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						s, err := r.Observe(pid, Cause{})
						if err != nil {
							t.Error(err)
						}
						results[i][j] = s
					}()
				}
			}
			wg.Wait()
			all := map[uint64]bool{}
			for i := range pids {
				for j := 1; j < 8; j++ {
					if results[i][j] != results[i][0] {
						t.Errorf("pid %d: observations differ: %v vs %v", pids[i], results[i][j], results[i][0])
					}
				}
				for _, ty := range []Type{Net, UTS, IPC} {
					s := results[i][0][ty].Serial
					if all[s] {
						t.Errorf("serial %d given to two namespaces", s)
					}
					all[s] = true
				}
			}
			if n := len(r.Records()); n != 8+12 {
				t.Errorf("%d records, want 20", n)
			}
		})
	}
}

func TestRestartSameBoot(t *testing.T) {
	testenv.RequireRoot(t)
	for _, m := range methods {
		t.Run(string(m), func(t *testing.T) {
			dir := t.TempDir()
			pid, _ := startNS(t, "30", "--net", "--uts")
			r1 := openReg(t, dir, m)
			set1, err := r1.Observe(pid, Cause{EventID: "b:1"})
			if err != nil {
				t.Fatal(err)
			}
			if err := r1.Close(); err != nil {
				t.Fatal(err)
			}
			r2 := openReg(t, dir, m)
			set2, err := r2.Observe(pid, Cause{})
			if err != nil {
				t.Fatal(err)
			}
			if set1 != set2 {
				t.Errorf("after restart: %v, before: %v", set2, set1)
			}
			rec, _ := r2.Record(set2[Net].Serial)
			want := m
			if m == IDPinned {
				want = IDHeuristic
			}
			if rec.IDSrc != want || rec.Gone != nil || rec.FirstEvent != "b:1" {
				t.Errorf("reloaded net record: id_src %s gone %v first_event %q; want id_src %s", rec.IDSrc, rec.Gone, rec.FirstEvent, want)
			}
			// A new namespace continues the counter (clean shutdown: no gap).
			pid2, _ := startNS(t, "5", "--ipc")
			set3, err := r2.Observe(pid2, Cause{})
			if err != nil {
				t.Fatal(err)
			}
			if top := max(set1[Net].Serial, set1[UTS].Serial); set3[IPC].Serial != top+1 {
				t.Errorf("new serial %d after restart, want %d", set3[IPC].Serial, top+1)
			}
		})
	}
}

// In pinned mode an entry whose witness is gone after a restart is retired
// and its namespace (if alive) gets a new serial: never trust a bare inode.
func TestRestartPinnedWithoutWitness(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	r1 := openReg(t, dir, IDPinned)
	pid, wait := startNS(t, "0.3", "--uts")
	set1, _ := r1.Observe(pid, Cause{})
	r1.Close()
	wait()
	r2 := openReg(t, dir, IDPinned)
	rec, _ := r2.Record(set1[UTS].Serial)
	if rec.Gone == nil {
		t.Errorf("dead pinned namespace not retired at restart: %+v", rec)
	}
	pid2, _ := startNS(t, "5", "--uts")
	set2, _ := r2.Observe(pid2, Cause{})
	if set2[UTS].Serial == set1[UTS].Serial {
		t.Errorf("a new namespace (inode %d, old %d) inherited serial %d", set2[UTS].Inum, set1[UTS].Inum, set1[UTS].Serial)
	}
}

const helperEnv = "AUDITNS_SERIAL_CRASH_HELPER"

// TestMain runs the crash helper when asked: open the registry, observe the
// pids it is given, print the sets, and wait to be SIGKILLed.
func TestMain(m *testing.M) {
	if arg := os.Getenv(helperEnv); arg != "" {
		crashHelper(arg)
		return
	}
	os.Exit(m.Run())
}

func crashHelper(arg string) {
	f := strings.Split(arg, ",")
	r, err := Open(Options{Dir: f[0], Method: IDSource(f[1]), SweepDelay: time.Hour, FullSweepEvery: time.Hour})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	out := []Set{}
	for _, p := range f[2:] {
		pid, _ := strconv.Atoi(p)
		s, err := r.Observe(pid, Cause{})
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		out = append(out, s)
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
	select {} // wait for SIGKILL
}

func TestCrashNoSerialReissued(t *testing.T) {
	testenv.RequireRoot(t)
	for _, m := range methods {
		t.Run(string(m), func(t *testing.T) {
			dir := t.TempDir()
			var pids []string
			for i := 0; i < 3; i++ {
				pid, _ := startNS(t, "30", "--net", "--uts")
				pids = append(pids, strconv.Itoa(pid))
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+dir+","+string(m)+","+strings.Join(pids, ","))
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			if err != nil || strings.HasPrefix(line, "ERR") {
				t.Fatalf("helper: %q %v", line, err)
			}
			var sets []Set
			if err := json.Unmarshal([]byte(line), &sets); err != nil {
				t.Fatalf("helper output %q: %v", line, err)
			}
			var top uint64
			for _, s := range sets {
				for _, ref := range s {
					top = max(top, ref.Serial)
				}
			}
			r := openReg(t, dir, m)
			// Every serial the dead process handed out is on disk.
			for i, s := range sets {
				for _, ty := range []Type{Net, UTS} {
					rec, ok := r.Record(s[ty].Serial)
					if !ok || rec.Inum != s[ty].Inum || rec.Type != ty {
						t.Errorf("pid %s %s: serial %d lost in the crash (%+v)", pids[i], ty, s[ty].Serial, rec)
					}
				}
			}
			// The same namespaces keep their serials (kernel: exact; pinned:
			// re-attached through the witness, marked heuristic).
			for i, p := range pids {
				pid, _ := strconv.Atoi(p)
				s, err := r.Observe(pid, Cause{})
				if err != nil || s != sets[i] {
					t.Errorf("pid %d after crash: %v (before %v) %v", pid, s, sets[i], err)
				}
			}
			// New namespaces get serials above anything the dead process may
			// have handed out (its whole reserved block).
			pid, _ := startNS(t, "5", "--ipc")
			s, err := r.Observe(pid, Cause{})
			if err != nil {
				t.Fatal(err)
			}
			if s[IPC].Serial <= top || s[IPC].Serial < 9+64 {
				t.Errorf("new serial %d after crash, last issued %d, reserved block up to %d", s[IPC].Serial, top, 8+64)
			}
			t.Logf("issued up to %d before kill -9; next after reload %d", top, s[IPC].Serial)
		})
	}
}

func writeBoot(t *testing.T, path, id string) {
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOtherBoot(t *testing.T) {
	testenv.RequireRoot(t)
	dir, bdir := t.TempDir(), t.TempDir()
	bootA, bootB := "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-aaaaaaaaaaaa"
	bootFile := filepath.Join(bdir, "boot_id")
	withBoot := func(o *Options) { o.BootIDPath = bootFile }
	writeBoot(t, bootFile, bootA)
	r1 := openReg(t, dir, "", withBoot)
	pid, _ := startNS(t, "30", "--uts")
	s1, _ := r1.Observe(pid, Cause{})
	if s1[UTS].Serial != 9 {
		t.Fatalf("first serial %d", s1[UTS].Serial)
	}
	r1.Close()

	writeBoot(t, bootFile, bootB)
	r2 := openReg(t, dir, "", withBoot)
	if r2.BootID() != bootB || len(r2.Records()) != 8 {
		t.Fatalf("new boot: boot %s, %d records", r2.BootID(), len(r2.Records()))
	}
	s2, _ := r2.Observe(pid, Cause{})
	if s2[UTS].Serial != 9 {
		t.Errorf("new boot starts at %d, want 9", s2[UTS].Serial)
	}
	if rec, _ := r2.Record(9); rec.ID != bootB+"/9" {
		t.Errorf("id %s", rec.ID)
	}
	hist := filepath.Join(dir, "registry-"+bootA+".log")
	fi, err := os.Stat(hist)
	if err != nil {
		t.Fatalf("history file: %v", err)
	}
	if fi.Mode().Perm() != 0o400 {
		t.Errorf("history mode %v, want read-only", fi.Mode().Perm())
	}
	old, err := LoadBoot(dir, bootA)
	if err != nil || len(old) != 9 || old[8].ID != bootA+"/9" {
		t.Errorf("LoadBoot(old boot): %d records, %v", len(old), err)
	}
	cur, err := LoadBoot(dir, bootB)
	if err != nil || len(cur) != 9 || cur[8].ID != bootB+"/9" {
		t.Errorf("LoadBoot(current boot): %d records, %v", len(cur), err)
	}
}

func TestTornTail(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	r1 := openReg(t, dir, "")
	pid, _ := startNS(t, "30", "--uts", "--net")
	s1, _ := r1.Observe(pid, Cause{})
	// Simulate a crash in the middle of an append: cut the last line.
	path := filepath.Join(dir, logName)
	r1.mu.Lock()
	r1.f.Write([]byte("deadbeef {\"t\":\"ns\",\"rec\":{\"schema\":\"auditns.names"))
	r1.mu.Unlock()
	r1.crash()
	before, _ := os.ReadFile(path)

	r2 := openReg(t, dir, "")
	if !strings.Contains(r2.logs.String(), "torn tail") {
		t.Errorf("no log line about the torn tail:\n%s", r2.logs.String())
	}
	s2, err := r2.Observe(pid, Cause{})
	if err != nil || s2 != s1 {
		t.Errorf("after torn tail: %v %v, want %v", s2, err, s1)
	}
	after, _ := os.ReadFile(path)
	if st := parseLog(after); st.tornLines != 0 || st.corrupt != 0 {
		t.Errorf("log not repaired: %+v", st)
	}
	if len(after) >= len(before) {
		t.Logf("log %d bytes before, %d after", len(before), len(after))
	}
}

func TestCorruptMiddleLine(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	r1 := openReg(t, dir, "")
	pid, _ := startNS(t, "30", "--uts")
	r1.Observe(pid, Cause{})
	r1.Close()
	path := filepath.Join(dir, logName)
	data, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(data), "\n")
	lines[2] = strings.Replace(lines[2], `"ipc"`, `"IPC"`, 1) // CRC mismatch
	os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600)
	r2 := openReg(t, dir, "")
	if !strings.Contains(r2.logs.String(), "corrupt") {
		t.Errorf("corruption not logged:\n%s", r2.logs.String())
	}
	matches, _ := filepath.Glob(filepath.Join(dir, logName+".corrupt-*"))
	if len(matches) != 1 {
		t.Errorf("corrupt copy: %v", matches)
	}
	s, _ := r2.Observe(pid, Cause{})
	if s[UTS].Serial != 9 {
		t.Errorf("uts serial %d after corrupt line, want 9", s[UTS].Serial)
	}
}

func TestLoad(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if _, _, err := Load(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(empty) = %v, want ErrNotExist", err)
	}
	r := openReg(t, dir, "")
	pid, _ := startNS(t, "5", "--uts", "--net")
	r.Observe(pid, Cause{EventID: "x:1"})
	boot, recs, err := Load(dir)
	if err != nil || boot != r.BootID() {
		t.Fatalf("Load: %v, boot %s", err, boot)
	}
	live := r.Records()
	if len(recs) != len(live) {
		t.Fatalf("Load: %d records, registry has %d", len(recs), len(live))
	}
	for i := range recs {
		// last_seen is written at most every LastSeenEvery.
		recs[i].LastSeen, live[i].LastSeen = Timestamp{}, Timestamp{}
		a, _ := json.Marshal(recs[i])
		b, _ := json.Marshal(live[i])
		if string(a) != string(b) {
			t.Errorf("Load record %d:\n%s\nregistry:\n%s", i, a, b)
		}
	}
	// Load does not take the lock: the daemon keeps working.
	if _, err := r.Observe(pid, Cause{}); err != nil {
		t.Error(err)
	}
}

func TestStateDir(t *testing.T) {
	testenv.RequireRoot(t)
	base := t.TempDir()
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	_, err := Open(Options{Dir: filepath.Join(file, "sub")})
	if err == nil || !strings.Contains(err.Error(), "state_dir") || !strings.Contains(err.Error(), file) || strings.Contains(err.Error(), "\n") {
		t.Errorf("unusable dir: %v", err)
	}
	dir := filepath.Join(base, "state")
	os.Mkdir(dir, 0o755)
	r := openReg(t, dir, "")
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", fi.Mode().Perm())
	}
	for _, n := range []string{logName, lockName} {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", n, fi.Mode(), err)
		}
	}
	if _, err := Open(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open: %v", err)
	}
	if _, err := Open(Options{Dir: t.TempDir(), Method: "heuristic"}); err == nil {
		t.Error("Method heuristic accepted")
	}
	_ = r
}

func TestLastSeenThrottle(t *testing.T) {
	testenv.RequireRoot(t)
	r := openReg(t, t.TempDir(), "", func(o *Options) { o.LastSeenEvery = time.Minute })
	pid, _ := startNS(t, "5", "--uts")
	t0 := time.Now()
	s, _ := r.Observe(pid, Cause{Time: t0})
	r.Observe(pid, Cause{Time: t0.Add(time.Second)})
	if n := len(r.rec.bySerial(s[UTS].Serial)); n != 1 {
		t.Errorf("%d emissions within LastSeenEvery", n)
	}
	r.Observe(pid, Cause{Time: t0.Add(2 * time.Minute)})
	got := r.rec.bySerial(s[UTS].Serial)
	if len(got) != 2 || !got[1].LastSeen.Equal(MakeTime(t0.Add(2*time.Minute)).Time) {
		t.Errorf("last_seen re-emission: %d records", len(got))
	}
	re := regexp.MustCompile(`^"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"$`)
	b, _ := json.Marshal(got[1].LastSeen)
	if !re.Match(b) {
		t.Errorf("time format %s", b)
	}
}

func BenchmarkObserve(b *testing.B) {
	testenv.RequireRoot(b)
	for _, m := range methods {
		b.Run(string(m), func(b *testing.B) {
			r := openReg(b, b.TempDir(), m)
			pid, _ := startNS(b, "600", "--net", "--uts", "--ipc", "--mount")
			if _, err := r.Observe(pid, Cause{}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := r.Observe(pid, Cause{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
