// Package testenv decides whether a test's prerequisites (root, the kernel's
// audit subsystem, a Kafka broker) are present. On a developer laptop a test
// whose prerequisite is missing is skipped with a message; in CI, where
// .ci/run sets AUDITNS_REQUIRE_KERNEL=1 and AUDITNS_REQUIRE_KAFKA=1, it fails,
// so a green run can never hide a test that did not run.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"golang.org/x/sys/unix"
)

// The variables .ci/run sets so that a missing prerequisite fails a test
// instead of skipping it.
const (
	RequireKernelVar = "AUDITNS_REQUIRE_KERNEL" // root and the kernel's audit subsystem
	RequireKafkaVar  = "AUDITNS_REQUIRE_KAFKA"  // the project's Kafka broker and its jars
)

// Missing skips t, or fails it when the environment variable requireVar
// (RequireKernelVar or RequireKafkaVar) is set to 1 (CI). For prerequisites
// the Require functions do not cover, such as the broker's pid file.
func Missing(t testing.TB, requireVar, why string) {
	t.Helper()
	if os.Getenv(requireVar) == "1" {
		t.Fatalf("prerequisite missing and %s=1: %s", requireVar, why)
	}
	t.Skipf("skipping: %s (set %s=1 to make this a failure)", why, requireVar)
}

// RequireRoot skips or fails t unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, RequireKernelVar, "test needs root (CAP_AUDIT_CONTROL, CAP_SYS_PTRACE)")
	}
}

// RequireKernelAudit skips or fails t unless it runs as root on a kernel whose
// audit subsystem answers, then takes the host-wide audit lock for the rest of
// the test: the kernel audit subsystem is one global resource, so tests that
// use it run one at a time, across packages and processes.
func RequireKernelAudit(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	c, err := libaudit.NewAuditClient(nil)
	if err != nil {
		Missing(t, RequireKernelVar, fmt.Sprintf("kernel audit not available: %v", err))
		return
	}
	_, err = c.GetStatus()
	c.Close()
	if err != nil {
		Missing(t, RequireKernelVar, fmt.Sprintf("kernel audit status: %v", err))
		return
	}
	LockAudit(t)
}

// LockPath is the file whose flock serialises tests that use the kernel's
// audit subsystem.
const LockPath = "/run/auditns-test-audit.lock"

// LockAudit takes the host-wide audit lock and releases it when t ends.
func LockAudit(t testing.TB) {
	t.Helper()
	lock(t, "audit", LockPath)
}

// KafkaBrokers returns the bootstrap address of the test broker
// (AUDITNS_TEST_KAFKA, default 127.0.0.1:19092) after checking that it accepts
// connections; otherwise it skips or fails t. scripts/kafka/start.sh starts one.
func KafkaBrokers(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("AUDITNS_TEST_KAFKA")
	if addr == "" {
		addr = "127.0.0.1:19092"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		Missing(t, RequireKafkaVar, fmt.Sprintf("no Kafka broker at %s (start one with scripts/kafka/start.sh): %v", addr, err))
		return ""
	}
	conn.Close()
	return addr
}

// LockKafka takes the host-wide Kafka test lock (an exclusive flock on
// /run/auditns-test-kafka.lock, or in $TMPDIR without /run) and releases it
// when t ends. Tests that stop, freeze or restart the shared test broker
// take it, so that they run one at a time across packages and processes;
// they are named *Outage* so that other runs can leave them out with
// -skip Outage.
func LockKafka(t testing.TB) {
	t.Helper()
	lock(t, "kafka", "/run/auditns-test-kafka.lock")
}

// lock takes an exclusive flock on path (or on its name in $TMPDIR when
// path's directory does not exist) and releases it when t ends.
func lock(t testing.TB, what, path string) {
	t.Helper()
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		path = filepath.Join(os.TempDir(), filepath.Base(path))
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("%s test lock %s: %v", what, path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("%s test lock %s: %v", what, path, err)
	}
	t.Cleanup(func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	})
}
