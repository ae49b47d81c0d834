package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/testenv"
)

// tailProcess runs `auditns tail` and collects its standard output.
func tailProcess(t *testing.T, args ...string) (*exec.Cmd, *testenv.Buffer) {
	t.Helper()
	cmd := exec.Command(auditnsBinary(t), append([]string{"tail"}, args...)...)
	out, errb := &testenv.Buffer{}, &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(errb.String(), "following") {
		if time.Now().After(deadline) {
			t.Fatalf("tail did not start: %s", errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cmd, out
}

// An analyst follows one network namespace: `tail --ns net:SERIAL` shows
// the events of a process in it and not those of the host, and `--json`
// prints exactly what is on the topic.
func TestTailFollowsOneNamespace(t *testing.T) {
	requireKernel(t)
	brokers := testenv.KafkaBrokers(t)
	suffix := fmt.Sprintf("%x", rand.Uint32())
	topic := "e2e.tail." + suffix
	start(t, kafkaSinkYAML(brokers, topic, topic+".ns", filepath.Join(t.TempDir(), "spool")))

	holder := exec.Command("unshare", "--net", "--uts", "/bin/sh", "-c", "sleep 30", "auditns-holder-"+suffix)
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Signal(syscall.SIGKILL); holder.Wait() }()
	var netSerial uint64
	readUntil(t, brokers, topic, 20*time.Second, func(m kafka.Message) bool {
		var ev event.Event
		if json.Unmarshal(m.Value, &ev) == nil && hasArg(&ev, "auditns-holder-"+suffix) && ev.NS != nil && ev.NS.Net.Serial >= 9 {
			netSerial = ev.NS.Net.Serial
			return true
		}
		return false
	})
	if netSerial == 0 {
		t.Fatal("no event of the namespace holder")
	}
	ns := fmt.Sprintf("net:%d", netSerial)
	human, humanOut := tailProcess(t, "--kafka-brokers", brokers, "--topic", topic, "--ns", ns)
	asJSON, jsonOut := tailProcess(t, "--kafka-brokers", brokers, "--topic", topic, "--ns", ns, "--json")

	inside, outside := marker(), marker()
	if err := exec.Command("nsenter", "-t", strconv.Itoa(holder.Process.Pid), "-n", "-u", "/bin/sh", "-c", "sleep 0.2", inside).Run(); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("/bin/sh", "-c", "sleep 0.2", outside).Run(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(jsonOut.String(), inside) || !strings.Contains(humanOut.String(), inside) {
		if time.Now().After(deadline) {
			t.Fatalf("tail --ns %s did not show %s:\nhuman: %s\njson: %s", ns, inside, humanOut.String(), jsonOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the host's event is on the topic by now too
	human.Process.Signal(syscall.SIGTERM)
	asJSON.Process.Signal(syscall.SIGTERM)
	if err := human.Wait(); err != nil {
		t.Fatalf("tail exit on SIGTERM: %v", err)
	}
	asJSON.Wait()
	if strings.Contains(humanOut.String(), outside) || strings.Contains(jsonOut.String(), outside) {
		t.Fatalf("tail --ns %s showed a host process's event", ns)
	}
	// --json: every line byte-equal to a message on the topic.
	onTopic := map[string]bool{}
	readUntil(t, brokers, topic, 5*time.Second, func(m kafka.Message) bool {
		onTopic[string(m.Value)] = true
		return false
	})
	lines := 0
	for _, line := range strings.Split(strings.TrimSpace(jsonOut.String()), "\n") {
		lines++
		if !onTopic[line] {
			t.Fatalf("tail --json printed a line that is not a message on the topic:\n%s", line)
		}
	}
	if lines == 0 {
		t.Fatal("tail --json printed nothing")
	}
	for _, line := range strings.Split(strings.TrimSpace(humanOut.String()), "\n") {
		if strings.Contains(line, inside) && !strings.Contains(line, ns) {
			t.Fatalf("readable line does not show the namespace %s: %q", ns, line)
		}
	}
}
