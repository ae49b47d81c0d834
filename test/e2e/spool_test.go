package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/testenv"
)

// keyedEvents reads the events with rule key key from topic until want
// distinct sequence numbers are there (or within passes); it returns the
// first-seen order of sequence numbers per partition and the duplicates.
func keyedEvents(t *testing.T, brokers, topic, key string, want int, within time.Duration) (perPartition map[int][]uint32, distinct, dups int) {
	t.Helper()
	seen := map[uint32]bool{}
	perPartition = map[int][]uint32{}
	readUntil(t, brokers, topic, within, func(m kafka.Message) bool {
		var ev event.Event
		// The rule's own CONFIG_CHANGE carries the key too: count syscalls.
		if json.Unmarshal(m.Value, &ev) != nil || len(ev.Tags) == 0 || ev.Tags[0] != key || ev.Syscall == nil {
			return false
		}
		if seen[ev.Event.Sequence] {
			dups++
		} else {
			seen[ev.Event.Sequence] = true
			perPartition[m.Partition] = append(perPartition[m.Partition], ev.Event.Sequence)
		}
		return len(seen) >= want
	})
	return perPartition, len(seen), dups
}

// generatorOnlyYAML writes gen's rule to dir/audit.rules and returns the
// configuration that audits with that rule only, without the namespace
// rules.
func generatorOnlyYAML(t *testing.T, dir string, gen *generator) string {
	t.Helper()
	rules := filepath.Join(dir, "audit.rules")
	if err := os.WriteFile(rules, []byte(gen.Rule+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "audit:\n  rules_file: " + rules + "\nenrich:\n  ns_rules: false\n"
}

func inOrder(seqs []uint32) bool {
	return sort.SliceIsSorted(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
}

// Crash: auditns is killed with SIGKILL while Kafka is unreachable and its
// spool holds events; the next auditns on the same spool delivers them all,
// and cleans up the rules the dead one left.
func TestCrashWithSpooledEventsDeliveredAfterRestart(t *testing.T) {
	requireKernel(t)
	brokers := testenv.KafkaBrokers(t)
	dir := t.TempDir()
	key := fmt.Sprintf("auditns-e2e-crash-%x", rand.Uint32())
	gen := newGenerator(t, 2000, 2*time.Second, key)
	audit := generatorOnlyYAML(t, dir, gen)
	topic := "e2e.crash." + key
	cfg := func(brokers string) string {
		p := filepath.Join(dir, "auditns-"+fmt.Sprint(rand.Uint32())+".yaml")
		os.WriteFile(p, []byte(fmt.Sprintf("state_dir: %s\n", dir+"/state")+audit+
			kafkaSinkYAML(brokers, topic, topic+".ns", dir+"/spool")), 0o600)
		return p
	}
	// Nothing listens on 127.0.0.1:9: Kafka is "down".
	a := startProcess(t, "run", "--config", cfg("127.0.0.1:9"))
	gen.Go()
	n := gen.Wait(t)
	time.Sleep(time.Second) // let the last events reach the spool
	a.stop(t, syscall.SIGKILL)

	b := startProcess(t, "run", "--config", cfg(brokers))
	parts, distinct, dups := keyedEvents(t, brokers, topic, key, n, 60*time.Second)
	b.stop(t, syscall.SIGTERM)
	t.Logf("generated %d, delivered %d distinct (%d duplicates) after kill -9 and restart", n, distinct, dups)
	if distinct != n {
		t.Fatalf("delivered %d of %d spooled events", distinct, n)
	}
	for p, seqs := range parts {
		if !inOrder(seqs) {
			t.Fatalf("partition %d out of kernel order", p)
		}
	}
}

// Outage: under a steady load of audited syscalls the broker is stopped for
// 20 s and started again; every event the pipeline accepted arrives, in the
// kernel's order per partition, and the kernel lost nothing because of it.
func TestKafkaOutageUnderLoad(t *testing.T) {
	requireKernel(t)
	brokers := testenv.KafkaBrokers(t)
	testenv.LockKafka(t)
	root := repoRoot(t)
	dir := t.TempDir()
	key := fmt.Sprintf("auditns-e2e-outage-%x", rand.Uint32())
	gen := newGenerator(t, 3000, 30*time.Second, key)
	topic := "e2e.outage." + key
	r := start(t, generatorOnlyYAML(t, dir, gen)+kafkaSinkYAML(brokers, topic, topic+".ns", dir+"/spool"))
	lostBefore, _ := kernelState(t)
	gen.Go()
	time.Sleep(4 * time.Second)
	stopBroker(t, root)
	down := time.Now()
	time.Sleep(20 * time.Second)
	startBroker(t, root)
	t.Logf("broker down for %v", time.Since(down).Round(time.Millisecond))
	n := gen.Wait(t)
	parts, distinct, dups := keyedEvents(t, brokers, topic, key, n, 90*time.Second)
	lostAfter, _ := kernelState(t)
	st := r.d.Pipeline().Stats()
	t.Logf("generated %d at 3000/s, delivered %d distinct, %d duplicates; sink drops %d; kernel lost %d→%d",
		n, distinct, dups, st.SinkDrops.Load(), lostBefore.Lost, lostAfter.Lost)
	if lostAfter.Lost != lostBefore.Lost {
		t.Errorf("the kernel lost %d events during the outage", lostAfter.Lost-lostBefore.Lost)
	}
	if distinct != n {
		t.Fatalf("delivered %d of %d events", distinct, n)
	}
	for p, seqs := range parts {
		if !inOrder(seqs) {
			t.Fatalf("partition %d: events out of the kernel's order", p)
		}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

func stopBroker(t *testing.T, root string) {
	t.Helper()
	if b, err := exec.Command(filepath.Join(root, "scripts/kafka/stop.sh")).CombinedOutput(); err != nil {
		t.Fatalf("stop broker: %v\n%s", err, b)
	}
}

func startBroker(t *testing.T, root string) {
	t.Helper()
	if b, err := exec.Command(filepath.Join(root, "scripts/kafka/start.sh")).CombinedOutput(); err != nil {
		t.Fatalf("start broker: %v\n%s", err, b)
	}
}
