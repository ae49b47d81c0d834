// Command bench measures auditns against the kernel's audit subsystem, as
// root, in one invocation: two workloads (a getppid storm and an exec
// storm), each under one audit rule, consumed in turn by a plain go-libaudit
// consumer (the ceiling), auditns with the file sink and auditns with the
// Kafka sink; then end-to-end latency at a steady 5,000 events/s; then a
// CPU profile of auditns during the syscall storm. It prints a table and
// writes it into docs/PERFORMANCE.md.
//
//	go run ./bench            # or: make bench
//	go run ./bench -quick     # N/10, for a smoke run
//
// The kernel's audit subsystem is one global resource: the bench holds the
// project's audit lock (/run/auditns-test-audit.lock) for the whole run,
// and after every run, on error and on Ctrl-C, stops its children and
// checks with `auditns status --json` that no rule and no audit daemon is
// left and that the kernel's settings are as it found them.
//
// The same binary is also the workload generators, the baseline consumer
// and an in-process auditns under the CPU profiler (subcommands gen-syscall,
// gen-exec, baseline, pprof-auditns), so that each runs in its own process
// with its own CPU time and peak RSS.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "gen-syscall":
			genSyscall(os.Args[2:])
			return
		case "gen-exec":
			genExec(os.Args[2:])
			return
		case "gen-mixed":
			genMixed(os.Args[2:])
			return
		case "gen-mixed-worker":
			mixedWorker(os.Args[2:])
			return
		case "baseline":
			runBaseline(os.Args[2:])
			return
		case "pprof-auditns":
			runPprofAuditns(os.Args[2:])
			return
		}
	}
	os.Exit(benchMain(os.Args[1:]))
}

var logStart = time.Now()

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %6.1fs: %s\n", time.Since(logStart).Seconds(), fmt.Sprintf(format, args...))
}

type bench struct {
	o          options
	ctx        context.Context
	host       *hostState
	auditnsBin string
	// auditnsBinB is -auditns-b's (consumer file-b).
	auditnsBinB string
	mixedDir    string // the mixed workload's directory (makeMixedDir)
	pprofBin    string
	self        string
	repo        string
	tmp         string
	stamp       string
	args        []string

	runs      []*runResult
	lats      []*latResult
	profiles  []*profileResult
	discarded []string // noisy runs run again
	kauditd   int
	seq       int
	topics    map[string]bool // created and not yet deleted
}

func (b *bench) run() (err error) {
	if os.Geteuid() != 0 {
		return errors.New("the bench needs root (CAP_AUDIT_CONTROL to load rules, CAP_SYS_PTRACE for auditns's enrichment)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b.ctx = ctx
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	if b.repo, err = repoRoot(); err != nil {
		return err
	}
	if b.tmp, err = os.MkdirTemp("", "auditns-bench-"); err != nil {
		return err
	}
	defer func() {
		if b.o.keep {
			logf("kept %s", b.tmp)
		} else {
			os.RemoveAll(b.tmp)
		}
	}()
	if err := b.buildAuditns(); err != nil {
		return err
	}
	if b.o.auditnsB != "" {
		if b.auditnsBinB, err = filepath.Abs(b.o.auditnsB); err != nil {
			return err
		}
	}
	if has(b.o.workloads, "mixed") {
		b.mixedDir = filepath.Join(b.tmp, "mixed")
		if err := makeMixedDir(b.mixedDir); err != nil {
			return fmt.Errorf("mixed workload's directory: %w", err)
		}
	}
	if has(b.o.consumers, "kafka") {
		if err := b.ensureKafka(); err != nil {
			return err
		}
	}

	unlock, err := flock(auditLockPath, "audit")
	if err != nil {
		return err
	}
	defer unlock()
	if b.host, err = snapshotHost(); err != nil {
		return err
	}
	in := b.host.status
	logf("kernel audit as found: enabled=%d pid=%d rules=%d backlog_limit=%d backlog_wait_time=%d failure=%d lost=%d",
		in.Enabled, in.PID, len(b.host.rules), in.BacklogLimit, in.BacklogWaitTime, in.Failure, in.Lost)
	defer func() {
		stopAllChildren()
		if !b.o.keep {
			// Topics of runs that failed before they were counted.
			for t := range b.topics {
				deleteTopics(b.o.kafkaAddr, t, t+".ns")
			}
		}
		clean, cerr := b.checkClean()
		if cerr != nil {
			logf("%v", cerr)
			err = errors.Join(err, cerr)
		} else {
			logf("host clean (%s): `auditns status` shows rules loaded: %d, audit daemon: none, settings as found", clean, len(b.host.rules))
		}
	}()

	if err := b.runStorms(); err != nil {
		return err
	}
	if b.o.latency {
		if err := b.runLatency(); err != nil {
			return err
		}
	}
	if b.o.profile {
		if err := b.runProfiles(); err != nil {
			return err
		}
	}
	return b.report()
}

// runStorms runs every workload with every consumer, interleaved over the
// rounds; a noisy run is run again.
func (b *bench) runStorms() error {
	for rep := 1; rep <= b.o.repeat; rep++ {
		for _, w := range b.workloads() {
			for _, c := range []string{"baseline", "file", "file-b", "kafka"} {
				if !has(b.o.consumers, c) {
					continue
				}
				for attempt := 0; ; attempt++ {
					b.waitQuiet(b.ctx)
					r, err := b.storm(w, c, false, rep)
					if err != nil {
						return fmt.Errorf("%s storm, %s, run %d: %w", w.name, c, rep, err)
					}
					logf("%s", r.summary())
					if r.Noisy && attempt < b.o.noisyRetries {
						b.discarded = append(b.discarded, fmt.Sprintf("%s storm / %s run %d (other processes at %.0f%%)", r.Workload, r.Consumer, r.Run, r.ForeignShare*100))
						logf("run discarded as noisy; running it again")
						continue
					}
					b.runs = append(b.runs, r)
					break
				}
			}
		}
	}
	return nil
}

// runLatency runs the latency measurement with every consumer.
func (b *bench) runLatency() error {
	for rep := 1; rep <= b.o.latencyRepeat; rep++ {
		for _, c := range []string{"baseline", "file", "file-flush", "kafka"} {
			flush := time.Duration(0)
			if c == "file-flush" {
				if b.o.extraFlush <= 0 || !has(b.o.consumers, "file") {
					continue
				}
				flush = b.o.extraFlush
			} else if !has(b.o.consumers, c) {
				continue
			}
			for attempt := 0; ; attempt++ {
				b.waitQuiet(b.ctx)
				l, err := b.latencyRun(strings.TrimSuffix(c, "-flush"), flush, rep)
				if err != nil {
					return fmt.Errorf("latency, %s, run %d: %w", c, rep, err)
				}
				logf("latency %s, run %d: %d events, p50 %.2f ms, p99 %.2f ms, max %.2f ms; other processes at %.0f%%; %s %s",
					l.Consumer, rep, l.Stats.N, l.Stats.P50, l.Stats.P99, l.Stats.Max, l.ForeignShare*100, l.Stalls, l.Note)
				if l.Noisy && attempt < b.o.noisyRetries {
					b.discarded = append(b.discarded, fmt.Sprintf("latency / %s run %d (other processes at %.0f%%)", l.Consumer, l.Run, l.ForeignShare*100))
					logf("run discarded as noisy; running it again")
					continue
				}
				b.lats = append(b.lats, l)
				break
			}
		}
	}
	return nil
}

// runProfiles runs the profiled storms.
func (b *bench) runProfiles() error {
	for _, pr := range []struct{ workload, sink string }{{"syscall", "file"}, {"syscall", "kafka"}, {"exec", "file"}} {
		w, ok := b.workload(pr.workload)
		if !ok || !has(b.o.consumers, pr.sink) || !has(b.o.profileSinks, pr.sink) {
			continue
		}
		b.waitQuiet(b.ctx)
		if err := b.profileRun(w, pr.sink); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	return nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the bench inside the auditns module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}

// buildAuditns builds the auditns under test and, for the profile, this
// bench's pprof-auditns from the same sources. With -src HEAD (the
// default) the sources are the last commit (git archive), so that the
// figures belong to a commit and not to whatever others are editing in
// the working tree; the bench's own sources are copied in from the
// working tree.
func (b *bench) buildAuditns() error {
	b.pprofBin = b.self
	if b.o.auditnsBin != "" {
		p, err := filepath.Abs(b.o.auditnsBin)
		b.auditnsBin = p
		return err
	}
	src := b.repo
	switch b.o.src {
	case "worktree":
	case "HEAD":
		src = filepath.Join(b.tmp, "src")
		if err := os.MkdirAll(filepath.Join(src, "bench"), 0o755); err != nil {
			return err
		}
		arch := exec.Command("sh", "-c", `git -C "$1" archive HEAD | tar -x -C "$2"`, "sh", b.repo, src)
		arch.Stderr = os.Stderr
		if err := arch.Run(); err != nil {
			return fmt.Errorf("git archive HEAD: %w", err)
		}
		files, err := filepath.Glob(filepath.Join(b.repo, "bench", "*.go"))
		if err != nil {
			return err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(src, "bench", filepath.Base(f)), data, 0o644); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("-src: expected HEAD or worktree, got %q", b.o.src)
	}
	b.auditnsBin = filepath.Join(b.tmp, "auditns")
	b.pprofBin = filepath.Join(b.tmp, "bench-pprof")
	for _, t := range [][2]string{{b.auditnsBin, "./cmd/auditns"}, {b.pprofBin, "./bench"}} {
		logf("go build -o %s %s (sources: %s)", t[0], t[1], b.o.src)
		cmd := exec.Command("go", "build", "-o", t[0], t[1])
		cmd.Dir = src
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", t[1], err)
		}
	}
	return nil
}

// workload is one storm.
type workload struct {
	name    string // "syscall" | "syscall-paced" | "exec" | "mixed"
	n       int
	syscall string  // the audited syscall's name in auditns's events; "": any
	rate    float64 // generator pacing, events/s; 0: as fast as it can
}

func (b *bench) workloads() []workload {
	var out []workload
	if has(b.o.workloads, "syscall") {
		out = append(out, workload{"syscall", b.o.syscalls, "getppid", 0})
	}
	if has(b.o.workloads, "syscall-paced") && b.o.pacedRate > 0 {
		out = append(out, workload{"syscall-paced", int(b.o.pacedRate * b.o.pacedDur.Seconds()), "getppid", b.o.pacedRate})
	}
	if has(b.o.workloads, "exec") {
		out = append(out, workload{"exec", b.o.execs, "execve", 0})
	}
	if has(b.o.workloads, "mixed") {
		out = append(out, workload{"mixed", b.o.mixed, "", 0})
	}
	return out
}

func (b *bench) workload(name string) (workload, bool) {
	for _, w := range b.workloads() {
		if w.name == name {
			return w, true
		}
	}
	return workload{}, false
}

// rules are the audit rules of a run, filtered on the generator's pid:
// one for the storms, three for the mixed workload (mixedRules).
func (b *bench) rules(w workload, genPid int) []string {
	switch w.name {
	case "exec":
		return []string{fmt.Sprintf("-a always,exit -F arch=b64 -S execve -F ppid=%d -k %s", genPid, benchKey)}
	case "mixed":
		return mixedRules(b.mixedDir, genPid)
	}
	return []string{fmt.Sprintf("-a always,exit -F arch=b64 -S getppid -F pid=%d -k %s", genPid, benchKey)}
}

// generator is a started, waiting workload generator.
type generator struct {
	*child
	goPipe *os.File
}

func (b *bench) startGenerator(w workload, n int, rate float64) (*generator, error) {
	r, wr, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	max := b.o.timeout.String()
	var argv []string
	switch {
	case w.name == "mixed":
		argv = []string{b.self, "gen-mixed", "-n", strconv.Itoa(n), "-procs", strconv.Itoa(b.o.mixedProcs), "-dir", b.mixedDir, "-max", max}
	case w.syscall == "execve":
		argv = []string{b.self, "gen-exec", "-n", strconv.Itoa(n), "-max", max}
	default:
		argv = []string{b.self, "gen-syscall", "-n", strconv.Itoa(n), "-rate", strconv.FormatFloat(rate, 'f', -1, 64), "-max", max}
	}
	c, err := startChild("generator", syscall.SIGKILL, r, nil, nil, argv...)
	r.Close()
	if err != nil {
		wr.Close()
		return nil, err
	}
	g := &generator{child: c, goPipe: wr}
	if w.name == "mixed" {
		// Its workers are started before the rules are loaded.
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, ok := g.stdout.last("READY"); ok {
				break
			}
			if g.exited() || time.Now().After(deadline) {
				g.stop(0)
				return nil, fmt.Errorf("mixed generator not ready (%v): %s", g.err, g.stderr.tail(20))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return g, nil
}

// start tells the generator to go.
func (g *generator) start() error {
	_, err := g.goPipe.Write([]byte{1})
	g.goPipe.Close()
	return err
}

func (g *generator) wait(ctx context.Context, timeout time.Duration) (*genResult, error) {
	select {
	case <-g.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(timeout):
		_ = g.stop(0)
		return nil, fmt.Errorf("generator did not finish within %v", timeout)
	}
	line, ok := g.stdout.last("{")
	if !ok {
		return nil, fmt.Errorf("generator: no result (%v): %s", g.err, g.stderr.tail(20))
	}
	var res genResult
	if err := json.Unmarshal([]byte("{"+line), &res); err != nil {
		return nil, fmt.Errorf("generator result %q: %w", line, err)
	}
	if res.Error != "" {
		return &res, fmt.Errorf("generator: %s", res.Error)
	}
	return &res, nil
}

// ensureKafka checks the broker and, if it does not answer and
// -kafka-start is on, starts the project's test broker.
func (b *bench) ensureKafka() error {
	err := kafkaReachable(b.o.kafkaAddr)
	if err == nil {
		return nil
	}
	if !b.o.kafkaStart {
		return fmt.Errorf("no Kafka broker at %s (start one with `eval \"$(scripts/kafka/start.sh)\"`, or pass -no-kafka): %w", b.o.kafkaAddr, err)
	}
	logf("no Kafka broker at %s: scripts/kafka/start.sh", b.o.kafkaAddr)
	cmd := exec.Command(filepath.Join(b.repo, "scripts/kafka/start.sh"))
	cmd.Dir = b.repo
	cmd.Stderr = os.Stderr
	out, serr := cmd.Output()
	if serr != nil {
		return fmt.Errorf("scripts/kafka/start.sh: %w", serr)
	}
	got := strings.TrimPrefix(strings.TrimSpace(string(out)), "KAFKA_BROKERS=")
	if got != b.o.kafkaAddr {
		return fmt.Errorf("scripts/kafka/start.sh started a broker at %s, not at %s", got, b.o.kafkaAddr)
	}
	return kafkaReachable(b.o.kafkaAddr)
}

// noisyShare is the share of the machine that other processes may use
// during a run before it is called noisy.
const noisyShare = 0.05
