package metrics

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Health asks the daemon serving addr (metrics.listen) for /healthz. It
// returns the answer's first 4 KiB, trimmed, and an error when the daemon
// does not answer or answers with a status other than 200.
func Health(addr string, timeout time.Duration) (string, error) {
	cl := http.Client{Timeout: timeout}
	resp, err := cl.Get("http://" + addr + "/healthz")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	body := strings.TrimSpace(string(b))
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("/healthz %d: %s", resp.StatusCode, body)
	}
	return body, nil
}

// Status is a running daemon's view of itself, from its metrics endpoint.
type Status struct {
	Endpoint string `json:"endpoint"`
	Health   string `json:"health"`
	// Metrics are the auditns_* samples without labels, by name without
	// the auditns_ prefix; a histogram gives its _sum and _count.
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// Scrape reads /healthz and /metrics of the daemon serving addr. A daemon
// that does not answer gives a Status saying so, not an error: the caller
// reports what it found.
func Scrape(addr string, timeout time.Duration) *Status {
	st := &Status{Endpoint: addr}
	body, err := Health(addr, timeout)
	if err != nil && body == "" {
		st.Health = "not answering: " + err.Error()
		return st
	}
	st.Health = body
	cl := http.Client{Timeout: timeout}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	if m, err := parseMetrics(resp.Body); err == nil {
		st.Metrics = m
	}
	return st
}

// parseMetrics reads Prometheus text exposition and keeps the auditns_*
// samples without labels.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, fam := range fams {
		name, ok := strings.CutPrefix(name, "auditns_")
		if !ok {
			continue
		}
		for _, m := range fam.GetMetric() {
			if len(m.GetLabel()) > 0 {
				continue
			}
			switch fam.GetType() {
			case dto.MetricType_COUNTER:
				out[name] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[name] = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				out[name] = m.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_sum"] = m.GetHistogram().GetSampleSum()
				out[name+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out, nil
}
