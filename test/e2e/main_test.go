package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/testenv"
)

// binary is auditns built for tests that run it as a separate process
// (kill -9); built once, on first use.
var binary string

func TestMain(m *testing.M) {
	if spec := os.Getenv("AUDITNS_E2E_GENERATOR"); spec != "" {
		generate(spec)
		return
	}
	if dir := os.Getenv("AUDITNS_E2E_CONFORM"); dir != "" {
		conformChild(dir)
		return
	}
	code := m.Run()
	if binary != "" {
		os.RemoveAll(filepath.Dir(binary))
	}
	os.Exit(code)
}

func auditnsBinary(t *testing.T) string {
	t.Helper()
	if binary != "" {
		return binary
	}
	dir, err := os.MkdirTemp("", "auditns-e2e-bin")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "auditns")
	cmd := exec.Command("go", "build", "-o", out, "github.com/auditns/auditns/cmd/auditns")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	binary = out
	return out
}

// generate is a child process that, once its stdin is closed, makes
// audited getppid calls at rate per second for the given duration, then
// prints how many it made. spec: "RATE:DURATION", or "burst:N" for N calls
// as fast as it can.
func generate(spec string) {
	rateS, durS, _ := strings.Cut(spec, ":")
	if rateS == "burst" || rateS == "openburst" {
		n, _ := strconv.Atoi(durS)
		runtime.LockOSThread()
		buf := make([]byte, 1)
		os.Stdin.Read(buf)
		for range n {
			if rateS == "burst" {
				syscall.Getppid()
			} else if fd, err := syscall.Open("/dev/null", syscall.O_RDONLY, 0); err == nil {
				syscall.Close(fd)
			}
		}
		fmt.Println(n)
		return
	}
	rate, _ := strconv.Atoi(rateS)
	dur, _ := time.ParseDuration(durS)
	runtime.LockOSThread()
	buf := make([]byte, 1)
	os.Stdin.Read(buf) // wait for "go" (EOF)
	start := time.Now()
	n := 0
	for time.Since(start) < dur {
		want := int(time.Since(start).Seconds() * float64(rate))
		for n < want {
			syscall.Getppid()
			n++
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Println(n)
}

// generator starts a getppid generator and returns it with the rule that
// audits its calls, keyed key.
type generator struct {
	cmd   *exec.Cmd
	stdin interface{ Close() error }
	out   *strings.Builder
	Rule  string
}

func newGenerator(t *testing.T, rate int, dur time.Duration, key string) *generator {
	t.Helper()
	return newGeneratorSpec(t, fmt.Sprintf("%d:%s", rate, dur), key)
}

// newBurst starts a generator of n getppid calls as fast as it can.
func newBurst(t *testing.T, n int, key string) *generator {
	t.Helper()
	return newGeneratorSpec(t, fmt.Sprintf("burst:%d", n), key)
}

// newOpenBurst starts a generator of n opens of /dev/null (each closed) as
// fast as it can: events with records in the middle (CWD, PATH). Its Rule
// audits the opens (openat: the syscall open(2) is made with).
func newOpenBurst(t *testing.T, n int, key string) *generator {
	t.Helper()
	g := newGeneratorSpec(t, fmt.Sprintf("openburst:%d", n), key)
	g.Rule = fmt.Sprintf("-a always,exit -F arch=b64 -S openat -F pid=%d -F key=%s", g.cmd.Process.Pid, key)
	return g
}

func newGeneratorSpec(t *testing.T, spec, key string) *generator {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "AUDITNS_E2E_GENERATOR="+spec)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	g := &generator{cmd: cmd, stdin: in, out: &strings.Builder{}}
	cmd.Stdout = g.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	g.Rule = fmt.Sprintf("-a always,exit -F arch=b64 -S getppid -F pid=%d -F key=%s", cmd.Process.Pid, key)
	return g
}

func (g *generator) Go() { g.stdin.Close() }

// Wait returns how many calls the generator made.
func (g *generator) Wait(t *testing.T) int {
	t.Helper()
	if err := g.cmd.Wait(); err != nil {
		t.Fatalf("generator: %v", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(g.out.String()))
	if err != nil {
		t.Fatalf("generator output %q", g.out.String())
	}
	return n
}

// process is auditns running as its own process.
type process struct {
	cmd    *exec.Cmd
	stderr *testenv.Buffer
	exited chan struct{}
}

func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	p, err := startProcessErr(t, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tryStartProcess is startProcess that returns nil, with a log line, when
// auditns exits at start-up; its standard output goes to stdout (nil:
// /dev/null).
func tryStartProcess(t *testing.T, stdout *os.File, args ...string) *process {
	t.Helper()
	p, err := startProcessErr(t, stdout, args...)
	if err != nil {
		t.Log(err)
		return nil
	}
	return p
}

func startProcessErr(t *testing.T, stdout *os.File, args ...string) (*process, error) {
	t.Helper()
	cmd := exec.Command(auditnsBinary(t), args...)
	p := &process{cmd: cmd, stderr: &testenv.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop(t, syscall.SIGTERM) })
	// Ready when it logs its sink.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.stderr.String(), "msg=sink") {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("auditns exited at start-up:\n%s", p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("auditns did not start:\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p, nil
}

// stop sends sig and waits for the process to exit.
func (p *process) stop(t *testing.T, sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("auditns did not exit on %v within 30s", sig)
	}
}
