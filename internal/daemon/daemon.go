// Package daemon assembles `auditns run` from its parts: the namespace
// registry, the kernel connection, the enricher, a sink and the pipeline;
// it logs what it does at start-up and takes it all down in the right order.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/auditns/auditns/configs"
	"github.com/auditns/auditns/internal/assemble"
	"github.com/auditns/auditns/internal/buildinfo"
	"github.com/auditns/auditns/internal/config"
	"github.com/auditns/auditns/internal/enrich"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/metrics"
	"github.com/auditns/auditns/internal/netlink"
	"github.com/auditns/auditns/internal/pipeline"
	"github.com/auditns/auditns/internal/publish"
	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/subject"
)

// NSRuleKey is the key of the rules auditns adds to see namespace changes.
const NSRuleKey = "auditns-ns"

// nsRules are installed when enrich.ns_rules is on: unshare and setns
// always, clone only with a CLONE_NEW* flag (a plain fork is not a change,
// and auditing every fork would be costly). clone3 hides its flags from
// audit and cannot be matched.
var nsRules = []string{
	"-a always,exit -F arch=b64 -S unshare,setns -F key=" + NSRuleKey,
	"-a always,exit -F arch=b64 -S clone -F a0&0x7e020080 -F key=" + NSRuleKey,
	"-a always,exit -F arch=b32 -S unshare,setns -F key=" + NSRuleKey,
	"-a always,exit -F arch=b32 -S clone -F a0&0x7e020080 -F key=" + NSRuleKey,
}

// Daemon is a running auditns.
type Daemon struct {
	cfg      *config.Config
	log      *slog.Logger
	conn     *netlink.Conn
	reg      *serial.Registry
	enricher *enrich.Enricher
	// kernelSubjects is the kernel-side source when it is in use (its
	// counters go to metrics); the enricher owns and closes it.
	kernelSubjects *subject.Kernel
	sink           publish.Sink
	pipe           *pipeline.Pipeline

	metrics *metrics.Server
	kafka   *publish.Kafka

	// For callbacks from the Kafka sink's goroutine, which starts before
	// the pipeline and metrics exist.
	pipeRef    atomic.Pointer[pipeline.Pipeline]
	metricsRef atomic.Pointer[metrics.Server]

	mu      sync.Mutex
	early   []publish.Message // registry records from before the pipeline existed
	started bool
}

// Start opens everything `run` needs. On error, what was opened is closed
// again (the kernel left as it was found).
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *Daemon, err error) {
	d := &Daemon{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			d.closeAll(context.Background())
		}
	}()
	bootID, err := readBootID()
	if err != nil {
		return nil, err
	}
	if err := checkStateDir(cfg.StateDir); err != nil {
		return nil, InputError{err}
	}
	kernel := kernelRelease()
	build := buildinfo.Get()
	setAgent(cfg.HostName, build.Version)
	log.Info("auditns starting", "version", build.Version, "commit", build.ShortCommit(), "commit_date", build.Date, "go", build.GoVersion, "mode", cfg.Mode, "host", cfg.HostName, "boot_id", bootID, "kernel", kernel, "pid", os.Getpid(), "gomaxprocs", runtime.GOMAXPROCS(0))

	var observer enrich.Observer
	if cfg.Enrich.Namespaces {
		d.reg, err = serial.Open(serial.Options{
			Dir:      cfg.StateDir,
			Method:   serial.IDSource(cfg.Enrich.IDMethod),
			Logger:   log,
			HostName: cfg.HostName,
			OnRecord: d.onRecord,
		})
		if err != nil {
			return nil, fmt.Errorf("namespace registry (state_dir %s): %w", cfg.StateDir, err)
		}
		bootID = d.reg.BootID()
		observer = d.reg
		log.Info("namespace identity", "method", d.reg.Method(), "state_dir", cfg.StateDir, "known", len(d.reg.Records()))
	} else {
		log.Info("namespace identity off (enrich.namespaces: false)")
	}

	opts, err := d.kernelOptions()
	if err != nil {
		return nil, err
	}
	d.conn, err = netlink.Open(opts)
	if errors.Is(err, netlink.ErrUnicastRefused) {
		return nil, InputError{err} // exit 2: restarting cannot help
	}
	if err != nil {
		return nil, err
	}
	in := d.conn.Initial()
	log.Info("kernel audit", "mode", cfg.Mode, "rules_loaded", d.conn.RulesLoaded(),
		"backlog_limit", opts.BacklogLimit, "rate_limit", opts.RateLimit, "backlog_wait_time", opts.BacklogWaitTime,
		"failure_mode", cfg.Audit.FailureMode, "immutable", opts.Immutable,
		"found_enabled", in.Enabled, "found_pid", in.PID, "lost_so_far", in.Lost)

	eopts := enrich.Options{
		HostName:   cfg.HostName,
		BootID:     bootID,
		Kernel:     kernel,
		Raw:        cfg.Output.Raw,
		Namespaces: observer,
		CacheSize:  cfg.Enrich.ProcessCache,
		Logger:     log,
	}
	if eopts.Subjects, err = d.openSubjects(cfg, eopts, log); err != nil {
		return nil, err
	}
	d.enricher, err = enrich.New(eopts)
	if err != nil {
		eopts.Subjects.Close()
		return nil, err
	}
	sink, err := d.openSink(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	d.sink = sink
	log.Info("sink", "output", d.sink.Name())

	d.pipe = pipeline.New(pipeline.Options{
		Conn:           d.conn,
		Enricher:       d.enricher,
		Sink:           d.sink,
		Assemble:       assemble.Options{MaxInFlight: cfg.Audit.MaxInFlight, Timeout: cfg.Audit.ReassemblyTimeout, Logger: log},
		QueueSize:      cfg.Audit.QueueSize,
		StatusInterval: cfg.Audit.StatusInterval,
		Key:            cfg.Kafka.Key,
		Unicast:        cfg.Mode == "unicast",
		StateFile:      filepath.Join(cfg.StateDir, "loss-state"),
		HostName:       cfg.HostName,
		BootID:         bootID,
		Kernel:         kernel,
		Logger:         log,
		OnDrained:      d.detachSubjects,
	})
	d.mu.Lock()
	for _, m := range d.early {
		d.pipe.Publish(m)
	}
	d.early = nil
	d.started = true
	d.mu.Unlock()
	if cfg.Metrics.Listen != "" {
		d.metrics = metrics.New(d.metricsSource())
		if err := d.metrics.Listen(cfg.Metrics.Listen, log); err != nil {
			return nil, err
		}
		d.metricsRef.Store(d.metrics)
	}
	d.pipeRef.Store(d.pipe)
	if d.kafka != nil {
		if st := d.kafka.Stats().Spool; st.CorruptBytes > 0 {
			// Recovery cut damaged spool data: how many events it held is
			// unknown, but the stream must say that something was lost.
			d.pipe.Report(event.KindLoss, "spool_corrupt",
				fmt.Sprintf("the spool's recovery cut %d damaged bytes; the events in them are lost", st.CorruptBytes), 0)
		}
	}
	d.pipe.State("started", fmt.Sprintf("auditns %s (commit %s) started: mode %s, %d rules, output %s", build.Version, build.ShortCommit(), cfg.Mode, d.conn.RulesLoaded(), d.sink.Name()))
	return d, nil
}

// kernelOptions turns the configuration into the kernel connection's
// options, loading the rules.
func (d *Daemon) kernelOptions() (netlink.Options, error) {
	a := d.cfg.Audit
	o := netlink.Options{
		Mode:            netlink.Mode(d.cfg.Mode),
		BacklogLimit:    a.BacklogLimit,
		RateLimit:       a.RateLimit,
		BacklogWaitTime: a.BacklogWaitTime,
		Immutable:       a.Immutable,
		ExcludeSelf:     a.ExcludeSelf,
		ReceiveBuffer:   a.ReceiveBuffer,
		Logger:          d.log,
	}
	if d.cfg.Mode == "unicast" {
		if err := os.MkdirAll(d.cfg.StateDir, 0o700); err != nil {
			return o, fmt.Errorf("state_dir %s: %w", d.cfg.StateDir, err)
		}
		o.SettingsFile = filepath.Join(d.cfg.StateDir, "kernel-settings.json")
	}
	switch a.FailureMode {
	case "silent":
		o.Failure = netlink.FailureSilent
	case "panic":
		o.Failure = netlink.FailurePanic
	default:
		o.Failure = netlink.FailurePrintk
	}
	if o.Mode == netlink.Multicast {
		if a.RulesFile != "" {
			return o, InputError{errors.New("audit.rules_file: multicast mode cannot load rules; remove it or use mode unicast")}
		}
		o.ExcludeSelf = false
		return o, nil
	}
	var rules []netlink.Rule
	var control []netlink.ControlLine
	var err error
	source := a.RulesFile
	if source == "" {
		source = "embedded configs/audit.rules"
		rules, control, err = netlink.ParseRules(strings.NewReader(configs.DefaultRules), source)
	} else {
		rules, control, err = netlink.ParseRulesFile(source)
	}
	if err != nil {
		return o, InputError{fmt.Errorf("audit.rules_file: %w", err)}
	}
	for _, c := range control {
		d.log.Info("rules file line ignored: kernel settings come from the audit.* configuration", "line", c.Text, "at", c.Source)
	}
	if d.cfg.Enrich.NSRules {
		for i, text := range nsRules {
			r, err := netlink.BuildRule(text)
			if err != nil {
				if strings.Contains(text, "arch=b32") {
					continue
				}
				return o, err
			}
			r.Source = fmt.Sprintf("enrich.ns_rules #%d", i+1)
			rules = append(rules, r)
		}
	}
	d.log.Info("audit rules", "source", source, "rules", len(rules), "ns_rules", d.cfg.Enrich.NSRules)
	o.Rules = rules
	return o, nil
}

// onRecord publishes a namespace registry record; before the pipeline
// exists, records are held.
func (d *Daemon) onRecord(rec *serial.Record) {
	b, err := json.Marshal(rec)
	if err != nil {
		d.log.Error("encode registry record", "error", err)
		return
	}
	m := publish.Message{
		Topic:  publish.TopicNamespaces,
		Key:    []byte(rec.ID),
		Value:  b,
		ID:     rec.ID,
		Schema: rec.Schema,
		BootID: rec.Host.BootID,
		Time:   time.Now(),
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.started {
		d.early = append(d.early, m)
		return
	}
	d.pipe.Publish(m)
}

// metricsSource points the metrics at the counters the parts keep.
func (d *Daemon) metricsSource() metrics.Source {
	st := d.pipe.Stats()
	asm := d.pipe.Assembler().Stats()
	src := metrics.Source{
		RecordsReceived: st.Reader.Records.Load,
		RecordsDropped:  st.Reader.Dropped.Load,
		EventsAssembled: asm.Events.Load,
		EventsWritten:   st.Events.Load,
		LossEvents:      st.Loss.Load,
		SequenceGaps:    st.Gaps.Load,
		KernelLost:      st.KernelLost.Load,
		KernelBacklog:   st.Backlog.Load,
		SinkDrops:       st.SinkDrops.Load,
		Health: func() error {
			if st.ReaderDown.Load() {
				return errors.New("kernel audit connection is gone")
			}
			if err := d.pipe.Health(); err != nil {
				return err
			}
			if err := d.pipe.StateHealth(); err != nil {
				return err
			}
			if d.reg != nil {
				if err := d.reg.Health(); err != nil {
					return err
				}
			}
			return d.sinkHealth()
		},
	}
	src.StateDirFailing = func() bool {
		return d.pipe.StateHealth() != nil || (d.reg != nil && d.reg.Health() != nil)
	}
	if d.reg != nil {
		src.Namespaces = func() int { return len(d.reg.Records()) }
	}
	if k := d.kernelSubjects; k != nil {
		src.SubjectJoined = func() uint64 { return k.Stats().Joined }
		src.SubjectFallbacks = func() uint64 { return k.Stats().Fallbacks }
		src.SubjectDropped = func() uint64 { return k.Stats().Dropped }
	}
	d.kafkaMetrics(&src)
	return src
}

// Metrics is the metrics server, nil when metrics.listen is off.
func (d *Daemon) Metrics() *metrics.Server { return d.metrics }

// Pipeline is the running pipeline (stats, tests).
func (d *Daemon) Pipeline() *pipeline.Pipeline { return d.pipe }

// Run processes events until ctx is done, reopening a file sink on SIGHUP,
// then shuts down: the kernel connection first (rules removed, audit pid
// released), then the sink is flushed within shutdownTimeout.
func (d *Daemon) Run(ctx context.Context, shutdownTimeout time.Duration) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if r, ok := d.sink.(interface{ Reopen() error }); ok {
					if err := r.Reopen(); err != nil {
						d.log.Error("reopen output", "error", err)
					} else {
						d.log.Info("output reopened (SIGHUP)")
					}
				}
			}
		}
	}()
	err := d.pipe.Run(ctx)
	d.log.Info("auditns stopping", "events", d.pipe.Stats().Events.Load(), "loss_events", d.pipe.Stats().Loss.Load())
	d.pipe.State("stopped", "auditns stopped")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if cerr := d.closeAll(sctx); err == nil {
		err = cerr
	}
	return err
}

// detachSubjects unloads the kernel-side source's programs at a clean
// stop, while auditns still reads the audit records their unloading makes.
func (d *Daemon) detachSubjects() {
	if k := d.kernelSubjects; k != nil {
		if err := k.Detach(); err != nil {
			d.log.Warn("unloading the BPF programs", "error", err)
		}
	}
}

// closeAll releases everything, kernel first: the host must not be left
// with rules loaded or an audit pid that no longer reads.
func (d *Daemon) closeAll(ctx context.Context) error {
	var errs []error
	if d.conn != nil {
		errs = append(errs, d.conn.Close())
	}
	if d.pipe != nil {
		d.pipe.Flush()
	}
	if d.enricher != nil {
		d.enricher.Close()
	}
	if d.reg != nil {
		errs = append(errs, d.reg.Close())
	}
	if d.pipe != nil {
		// Records the registry emitted while closing.
		d.pipe.Flush()
	}
	if d.sink != nil {
		errs = append(errs, d.sink.Close(ctx))
	}
	if d.metrics != nil {
		d.metrics.Close(ctx)
	}
	return errors.Join(errs...)
}

// openSubjects opens the source of subjects' namespaces that
// enrich.source asks for: the kernel side (with the /proc reader as its
// fallback for events it has no join for) or the /proc reader alone.
func (d *Daemon) openSubjects(cfg *config.Config, eopts enrich.Options, log *slog.Logger) (enrich.Subjects, error) {
	procs, err := enrich.NewProcSubjects(eopts)
	if err != nil {
		return nil, err
	}
	why := ""
	switch {
	case cfg.Enrich.Source == "proc":
		why = "enrich.source: proc"
	case d.reg == nil:
		why = "enrich.namespaces: false"
	case d.reg.Method() != serial.IDKernel:
		why = fmt.Sprintf("the registry is keyed by %s, not by the kernel's namespace ids (NS_GET_ID, Linux >= 6.18), which the kernel-side source reports", d.reg.Method())
	}
	if why == "" {
		k, err := subject.Load(subject.Options{Resolver: d.reg, Fallback: procs, BootID: d.reg.BootID(), Logger: log})
		if err == nil {
			d.kernelSubjects = k
			log.Info("subject identity", "source", "bpf", "hooks", "tp_btf/kmem_cache_free, tp_btf/sched_process_exit", "fallback", "proc")
			return k, nil
		}
		why = err.Error()
	}
	if cfg.Enrich.Source == "bpf" {
		procs.Close()
		return nil, fmt.Errorf("enrich.source: bpf: %s", why)
	}
	log.Warn("subject identity from /proc: namespaces are read when events are processed, so a process that exits at once may get none", "source", "proc", "reason", why)
	return procs, nil
}

// checkStateDir makes sure the state directory can be written before
// anything is changed: a file is created, written, synced and removed.
func checkStateDir(dir string) error {
	fail := func(err error) error {
		return fmt.Errorf("state_dir %s is not writable: %v (set state_dir or --state-dir to a writable directory)", dir, errors.Unwrap(err))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write([]byte("auditns\n")); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	return nil
}

func readBootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// InputError is an error in what the user gave (a rules file line, a
// combination of settings), as opposed to a failure of the host: the
// command line exits with status 2 for it.
type InputError struct{ Err error }

func (e InputError) Error() string { return e.Err.Error() }
func (e InputError) Unwrap() error { return e.Err }
