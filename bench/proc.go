package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the bench started. Every child dies with the bench
// (Pdeathsig; the bench's main goroutine is locked to its thread, so the
// "parent thread" of Pdeathsig lives as long as the process) and is in
// its own process group, so Ctrl-C reaches only the bench, which then
// stops the children in order.
type child struct {
	name string
	cmd  *exec.Cmd
	// term is the signal that makes it stop cleanly: SIGTERM for
	// consumers (they remove their rules), SIGKILL for generators.
	term   syscall.Signal
	done   chan struct{}
	err    error
	stdout *lineBuf
	stderr *lineBuf
}

var (
	childrenMu sync.Mutex
	children   = map[*child]bool{}
)

// lineBuf collects a child's output, keeping the lines and, for lines
// with a prefix that the caller watches, the latest one.
type lineBuf struct {
	mu    sync.Mutex
	lines []string
	tee   io.Writer
	keep  int // keep at most this many lines (0: all)
}

func (l *lineBuf) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		l.mu.Lock()
		l.lines = append(l.lines, line)
		if l.keep > 0 && len(l.lines) > 2*l.keep {
			l.lines = append([]string(nil), l.lines[len(l.lines)-l.keep:]...)
		}
		if l.tee != nil {
			fmt.Fprintln(l.tee, line)
		}
		l.mu.Unlock()
	}
}

// last returns the last line with prefix, without the prefix.
func (l *lineBuf) last(prefix string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(l.lines[i], prefix) {
			return strings.TrimPrefix(l.lines[i], prefix), true
		}
	}
	return "", false
}

func (l *lineBuf) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	from := len(l.lines) - n
	if from < 0 {
		from = 0
	}
	return strings.Join(l.lines[from:], "\n")
}

// startChild starts argv with stdin from stdin (nil: /dev/null), output
// collected, and env added to the environment (without AUDITNS_*);
// stderrTee, if set, also receives its stderr.
func startChild(name string, term syscall.Signal, stdin io.Reader, stderrTee io.Writer, env []string, argv ...string) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdin = stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: term, Setpgid: true}
	c := &child{name: name, cmd: cmd, term: term, done: make(chan struct{}),
		stdout: &lineBuf{}, stderr: &lineBuf{tee: stderrTee, keep: 200}}
	so, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	se, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	childrenMu.Lock()
	children[c] = true
	childrenMu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.stdout.consume(so) }()
	go func() { defer wg.Done(); c.stderr.consume(se) }()
	go func() {
		wg.Wait()
		c.err = cmd.Wait()
		childrenMu.Lock()
		delete(children, c)
		childrenMu.Unlock()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends the child its stop signal and waits up to grace, then kills
// it. It returns the child's exit error.
func (c *child) stop(grace time.Duration) error {
	if c.exited() {
		return c.err
	}
	_ = c.cmd.Process.Signal(c.term)
	if c.term == syscall.SIGKILL {
		<-c.done
		return c.err
	}
	select {
	case <-c.done:
		return c.err
	case <-time.After(grace):
	}
	logf("%s (pid %d) did not stop within %v: SIGKILL", c.name, c.pid(), grace)
	_ = c.cmd.Process.Kill()
	<-c.done
	return fmt.Errorf("%s killed after %v: %w", c.name, grace, errors.Join(c.err, errors.New("did not stop")))
}

// stopAllChildren stops every live child: generators first (SIGKILL),
// then consumers (SIGTERM, so that they remove their rules).
func stopAllChildren() {
	childrenMu.Lock()
	var list []*child
	for c := range children {
		list = append(list, c)
	}
	childrenMu.Unlock()
	for _, c := range list {
		if c.term == syscall.SIGKILL {
			_ = c.stop(0)
		}
	}
	for _, c := range list {
		if c.term != syscall.SIGKILL {
			if err := c.stop(30 * time.Second); err != nil {
				logf("stopping %s: %v", c.name, err)
			}
		}
	}
}

// procCPU is utime+stime of pid from /proc/<pid>/stat, in seconds (clock
// ticks of 10 ms: USER_HZ is 100 on Linux).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may
	// contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return float64(ut+st) / 100, nil
}

// procHWM is VmHWM (peak resident set) of pid, in bytes.
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, err := strconv.ParseInt(f[1], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// hostCPU is the machine's busy and steal time so far, in seconds, from
// the first line of /proc/stat.
func hostCPU() (busy, steal float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("malformed /proc/stat")
	}
	var v [8]float64
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("malformed /proc/stat")
		}
		v[i] = float64(n) / 100
	}
	// user nice system idle iowait irq softirq steal
	return v[0] + v[1] + v[2] + v[5] + v[6], v[7], nil
}

// cpuOf is the CPU time of an exited child.
func (c *child) cpuOf() float64 {
	if c.cmd.ProcessState == nil {
		return 0
	}
	return (c.cmd.ProcessState.UserTime() + c.cmd.ProcessState.SystemTime()).Seconds()
}

// noiseMeter tells how much of the machine processes other than the run's
// own used during a run. Known and legitimate: the generator, the
// consumer, kauditd (the kernel thread that moves records to the
// consumer's socket), the Kafka broker and the bench itself. The rest is
// foreign: other tests or builds on the machine, which make a run noisy.
type noiseMeter struct {
	t0            time.Time
	busy0, steal0 float64
	known0        float64
	pids          []int
}

// knownPids are kauditd, the broker (its pid file) and the bench.
func (b *bench) knownPids() []int {
	pids := []int{os.Getpid()}
	if b.kauditd == 0 {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if comm, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err == nil && strings.TrimSpace(string(comm)) == "kauditd" {
				b.kauditd = pid
				break
			}
		}
	}
	if b.kauditd > 0 {
		pids = append(pids, b.kauditd)
	}
	dir := os.Getenv("KAFKA_CACHE_DIR")
	if dir == "" {
		dir = filepath.Join(b.repo, ".cache", "kafka")
	}
	if data, err := os.ReadFile(filepath.Join(dir, "kafka.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && processAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func sumCPU(pids []int) float64 {
	var s float64
	for _, p := range pids {
		if c, err := procCPU(p); err == nil {
			s += c
		}
	}
	return s
}

func (b *bench) startNoise() (*noiseMeter, error) {
	m := &noiseMeter{t0: time.Now(), pids: b.knownPids()}
	var err error
	if m.busy0, m.steal0, err = hostCPU(); err != nil {
		return nil, err
	}
	m.known0 = sumCPU(m.pids)
	return m, nil
}

// stop returns the known processes' CPU (kauditd, broker, bench), the
// foreign CPU (everything else but ours, the generator's and consumer's
// CPU in the window) and the share of the machine the foreign CPU was,
// and the steal time.
func (m *noiseMeter) stop(ours float64) (known, foreign, share, steal float64, err error) {
	busy1, steal1, err := hostCPU()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	known = sumCPU(m.pids) - m.known0
	foreign = (busy1 - m.busy0) - known - ours
	if foreign < 0 {
		foreign = 0 // 10 ms ticks read at slightly different moments
	}
	wall := time.Since(m.t0).Seconds()
	if wall > 0 {
		share = foreign / (wall * float64(runtime.NumCPU()))
	}
	return known, foreign, share, steal1 - m.steal0, nil
}

// waitQuiet waits, up to two minutes, until processes that are not the
// bench's, kauditd or the broker use less than 10% of the machine over a
// second, so that a run does not start in the middle of someone's build.
func (b *bench) waitQuiet(ctx context.Context) {
	deadline := time.Now().Add(b.o.quietWait)
	logged := false
	for {
		m, err := b.startNoise()
		if err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		_, _, share, _, err := m.stop(0)
		if err != nil || share < 0.10 {
			return
		}
		if time.Now().After(deadline) {
			logf("the machine is still busy (other processes at %.0f%%): going on; the runs will say NOISY", share*100)
			return
		}
		if !logged {
			logf("waiting for the machine to be quiet (other processes at %.0f%% of it)", share*100)
			logged = true
		}
	}
}
