package e2e

import (
	"bufio"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/event"
)

func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics endpoint: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "auditns_") && !strings.Contains(line, "{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[1], 64)
			out[f[0]] = v
		}
	}
	return out
}

// The endpoint answers under load, and after the load its counters match
// what reached the sink.
func TestMetricsUnderLoad(t *testing.T) {
	requireKernel(t)
	r := start(t, "mode: unicast\nmetrics:\n  listen: 127.0.0.1:0\n")
	addr := r.d.Metrics().Addr()
	m := marker()
	load := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 1500 ]; do /bin/true "+m+"; i=$((i+1)); done")
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	scrapes := 0
	finished := waitCh(load)
	for done := false; !done; {
		select {
		case <-finished:
			done = true
		case <-time.After(100 * time.Millisecond):
			if v := scrape(t, addr); v["auditns_healthy"] != 1 {
				t.Fatalf("unhealthy under load: %v", v)
			}
			scrapes++
		}
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("healthz %d %q", resp.StatusCode, body)
	}
	// Wait for the marker execs to reach the file, then compare.
	deadline := time.Now().Add(20 * time.Second)
	var markers int
	for time.Now().Before(deadline) {
		markers = 0
		for _, e := range events(t, r.out) {
			if p, ok := e["process"].(map[string]any); ok {
				if args, ok := p["args"].([]any); ok && len(args) == 2 && args[1] == m {
					markers++
				}
			}
		}
		if markers >= 1500 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The host keeps writing events (its own activity) while the test
	// reads: compare a scrape with the file only when the file did not
	// change around it.
	countKinds := func() map[string]int {
		kinds := map[string]int{}
		for _, e := range events(t, r.out) {
			if ev, ok := e["event"].(map[string]any); ok {
				kinds[ev["kind"].(string)]++
			}
		}
		return kinds
	}
	var v map[string]float64
	var kinds map[string]int
	for try := 0; try < 50; try++ {
		before := countKinds()
		v = scrape(t, addr)
		kinds = countKinds()
		if before["event"] == kinds["event"] && before["loss"] == kinds["loss"] && int(v["auditns_events_written_total"]) == kinds["event"] {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d scrapes under load; markers %d; metrics %v; kinds %v", scrapes, markers, v, kinds)
	if markers+int(v["auditns_sequence_gap_total"]) < 1500 {
		t.Fatalf("%d of 1500 marker execs arrived and %v sequence numbers are reported missing", markers, v["auditns_sequence_gap_total"])
	}
	if int(v["auditns_events_written_total"]) != kinds["event"] || int(v["auditns_loss_events_total"]) != kinds[event.ECSKindLoss] {
		t.Fatalf("events_written_total %v vs %d events in the file; loss_events_total %v vs %d", v["auditns_events_written_total"], kinds["event"], v["auditns_loss_events_total"], kinds[event.ECSKindLoss])
	}
	if v["auditns_records_received_total"] < float64(kinds["event"]) || v["auditns_events_assembled_total"] < float64(kinds["event"]) {
		t.Fatalf("records_received %v / assembled %v below %d events", v["auditns_records_received_total"], v["auditns_events_assembled_total"], kinds["event"])
	}
	if v["auditns_namespaces_known"] < 8 || scrapes == 0 {
		t.Fatalf("namespaces_known %v, scrapes %d", v["auditns_namespaces_known"], scrapes)
	}
}

func waitCh(cmd *exec.Cmd) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	return ch
}
