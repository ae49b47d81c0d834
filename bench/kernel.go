package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"golang.org/x/sys/unix"
)

// Lock paths shared with internal/testenv (LockAudit, LockKafka).
const (
	auditLockPath = "/run/auditns-test-audit.lock"
	kafkaLockPath = "/run/auditns-test-kafka.lock"
)

// flock takes an exclusive flock on path (in $TMPDIR when /run does not
// exist), as internal/testenv does, and returns its release.
func flock(path, what string) (func(), error) {
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		path = filepath.Join(os.TempDir(), filepath.Base(path))
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s lock %s: %w", what, path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		logf("waiting for the %s lock %s (held by another test or bench)", what, path)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s lock %s: %w", what, path, err)
		}
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// hostState is the kernel's audit state as the bench found it.
type hostState struct {
	status libaudit.AuditStatus
	rules  [][]byte
}

func kernelStatus() (*libaudit.AuditStatus, [][]byte, error) {
	c, err := libaudit.NewAuditClient(nil)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	st, err := c.GetStatus()
	if err != nil {
		return nil, nil, err
	}
	rules, err := c.GetRules()
	if err != nil {
		return nil, nil, err
	}
	return st, rules, nil
}

func kernelLost() (uint32, error) {
	st, _, err := kernelStatus()
	if err != nil {
		return 0, err
	}
	return st.Lost, nil
}

func snapshotHost() (*hostState, error) {
	st, rules, err := kernelStatus()
	if err != nil {
		return nil, fmt.Errorf("kernel audit status: %w", err)
	}
	if st.Enabled == 2 {
		return nil, fmt.Errorf("kernel audit configuration is immutable: nothing can be measured")
	}
	if st.PID != 0 && processAlive(int(st.PID)) {
		return nil, fmt.Errorf("another audit daemon (pid %d) holds the kernel's audit pid", st.PID)
	}
	if len(rules) > 0 {
		logf("warning: %d audit rules were loaded before the bench; they stay, and add to every figure", len(rules))
	}
	return &hostState{status: *st, rules: rules}, nil
}

func processAlive(pid int) bool {
	return unix.Kill(pid, 0) == nil
}

// restore puts the kernel back as h found it: rules the bench's children
// added and left are deleted, an audit pid left by a dead child is
// released, and backlog_limit, backlog_wait_time, rate_limit, failure mode
// and the enabled flag are set back. It returns what it had to fix (empty:
// the consumer cleaned up after itself).
func (h *hostState) restore() ([]string, error) {
	c, err := libaudit.NewAuditClient(nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st, err := c.GetStatus()
	if err != nil {
		return nil, err
	}
	rules, err := c.GetRules()
	if err != nil {
		return nil, err
	}
	if st.PID != 0 && st.PID != h.status.PID && processAlive(int(st.PID)) {
		// Not ours (the bench's consumers have stopped by now): another
		// process became the audit daemon without the audit lock. Its
		// rules are not leftovers; touch nothing.
		return nil, &foreignDaemon{pid: int(st.PID)}
	}
	var fixed []string
	var errs []string
	for _, r := range rules {
		known := false
		for _, k := range h.rules {
			if bytes.Equal(r, k) {
				known = true
				break
			}
		}
		if known {
			continue
		}
		if err := c.DeleteRule(r); err != nil {
			errs = append(errs, fmt.Sprintf("delete a leftover rule: %v", err))
		} else {
			fixed = append(fixed, "deleted a leftover rule")
		}
	}
	in := h.status
	set := func(what string, differ bool, do func() error) {
		if !differ {
			return
		}
		if err := do(); err != nil {
			errs = append(errs, fmt.Sprintf("restore %s: %v", what, err))
		} else {
			fixed = append(fixed, "restored "+what)
		}
	}
	set("backlog_limit", st.BacklogLimit != in.BacklogLimit, func() error { return c.SetBacklogLimit(in.BacklogLimit, libaudit.WaitForReply) })
	set("backlog_wait_time", st.BacklogWaitTime != in.BacklogWaitTime, func() error {
		return c.SetBacklogWaitTime(int32(in.BacklogWaitTime), libaudit.WaitForReply)
	})
	set("rate_limit", st.RateLimit != in.RateLimit, func() error { return c.SetRateLimit(in.RateLimit, libaudit.WaitForReply) })
	set("failure mode", st.Failure != in.Failure, func() error {
		return c.SetFailure(libaudit.FailureMode(in.Failure), libaudit.WaitForReply)
	})
	set("enabled", st.Enabled != in.Enabled && st.Enabled != 2, func() error { return c.SetEnabled(in.Enabled == 1, libaudit.WaitForReply) })
	if st.PID != 0 && st.PID != in.PID {
		if err := c.SetPID(libaudit.WaitForReply); err != nil {
			// Closing c (deferred) after SetPID releases the pid.
			errs = append(errs, fmt.Sprintf("release audit pid %d of a dead process: %v", st.PID, err))
		} else {
			fixed = append(fixed, fmt.Sprintf("released the audit pid %d of a dead process", st.PID))
		}
	}
	if len(errs) > 0 {
		return fixed, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return fixed, nil
}

// foreignDaemon is a live process, not started by the bench, that holds
// the kernel's audit pid.
type foreignDaemon struct{ pid int }

func (f *foreignDaemon) Error() string {
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", f.pid))
	return fmt.Sprintf("another process holds the kernel's audit pid: %d (%s), without the audit lock %s",
		f.pid, strings.TrimSpace(strings.ReplaceAll(string(comm), "\x00", " ")), auditLockPath)
}

// waitForeign waits, up to two minutes, while a process that is not the
// bench's is the audit daemon (it did not take the audit lock): measuring
// or cleaning up beside it would be wrong.
func (h *hostState) waitForeign(ctx context.Context) error {
	var logged bool
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, _, err := kernelStatus()
		if err != nil {
			return err
		}
		if st.PID == 0 || st.PID == h.status.PID || !processAlive(int(st.PID)) {
			return nil
		}
		f := &foreignDaemon{pid: int(st.PID)}
		if time.Now().After(deadline) {
			return f
		}
		if !logged {
			logf("waiting: %v", f)
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// statusJSON is `auditns status --json`.
type statusJSON struct {
	Kernel struct {
		Enabled         uint32 `json:"enabled"`
		PID             uint32 `json:"pid"`
		Failure         uint32 `json:"failure_mode"`
		RateLimit       uint32 `json:"rate_limit"`
		BacklogLimit    uint32 `json:"backlog_limit"`
		Lost            uint32 `json:"lost"`
		BacklogWaitTime uint32 `json:"backlog_wait_time"`
		Rules           int    `json:"rules"`
	} `json:"kernel"`
}

// auditnsStatus runs `auditns status --json` (the check the project asks
// for after anything that touched the kernel's audit subsystem).
func auditnsStatus(bin string) (*statusJSON, error) {
	cmd := exec.Command(bin, "status", "--json")
	cmd.Env = cleanEnv()
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("auditns status --json: %w", err)
	}
	var s statusJSON
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("auditns status --json: %w (%q)", err, out)
	}
	return &s, nil
}

// checkClean restores the host if needed and checks it with `auditns
// status --json`: the rules loaded and the audit daemon as found
// (normally 0 and none), settings as found.
func (b *bench) checkClean() (string, error) {
	if err := b.host.waitForeign(context.Background()); err != nil {
		return "NO", err
	}
	fixed, rerr := b.host.restore()
	s, err := auditnsStatus(b.auditnsBin)
	if err != nil {
		return "", err
	}
	in := b.host.status
	var bad []string
	if s.Kernel.Rules != len(b.host.rules) {
		bad = append(bad, fmt.Sprintf("rules loaded: %d (found %d)", s.Kernel.Rules, len(b.host.rules)))
	}
	if s.Kernel.PID != 0 {
		bad = append(bad, fmt.Sprintf("audit daemon: pid %d", s.Kernel.PID))
	}
	if s.Kernel.BacklogLimit != in.BacklogLimit || s.Kernel.BacklogWaitTime != in.BacklogWaitTime ||
		s.Kernel.Enabled != in.Enabled || s.Kernel.Failure != in.Failure || s.Kernel.RateLimit != in.RateLimit {
		bad = append(bad, fmt.Sprintf("settings differ: %+v", s.Kernel))
	}
	if rerr != nil {
		bad = append(bad, rerr.Error())
	}
	if len(bad) > 0 {
		return "NO", fmt.Errorf("host not clean: %s", strings.Join(bad, "; "))
	}
	if len(fixed) > 0 {
		logf("host restored by the bench: %s", strings.Join(fixed, ", "))
		return "fixed", nil
	}
	return "yes", nil
}

// cleanEnv is the environment for children without AUDITNS_* variables,
// which would override the configuration the bench writes.
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AUDITNS_") {
			env = append(env, e)
		}
	}
	return env
}
