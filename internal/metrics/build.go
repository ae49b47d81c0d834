package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditns/auditns/internal/buildinfo"
)

// buildInfo is the constant 1 labelled with the running build, so that a
// dashboard can show which version each host runs and alerts can join on it.
func buildInfo() prometheus.Collector {
	b := buildinfo.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "auditns", Name: "build_info",
		Help:        "1, labelled with the version, commit and Go release of the running auditns.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.ShortCommit(), "go_version": b.GoVersion},
	})
	g.Set(1)
	return g
}
