package publish

// Tests on a real 3-node KRaft cluster (scripts/kafka/cluster.sh) that this
// file starts itself on AUDITNS_TEST_KAFKA_CLUSTER_PORT (default 29192, six
// ports from there) and stops at the end: nodes are killed with SIGKILL
// under a steady stream of messages on every partition. Named *Outage* so
// that -skip Outage leaves it out.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/testenv"
)

// clusterScript runs scripts/kafka/cluster.sh with args and returns its
// stdout.
func clusterScript(t testing.TB, args ...string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "kafka", "cluster.sh")
	port := os.Getenv("AUDITNS_TEST_KAFKA_CLUSTER_PORT")
	if port == "" {
		port = "29192"
	}
	cmd := exec.Command(script, args...)
	// A fresh cluster each time: nothing left from an interrupted run.
	cmd.Env = append(os.Environ(), "KAFKA_CLUSTER_PORT="+port, "KAFKA_FRESH=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cluster.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	t.Logf("cluster.sh %s took %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return strings.TrimSpace(string(out))
}

func TestKafkaClusterOutage(t *testing.T) {
	if _, err := exec.LookPath("java"); err != nil {
		testenv.Missing(t, testenv.RequireKafkaVar, "java is not installed: no Kafka cluster")
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		testenv.Missing(t, testenv.RequireKafkaVar, "mvn is not installed: no Kafka cluster")
	}
	out := clusterScript(t, "start")
	t.Cleanup(func() { clusterScript(t, "stop") })
	brokers, ok := strings.CutPrefix(out, "KAFKA_BROKERS=")
	if !ok {
		t.Fatalf("cluster.sh start printed %q", out)
	}
	c := &cluster{brokers: strings.Split(brokers, ",")}

	t.Run("TopicSettings", func(t *testing.T) { testClusterTopicSettings(t, c) })
	t.Run("LeaderKilled", func(t *testing.T) { testClusterFailover(t, c, false) })
	t.Run("ControllerKilled", func(t *testing.T) { testClusterFailover(t, c, true) })
	t.Run("SinkRestartedDuringFailover", func(t *testing.T) { testClusterSinkRestart(t, c) })
	t.Run("EmptyDisk", func(t *testing.T) { testClusterEmptyDisk(t, c) })
}

type cluster struct{ brokers []string }

// alive returns the brokers other than node (1-based; 0: all).
func (c *cluster) alive(node int) []string {
	var out []string
	for i, b := range c.brokers {
		if i+1 != node {
			out = append(out, b)
		}
	}
	return out
}

// partitions reads topic's partitions from a live broker, without a cache.
func (c *cluster) partitions(ctx context.Context, topic string, except int) ([]kafka.Partition, error) {
	// A topic just created is not known to every broker at once: ask
	// again for a while.
	deadline := time.Now().Add(15 * time.Second)
	for {
		ps, err := c.partitionsOnce(ctx, topic, except)
		if err == nil || time.Now().After(deadline) {
			return ps, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) partitionsOnce(ctx context.Context, topic string, except int) ([]kafka.Partition, error) {
	var last error
	for _, b := range c.alive(except) {
		conn, err := (&kafka.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", b)
		if err != nil {
			last = err
			continue
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		ps, err := conn.ReadPartitions(topic)
		conn.Close()
		if err != nil {
			last = err
			continue
		}
		return ps, nil
	}
	return nil, last
}

// clusterSink opens a sink on c with unique topics (3 partitions, the
// default replication) and a log in buf as well as in t.
func clusterSink(t *testing.T, c *cluster, buf *testenv.Buffer) (*Kafka, KafkaOptions) {
	o := DefaultKafkaOptions()
	o.Brokers = c.brokers
	o.EventsTopic, o.NamespacesTopic = testTopics(t)
	o.Spool.Dir = t.TempDir()
	o.Logger = slog.New(slog.NewTextHandler(teeWriter{buf, tWriter{t}}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c.deleteAtEnd(t, o)
	return openKafka(t, o), o
}

// deleteAtEnd deletes o's topics when t ends: partitions left behind would
// make every later failover of the cluster slower.
func (c *cluster) deleteAtEnd(t *testing.T, o KafkaOptions) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cl := &kafka.Client{Addr: kafka.TCP(c.brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
		if _, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{o.EventsTopic, o.NamespacesTopic}}); err != nil {
			t.Logf("delete topics: %v", err)
		}
	})
}

type teeWriter struct {
	a *testenv.Buffer
	b tWriter
}

func (w teeWriter) Write(p []byte) (int, error) {
	w.a.Write(p)
	return w.b.Write(p)
}

func testClusterTopicSettings(t *testing.T, c *cluster) {
	var buf testenv.Buffer
	k, o := clusterSink(t, c, &buf)
	closeKafka(t, k, 10*time.Second)

	ps, err := c.partitions(context.Background(), o.EventsTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if len(p.Replicas) != 3 {
			t.Errorf("partition %d has %d replicas, want 3 (min(3, brokers))", p.ID, len(p.Replicas))
		}
	}
	cl := &kafka.Client{Addr: kafka.TCP(c.brokers...), Timeout: 10 * time.Second}
	res, err := cl.DescribeConfigs(context.Background(), &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: o.EventsTopic},
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: o.NamespacesTopic},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		o.EventsTopic: {"retention.ms": strconv.FormatInt((90 * 24 * time.Hour).Milliseconds(), 10), "min.insync.replicas": "2",
			"cleanup.policy": "delete", "unclean.leader.election.enable": "false"},
		o.NamespacesTopic: {"min.insync.replicas": "2", "cleanup.policy": "compact", "unclean.leader.election.enable": "false"},
	}
	for _, r := range res.Resources {
		have := map[string]string{}
		for _, e := range r.ConfigEntries {
			have[e.ConfigName] = e.ConfigValue
		}
		for name, v := range want[r.ResourceName] {
			if have[name] != v {
				t.Errorf("topic %s: %s = %q, want %q", r.ResourceName, name, have[name], v)
			}
		}
	}
	if !strings.Contains(buf.String(), "kafka: topic settings") {
		t.Errorf("no start-up line with the topic settings:\n%s", buf.String())
	}

	// A second sink on the same topics configured otherwise warns and
	// changes nothing.
	var buf2 testenv.Buffer
	o2 := o
	o2.Spool.Dir = t.TempDir()
	o2.Retention = 24 * time.Hour
	o2.Logger = slog.New(slog.NewTextHandler(teeWriter{&buf2, tWriter{t}}, nil))
	k2 := openKafka(t, o2)
	closeKafka(t, k2, 10*time.Second)
	if !strings.Contains(buf2.String(), "setting=retention.ms have=7776000000 want=86400000") {
		t.Errorf("no warning about the differing retention:\n%s", buf2.String())
	}
}

// load writes rate messages per second, keyed by their sequence number
// (kafka.key event: every partition), until stop is closed.
type load struct {
	k    *Kafka
	sent int
	stop chan struct{}
	done chan struct{}
}

func startLoad(t *testing.T, k *Kafka, rate, from int) *load {
	l := &load{k: k, sent: from, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			want := from + int(time.Since(start).Seconds()*float64(rate))
			var msgs []Message
			for ; l.sent < want; l.sent++ {
				m := testMessage("", l.sent, time.Time{}, 100)
				m.Key = []byte("boot-1:" + strconv.Itoa(l.sent))
				m.Time = time.Now()
				msgs = append(msgs, m)
			}
			if _, err := k.Write(msgs); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
		}
	}()
	return l
}

func (l *load) finish() int {
	close(l.stop)
	<-l.done
	return l.sent
}

// lagWatch samples every partition's delivery state every 20 ms and keeps
// each one's largest lag, and when a partition that was failing recovered.
type lagWatch struct {
	mu        sync.Mutex
	max       map[int]time.Duration
	failed    map[int]bool
	recovered map[int]time.Time
	stop      chan struct{}
	done      chan struct{}
}

func watchLag(k *Kafka, topic string) *lagWatch {
	w := &lagWatch{max: map[int]time.Duration{}, failed: map[int]bool{}, recovered: map[int]time.Time{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			now := time.Now()
			w.mu.Lock()
			for _, p := range k.Partitions() {
				if p.Topic != topic {
					continue
				}
				w.max[p.Partition] = max(w.max[p.Partition], p.Lag)
				switch {
				case p.Failing:
					w.failed[p.Partition] = true
				case w.failed[p.Partition] && w.recovered[p.Partition].IsZero():
					w.recovered[p.Partition] = now
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *lagWatch) reset() {
	w.mu.Lock()
	clear(w.max)
	clear(w.failed)
	clear(w.recovered)
	w.mu.Unlock()
}

func (w *lagWatch) finish() {
	close(w.stop)
	<-w.done
}

// latencies collects the sink's kernel-to-acknowledgement latencies.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) observe(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// verify reads topic back and checks that every one of sent messages is
// there; it returns the duplicates.
func verify(t *testing.T, broker, topic string, sent int) int {
	t.Helper()
	got := readTopic(t, broker, topic)
	seen := make([]bool, sent)
	dups, n := 0, 0
	for p, msgs := range got {
		last := -1
		for _, m := range msgs {
			var v testValue
			if err := json.Unmarshal(m.Value, &v); err != nil {
				t.Fatalf("partition %d offset %d: %v", p, m.Offset, err)
			}
			if v.Seq < 0 || v.Seq >= sent {
				t.Fatalf("partition %d: seq %d out of range", p, v.Seq)
			}
			if seen[v.Seq] {
				dups++
				continue
			}
			if v.Seq < last {
				t.Errorf("partition %d: seq %d first seen after %d (order per partition broken)", p, v.Seq, last)
			}
			last = v.Seq
			seen[v.Seq] = true
			n++
		}
	}
	if n != sent {
		var missing []int
		for i, ok := range seen {
			if !ok && len(missing) < 10 {
				missing = append(missing, i)
			}
		}
		t.Errorf("%d of %d messages arrived (first missing %v)", n, sent, missing)
	}
	return dups
}

// testClusterFailover kills (SIGKILL) the node leading partition 0 of the
// events topic, or the active controller, under 2,000 messages/s on every
// partition, and restarts it.
func testClusterFailover(t *testing.T, c *cluster, controller bool) {
	var buf testenv.Buffer
	lat := &latencies{}
	o := DefaultKafkaOptions()
	o.Brokers = c.brokers
	o.EventsTopic, o.NamespacesTopic = testTopics(t)
	o.Spool.Dir = t.TempDir()
	o.Logger = slog.New(slog.NewTextHandler(teeWriter{&buf, tWriter{t}}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	o.ObserveLatency = lat.observe
	c.deleteAtEnd(t, o)
	k := openKafka(t, o)

	ctx := context.Background()
	ps, err := c.partitions(ctx, o.EventsTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	victim, part := 0, -1
	if controller {
		victim, _ = strconv.Atoi(clusterScript(t, "controller"))
	}
	for _, p := range ps {
		if victim == 0 && p.ID == 0 || controller && p.Leader.ID == victim && part < 0 {
			victim, part = p.Leader.ID, p.ID
		}
	}
	if part < 0 {
		t.Fatalf("no partition led by node %d: %+v", victim, ps)
	}

	w := watchLag(k, o.EventsTopic)
	ld := startLoad(t, k, 2000, 0)
	time.Sleep(3 * time.Second)
	w.reset() // the topic's first seconds are not the failover

	killed := time.Now()
	clusterScript(t, "kill", strconv.Itoa(victim))
	// Kafka's own delays, seen from a live broker: the election of a new
	// leader for the dead partition, and each other partition's leader
	// dropping the dead node from its ISR (until then acks=all makes it
	// wait for the dead node).
	var elected time.Duration
	isrOut := map[int]time.Duration{}
	for (elected == 0 || len(isrOut) < len(ps)-1) && time.Since(killed) < 30*time.Second {
		now, _ := c.partitions(ctx, o.EventsTopic, victim)
		for _, p := range now {
			switch {
			case p.ID == part && elected == 0 && p.Leader.ID != victim && p.Leader.ID > 0:
				elected = time.Since(killed)
			case p.ID != part && isrOut[p.ID] == 0 && !slices.ContainsFunc(p.Isr, func(b kafka.Broker) bool { return b.ID == victim }):
				isrOut[p.ID] = time.Since(killed)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if elected == 0 || len(isrOut) < len(ps)-1 {
		t.Fatalf("within 30s: new leader for partition %d after %v; dead node out of the other ISRs after %v", part, elected, isrOut)
	}
	time.Sleep(5 * time.Second)
	sent := ld.finish()
	closeKafka(t, k, 30*time.Second)
	w.finish()
	lags := w.max
	resumed := w.recovered[part].Sub(killed)

	st := k.Stats()
	dups := verify(t, c.alive(victim)[0], o.EventsTopic, sent)
	t.Logf("killed node %d (leader of partition %d, controller %v): election %v, dead partition resumed after %v; "+
		"dead node out of the other partitions' ISR after %v; %d messages, %d duplicates; "+
		"largest delivery lag per partition %v; latency p50 %v p99 %v max %v; requests %d, errors %v, refreshes %d",
		victim, part, controller, elected.Round(time.Millisecond), resumed.Round(time.Millisecond), isrOut, sent, dups, lags,
		lat.quantile(.5), lat.quantile(.99), lat.quantile(1), st.Requests, st.ErrorCodes, st.MetadataRefreshes)
	// With acks=all every partition waits for each replica in its ISR,
	// and with 3 replicas on 3 nodes the killed node is in every ISR: the
	// healthy partitions wait until their leaders have dropped it from
	// their ISR (replica.lag.time.max.ms, 0.5 s on this cluster, plus the
	// controller's commit of the change; a new controller's when the
	// active one died), not until the dead partition has a new leader.
	// What auditns adds to that must stay under a second.
	for p, lag := range lags {
		if p == part {
			continue
		}
		if lag >= isrOut[p]+time.Second {
			t.Errorf("healthy partition %d: delivery lag reached %v, a second or more beyond its ISR change (%v)", p, lag, isrOut[p])
		}
		if lag >= time.Second {
			t.Logf("healthy partition %d: delivery lag %v is over 1 s: the cluster took %v to drop the dead node from its ISR", p, lag, isrOut[p])
		}
	}
	if w.recovered[part].IsZero() {
		t.Errorf("partition %d never recovered (failed: %v)", part, w.failed[part])
	} else if resumed > elected+2*time.Second {
		t.Errorf("partition %d resumed %v after the kill, later than its election (%v) + 2s", part, resumed, elected)
	}
	log := buf.String()
	if !strings.Contains(log, fmt.Sprintf("partition failing; its messages wait in the spool, the other partitions keep flowing\" sink=%q topic=%s partition=%d", k.Name(), o.EventsTopic, part)) {
		t.Errorf("no warning for partition %d in the log", part)
	}
	if !strings.Contains(log, fmt.Sprintf("partition recovered\" sink=%q topic=%s partition=%d", k.Name(), o.EventsTopic, part)) {
		t.Errorf("no recovery line for partition %d in the log", part)
	}
	clusterScript(t, "start-node", strconv.Itoa(victim))
}

// testClusterEmptyDisk kills a node, empties its data directory, starts it
// again, waits until it is back in every ISR, then kills another node, so
// that the emptied one has to lead: nothing may be lost.
func testClusterEmptyDisk(t *testing.T, c *cluster) {
	var buf testenv.Buffer
	k, o := clusterSink(t, c, &buf)
	ld := startLoad(t, k, 2000, 0)
	time.Sleep(2 * time.Second)

	wiped, other := 3, 1
	clusterScript(t, "kill", strconv.Itoa(wiped))
	clusterScript(t, "wipe", strconv.Itoa(wiped))
	time.Sleep(time.Second)
	clusterScript(t, "start-node", strconv.Itoa(wiped))
	deadline := time.Now().Add(60 * time.Second)
	for {
		ps, err := c.partitions(context.Background(), o.EventsTopic, 0)
		full := err == nil
		for _, p := range ps {
			full = full && len(p.Isr) == 3
		}
		if full {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d not back in every ISR within 60s: %+v %v", wiped, ps, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	clusterScript(t, "kill", strconv.Itoa(other))
	time.Sleep(4 * time.Second)
	sent := ld.finish()
	closeKafka(t, k, 30*time.Second)
	clusterScript(t, "start-node", strconv.Itoa(other))
	dups := verify(t, c.alive(other)[0], o.EventsTopic, sent)
	t.Logf("node %d restarted with an empty data directory, then node %d killed: %d messages, %d duplicates", wiped, other, sent, dups)
}

// testClusterSinkRestart stops the sink while one partition has no leader
// and the others have gone on (their acknowledgements out of step with the
// spool's single checkpoint), and starts it again on the same spool:
// nothing may be lost.
func testClusterSinkRestart(t *testing.T, c *cluster) {
	var buf testenv.Buffer
	k, o := clusterSink(t, c, &buf)
	ps, err := c.partitions(context.Background(), o.EventsTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	victim := ps[0].Leader.ID
	ld := startLoad(t, k, 2000, 0)
	time.Sleep(2 * time.Second)
	clusterScript(t, "kill", strconv.Itoa(victim))
	time.Sleep(700 * time.Millisecond)
	sent := ld.finish()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	k.Close(ctx)
	cancel()
	st := k.Stats()
	if st.Spool.Records == 0 {
		t.Fatalf("the sink delivered everything before it was stopped: no lagging partition (stats %+v)", st)
	}
	t.Logf("stopped with %d records in the spool, %d of %d messages acknowledged", st.Spool.Records, st.Published, sent)

	k2 := openKafka(t, o)
	ld = startLoad(t, k2, 2000, sent)
	time.Sleep(3 * time.Second)
	sent = ld.finish()
	closeKafka(t, k2, 30*time.Second)
	dups := verify(t, c.alive(victim)[0], o.EventsTopic, sent)
	t.Logf("killed node %d, sink restarted: %d messages, %d duplicates", victim, sent, dups)
	clusterScript(t, "start-node", strconv.Itoa(victim))
}
