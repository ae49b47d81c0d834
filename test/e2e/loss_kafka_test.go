package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/testenv"
)

// healthz returns /healthz's status code.
func healthz(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// degradedFor polls /healthz every poll for d and reports whether it was
// ever unhealthy (503): a fault shorter than poll can go unseen.
func degradedFor(t *testing.T, addr string, d, poll time.Duration) bool {
	t.Helper()
	degraded := false
	for start := time.Now(); time.Since(start) < d; time.Sleep(poll) {
		if healthz(t, addr) != 200 {
			degraded = true
		}
	}
	return degraded
}

// Kafka sink, spool capped at 8 MiB, broker stopped for 20 s under 2,000
// events/s: the spool fills and refuses events, and the topic's loss
// events sum to exactly the number of events missing from it (the loss
// events themselves go into the room the spool keeps for them, or carry
// their counts forward). /healthz is degraded while events are refused.
func TestKafkaSpoolFullLossIsExact(t *testing.T) {
	requireKernel(t)
	brokers := testenv.KafkaBrokers(t)
	testenv.LockKafka(t)
	root := repoRoot(t)
	dir := t.TempDir()
	key := fmt.Sprintf("auditns-e2e-spoolfull-%x", rand.Uint32())
	gen := newGenerator(t, 2000, 32*time.Second, key)
	topic := "e2e.spoolfull." + key
	r := start(t, generatorOnlyYAML(t, dir, gen)+kafkaSinkYAML(brokers, topic, topic+".ns", dir+"/spool")+
		"    max_bytes: 8388608\nmetrics:\n  listen: 127.0.0.1:0\n")
	addr := r.d.Metrics().Addr()
	gen.Go()
	time.Sleep(4 * time.Second)
	stopBroker(t, root)
	down := time.Now()
	degraded := degradedFor(t, addr, 20*time.Second, 250*time.Millisecond)
	startBroker(t, root)
	t.Logf("broker down for %v", time.Since(down).Round(time.Millisecond))
	n := gen.Wait(t)

	seqs, lossIDs, lossSum, byReason := keyedAndLoss(t, brokers, topic, key, n, 120*time.Second)
	healthyAfter := healthz(t, addr) == 200
	t.Logf("generated %d at 2000/s, %d in the topic, loss events %d summing %d %v; degraded during the outage %v, healthy after %v",
		n, len(seqs), len(lossIDs), lossSum, byReason, degraded, healthyAfter)
	if uint64(n-len(seqs)) != lossSum {
		t.Fatalf("missing from the topic %d, loss events sum to %d", n-len(seqs), lossSum)
	}
	if byReason["spool_full"] == 0 || !degraded || !healthyAfter {
		t.Fatalf("spool_full %d, degraded %v, healthy after %v", byReason["spool_full"], degraded, healthyAfter)
	}
}

// The disk under the spool fills while Kafka is up: the batches the spool
// cannot write are refused whole and counted (disk_full), /healthz is
// degraded, and once there is room again the spool writes a new segment and
// the loss events reach the topic: missing from the topic = Σ loss counts.
func TestKafkaSpoolDiskFullLossIsExact(t *testing.T) {
	requireKernel(t)
	brokers := testenv.KafkaBrokers(t)
	disk := tmpfs(t, "128m")
	dir := t.TempDir()
	key := fmt.Sprintf("auditns-e2e-spooldisk-%x", rand.Uint32())
	gen := newGenerator(t, 2000, 14*time.Second, key)
	topic := "e2e.spooldisk." + key
	r := start(t, generatorOnlyYAML(t, dir, gen)+kafkaSinkYAML(brokers, topic, topic+".ns", disk+"/spool")+
		"    segment_bytes: 1048576\nmetrics:\n  listen: 127.0.0.1:0\n")
	addr := r.d.Metrics().Addr()
	gen.Go()
	time.Sleep(3 * time.Second)
	filler := fill(t, disk)
	// A short fill can degrade the sink for well under 200 ms.
	degraded := degradedFor(t, addr, 6*time.Second, 20*time.Millisecond)
	os.Remove(filler)
	n := gen.Wait(t)

	seqs, lossIDs, lossSum, byReason := keyedAndLoss(t, brokers, topic, key, n, 60*time.Second)
	healthyAfter := healthz(t, addr) == 200
	t.Logf("generated %d, %d in the topic, loss events %d summing %d %v; degraded %v, healthy after %v",
		n, len(seqs), len(lossIDs), lossSum, byReason, degraded, healthyAfter)
	if uint64(n-len(seqs)) != lossSum || byReason["disk_full"] == 0 || !degraded || !healthyAfter {
		t.Fatalf("missing from the topic %d, loss events sum to %d (disk_full %d); degraded %v, healthy after %v",
			n-len(seqs), lossSum, byReason["disk_full"], degraded, healthyAfter)
	}
}

// keyedAndLoss reads topic until the generator's n events are there or
// accounted for by loss events; it returns the sequence numbers of the
// key's syscall events, the loss events by id, their sum and their sum by
// reason (each loss event once, however often delivered).
func keyedAndLoss(t *testing.T, brokers, topic, key string, n int, within time.Duration) (seqs map[uint32]bool, lossIDs map[string]bool, lossSum uint64, byReason map[string]uint64) {
	t.Helper()
	var mu sync.Mutex
	seqs, lossIDs, byReason = map[uint32]bool{}, map[string]bool{}, map[string]uint64{}
	readUntil(t, brokers, topic, within, func(m kafka.Message) bool {
		var ev event.Event
		if json.Unmarshal(m.Value, &ev) != nil {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ev.Event.Kind == event.KindLoss && ev.Loss != nil:
			if !lossIDs[ev.Event.ID] {
				lossIDs[ev.Event.ID] = true
				lossSum += ev.Loss.Count
				byReason[ev.Loss.Reason] += ev.Loss.Count
			}
		case len(ev.Tags) > 0 && ev.Tags[0] == key && ev.Syscall != nil:
			seqs[ev.Event.Sequence] = true
		}
		return uint64(len(seqs))+lossSum >= uint64(n)
	})
	// Copies, so that a reader still returning cannot change them.
	mu.Lock()
	defer mu.Unlock()
	return maps.Clone(seqs), maps.Clone(lossIDs), lossSum, maps.Clone(byReason)
}
