package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/testenv"
)

// queriedMetrics are the metric names the Grafana dashboard and the alert
// rules query (up is Prometheus's own).
func queriedMetrics(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, f := range []string{"../../packaging/grafana/auditns.json", "../../packaging/prometheus/auditns-alerts.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A name after "{{" is a label in a legend ({{go_version}}).
		for _, m := range regexp.MustCompile(`(\{\{)?\b((?:auditns|process|go)_[a-z0-9_]+)\b`).FindAllStringSubmatch(string(b), -1) {
			if m[1] == "" {
				seen[m[2]] = true
			}
		}
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// scrapeNames returns the metric names a scrape serves.
func scrapeNames(t *testing.T, addr string) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics endpoint: %v", err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Every metric the dashboard and the alert rules query is served by auditns
// run --metrics with the Kafka sink, on the real kernel; auditns
// healthcheck agrees with /healthz while it runs and fails once it stopped.
func TestDashboardMetricsAreServed(t *testing.T) {
	requireKernel(t)
	brokers := testenv.KafkaBrokers(t)
	bin := auditnsBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	topic := fmt.Sprintf("auditns.e2e.dashboard.%d", time.Now().UnixNano())
	cmd := exec.Command(bin, "run", "--metrics", addr, "--output", "kafka", "--kafka-brokers", brokers, "--state-dir", filepath.Join(dir, "state"))
	cmd.Env = append(os.Environ(), "AUDITNS_KAFKA_TOPIC="+topic, "AUDITNS_KAFKA_NAMESPACES_TOPIC="+topic+".ns", "AUDITNS_KAFKA_PARTITIONS=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := waitCh(cmd)
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("auditns run: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("auditns did not stop within 30s\n%s", stderr.String())
		}
	}
	defer stop()

	health := func() (string, int) {
		out, err := exec.Command(bin, "healthcheck", "--metrics", addr).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if out, code := health(); code == 0 && out == "ok\n" {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("auditns exited: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("auditns healthcheck not ok within 30s\n%s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Events through the whole path, so that the latency histogram and the
	// Kafka counters have samples.
	for i := 0; i < 20; i++ {
		exec.Command("/bin/true", marker()).Run()
	}
	deadline = time.Now().Add(20 * time.Second)
	var names map[string]bool
	for {
		names = scrapeNames(t, addr)
		if names["auditns_publish_latency_seconds_bucket"] && scrape(t, addr)["auditns_events_published_total"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event acknowledged by Kafka within 20s\n%s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	queried := queriedMetrics(t)
	if len(queried) < 10 {
		t.Fatalf("only %d metrics found in the dashboard and rules: %v", len(queried), queried)
	}
	for _, n := range queried {
		if !names[n] {
			t.Errorf("the dashboard or the alert rules query %s, which auditns does not serve", n)
		}
	}
	t.Logf("%d metrics queried: %v", len(queried), queried)

	stop()
	if out, code := health(); code != 1 || !strings.HasPrefix(out, "auditns: unhealthy:") {
		t.Fatalf("healthcheck after stop: exit %d, %q", code, out)
	}
}
