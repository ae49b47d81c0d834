// Package metrics serves auditns's Prometheus metrics and health check.
// Every metric reads counters the pipeline keeps anyway (atomics), at scrape
// time, so metrics cost nothing per event; only the publish latency
// histogram is observed as acknowledgements arrive.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Source is what the metrics read. Each func is called at scrape time and
// may be nil when that part is not running.
type Source struct {
	RecordsReceived func() uint64 // records read from the kernel
	RecordsDropped  func() uint64 // records dropped: pipeline queue full
	EventsAssembled func() uint64
	EventsWritten   func() uint64 // events handed to the sink
	LossEvents      func() uint64
	SequenceGaps    func() uint64 // audit sequence numbers missing
	KernelLost      func() uint64 // growth of the kernel's lost counter
	KernelBacklog   func() uint64
	SinkDrops       func() uint64
	Published       func() uint64 // acknowledged by Kafka
	Spooled         func() uint64 // appended to the spool
	SpoolBytes      func() int64
	SpoolOldest     func() time.Time // append time of the oldest unacknowledged record
	Namespaces      func() int
	// The kernel-side subject source (nil when /proc is the source).
	SubjectJoined    func() uint64 // events whose namespaces the kernel captured
	SubjectFallbacks func() uint64 // events it had no join for (answered from /proc)
	SubjectDropped   func() uint64 // events whose join the kernel could not write (ring full)
	// Sink is the Kafka sink's delivery health, exported as auditns_sink_*
	// with sink="kafka".
	Sink func() SinkStats
	// StateDirFailing is true while the state directory cannot be written.
	StateDirFailing func() bool
	// Health returns nil when healthy, else why not.
	Health func() error
}

// Server is the metrics and health endpoint.
type Server struct {
	reg     *prometheus.Registry
	latency prometheus.Histogram
	src     Source
	srv     *http.Server
	ln      net.Listener
}

// New registers the metrics of src.
func New(src Source) *Server {
	s := &Server{reg: prometheus.NewRegistry(), src: src}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	counter := func(name, help string, f func() uint64) {
		if f != nil {
			s.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "auditns", Name: name, Help: help},
				func() float64 { return float64(f()) }))
		}
	}
	gauge := func(name, help string, f func() float64) {
		s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "auditns", Name: name, Help: help}, f))
	}
	counter("records_received_total", "Audit records read from the kernel.", src.RecordsReceived)
	counter("records_dropped_total", "Audit records dropped because the pipeline queue was full.", src.RecordsDropped)
	counter("events_assembled_total", "Audit events assembled from records.", src.EventsAssembled)
	counter("events_written_total", "Events handed to the sink.", src.EventsWritten)
	counter("loss_events_total", "Loss events written into the stream.", src.LossEvents)
	counter("sequence_gap_total", "Audit sequence numbers never received.", src.SequenceGaps)
	counter("kernel_lost_total", "Growth of the kernel's lost counter since start.", src.KernelLost)
	counter("sink_dropped_total", "Events the sink dropped (spool full).", src.SinkDrops)
	counter("events_published_total", "Messages acknowledged by Kafka.", src.Published)
	counter("events_spooled_total", "Messages appended to the spool.", src.Spooled)
	counter("subject_kernel_events_total", "Events whose subject's namespaces the kernel-side source captured (ns_src kernel).", src.SubjectJoined)
	counter("subject_fallback_events_total", "Events the kernel-side source had no join for, answered by the /proc reader.", src.SubjectFallbacks)
	counter("subject_ring_dropped_total", "Events whose namespaces the kernel-side programs could not pass on because the ring buffer was full (answered from /proc instead).", src.SubjectDropped)
	if f := src.KernelBacklog; f != nil {
		gauge("kernel_backlog", "Kernel audit backlog at the last poll.", func() float64 { return float64(f()) })
	}
	if f := src.SpoolBytes; f != nil {
		gauge("spool_bytes", "Unacknowledged bytes in the spool.", func() float64 { return float64(f()) })
	}
	if f := src.SpoolOldest; f != nil {
		gauge("spool_oldest_unacked_seconds", "Age of the oldest unacknowledged spooled message.", func() float64 {
			t := f()
			if t.IsZero() {
				return 0
			}
			return time.Since(t).Seconds()
		})
	}
	if f := src.Namespaces; f != nil {
		gauge("namespaces_known", "Namespaces in the registry of this boot.", func() float64 { return float64(f()) })
	}
	if src.Sink != nil {
		s.reg.MustRegister(newSinkCollector("kafka", src.Sink))
	}
	if f := src.StateDirFailing; f != nil {
		gauge("state_dir_failing", "1 while the state directory cannot be written.", func() float64 {
			if f() {
				return 1
			}
			return 0
		})
	}
	gauge("healthy", "1 when /healthz answers 200.", func() float64 {
		if s.health() == nil {
			return 1
		}
		return 0
	})
	s.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "auditns", Name: "publish_latency_seconds",
		Help:    "Time from the kernel's event timestamp to the sink's acknowledgement.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	s.reg.MustRegister(s.latency)
	return s
}

// ObserveLatency records one kernel-to-acknowledgement latency.
func (s *Server) ObserveLatency(d time.Duration) { s.latency.Observe(d.Seconds()) }

func (s *Server) health() error {
	if s.src.Health == nil {
		return nil
	}
	return s.src.Health()
}

// Handler serves /metrics and /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.health(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unhealthy: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Listen starts serving on addr ("127.0.0.1:9464"); Close stops.
func (s *Server) Listen(addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics.listen %s: %w", addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "error", err)
		}
	}()
	log.Info("metrics", "listen", ln.Addr().String(), "paths", "/metrics /healthz")
	return nil
}

// Addr is the address served, once listening.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops the server.
func (s *Server) Close(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}
