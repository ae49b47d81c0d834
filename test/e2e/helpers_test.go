// Package e2e runs auditns end to end against the real kernel (and, for
// the Kafka tests, a real broker), as root. Prerequisites are checked by
// internal/testenv: a laptop skips, CI fails.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"

	"github.com/auditns/auditns/internal/config"
	"github.com/auditns/auditns/internal/daemon"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/testenv"
)

// running is an in-process auditns writing to a file.
type running struct {
	out      string
	stateDir string
	d        *daemon.Daemon
	cancel   context.CancelFunc
	done     chan error
}

// start runs auditns with the given YAML (output and state_dir are added).
func start(t *testing.T, yaml string) *running {
	t.Helper()
	dir := t.TempDir()
	r := &running{out: filepath.Join(dir, "events.jsonl"), stateDir: filepath.Join(dir, "state")}
	if !strings.Contains(yaml, "state_dir:") {
		yaml += "\nstate_dir: " + r.stateDir + "\n"
	}
	if !strings.Contains(yaml, "output:") {
		yaml += "\noutput:\n  sink: file:" + r.out + "\n  flush_interval: 20ms\n"
	}
	cfgFile := filepath.Join(dir, "auditns.yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.NewLoader().Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.Start(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r.d, r.cancel, r.done = d, cancel, make(chan error, 1)
	go func() { r.done <- d.Run(ctx, 5*time.Second) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop shuts auditns down (idempotent) and returns Run's error.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("auditns run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("auditns did not stop within 30s")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func marker() string { return fmt.Sprintf("auditns-marker-%016x", rand.Uint64()) }

// events reads every JSON line of path.
func events(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("invalid JSON line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// waitEvent polls path until an event satisfies pred, decoded as an
// event.Event, and returns it.
func waitEvent(t *testing.T, path string, within time.Duration, what string, pred func(*event.Event) bool) *event.Event {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(path)
		for _, line := range bytes.Split(b, []byte("\n")) {
			if len(line) == 0 || !bytes.Contains(line, []byte(`"`+event.Schema+`"`)) {
				continue
			}
			var ev event.Event
			if err := json.Unmarshal(line, &ev); err != nil {
				t.Fatalf("invalid event %q: %v", line, err)
			}
			if pred(&ev) {
				return &ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event %s within %v in %s", what, within, path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasArg(ev *event.Event, arg string) bool {
	if ev.Process == nil {
		return false
	}
	for _, a := range ev.Process.Args {
		if a == arg {
			return true
		}
	}
	return false
}

func kernelState(t *testing.T) (*libaudit.AuditStatus, int) {
	t.Helper()
	c, err := libaudit.NewAuditClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.GetStatus()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := c.GetRules()
	if err != nil {
		t.Fatal(err)
	}
	return st, len(rules)
}

// requireKernel takes the audit lock and records the kernel's state, and
// checks at the end that the test left it as it was.
func requireKernel(t *testing.T) {
	t.Helper()
	testenv.RequireKernelAudit(t)
	before, rules := kernelState(t)
	t.Cleanup(func() {
		after, rulesAfter := kernelState(t)
		if rulesAfter != rules || after.PID != 0 && after.PID != before.PID || after.Enabled != before.Enabled {
			t.Errorf("host not restored: rules %d→%d, pid %d→%d, enabled %d→%d",
				rules, rulesAfter, before.PID, after.PID, before.Enabled, after.Enabled)
		}
	})
}

func bootID(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
