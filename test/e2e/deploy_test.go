package e2e

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/testenv"
)

// On a host where another live process is the audit daemon (auditd),
// unicast mode exits 2 (systemd's RestartPreventExitStatus=2 does not
// restart it) with one line that names the key and the switch to multicast.
func TestUnicastBesideAnotherDaemonSaysMulticast(t *testing.T) {
	requireKernel(t)
	bin := auditnsBinary(t)
	other, err := libaudit.NewAuditClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.SetPID(libaudit.WaitForReply); err != nil {
		other.Close()
		t.Fatal(err)
	}
	defer other.Close() // clears the audit pid it set

	dir := t.TempDir()
	cmd := exec.Command(bin, "run", "--mode", "unicast", "--output", "file:"+filepath.Join(dir, "out.jsonl"), "--state-dir", filepath.Join(dir, "state"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("auditns run beside another audit daemon: %v, want exit 2; stderr:\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{"auditns: mode: unicast is not possible on this host", "another audit daemon (pid " + strconv.Itoa(os.Getpid()) + ", ", "AUDITNS_MODE=multicast"} {
		if !strings.Contains(last, want) {
			t.Errorf("last stderr line %q lacks %q", last, want)
		}
	}
}

// unitCapabilities is the systemd unit's CapabilityBoundingSet, as setpriv
// names them (audit_control,...).
func unitCapabilities(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../packaging/systemd/auditns.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
			var caps []string
			for _, c := range strings.Fields(v) {
				caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
			return caps
		}
	}
	t.Fatal("the unit has no CapabilityBoundingSet")
	return nil
}

// With no capabilities but the unit's, auditns runs in unicast mode and
// tags the exec of a process in a network namespace of its own with that
// namespace, read from the process.
func TestRunsWithOnlyTheUnitsCapabilities(t *testing.T) {
	requireKernel(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		testenv.Missing(t, testenv.RequireKernelVar, "setpriv (util-linux) not found")
	}
	bin := auditnsBinary(t)
	caps := unitCapabilities(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "events.jsonl")
	bounding := "-all"
	for _, c := range caps {
		bounding += ",+" + c
	}
	cmd := exec.Command(setpriv, "--bounding-set", bounding, "--", bin, "run", "--mode", "unicast",
		"--output", "file:"+out, "--state-dir", filepath.Join(dir, "state"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := waitCh(cmd)
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("auditns run: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("auditns did not stop\n%s", stderr.String())
		}
	}()
	// Started: the state event is in the file.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(readFile(out), `"started"`) {
		if time.Now().After(deadline) {
			t.Fatalf("auditns did not start within 20s\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var eff uint64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if n := bits.OnesCount64(eff); n != len(caps) {
		t.Fatalf("auditns runs with %d effective capabilities (%#x), the unit grants %d: %v", n, eff, len(caps), caps)
	}

	m := marker()
	// sh is still sleeping when auditns reads its namespaces.
	sh := exec.Command("unshare", "--net", "/bin/sh", "-c", "sleep 4", m)
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer sh.Wait()
	defer sh.Process.Kill()
	hostNet, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, out, 20*time.Second, "the marker exec", func(e *event.Event) bool {
		return hasArg(e, m) && e.Process.Name == "sh"
	})
	// The unit grants CAP_BPF and CAP_PERFMON: the kernel-side source loads.
	if ev.NS == nil || ev.NSSrc != "kernel" || ev.NS.Net.Inum == 0 || fmt.Sprintf("net:[%d]", ev.NS.Net.Inum) == hostNet {
		t.Fatalf("exec in a new network namespace with only the unit's capabilities: ns_src %q, ns %+v (host net %s), executable %q",
			ev.NSSrc, ev.NS, hostNet, ev.Process.Executable)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
