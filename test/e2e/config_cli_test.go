package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// auditns config check exits 0 for a good configuration and 2 with one
// line naming the key for a bad one; config show names each value's origin
// and masks the SASL password.
func TestCLIConfigCheckAndShow(t *testing.T) {
	bin := auditnsBinary(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("mode: multicast\nkafka:\n  topic: audit.x\n  sasl:\n    mechanism: plain\n    username: svc\n    password: hunter2-secret\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("kafka:\n  spool:\n    full_policy: keep_all\n"), 0o600)

	run := func(env string, args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return stdout.String(), stderr.String(), 0
		case errors.As(err, &ee):
			return stdout.String(), stderr.String(), ee.ExitCode()
		}
		t.Fatalf("%v: %v", args, err)
		return "", "", -1
	}

	if out, errOut, code := run("", "config", "check", "--config", good); code != 0 || !strings.Contains(out, "configuration ok") {
		t.Fatalf("config check of a good file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, errOut, code := run("", "config", "check", "--config", bad)
	want := `auditns: kafka.spool.full_policy: expected one of drop_newest, drop_oldest, got "keep_all" (set by file ` + bad + ")\n"
	if code != 2 || errOut != want {
		t.Fatalf("config check of a bad file: exit %d, stderr %q, want exit 2 and %q", code, errOut, want)
	}
	badRules := filepath.Join(dir, "bad.rules")
	os.WriteFile(badRules, []byte("-w /etc/passwd -p wa -k ok\n-a always,exit -S nosuch\n"), 0o600)
	if _, errOut, code := run("", "config", "check", "--rules", badRules); code != 2 || !strings.HasPrefix(errOut, "auditns: audit.rules_file: "+badRules+":2: ") {
		t.Fatalf("config check with a bad rules file: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := run("AUDITNS_AUDIT_BACKLOG_LIMIT=-1", "config", "check"); code != 2 || !strings.Contains(errOut, "audit.backlog_limit: expected an integer") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("config check with a bad env value: exit %d, stderr %q", code, errOut)
	}

	out, errOut, code := run("AUDITNS_KAFKA_KEY=pidns", "config", "show", "--config", good, "--state-dir", "/srv/auditns")
	if code != 0 {
		t.Fatalf("config show: exit %d, stderr %q", code, errOut)
	}
	if strings.Contains(out, "hunter2") {
		t.Fatalf("config show prints the password:\n%s", out)
	}
	for _, line := range [][]string{
		{"mode", "multicast", "file " + good},
		{"state_dir", "/srv/auditns", "flag --state-dir"},
		{"kafka.key", "pidns", "env AUDITNS_KAFKA_KEY"},
		{"kafka.sasl.password", "********", "file " + good},
		{"kafka.batch_size", "1000", "default"},
	} {
		found := false
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == line[0] {
				found = f[1] == line[1] && strings.Join(f[2:], " ") == line[2]
				break
			}
		}
		if !found {
			t.Errorf("config show lacks %q:\n%s", strings.Join(line, "  "), out)
		}
	}
}

// auditns --version and auditns version print the same line.
func TestCLIVersionFlagAndCommandAgree(t *testing.T) {
	bin := auditnsBinary(t)
	a, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	if string(a) != string(b) || !strings.HasPrefix(string(a), "auditns ") || !strings.Contains(string(a), "(commit ") {
		t.Fatalf("version %q, --version %q", a, b)
	}
}
