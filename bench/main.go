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
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
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

type options struct {
	syscalls, execs   int
	mixed, mixedProcs int
	auditnsB          string
	quick             bool
	rate              float64
	latencyDur        time.Duration
	kafkaAddr         string
	noKafka           bool
	kafkaStart        bool
	src               string
	auditnsBin        string
	doc               string
	profile           bool
	latency           bool
	fileFlush         time.Duration
	backlogWait       int
	timeout           time.Duration
	settle            time.Duration
	workloads         string
	consumers         string
	as                string
	keep              bool
	verbose           bool
	jsonOut           string
	repeat            int
	extraFlush        time.Duration
	latencyRepeat     int
	pacedRate         float64
	pacedDur          time.Duration
	env               envList
	noisyRetries      int
	quietWait         time.Duration
	profileSinks      string
}

// envList is the repeatable -env flag.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }
func (e *envList) Set(v string) error {
	if !(strings.HasPrefix(v, "AUDITNS_") || strings.HasPrefix(v, "GO")) || !strings.Contains(v, "=") {
		return fmt.Errorf("expected AUDITNS_KEY=VALUE or a Go runtime variable (GOMAXPROCS=1, GOGC=200, GODEBUG=...), got %q", v)
	}
	*e = append(*e, v)
	return nil
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

func benchMain(args []string) int {
	// Children get Pdeathsig, which fires when the thread that forked them
	// exits: the main goroutine, which starts every child, stays on one
	// thread that lives as long as the process. (Only here: the
	// subcommands, pprof-auditns above all, must schedule as auditns does.)
	runtime.LockOSThread()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	defKafka := os.Getenv("KAFKA_BROKERS")
	if defKafka == "" {
		defKafka = os.Getenv("AUDITNS_TEST_KAFKA")
	}
	if defKafka == "" {
		defKafka = "127.0.0.1:19092"
	}
	fs.IntVar(&o.syscalls, "syscalls", 200000, "getppid calls in the syscall storm")
	fs.IntVar(&o.execs, "execs", 3000, "fork+exec of /bin/true in the exec storm")
	fs.IntVar(&o.mixed, "mixed", 48000, "audited syscalls of the mixed workload, over all its processes")
	fs.IntVar(&o.mixedProcs, "mixed-procs", 6, "processes of the mixed workload, in parallel")
	fs.StringVar(&o.auditnsB, "auditns-b", "", "a second auditns binary, measured with the file sink in the storms beside the first (consumer file-b, interleaved): an A/B of two builds in the same run")
	fs.BoolVar(&o.quick, "quick", false, "N/10 for both storms and a 3 s latency run (CI smoke); does not write the doc unless -doc is given")
	fs.Float64Var(&o.rate, "rate", 5000, "events/s of the latency run")
	fs.DurationVar(&o.latencyDur, "latency-duration", 10*time.Second, "length of the latency run")
	fs.StringVar(&o.kafkaAddr, "kafka", defKafka, "Kafka bootstrap broker (default $KAFKA_BROKERS, $AUDITNS_TEST_KAFKA or 127.0.0.1:19092; start one with scripts/kafka/start.sh)")
	fs.BoolVar(&o.noKafka, "no-kafka", false, "skip the Kafka sink")
	fs.BoolVar(&o.kafkaStart, "kafka-start", true, "when the broker does not answer, start it with scripts/kafka/start.sh (it is shared: another run of scripts/test.sh may stop it)")
	fs.StringVar(&o.auditnsBin, "auditns", "", "auditns binary to measure; empty: build ./cmd/auditns (see -src) into a temporary directory")
	fs.StringVar(&o.src, "src", "HEAD", "sources of the auditns under test: HEAD (git archive of the last commit) or worktree (the working tree, others' uncommitted edits included)")
	fs.StringVar(&o.doc, "doc", "docs/PERFORMANCE.md", "Markdown file to write the results into (between the bench markers); empty: none")
	fs.BoolVar(&o.profile, "profile", true, "CPU- and heap-profile auditns during an extra syscall storm (file and Kafka sinks) and exec storm (file sink)")
	fs.StringVar(&o.profileSinks, "profile-sinks", "file,kafka", "the sinks to profile")
	fs.BoolVar(&o.latency, "latency", true, "run the latency measurement")
	fs.IntVar(&o.backlogWait, "backlog-wait", 60000, "backlog_wait_time in jiffies for every consumer (ceiling and auditns alike): above 0 the kernel holds the generator while the consumer is behind instead of dropping records, so a full-speed storm measures how fast each consumer drains; 0 lets the kernel drop (and count lost)")
	fs.DurationVar(&o.fileFlush, "file-flush", 0, "output.flush_interval for the file sink; 0: auditns's default")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "the longest one run may wait for its consumer")
	fs.DurationVar(&o.settle, "settle", 3*time.Second, "a consumer whose count has not moved for this long has delivered all it will")
	fs.StringVar(&o.workloads, "workloads", "syscall,syscall-paced,exec,mixed", "workloads to run")
	fs.Float64Var(&o.pacedRate, "paced-rate", 10000, "events/s of the syscall-paced storm, a rate the ceiling carries without loss (0: none)")
	fs.DurationVar(&o.pacedDur, "paced-duration", 10*time.Second, "length of the syscall-paced storm")
	fs.IntVar(&o.latencyRepeat, "latency-repeat", 3, "runs of each latency measurement (medians are reported); -quick sets 1")
	fs.StringVar(&o.consumers, "consumers", "baseline,file,kafka", "consumers to run")
	fs.StringVar(&o.as, "as", "", "the command to record in the doc (make bench sets it)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (outputs, logs, configs, profiles) and the Kafka topics")
	fs.BoolVar(&o.verbose, "v", false, "copy the consumers' logs to stderr")
	fs.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	fs.DurationVar(&o.quietWait, "quiet-wait", 2*time.Minute, "the longest to wait, before each run, for other processes to use under 10% of the machine")
	fs.IntVar(&o.noisyRetries, "noisy-retries", 2, "run a run again, up to this many times, when other processes used more than 5% of the machine during it")
	fs.Var(&o.env, "env", "AUDITNS_KEY=VALUE (or GOMAXPROCS, GOGC, GODEBUG ...) for every auditns run, over the bench's configuration (repeatable), e.g. -env AUDITNS_AUDIT_STATUS_INTERVAL=10s")
	fs.IntVar(&o.repeat, "repeat", 3, "runs of each storm with each consumer, interleaved (medians are reported); -quick sets 1")
	fs.DurationVar(&o.extraFlush, "latency-extra-flush", 10*time.Millisecond, "an extra file-sink latency run with this output.flush_interval (0: none), to separate the pipeline from the flush interval")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	docSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "doc" {
			docSet = true
		}
	})
	repeatSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "repeat" {
			repeatSet = true
		}
	})
	if o.repeat < 1 {
		o.repeat = 1
	}
	if o.latencyRepeat < 1 {
		o.latencyRepeat = 1
	}
	if o.quick {
		if !repeatSet {
			o.repeat = 1
		}
		o.latencyRepeat = 1
		o.pacedDur /= 10
		o.syscalls /= 10
		o.execs /= 10
		o.mixed /= 10
		if o.latencyDur > 3*time.Second {
			o.latencyDur = 3 * time.Second
		}
		if !docSet {
			o.doc = ""
		}
	}
	if o.noKafka {
		o.consumers = strings.ReplaceAll(o.consumers, "kafka", "")
	}
	if o.auditnsB != "" && has(o.consumers, "file") && !has(o.consumers, "file-b") {
		o.consumers += ",file-b"
	}
	b := &bench{o: o, args: args, stamp: time.Now().UTC().Format("20060102-150405"), topics: map[string]bool{}}
	if err := b.run(); err != nil {
		logf("FAILED: %v", err)
		return 1
	}
	return 0
}

func has(list, item string) bool {
	for _, s := range strings.Split(list, ",") {
		if strings.TrimSpace(s) == item {
			return true
		}
	}
	return false
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
	if b.o.latency {
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
	}
	if b.o.profile {
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
	}
	return b.report()
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

// consumer is a running consumer under test.
type consumer struct {
	*child
	kind     string // baseline | file | kafka
	dir      string
	out      string // file sink
	metrics  string // auditns's metrics.listen
	topic    string // kafka events topic
	nsTopic  string
	counter  *lineCounter
	baseline *baselineResult
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (b *bench) startConsumer(name, kind string, rules []string, w workload, latency bool, pprofOut string, flush time.Duration) (*consumer, error) {
	// Unique per start: a run run again (noisy) gets a fresh directory,
	// state and topic (Kafka deletes topics asynchronously).
	b.seq++
	name = fmt.Sprintf("%s-%02d", name, b.seq)
	dir := filepath.Join(b.tmp, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var tee io.Writer
	if b.o.verbose {
		tee = os.Stderr
	}
	c := &consumer{kind: kind, dir: dir}
	if kind == "baseline" {
		argv := []string{b.self, "baseline", "-wait", strconv.Itoa(b.o.backlogWait)}
		for _, r := range rules {
			argv = append(argv, "-rule", r)
		}
		if b.o.keep {
			argv = append(argv, "-record", filepath.Join(dir, "records.txt"))
		}
		if latency {
			argv = append(argv, "-latency")
		}
		ch, err := startChild("baseline", syscall.SIGTERM, nil, tee, nil, argv...)
		if err != nil {
			return nil, err
		}
		c.child = ch
		return c, nil
	}
	rulesFile := filepath.Join(dir, "bench.rules")
	if err := os.WriteFile(rulesFile, []byte("# the bench's rules\n"+strings.Join(rules, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c.metrics = port
	var y strings.Builder
	fmt.Fprintf(&y, "mode: unicast\nstate_dir: %s\nlog:\n  level: info\n", filepath.Join(dir, "state"))
	fmt.Fprintf(&y, "audit:\n  rules_file: %s\n  backlog_wait_time: %d\n", rulesFile, b.o.backlogWait)
	fmt.Fprintf(&y, "enrich:\n  namespaces: true\n  ns_rules: false\n")
	fmt.Fprintf(&y, "metrics:\n  listen: %s\n", port)
	switch kind {
	case "file", "file-b":
		c.out = filepath.Join(dir, "events.jsonl")
		// Created here so that a tail can watch it from the start.
		if err := os.WriteFile(c.out, nil, 0o600); err != nil {
			return nil, err
		}
		fmt.Fprintf(&y, "output:\n  sink: file:%s\n", c.out)
		if flush == 0 {
			flush = b.o.fileFlush
		}
		if flush > 0 {
			fmt.Fprintf(&y, "  flush_interval: %s\n", flush)
		}
		c.counter = &lineCounter{path: c.out, syscall: w.syscall}
	case "kafka":
		c.topic = fmt.Sprintf("auditns-bench-%s-%s", b.stamp, name)
		c.nsTopic = c.topic + ".ns"
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		err := createTopic(ctx, b.o.kafkaAddr, c.topic)
		cancel()
		if err != nil {
			return nil, err
		}
		b.topics[c.topic] = true
		fmt.Fprintf(&y, "output:\n  sink: kafka\n")
		fmt.Fprintf(&y, "kafka:\n  brokers: [%s]\n  topic: %s\n  namespaces_topic: %s\n  spool:\n    dir: %s\n",
			b.o.kafkaAddr, c.topic, c.nsTopic, filepath.Join(dir, "spool"))
	}
	cfg := filepath.Join(dir, "auditns.yaml")
	if err := os.WriteFile(cfg, []byte(y.String()), 0o600); err != nil {
		return nil, err
	}
	argv := []string{b.auditnsBin, "run", "--config", cfg}
	if kind == "file-b" {
		argv[0] = b.auditnsBinB
	}
	if pprofOut != "" {
		argv = []string{b.pprofBin, "pprof-auditns", "-config", cfg, "-cpuprofile", pprofOut, "-heapprofile", pprofOut + ".heap"}
	}
	ch, err := startChild("auditns", syscall.SIGTERM, nil, tee, b.o.env, argv...)
	if err != nil {
		return nil, err
	}
	c.child = ch
	return c, nil
}

// waitReady waits until the consumer is the audit daemon with its rule
// loaded (baseline: it says READY; auditns: the kernel's audit pid is the
// consumer's and its metrics endpoint answers, which it starts last).
func (b *bench) waitReady(c *consumer, rulesBefore int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c.exited() {
			return fmt.Errorf("%s exited before it was ready (%v): %s", c.name, c.err, c.stderr.tail(30))
		}
		if c.kind == "baseline" {
			if _, ok := c.stdout.last("READY"); ok {
				return nil
			}
		} else if st, rules, err := kernelStatus(); err == nil && int(st.PID) == c.pid() && len(rules) > rulesBefore {
			cl := http.Client{Timeout: time.Second}
			if resp, err := cl.Get("http://" + c.metrics + "/healthz"); err == nil {
				resp.Body.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within 60s: %s", c.name, c.stderr.tail(30))
		}
		select {
		case <-b.ctx.Done():
			return b.ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func scrapeMetrics(addr string) (map[string]float64, error) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.HasPrefix(f[0], "auditns_") && !strings.Contains(f[0], "{") {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				m[strings.TrimPrefix(f[0], "auditns_")] = v
			}
		}
	}
	return m, nil
}

// progress is what the consumer has delivered so far, and whether it is
// quiescent (Kafka: everything spooled was acknowledged).
func (c *consumer) progress() (int64, bool, error) {
	switch c.kind {
	case "baseline":
		line, ok := c.stdout.last("PROGRESS ")
		if !ok {
			return 0, true, nil
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return 0, false, fmt.Errorf("baseline progress %q", line)
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		return n, true, err
	case "file":
		n, err := c.counter.update()
		return n, true, err
	case "file-b":
		n, err := c.counter.update()
		return n, true, err
	default:
		m, err := scrapeMetrics(c.metrics)
		if err != nil {
			return 0, false, err
		}
		return int64(m["events_written_total"]), m["events_published_total"] == m["events_spooled_total"], nil
	}
}

// waitDelivered polls the consumer until it has delivered expected events
// and is quiescent, or its count has not moved for the settle time (it
// lost some), or the timeout. Kafka's count (events handed to the sink)
// includes events that are not the workload's, so there it must also
// stay unchanged for a second.
// driven is what one run measured, from the generator's "go" to the
// consumer's last delivery.
type driven struct {
	gen                          *genResult
	genCPU                       float64 // the generator's CPU seconds
	note                         string  // waitDelivered's
	cpu0, cpu1                   float64 // the consumer's CPU seconds at "go" and at the end
	known, foreign, share, steal float64 // noiseMeter.stop
	peakRSS                      int64
	lost                         int64 // growth of the kernel's lost counter (records)
}

// drive lets a started generator go against a ready consumer and measures
// the run, the same way for storms and latency runs.
func (b *bench) drive(c *consumer, gen *generator) (*driven, error) {
	d := &driven{}
	lost0, err := kernelLost()
	if err != nil {
		return nil, err
	}
	noise, err := b.startNoise()
	if err != nil {
		return nil, err
	}
	if d.cpu0, err = procCPU(c.pid()); err != nil {
		return nil, err
	}
	if err := gen.start(); err != nil {
		return nil, err
	}
	if d.gen, err = gen.wait(b.ctx, b.o.timeout+30*time.Second); err != nil {
		return nil, err
	}
	d.genCPU = gen.cpuOf()
	if d.note, err = b.waitDelivered(c, int64(d.gen.Calls)); err != nil {
		return nil, err
	}
	if d.cpu1, err = procCPU(c.pid()); err != nil {
		return nil, err
	}
	if d.known, d.foreign, d.share, d.steal, err = noise.stop(d.genCPU + (d.cpu1 - d.cpu0)); err != nil {
		return nil, err
	}
	if d.peakRSS, err = procHWM(c.pid()); err != nil {
		return nil, err
	}
	lost1, err := kernelLost()
	if err != nil {
		return nil, err
	}
	d.lost = int64(lost1 - lost0)
	return d, nil
}

func (b *bench) waitDelivered(c *consumer, expected int64) (string, error) {
	start := time.Now()
	var last int64 = -1
	lastChange := time.Now()
	var metSince time.Time
	for {
		n, quiet, err := c.progress()
		if err != nil {
			return "", err
		}
		now := time.Now()
		if n != last {
			last, lastChange = n, now
			metSince = time.Time{}
		}
		if n >= expected && quiet {
			if c.kind != "kafka" {
				return "", nil
			}
			if metSince.IsZero() {
				metSince = now
			} else if now.Sub(metSince) >= time.Second {
				return "", nil
			}
		}
		if quiet && now.Sub(lastChange) >= b.o.settle {
			return fmt.Sprintf("count stopped at %d of %d", n, expected), nil
		}
		if now.Sub(start) > b.o.timeout {
			return fmt.Sprintf("timeout after %v at %d of %d", b.o.timeout, n, expected), nil
		}
		if c.exited() {
			return "", fmt.Errorf("%s exited (%v): %s", c.name, c.err, c.stderr.tail(30))
		}
		select {
		case <-b.ctx.Done():
			return "", b.ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// finish stops the consumer (SIGTERM) and returns how many of the
// workload's events it delivered, and duplicates (Kafka).
func (b *bench) finish(c *consumer, w workload) (delivered, dups int64, err error) {
	stopErr := c.stop(30 * time.Second)
	switch c.kind {
	case "baseline":
		line, ok := c.stdout.last("RESULT ")
		if !ok {
			return 0, 0, fmt.Errorf("baseline: no result (%v): %s", stopErr, c.stderr.tail(20))
		}
		var res baselineResult
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			return 0, 0, err
		}
		c.baseline = &res
		if len(res.Errors) > 0 {
			stopErr = errors.Join(stopErr, fmt.Errorf("baseline: %s", strings.Join(res.Errors, "; ")))
		}
		return int64(res.Events), 0, stopErr
	case "file", "file-b":
		n, err := c.counter.update()
		if !b.o.keep {
			os.Remove(c.out)
		}
		return n, 0, errors.Join(stopErr, err)
	default:
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Minute)
		defer cancel()
		seen := map[string]bool{}
		err := readTopic(ctx, b.o.kafkaAddr, c.topic, func(m *kafka.Message) {
			if !isBenchEvent(m.Value, w.syscall) {
				return
			}
			id := ""
			for _, h := range m.Headers {
				if h.Key == "event_id" {
					id = string(h.Value)
				}
			}
			if seen[id] {
				dups++
				return
			}
			seen[id] = true
			delivered++
		})
		if !b.o.keep {
			deleteTopics(b.o.kafkaAddr, c.topic, c.nsTopic)
			delete(b.topics, c.topic)
		}
		return delivered, dups, errors.Join(stopErr, err)
	}
}

// runResult is one storm with one consumer.
type runResult struct {
	Workload     string  `json:"workload"`
	Consumer     string  `json:"consumer"`
	Run          int     `json:"run"`
	Generated    int     `json:"generated"`
	GenSeconds   float64 `json:"generator_seconds"`
	GenRate      float64 `json:"generator_rate"`
	Delivered    int64   `json:"delivered"`
	Duplicates   int64   `json:"duplicates"`
	KernelLost   int64   `json:"kernel_lost"`
	Dropped      int64   `json:"auditns_records_dropped"` // -1: not applicable
	CPUSeconds   float64 `json:"cpu_seconds"`             // utime+stime from ready to delivered
	CPUTotal     float64 `json:"cpu_seconds_total"`       // including start-up
	CPUPerEvent  float64 `json:"cpu_us_per_event"`
	PeakRSS      int64   `json:"peak_rss_bytes"`
	GenCPU       float64 `json:"generator_cpu_seconds"`
	KnownCPU     float64 `json:"kauditd_broker_bench_cpu_seconds"`
	ForeignCPU   float64 `json:"foreign_cpu_seconds"` // the machine's busy time minus all of the above and the consumer's
	ForeignShare float64 `json:"foreign_share"`       // of the machine (wall time × CPUs)
	Noisy        bool    `json:"noisy"`
	Steal        float64 `json:"steal_seconds"`
	Clean        string  `json:"host_clean"`
	Note         string  `json:"note,omitempty"`
}

func (r *runResult) summary() string {
	return fmt.Sprintf("%s storm, %s, run %d: generated %d at %.0f/s, delivered %d, kernel lost %d, CPU %.2f s = %.2f µs/event, peak RSS %.1f MiB, clean %s %s",
		r.Workload, r.Consumer, r.Run, r.Generated, r.GenRate, r.Delivered, r.KernelLost, r.CPUSeconds, r.CPUPerEvent, mib(r.PeakRSS), r.Clean, r.Note)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// storm runs one workload at full speed against one consumer.
func (b *bench) storm(w workload, kind string, profile bool, rep int) (*runResult, error) {
	name := fmt.Sprintf("%s-%s-%d", w.name, kind, rep)
	pprofOut := ""
	if profile {
		name += "-pprof"
		pprofOut = filepath.Join(b.tmp, "auditns-"+w.name+"-"+kind+".pprof")
	}
	logf("== %s storm (%d at %s), consumer %s, run %d", w.name, w.n, rateText(w.rate), kind, rep)
	if kind == "kafka" {
		unlock, err := flock(kafkaLockPath, "kafka")
		if err != nil {
			return nil, err
		}
		defer unlock()
		if err := b.ensureKafka(); err != nil {
			return nil, err
		}
	}
	res := &runResult{Workload: w.name, Consumer: consumerName(kind), Run: rep, Dropped: -1}
	if profile {
		res.Consumer += " (pprof)"
	}
	if err := b.host.waitForeign(b.ctx); err != nil {
		return nil, err
	}
	gen, err := b.startGenerator(w, w.n, w.rate)
	if err != nil {
		return nil, err
	}
	defer gen.stop(0)
	c, err := b.startConsumer(name, kind, b.rules(w, gen.pid()), w, false, pprofOut, 0)
	if err != nil {
		return nil, err
	}
	defer c.stop(30 * time.Second)
	if err := b.waitReady(c, len(b.host.rules)); err != nil {
		return nil, err
	}
	_, rules0, err := kernelStatus()
	if err != nil {
		return nil, err
	}
	d, err := b.drive(c, gen)
	if err != nil {
		return nil, err
	}
	cpu0, cpu1 := d.cpu0, d.cpu1
	res.Generated, res.GenSeconds, res.GenRate = d.gen.Calls, d.gen.Seconds, d.gen.Rate
	res.GenCPU, res.Note = d.genCPU, d.note
	res.KnownCPU, res.ForeignCPU, res.ForeignShare, res.Steal = d.known, d.foreign, d.share, d.steal
	res.Noisy = res.ForeignShare > noisyShare
	if res.Noisy {
		res.Note = strings.TrimSpace(res.Note + fmt.Sprintf(" NOISY: other processes used %.0f%% of the machine", res.ForeignShare*100))
	}
	res.PeakRSS, res.KernelLost = d.peakRSS, d.lost
	if st, rules1, err := kernelStatus(); err != nil {
		return nil, err
	} else if len(rules1) != len(rules0) || int(st.PID) != c.pid() {
		res.Note = strings.TrimSpace(res.Note + fmt.Sprintf(" CONTAMINATED: during the run the rules went %d→%d, audit pid %d (another process ignoring the audit lock?)", len(rules0), len(rules1), st.PID))
	}
	res.CPUSeconds, res.CPUTotal = cpu1-cpu0, cpu1
	if kind != "baseline" {
		if m, err := scrapeMetrics(c.metrics); err == nil {
			res.Dropped = int64(m["records_dropped_total"])
		}
	}
	delivered, dups, err := b.finish(c, w)
	res.Delivered, res.Duplicates = delivered, dups
	if err != nil {
		return nil, err
	}
	if delivered > 0 {
		res.CPUPerEvent = res.CPUSeconds / float64(delivered) * 1e6
	}
	if res.Clean, err = b.checkClean(); err != nil {
		return res, err
	}
	return res, nil
}

func consumerName(kind string) string {
	switch kind {
	case "baseline":
		return "ceiling (go-libaudit)"
	case "file":
		return "auditns file"
	case "file-b":
		return "auditns file (B: -auditns-b)"
	}
	return "auditns kafka"
}

// latResult is one latency run.
type latResult struct {
	Consumer     string        `json:"consumer"`
	Run          int           `json:"run"`
	Stalls       string        `json:"stalls"`
	Point        string        `json:"measured_at"`
	Generated    int           `json:"generated"`
	GenRate      float64       `json:"generator_rate"`
	Delivered    int64         `json:"delivered"`
	KernelLost   int64         `json:"kernel_lost"`
	Stats        *latencyStats `json:"-"`
	P50ms        float64       `json:"p50_ms"`
	P99ms        float64       `json:"p99_ms"`
	Maxms        float64       `json:"max_ms"`
	Clean        string        `json:"host_clean"`
	Note         string        `json:"note,omitempty"`
	PeakRSS      int64         `json:"peak_rss_bytes"`
	ForeignShare float64       `json:"foreign_share"`
	Noisy        bool          `json:"noisy"`
}

// latencyRun runs the syscall generator at a steady rate and measures,
// per event, the time from the generator's clock just before the call
// (a1 of the event) to the moment the event could be read from the sink.
func (b *bench) latencyRun(kind string, flush time.Duration, rep int) (*latResult, error) {
	w := workload{"syscall", 0, "getppid", b.o.rate}
	n := int(b.o.rate * b.o.latencyDur.Seconds())
	if kind == "kafka" {
		unlock, err := flock(kafkaLockPath, "kafka")
		if err != nil {
			return nil, err
		}
		defer unlock()
		if err := b.ensureKafka(); err != nil {
			return nil, err
		}
	}
	res := &latResult{Consumer: consumerName(kind), Run: rep}
	name := fmt.Sprintf("latency-%s-%d", kind, rep)
	if flush > 0 {
		res.Consumer += fmt.Sprintf(" (flush_interval %v)", flush)
		name += "-flush"
	}
	logf("== latency: %d getppid at %.0f/s, consumer %s, run %d", n, b.o.rate, res.Consumer, rep)
	if err := b.host.waitForeign(b.ctx); err != nil {
		return nil, err
	}
	gen, err := b.startGenerator(w, n, b.o.rate)
	if err != nil {
		return nil, err
	}
	defer gen.stop(0)
	c, err := b.startConsumer(name, kind, b.rules(w, gen.pid()), w, true, "", flush)
	if err != nil {
		return nil, err
	}
	defer c.stop(30 * time.Second)
	if err := b.waitReady(c, len(b.host.rules)); err != nil {
		return nil, err
	}
	var lat, origin []int64
	seen := map[string]bool{}
	record := func(at time.Time, line []byte) {
		if !isBenchEvent(line, "getppid") {
			return
		}
		a1, id, ok := eventA1(line)
		if !ok || seen[id] {
			return
		}
		seen[id] = true
		lat = append(lat, at.UnixNano()-a1)
		origin = append(origin, a1)
	}
	var stopTail func() error
	switch kind {
	case "baseline":
		res.Point = "record received from the netlink socket"
	case "file":
		res.Point = "line readable in the output file (inotify)"
		t, err := startFileTail(c.out, record)
		if err != nil {
			return nil, err
		}
		stopTail = t.close
	case "kafka":
		res.Point = "message fetched by a consumer (acks=all)"
		lc, err := startLiveConsumer(b.o.kafkaAddr, c.topic, func(at time.Time, m *kafka.Message) { record(at, m.Value) })
		if err != nil {
			return nil, err
		}
		stopTail = func() error { lc.stop(); return nil }
	}
	d, err := b.drive(c, gen)
	if err != nil {
		return nil, err
	}
	res.Generated, res.GenRate = d.gen.Calls, d.gen.Rate
	res.KernelLost, res.ForeignShare, res.PeakRSS = d.lost, d.share, d.peakRSS
	res.Noisy = res.ForeignShare > noisyShare
	if kind == "kafka" {
		// auditns's own view: its histogram of kernel event time (ms
		// precision) to Kafka acknowledgement.
		if h, err := scrapeHistogram(c.metrics, "auditns_publish_latency_seconds"); err == nil {
			res.Note = "auditns's publish_latency_seconds (kernel time → ack): " + h
		} else {
			res.Note = "auditns's latency histogram: " + err.Error()
		}
	}
	if stopTail != nil {
		// Give the tail a moment past the last write.
		time.Sleep(200 * time.Millisecond)
		if err := stopTail(); err != nil {
			return nil, err
		}
	}
	delivered, _, err := b.finish(c, w)
	if err != nil {
		return nil, err
	}
	res.Delivered = delivered
	if kind == "baseline" {
		lat, origin = c.baseline.Latency, c.baseline.Origin
	}
	res.Stats = summarise(lat)
	res.Stalls = stalls(origin, lat, 20*time.Millisecond)
	res.P50ms, res.P99ms, res.Maxms = res.Stats.P50, res.Stats.P99, res.Stats.Max
	if res.Clean, err = b.checkClean(); err != nil {
		return res, err
	}
	return res, nil
}

// profileResult is the CPU profile of auditns during a storm.
type profileResult struct {
	Workload string
	Sink     string
	Run      *runResult
	Flat     string
	Cum      string
	Heap     string
	Note     string
}

func (b *bench) profileRun(w workload, sink string) error {
	r, err := b.storm(w, sink, true, 1)
	if err != nil {
		return err
	}
	logf("%s", r.summary())
	p := &profileResult{Workload: w.name, Sink: sink, Run: r}
	b.profiles = append(b.profiles, p)
	prof := filepath.Join(b.tmp, "auditns-"+w.name+"-"+sink+".pprof")
	top := func(file string, args ...string) string {
		cmd := exec.Command("go", append(append([]string{"tool", "pprof"}, args...), file)...)
		cmd.Dir = b.repo
		out, err := cmd.CombinedOutput()
		if err != nil {
			p.Note = fmt.Sprintf("go tool pprof: %v: %s", err, out)
			return ""
		}
		return strings.TrimRight(string(out), "\n")
	}
	p.Flat = top(prof, "-top", "-nodecount=15")
	p.Cum = top(prof, "-top", "-cum", "-nodecount=30")
	if _, err := os.Stat(prof + ".heap"); err == nil {
		p.Heap = top(prof+".heap", "-sample_index=inuse_space", "-top", "-nodecount=10")
	}
	if b.o.keep {
		logf("profile kept in %s", prof)
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

// scrapeHistogram reads a Prometheus histogram from auditns's metrics and
// names the buckets that hold its median and 99th percentile.
func scrapeHistogram(addr, name string) (string, error) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	type bucket struct {
		le    float64
		count float64
	}
	var buckets []bucket
	prefix := name + `_bucket{le="`
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		rest := strings.TrimPrefix(line, prefix)
		i := strings.Index(rest, `"}`)
		if i < 0 {
			continue
		}
		le, err1 := strconv.ParseFloat(rest[:i], 64)
		n, err2 := strconv.ParseFloat(strings.TrimSpace(rest[i+2:]), 64)
		if err1 == nil && err2 == nil {
			buckets = append(buckets, bucket{le, n})
		}
	}
	if len(buckets) == 0 || buckets[len(buckets)-1].count == 0 {
		return "", fmt.Errorf("no %s observations", name)
	}
	total := buckets[len(buckets)-1].count
	at := func(q float64) string {
		for _, bk := range buckets {
			if bk.count >= q*total {
				if math.IsInf(bk.le, 1) {
					return "> the last bucket"
				}
				return fmt.Sprintf("≤ %g ms", bk.le*1000)
			}
		}
		return "?"
	}
	return fmt.Sprintf("p50 %s, p99 %s (n=%.0f)", at(0.5), at(0.99), total), nil
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

func rateText(r float64) string {
	if r <= 0 {
		return "full speed"
	}
	return fmt.Sprintf("%.0f/s", r)
}
