package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/auditns/auditns/internal/config"
	"github.com/auditns/auditns/internal/daemon"
)

// runPprofAuditns is `auditns run --config FILE` in this process, as
// cmd/auditns assembles it (config.NewLoader().Load, the soft memory limit,
// daemon.Start, Run with a 10 s shutdown timeout), under the CPU profiler. auditns has no pprof
// flag, and perf has no hardware counters on this VM; runtime/pprof samples
// user and system time of every thread at 100 Hz (ITIMER_PROF), so time in
// system calls is attributed to the Go function that made them.
func runPprofAuditns(args []string) {
	fs := flag.NewFlagSet("pprof-auditns", flag.ExitOnError)
	file := fs.String("config", "", "auditns configuration file")
	out := fs.String("cpuprofile", "", "CPU profile output")
	heap := fs.String("heapprofile", "", "heap profile output, written each time the heap grows 20% past the last one written (so: near its peak)")
	_ = fs.Parse(args)
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "pprof-auditns:", err)
		os.Exit(1)
	}
	cfg, err := config.NewLoader().Load(*file)
	if err != nil {
		fail(err)
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	f, err := os.Create(*out)
	if err != nil {
		fail(err)
	}
	// As cmd/auditns/run.go does (82ecb64): a soft memory limit unless
	// GOMEMLIMIT is set. Whatever `auditns run` does before daemon.Start
	// must be mirrored here, or the profile is of another program.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(48 << 20)
	}
	if os.Getenv("GOMAXPROCS") == "" && cfg.MaxProcs > 0 {
		runtime.GOMAXPROCS(cfg.MaxProcs)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := daemon.Start(ctx, cfg, log)
	if err != nil {
		fail(err)
	}
	if *heap != "" {
		go heapWatch(ctx, *heap)
	}
	// The profile covers the event flow, not the start-up.
	if err := pprof.StartCPUProfile(f); err != nil {
		fail(err)
	}
	// It ends at SIGTERM: the bench sends it once everything was
	// delivered, so the shutdown is left out too.
	stopped := make(chan struct{})
	go func() {
		<-ctx.Done()
		pprof.StopCPUProfile()
		close(stopped)
	}()
	runErr := d.Run(ctx, 10*time.Second)
	stop()
	<-stopped
	if err := f.Close(); err != nil {
		fail(err)
	}
	if runErr != nil {
		fail(runErr)
	}
}

// heapWatch writes a heap profile to path whenever the heap's objects grow
// 20% past the size at the last profile, so that the file ends near the
// peak. runtime/metrics is read without stopping the world.
func heapWatch(ctx context.Context, path string) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var last uint64 = 4 << 20
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		v := sample[0].Value.Uint64()
		if v < last+last/5 {
			continue
		}
		last = v
		runtime.GC() // the heap profile shows the state at the last GC
		f, err := os.Create(path + ".tmp")
		if err != nil {
			return
		}
		err = pprof.Lookup("heap").WriteTo(f, 0)
		if cerr := f.Close(); err == nil && cerr == nil {
			_ = os.Rename(path+".tmp", path)
		}
		fmt.Fprintf(os.Stderr, "pprof-auditns: heap objects %d MiB: heap profile written\n", v>>20)
	}
}
