package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/testenv"
	"github.com/auditns/auditns/internal/testenv/kafkatest"
)

// hostile makes e's exe, argv and title hostile: terminal escape
// sequences, newlines, NULs, C1 controls, invalid UTF-8, a bidi override.
func hostile(e *event.Event) *event.Event {
	e.Process.Executable = "/tmp/\x1b[31mevil\n\x00\xff"
	e.Process.Args = []string{"\x1b]0;pwned\x07", "x\u009b2Jy", "\u202egnp.exe", "a\nb"}
	e.Process.Title = "\x1b[2J\x7f"
	e.File = &event.File{Path: "/tmp/\x1b[6n"}
	return e
}

// running is a command executing in-process.
type running struct {
	cancel         context.CancelFunc
	done           chan error
	stdout, stderr *testenv.Buffer
}

func start(t *testing.T, cmd *cobra.Command, args ...string) *running {
	t.Helper()
	r := &running{done: make(chan error, 1), stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	t.Cleanup(cancel)
	cmd.SetArgs(args)
	cmd.SetOut(r.stdout)
	cmd.SetErr(r.stderr)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	go func() { r.done <- cmd.ExecuteContext(ctx) }()
	return r
}

// waitFor polls until cond holds or fails t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("command did not end")
		return nil
	}
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// terminalSafe fails t if line holds a control byte, invalid UTF-8 or a C1
// control character.
func terminalSafe(t *testing.T, line string) {
	t.Helper()
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 || c == 0x7f {
			t.Fatalf("control byte %#x in %q", c, line)
		}
	}
	if !utf8.ValidString(line) {
		t.Fatalf("invalid UTF-8 in %q", line)
	}
	for _, r := range line {
		if r >= 0x80 && r <= 0x9f || r == 0x202e {
			t.Fatalf("rune %U in %q", r, line)
		}
	}
}

func TestTailFollowsLiveWithNSFilter(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.NewTopic(t, brokers, 3, false)
	// An old event that must not appear (tail starts from now).
	kafkatest.Produce(t, brokers, topic, kafkatest.EventMessage(kafkatest.Event(1, time.Now().Add(-time.Minute), 13), 0))

	r := start(t, tailCmd(), "--kafka-brokers", brokers, "--topic", topic, "--ns", "net:13")
	waitFor(t, 15*time.Second, "tail to start", func() bool { return strings.Contains(r.stderr.String(), "following") })

	now := time.Now()
	kafkatest.Produce(t, brokers, topic,
		kafkatest.EventMessage(kafkatest.Event(2, now, 13), 0),
		kafkatest.EventMessage(kafkatest.Event(3, now, 0), 1), // net 7: filtered out
		kafkatest.EventMessage(hostile(kafkatest.Event(4, now, 13)), 2),
		kafkatest.EventMessage(kafkatest.Event(5, now, 14), 1), // net 14: filtered out
		kafkatest.EventMessage(kafkatest.Event(2, now, 13), 1), // a duplicate of 2
		kafkatest.EventMessage(kafkatest.Event(6, now, 13), 1),
	)
	waitFor(t, 15*time.Second, "3 lines", func() bool { return len(lines(r.stdout.String())) >= 3 })
	time.Sleep(500 * time.Millisecond) // nothing more may come
	r.cancel()
	if err := r.wait(t); err != nil {
		t.Fatalf("tail returned %v, want nil", err)
	}
	got := lines(r.stdout.String())
	if len(got) != 3 {
		t.Fatalf("got %d lines, want 3 (seq 2, 4, 6):\n%s", len(got), r.stdout.String())
	}
	seen := map[string]bool{}
	for _, l := range got {
		terminalSafe(t, l)
		if !strings.Contains(l, " web-1 pid:4 net:13 mnt:8 uid=0(root) ") {
			t.Errorf("line without net:13: %s", l)
		}
		m := regexp.MustCompile(` pid=(\d+) `).FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("no pid in %s", l)
		}
		seen[m[1]] = true
	}
	if !seen["1002"] || !seen["1004"] || !seen["1006"] {
		t.Fatalf("want the events of pids 1002, 1004, 1006: %v", seen)
	}
	// The hostile event, escaped.
	want := `exe=/tmp/\x1b[31mevil\n\x00\xff argv=["\x1b]0;pwned\x07" x\u009b2Jy \u202egnp.exe a\nb] path=/tmp/\x1b[6n success keys=exec`
	if !strings.Contains(r.stdout.String(), want) {
		t.Fatalf("hostile line not escaped as expected:\n%s\nwant it to contain\n%s", r.stdout.String(), want)
	}
}

func TestTailJSONIsTheTopicValue(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.NewTopic(t, brokers, 3, false)
	since := time.Now().Add(-10 * time.Minute)
	msgs := []kafka.Message{
		kafkatest.EventMessage(hostile(kafkatest.Event(1, since.Add(time.Minute), 13)), 0),
		kafkatest.EventMessage(kafkatest.Event(2, since.Add(2*time.Minute), 0), 1),
	}
	kafkatest.Produce(t, brokers, topic, msgs...)

	// --since finds the two old events; a live one follows.
	r := start(t, tailCmd(), "--kafka-brokers", brokers, "--topic", topic, "--json", "--since", "10m")
	waitFor(t, 15*time.Second, "tail to start", func() bool { return strings.Contains(r.stderr.String(), "following") })
	live := kafkatest.EventMessage(hostile(kafkatest.Event(3, time.Now(), 13)), 2)
	kafkatest.Produce(t, brokers, topic, live)
	msgs = append(msgs, live)
	waitFor(t, 15*time.Second, "3 lines", func() bool { return len(lines(r.stdout.String())) >= 3 })
	r.cancel()
	if err := r.wait(t); err != nil {
		t.Fatalf("tail returned %v", err)
	}
	got := lines(r.stdout.String())
	if len(got) != 3 {
		t.Fatalf("got %d lines, want 3", len(got))
	}
	values := map[string]bool{}
	for _, m := range msgs {
		values[string(m.Value)] = true
	}
	for _, l := range got {
		if !json.Valid([]byte(l)) {
			t.Fatalf("not valid JSON: %s", l)
		}
		if !values[l] {
			t.Fatalf("line is not byte-equal to a topic value:\n%s", l)
		}
		if strings.ContainsAny(l, "\x1b\x00\n") {
			t.Fatalf("control character in %q", l)
		}
	}
}

func TestTailExitsZeroOnSIGTERM(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.NewTopic(t, brokers, 1, false)
	r := start(t, tailCmd(), "--kafka-brokers", brokers, "--topic", topic)
	waitFor(t, 15*time.Second, "tail to start", func() bool { return strings.Contains(r.stderr.String(), "following") })
	// tail's signal.NotifyContext is registered while it runs: the signal
	// ends tail, not the test binary.
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t); err != nil {
		t.Fatalf("tail returned %v on SIGTERM, want nil (status 0)", err)
	}
}

func TestTailUnreachableBroker(t *testing.T) {
	start := time.Now()
	cmd := tailCmd()
	cmd.SetArgs([]string{"--kafka-brokers", "127.0.0.1:1,127.0.0.1:2"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "kafka.brokers: ") || !strings.Contains(msg, "127.0.0.1:1,127.0.0.1:2") || strings.Contains(msg, "\n") {
		t.Fatalf("want one line naming kafka.brokers and the brokers, got %q", msg)
	}
	var u usageError
	if errors.As(err, &u) {
		t.Fatal("an unreachable broker is not bad input (exit 1, not 2)")
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestTailBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"--kafka-brokers", "127.0.0.1:1", "--ns", "nett:13"},
		{"--kafka-brokers", "127.0.0.1:1", "--since", "yesterday"},
		{"--kafka-brokers", "127.0.0.1:1", "--exe", "[x"},
		{"--kafka-brokers", "nonsense"},
		{},
	} {
		cmd := tailCmd()
		cmd.SetArgs(args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		t.Setenv("AUDITNS_KAFKA_BROKERS", "")
		err := cmd.Execute()
		var u usageError
		if !errors.As(err, &u) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: err %v, want a one-line usage error (exit 2)", args, err)
		}
	}
}
