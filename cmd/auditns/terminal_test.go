package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sys/unix"

	"github.com/auditns/auditns/internal/netlink"
	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/testenv"
	"github.com/auditns/auditns/internal/testenv/kafkatest"
)

// hostileText holds what a terminal would act on: C0 controls (ESC, a
// newline, NUL), a C1 control (CSI, U+009B), a bidi override (U+202E) and a
// byte that is not UTF-8.
const hostileText = "/tmp/\x1b[31mevil\n\x00\xff x\u009b2Jy \u202egnp.exe"

// Every command that prints text the kernel or an audited process chose
// writes it to a terminal escaped and visible. Each command writes to a
// real pseudo-terminal, so the paths taken are those a user's shell takes.
func TestKernelTextIsTerminalSafe(t *testing.T) {
	for _, tc := range []struct {
		name string
		// run runs the command with stdout on the terminal tty and
		// returns the lines that must show the hostile text escaped.
		run  func(t *testing.T, tty *os.File, read func() string) []string
		want []string // escaped forms that must appear on those lines
	}{
		// The registry's records are JSON: the invalid byte is U+FFFD on disk.
		{"ns", runNS(false), []string{`\x1b[31m`, "\\x00\ufffd", `\u009b`, `\u202e`}},
		{"ns --json", runNS(true), []string{`\u001b[31m`, "\\u0000\ufffd", `\u009b`, `\u202e`}},
		{"status", runStatus, []string{`\x1b[1m`, `\u009b`, `\u202e`, `\xff`}},
		{"tail", runTail(false), []string{`\x1b[31m`, `\x00\xff`, `\u009b`, `\u202e`}},
		{"tail --json", runTail(true), []string{`\u001b[31m`, `\u009b`, `\u202e`}},
		{"replay", runReplayTTY, []string{`\u001b[31m`, `\u009b`, `\u202e`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tty, read := openPTY(t)
			got := tc.run(t, tty, read)
			if len(got) == 0 {
				t.Fatal("no line carries the hostile text")
			}
			for _, l := range got {
				terminalSafe(t, l)
				for _, w := range tc.want {
					if !strings.Contains(l, w) {
						t.Errorf("%q not in %q", w, l)
					}
				}
			}
		})
	}
}

// openPTY opens a pseudo-terminal without output processing (no \r added)
// and returns its terminal end and a func that returns what was written
// to it so far.
func openPTY(t *testing.T) (*os.File, func() string) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		testenv.Missing(t, testenv.RequireKernelVar, "no pseudo-terminal: "+err.Error())
	}
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Oflag &^= unix.OPOST
	if err := unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	var out testenv.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(&out, ptmx) // ends with EIO once the terminal end is closed
	}()
	t.Cleanup(func() {
		tty.Close()
		ptmx.Close()
		<-done
	})
	return tty, out.String
}

// containing returns the lines of s that contain sub.
func containing(s, sub string) []string {
	var out []string
	for _, l := range lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// runNS registers a namespace created by a process whose exe is
// hostileText and prints the registry.
func runNS(asJSON bool) func(t *testing.T, tty *os.File, read func() string) []string {
	return func(t *testing.T, tty *os.File, read func() string) []string {
		testenv.RequireRoot(t)
		dir := t.TempDir()
		reg, err := serial.Open(serial.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if reg.Method() != serial.IDKernel {
			reg.Close()
			testenv.Missing(t, testenv.RequireKernelVar, "the registry needs kernel namespace ids (Linux >= 6.18) to register a namespace by id")
		}
		var k serial.KnownSet
		k.NS[serial.UTS] = serial.Known{ID: 1 << 62, Inum: 4026599999}
		if _, err := reg.Identify(os.Getpid(), &k, serial.Cause{EventID: "b:1", Time: time.Now(), Op: "unshare", Exe: hostileText, Types: serial.MaskOf(serial.UTS)}); err != nil {
			t.Fatal(err)
		}
		if err := reg.Close(); err != nil {
			t.Fatal(err)
		}
		cmd := nsCmd()
		args := []string{"--state-dir", dir}
		if asJSON {
			args = append(args, "--json")
		}
		cmd.SetArgs(args)
		cmd.SetOut(tty)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		marker := "unshare by pid"
		if asJSON {
			marker = `"op":"unshare"`
		}
		var got []string
		waitFor(t, 5*time.Second, "the creator's line", func() bool {
			got = containing(read(), marker)
			return len(got) > 0
		})
		return got
	}
}

// runStatus makes this test process the kernel's audit daemon under a
// program name (comm) that is hostile, and points status at a metrics
// endpoint whose health text is hostile.
func runStatus(t *testing.T, tty *os.File, read func() string) []string {
	testenv.RequireKernelAudit(t)
	const comm = "\x1b[1m\u009b\u202e\xff"
	old, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := netlink.Open(netlink.Options{Failure: netlink.FailurePrintk, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := os.WriteFile("/proc/self/comm", []byte(comm), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile("/proc/self/comm", old, 0) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "unhealthy: kafka.brokers: "+comm+"\n")
			return
		}
		io.WriteString(w, "auditns_healthy 0\n")
	}))
	defer srv.Close()
	cmd := statusCmd()
	cmd.SetArgs([]string{"--metrics", strings.TrimPrefix(srv.URL, "http://")})
	cmd.SetOut(tty)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var got []string
	waitFor(t, 5*time.Second, "the daemon and health lines", func() bool {
		got = append(containing(read(), "audit daemon:"), containing(read(), "health:")...)
		return len(got) == 2
	})
	return got
}

// runTail follows a topic that carries an event whose exe, argv, title
// and path are hostile, and a message that is not an event, which tail
// warns about on stderr (the same terminal).
func runTail(asJSON bool) func(t *testing.T, tty *os.File, read func() string) []string {
	return func(t *testing.T, tty *os.File, read func() string) []string {
		t.Setenv("NO_COLOR", "1") // colour is auditns's own escape sequences
		brokers := kafkatest.Brokers(t)
		topic := kafkatest.NewTopic(t, brokers, 1, false)
		kafkatest.Produce(t, brokers, topic,
			kafka.Message{Value: []byte(`{"event":` + hostileText)},
			kafkatest.EventMessage(hostile(kafkatest.Event(1, time.Now().Add(-time.Minute), 13)), 0))
		args := []string{"--kafka-brokers", brokers, "--topic", topic, "--since", "10m"}
		if asJSON {
			args = append(args, "--json")
		}
		cmd := tailCmd()
		cmd.SetArgs(args)
		cmd.SetOut(tty)
		cmd.SetErr(tty)
		ctx, cancel := context.WithCancel(context.Background())
		r := &running{cancel: cancel, done: make(chan error, 1)}
		t.Cleanup(cancel)
		go func() { r.done <- cmd.ExecuteContext(ctx) }()
		var got []string
		waitFor(t, 15*time.Second, "the event's line", func() bool {
			got = containing(read(), "evil")
			return len(got) > 0
		})
		r.cancel()
		if err := r.wait(t); err != nil {
			t.Fatal(err)
		}
		warned := containing(read(), "auditns tail: ")
		warned = slices.DeleteFunc(warned, func(l string) bool { return strings.Contains(l, " following ") })
		if len(warned) == 0 {
			t.Fatalf("no warning on stderr:\n%s", read())
		}
		for _, l := range warned {
			terminalSafe(t, l)
			if !strings.Contains(l, "skipped") {
				t.Errorf("warning not readable: %q", l)
			}
		}
		return got
	}
}

// runReplayTTY replays a topic that carries a hostile event.
func runReplayTTY(t *testing.T, tty *os.File, read func() string) []string {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.NewTopic(t, brokers, 1, false)
	kafkatest.Produce(t, brokers, topic, kafkatest.EventMessage(hostile(kafkatest.Event(1, time.Now().Add(-time.Minute), 13)), 0))
	cmd := replayCmd()
	cmd.SetArgs([]string{"--kafka-brokers", brokers, "--topic", topic, "--from", "10m", "--no-registry", "-q"})
	cmd.SetOut(tty)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var got []string
	waitFor(t, 5*time.Second, "the event's line", func() bool {
		got = containing(read(), "evil")
		return len(got) > 0
	})
	return got
}
