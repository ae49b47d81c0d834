package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	libaudit "github.com/elastic/go-libaudit/v2"
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
