package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

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

// waitDelivered polls the consumer until it has delivered expected events
// and is quiescent, or its count has not moved for the settle time (it
// lost some), or the timeout. Kafka's count (events handed to the sink)
// includes events that are not the workload's, so there it must also
// stay unchanged for a second.
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
