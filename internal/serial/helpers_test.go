package serial

import (
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/testenv"
)

// recorder collects OnRecord calls.
type recorder struct {
	mu   sync.Mutex
	recs []Record
}

func (c *recorder) on(rec *Record) {
	c.mu.Lock()
	c.recs = append(c.recs, *rec)
	c.mu.Unlock()
}

func (c *recorder) bySerial(s uint64) []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Record
	for _, r := range c.recs {
		if r.Serial == s {
			out = append(out, r)
		}
	}
	return out
}

type testReg struct {
	*Registry
	logs *testenv.Buffer
	rec  *recorder
}

// openReg opens a registry in dir with the given method; it is closed when
// the test ends.
func openReg(t testing.TB, dir string, method IDSource, mod ...func(*Options)) testReg {
	t.Helper()
	logs := &testenv.Buffer{}
	rc := &recorder{}
	opts := Options{
		Dir:      dir,
		Method:   method,
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnRecord: rc.on,
		// Tests drive the sweeps themselves.
		SweepDelay:     time.Hour,
		FullSweepEvery: time.Hour,
	}
	for _, m := range mod {
		m(&opts)
	}
	r, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s, %q): %v", dir, method, err)
	}
	t.Cleanup(func() { r.Close() })
	return testReg{r, logs, rc}
}

// readlinkIno returns the inode of /proc/<pid>/ns/<t>.
func readlinkIno(t testing.TB, pid int, name string) uint64 {
	t.Helper()
	l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/" + name)
	if err != nil {
		t.Fatalf("readlink: %v", err)
	}
	ino, ok := parseNSLink([]byte(l))
	if !ok {
		t.Fatalf("bad ns link %q", l)
	}
	return ino
}

func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// startNS runs `unshare args... sleep secs` and returns the pid of the
// process that runs sleep inside the new namespaces (the child of unshare
// when args has --fork), once it runs sleep. The process is killed when the
// test ends; wait() reaps it.
func startNS(t testing.TB, secs string, args ...string) (pid int, wait func()) {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("util-linux unshare is needed: %v", err)
	}
	cmd := exec.Command("unshare", append(args, "sleep", secs)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	var once sync.Once
	wait = func() { once.Do(func() { cmd.Wait() }) }
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		wait()
	})
	fork := false
	for _, a := range args {
		if a == "--fork" || a == "-f" {
			fork = true
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p := cmd.Process.Pid
		if fork {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/task/" + strconv.Itoa(p) + "/children")
			f := strings.Fields(string(b))
			if len(f) == 0 {
				time.Sleep(2 * time.Millisecond)
				continue
			}
			p, _ = strconv.Atoi(f[0])
		}
		if comm(p) == "sleep" {
			return p, wait
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("unshare %v did not start sleep", args)
	return 0, nil
}

// crash stops r as a kill -9 would leave its files: no flush, no clean
// shutdown marker (the sweeper goroutine is stopped so the test does not
// leak it).
func (r testReg) crash() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	close(r.done)
	r.wg.Wait()
	r.releaseAll()
}
