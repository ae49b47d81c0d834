package enrich

import (
	"log/slog"

	"github.com/auditns/auditns/internal/event"
)

// Subjects tells who the subject of an event was: it sets the event's
// namespaces (ev.NS), where they came from (ev.NSSrc), the container and
// what it knows of the process's identity (process.entity_id, vpid). Two
// implement it: the kernel-side source (package subject), which captured
// them when the kernel wrote the event, and the /proc reader
// (NewProcSubjects), which reads the live process afterwards and is the
// fallback where BPF cannot load.
type Subjects interface {
	// Annotate is called once per event with a subject pid, from one
	// goroutine. change is the event's ns_change (nil if none); ended
	// reports that the event's records ended with an EOE record.
	Annotate(ev *event.Event, pid, ppid int, change *event.NSChange, ended bool)
	// Close releases what the source holds.
	Close() error
}

// NewProcSubjects returns the /proc reader: a per-process cache of
// namespaces read through pidfds and /proc/<pid>/ns (opts.Namespaces
// identifies them), with an exit watcher. It uses opts.ProcRoot,
// CacheSize, Namespaces and Logger, with New's defaults.
func NewProcSubjects(opts Options) (Subjects, error) {
	opts.setDefaults()
	return newProcCache(opts.ProcRoot, opts.CacheSize, opts.Namespaces, opts.Logger)
}

// DefaultCacheSize is Options.CacheSize's default (and the configuration key
// enrich.process_cache's).
const DefaultCacheSize = 8192

// setDefaults fills what New and NewProcSubjects default.
func (o *Options) setDefaults() {
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Annotate implements Subjects; the /proc reader has no use for ended.
func (c *procCache) Annotate(ev *event.Event, pid, ppid int, change *event.NSChange, ended bool) {
	c.annotate(ev, pid, ppid, change)
}

// Close implements Subjects.
func (c *procCache) Close() error { return c.close() }
