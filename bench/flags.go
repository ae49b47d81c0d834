package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

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
