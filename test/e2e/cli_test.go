package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Bad input: exit status 2 and one line on stderr naming what is wrong.
func TestCLIBadInputIsOneLineExit2(t *testing.T) {
	bin := auditnsBinary(t)
	dir := t.TempDir()
	badRules := filepath.Join(dir, "bad.rules")
	os.WriteFile(badRules, []byte("-w /etc/passwd -p wa -k ok\n-a always,exit -S nosuch\n"), 0o600)
	badCfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("kafka:\n  topik: x\n"), 0o600)
	cases := []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"run", "--mode", "loud"}, "", "mode: expected one of unicast, multicast"},
		{[]string{"run", "--output", "smtp:x"}, "", "output.sink: expected stdout, file:PATH or kafka"},
		{[]string{"run", "--nope"}, "", "unknown flag: --nope"},
		{[]string{"run", "--config", badCfg}, "", `unknown key "kafka.topik"`},
		{[]string{"run"}, "AUDITNS_KAFKA_COMPRESSION=brotli", "kafka.compression: expected one of none, gzip, snappy, lz4, zstd"},
		{[]string{"run", "--rules", badRules, "--state-dir", filepath.Join(dir, "st")}, "", "bad.rules:2: invalid rule"},
		{[]string{"frobnicate"}, "", `unknown command "frobnicate"`},
		{[]string{"convert", filepath.Join(dir, "no-such.log")}, "", "convert: FILE: open " + filepath.Join(dir, "no-such.log")},
		{[]string{"convert", "a.log", "b.log"}, "", "accepts at most 1 arg(s)"},
	}
	for _, tc := range cases {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = os.Environ()
		if tc.env != "" {
			cmd.Env = append(cmd.Env, tc.env)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: exit %v, want 2 (stderr %q)", tc.args, err, stderr.String())
			continue
		}
		last := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(last, '\n'); i >= 0 {
			last = last[i+1:]
		}
		if !strings.HasPrefix(last, "auditns: ") || !strings.Contains(last, tc.want) {
			t.Errorf("%v: last stderr line %q, want it to name %q", tc.args, last, tc.want)
		}
	}
}

// A start-up failure after auditns became the audit daemon (the output
// cannot be opened) is bad input, and the host is left as it was.
func TestCLIStartFailureLeavesHostClean(t *testing.T) {
	requireKernel(t)
	cmd := exec.Command(auditnsBinary(t), "run", "--output", "file:/nonexistent/dir/events", "--state-dir", t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "auditns: output.sink: ") {
		t.Fatalf("exit %v, stderr %q", err, stderr.String())
	}
	// requireKernel's cleanup checks that rules and pid are as before.
}
