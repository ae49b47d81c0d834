package netlink

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"

	"github.com/auditns/auditns/internal/testenv"
)

func kernelRules(t *testing.T) int {
	t.Helper()
	c, err := libaudit.NewAuditClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.GetRules()
	if err != nil {
		t.Fatal(err)
	}
	return len(r)
}

// Unicast: rules load, the marker's EXECVE record arrives, and Close leaves
// the kernel with the rules and pid it had.
func TestUnicastReadsMarkerAndRestoresHost(t *testing.T) {
	testenv.RequireKernelAudit(t)
	before := kernelRules(t)
	key := fmt.Sprintf("auditns-test-%d", rand.Uint32())
	rl, err := BuildRule("-a always,exit -F arch=b64 -S execve -F key=" + key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(Options{Rules: []Rule{rl}, ExcludeSelf: true, Failure: FailurePrintk})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			c.Close()
		}
	})
	if got := kernelRules(t); got != before+c.RulesLoaded() {
		t.Fatalf("kernel has %d rules, want %d", got, before+c.RulesLoaded())
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []Record, 64)
	var stats ReaderStats
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, out, &stats) }()

	marker := fmt.Sprintf("auditns-marker-%d", rand.Uint64())
	if err := exec.Command("/bin/true", marker).Run(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	found := false
	for !found {
		select {
		case batch := <-out:
			for _, r := range batch {
				if r.Type == 1309 && strings.Contains(string(r.Data), marker) { // AUDIT_EXECVE
					found = true
				}
			}
		case <-deadline:
			t.Fatalf("no EXECVE record with %s within 10s (records read %d)", marker, stats.Records.Load())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if got := kernelRules(t); got != before {
		t.Fatalf("after Close the kernel has %d rules, want %d", got, before)
	}
	st := status(t)
	if st.PID != 0 {
		t.Fatalf("audit pid %d still set after Close", st.PID)
	}
}

func status(t *testing.T) *libaudit.AuditStatus {
	c, err := libaudit.NewAuditClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.GetStatus()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMulticastRefusesRules(t *testing.T) {
	rl, err := BuildRule("-w /etc/passwd -p wa -k x")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{Mode: Multicast, Rules: []Rule{rl}})
	if err == nil || !strings.Contains(err.Error(), "multicast mode cannot load rules") {
		t.Fatalf("got %v, want a refusal", err)
	}
}

func TestParseRulesNamesTheLine(t *testing.T) {
	_, _, err := ParseRules(strings.NewReader("# c\n-w /etc/passwd -p wa -k id\n-a always,exit -S nosuchcall\n"), "x.rules")
	if err == nil || !strings.HasPrefix(err.Error(), "x.rules:3: ") {
		t.Fatalf("got %v, want an error naming x.rules:3", err)
	}
	rules, control, err := ParseRules(strings.NewReader("-D\n-b 8192\n-w /etc/shadow -p wa -k id\n"), "y")
	if err != nil || len(rules) != 1 || len(control) != 2 || rules[0].Source != "y:3" {
		t.Fatalf("rules %v control %v err %v", rules, control, err)
	}
}

func TestSettingsAppliedAndRestored(t *testing.T) {
	testenv.RequireKernelAudit(t)
	before := status(t)
	c, err := Open(Options{BacklogLimit: 12345, RateLimit: 0, Failure: FailurePrintk})
	if err != nil {
		t.Fatal(err)
	}
	during := status(t)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	after := status(t)
	if during.BacklogLimit != 12345 || during.Failure != 1 || during.Enabled != 1 || during.BacklogWaitTime != 0 {
		t.Fatalf("settings not applied: %+v", during)
	}
	if after.BacklogLimit != before.BacklogLimit || after.Failure != before.Failure || after.Enabled != before.Enabled || after.PID != 0 || after.BacklogWaitTime != before.BacklogWaitTime {
		t.Fatalf("host not restored:\nbefore %+v\nafter  %+v", before, after)
	}
}

// With backlog_wait_time > 0 the reader waits for a pipeline that is behind
// instead of dropping: a burst far larger than the queue, read only after a
// pause, arrives whole. (With backlog_wait_time 0 the same burst is mostly
// dropped by the reader, which TestReaderDropsWithoutWaitTime holds.)
func TestLosslessReaderWaitsForThePipeline(t *testing.T) {
	got, dropped := burstThroughFullQueue(t, 60000)
	if dropped != 0 || got != burstCalls {
		t.Fatalf("backlog_wait_time 60000: %d of %d exec events read, %d records dropped by the reader", got, burstCalls, dropped)
	}
}

func TestReaderDropsWithoutWaitTime(t *testing.T) {
	got, dropped := burstThroughFullQueue(t, 0)
	if dropped == 0 || got == burstCalls {
		t.Fatalf("backlog_wait_time 0: %d of %d exec events read and %d records dropped; the reader must drop when its queue is full", got, burstCalls, dropped)
	}
}

// The numbers of the events whose SYSCALL records were dropped come in
// markers with the next batch that gets through: every exec of the burst
// is either read or named there, as far as later batches carried them.
func TestReaderNamesTheNumbersItDropped(t *testing.T) {
	got, dropped, named := burstThroughFullQueueNamed(t, 0)
	t.Logf("%d of %d execs read, %d records dropped, %d numbers named", got, burstCalls, dropped, named)
	if dropped == 0 || named == 0 || uint64(named) > dropped {
		t.Fatalf("%d records dropped, %d numbers named", dropped, named)
	}
}

const burstCalls = 300

// burstThroughFullQueue audits the execs of this process's children (the
// kernel never audits the audit daemon itself), runs burstCalls of
// /bin/true while nothing reads the reader's one-batch queue for 300 ms,
// then reads until the records stop coming. It returns the SYSCALL records
// seen and the reader's drop count.
func burstThroughFullQueue(t *testing.T, waitTime int32) (got int, dropped uint64) {
	got, dropped, _ = burstThroughFullQueueNamed(t, waitTime)
	return got, dropped
}

// burstThroughFullQueueNamed also returns how many distinct numbers the
// TypeDropped markers named.
func burstThroughFullQueueNamed(t *testing.T, waitTime int32) (got int, dropped uint64, named int) {
	testenv.RequireKernelAudit(t)
	key := fmt.Sprintf("auditns-burst-%d", rand.Uint32())
	rl, err := BuildRule(fmt.Sprintf("-a always,exit -F arch=b64 -S execve -F ppid=%d -F key=%s", os.Getpid(), key))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(Options{Rules: []Rule{rl}, BacklogWaitTime: waitTime, Failure: FailurePrintk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []Record, 1)
	names := map[uint32]bool{}
	var stats ReaderStats
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, out, &stats) }()

	calls := make(chan struct{})
	go func() {
		defer close(calls)
		for range burstCalls {
			if err := exec.Command("/bin/true").Run(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // the pipeline is behind
	idle := time.NewTimer(time.Second)
	extra := false
	for reading := true; reading; {
		select {
		case batch := <-out:
			for _, r := range batch {
				if r.Type == 1300 && strings.Contains(string(r.Data), key) { // AUDIT_SYSCALL
					got++
				}
				if r.Type == TypeDropped {
					for _, d := range DroppedRecords(r.Data, nil) {
						names[d.Seq] = true
						// An exec looks up its file: items=2 or more.
						if d.Type == 1300 && d.Items < 1 {
							t.Errorf("dropped SYSCALL record %d named with items %d", d.Seq, d.Items)
						}
					}
				}
			}
			idle.Reset(time.Second)
		case <-idle.C:
			if extra {
				reading = false
				break
			}
			// The reader names what it dropped at the head of the next
			// batch that gets through: when the whole burst was dropped
			// (a quiet machine runs it within the 300 ms), one more
			// audited exec makes that batch.
			<-calls
			extra = true
			if err := exec.Command("/bin/true").Run(); err != nil {
				t.Fatal(err)
			}
			idle.Reset(time.Second)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got > 0 {
		got-- // the extra exec, which nothing drops: the queue is read
	}
	return got, stats.Dropped.Load(), len(names)
}
