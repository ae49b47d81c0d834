package main

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

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
	unlock, err := b.kafkaFor(kind)
	if err != nil {
		return nil, err
	}
	defer unlock()
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
	unlock, err := b.kafkaFor(kind)
	if err != nil {
		return nil, err
	}
	defer unlock()
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

func rateText(r float64) string {
	if r <= 0 {
		return "full speed"
	}
	return fmt.Sprintf("%.0f/s", r)
}

// kafkaFor takes the host-wide Kafka lock and makes sure a broker runs when
// the consumer is the Kafka sink; the returned func releases the lock.
func (b *bench) kafkaFor(kind string) (unlock func(), err error) {
	if kind != "kafka" {
		return func() {}, nil
	}
	unlock, err = flock(kafkaLockPath, "kafka")
	if err != nil {
		return nil, err
	}
	if err := b.ensureKafka(); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}
