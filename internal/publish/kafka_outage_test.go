package publish

// Tests that stop and restart the shared test broker. They hold
// testenv.LockKafka; leave them out with -skip Outage when other packages'
// broker tests run at the same time.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/testenv"
)

// maxWriteLatency bounds a single Write while the broker is down or hangs.
const maxWriteLatency = 250 * time.Millisecond

// kafkaScript runs scripts/kafka/NAME for the broker at addr.
func kafkaScript(t testing.TB, name, addr string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "kafka", name)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(script)
	cmd.Env = append(os.Environ(), "KAFKA_PORT="+port)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	t.Logf("%s took %v", name, time.Since(start).Round(time.Millisecond))
}

// While a steady stream is written, the broker is stopped for ~15 s and
// started again: Write stays fast throughout, and every message arrives, in
// order per partition (duplicates allowed, counted).
func TestKafkaOutage(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	testenv.LockKafka(t)

	o := testKafkaOptions(t, brokers, t.TempDir())
	var states stateLog
	o.OnState = states.on
	k := openKafka(t, o)

	stopped := false
	t.Cleanup(func() {
		if stopped {
			kafkaScript(t, "start.sh", brokers)
		}
	})

	keys := []string{"host-a", "host-b", "host-c", "host-d", "host-e", "host-f"}
	const rate = 2000 // messages per second
	var (
		mu     sync.Mutex
		lats   []time.Duration
		worst  time.Duration
		worstT time.Time // when the slowest Write started
		sent   int
		stop   = make(chan struct{})
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		t0 := time.Now()
		seq := map[string]int{}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			due := int(time.Since(t0).Seconds()*rate) - sent
			batch := make([]Message, 0, due)
			for range due {
				key := keys[sent%len(keys)]
				batch = append(batch, testMessage(key, seq[key], t0, 400))
				seq[key]++
				sent++
			}
			start := time.Now()
			dropped, err := k.Write(batch)
			d := time.Since(start)
			mu.Lock()
			lats = append(lats, d)
			if d > worst {
				worst, worstT = d, start
			}
			mu.Unlock()
			if err != nil || dropped != 0 {
				t.Errorf("Write: dropped %d, %v", dropped, err)
				return
			}
		}
	}()

	began := time.Now()
	time.Sleep(2 * time.Second)
	stopAt := time.Now()
	kafkaScript(t, "stop.sh", brokers)
	stopped = true
	stoppedAt := time.Now()
	time.Sleep(15 * time.Second)
	if st := k.Stats(); !st.Failing || st.Spool.Records == 0 {
		t.Errorf("broker down 15s: stats %+v, want failing with a backlog", st)
	}
	startAt := time.Now()
	kafkaScript(t, "start.sh", brokers)
	stopped = false
	t.Logf("broker was down for %v", time.Since(stoppedAt).Round(time.Millisecond))
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		rel := func(x time.Time) time.Duration { return x.Sub(began).Round(time.Millisecond) }
		t.Logf("timeline: stop.sh at %v, start.sh at %v..%v; slowest Write (%v) at %v",
			rel(stopAt), rel(startAt), rel(startAt.Add(time.Since(startAt))), worst, rel(worstT))
	}()
	time.Sleep(3 * time.Second)
	close(stop)
	<-done

	closeKafka(t, k, 90*time.Second)
	st := k.Stats()
	t.Logf("stats %+v", st)

	mu.Lock()
	slices.Sort(lats)
	p99 := lats[len(lats)*99/100]
	maxLat := lats[len(lats)-1]
	mu.Unlock()
	t.Logf("Write latency over %d calls: p50 %v p99 %v max %v", len(lats), lats[len(lats)/2], p99, maxLat)
	// Write never waits for Kafka: a Write that did would take seconds
	// (dial and produce timeouts). Measured max: ~1-3ms; the bounds leave
	// room for a loaded CI machine (the broker's JVM start takes both cores).
	if maxLat > maxWriteLatency || p99 > 20*time.Millisecond {
		t.Errorf("Write latency p99 %v, max %v while the broker was down; want < 20ms, < %v", p99, maxLat, maxWriteLatency)
	}
	if calls, _ := states.count("state"); calls < 2 {
		t.Errorf("OnState state calls: %+v, want failing and resumed", states.calls)
	}

	check := newOrderCheck()
	total := 0
	for p, ms := range readTopic(t, brokers, o.EventsTopic) {
		for _, m := range ms {
			var v testValue
			if err := json.Unmarshal(m.Value, &v); err != nil {
				t.Fatal(err)
			}
			check.add(t, p, v)
			total++
		}
	}
	got := 0
	for _, key := range keys {
		got += check.next[key]
	}
	if got != sent {
		t.Fatalf("%d distinct messages arrived, %d were written", got, sent)
	}
	t.Logf("%d messages written, all arrived in order per key; %d duplicates (%d read)", sent, check.dups, total)
}

// brokerPID returns the pid of the test broker started by
// scripts/kafka/start.sh, checked to be a Kafka JVM.
func brokerPID(t testing.TB) int {
	t.Helper()
	dir := os.Getenv("KAFKA_CACHE_DIR")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", ".cache", "kafka")
	}
	b, err := os.ReadFile(filepath.Join(dir, "kafka.pid"))
	if err != nil {
		testenv.Missing(t, testenv.RequireKafkaVar, fmt.Sprintf("no broker pid file (broker not started by scripts/kafka/start.sh?): %v", err))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), " kafka.Kafka ") {
		testenv.Missing(t, testenv.RequireKafkaVar, fmt.Sprintf("pid %d is not the Kafka broker", pid))
	}
	return pid
}

// A broker that hangs (SIGSTOP: like a network partition, requests get no
// answer at all) for longer than WriteTimeout: Write stays fast, produce
// requests time out and are retried, and once the broker answers again
// everything arrives in order per partition.
func TestKafkaOutageFrozen(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	testenv.LockKafka(t)
	pid := brokerPID(t)

	o := testKafkaOptions(t, brokers, t.TempDir())
	o.WriteTimeout = 3 * time.Second
	k := openKafka(t, o)

	frozen := false
	t.Cleanup(func() {
		if frozen {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	})

	keys := []string{"host-a", "host-b", "host-c"}
	var (
		maxLat time.Duration
		sent   int
		stop   = make(chan struct{})
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		t0 := time.Now()
		seq := map[string]int{}
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			batch := make([]Message, 0, 10)
			for range 10 {
				key := keys[sent%len(keys)]
				batch = append(batch, testMessage(key, seq[key], t0, 300))
				seq[key]++
				sent++
			}
			start := time.Now()
			if _, err := k.Write(batch); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
			maxLat = max(maxLat, time.Since(start))
		}
	}()

	time.Sleep(2 * time.Second)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen = true
	time.Sleep(10 * time.Second)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	frozen = false
	time.Sleep(2 * time.Second)
	close(stop)
	<-done

	closeKafka(t, k, 90*time.Second)
	t.Logf("stats %+v; max Write latency %v", k.Stats(), maxLat)
	if maxLat > maxWriteLatency {
		t.Errorf("Write took up to %v while the broker hung, want < %v", maxLat, maxWriteLatency)
	}
	check := newOrderCheck()
	for p, ms := range readTopic(t, brokers, o.EventsTopic) {
		for _, m := range ms {
			var v testValue
			json.Unmarshal(m.Value, &v)
			check.add(t, p, v)
		}
	}
	got := 0
	for _, key := range keys {
		got += check.next[key]
	}
	if got != sent {
		t.Fatalf("%d distinct messages arrived, %d were written", got, sent)
	}
	t.Logf("%d messages written, all arrived in order per key; %d duplicates", sent, check.dups)
}
