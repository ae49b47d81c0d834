// Package enrich turns an assembled audit event (its records) into an
// auditns.event/1 object: ECS-aligned fields from go-libaudit's aucoalesce,
// resolved user and group names, decoded arguments and proctitle, the
// subject's namespaces and container, and what a namespace-changing syscall
// changed.
package enrich

import (
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-libaudit/v2/aucoalesce"
	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/record"
)

// Options configure an Enricher.
type Options struct {
	// HostName is host.name; default os.Hostname().
	HostName string
	// BootID qualifies event ids ("<boot_id>:<seq>"); required.
	BootID string
	// Kernel is host.kernel (uname -r).
	Kernel string
	// Raw includes the records as the kernel sent them in auditd.records.
	Raw bool
	// Namespaces resolves a process's namespaces; nil leaves ns out.
	Namespaces Observer
	// ProcRoot is where procfs is mounted; default /proc.
	ProcRoot string
	// CacheSize bounds the per-process cache (and the pidfds it holds);
	// default 8192.
	CacheSize int
	// Logger receives warnings.
	Logger *slog.Logger
}

// Enricher builds events. Enrich is called from one goroutine; the
// process cache is shared with the goroutine that watches process exits.
type Enricher struct {
	opts   Options
	users  *aucoalesce.EntityCache
	groups *aucoalesce.EntityCache
	procs  *procCache
	log    *slog.Logger
	idBuf  []byte
}

// New returns an Enricher. Close releases what the process cache holds.
func New(opts Options) (*Enricher, error) {
	if opts.BootID == "" {
		return nil, fmt.Errorf("enrich: boot id is required")
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 8192
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &Enricher{
		opts:   opts,
		users:  aucoalesce.NewUserCache(5 * time.Minute),
		groups: aucoalesce.NewGroupCache(5 * time.Minute),
		log:    opts.Logger,
	}
	var err error
	e.procs, err = newProcCache(opts.ProcRoot, opts.CacheSize, opts.Namespaces, opts.Logger)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Close stops the exit watcher and closes the pidfds.
func (e *Enricher) Close() error { return e.procs.close() }

// CacheStats reports the process cache's hits and misses.
func (e *Enricher) CacheStats() (hits, misses uint64, size int) { return e.procs.stats() }

// Enrich fills ev (which it resets) from the records of one event.
func (e *Enricher) Enrich(recs []record.Record, ev *event.Event) error {
	*ev = event.Event{}
	if len(recs) == 0 {
		return fmt.Errorf("enrich: no records")
	}
	msgs := make([]*auparse.AuditMessage, 0, len(recs))
	for i := range recs {
		m, err := auparse.Parse(auparse.AuditMessageType(recs[i].Type), string(recs[i].Text))
		if err != nil {
			return fmt.Errorf("enrich: %w", err)
		}
		msgs = append(msgs, m)
	}
	ce, err := aucoalesce.CoalesceMessages(msgs)
	if ce == nil {
		// Records that cannot be grouped (a PATH whose SYSCALL was lost,
		// say) are still an event: publish what is there, raw, with why.
		ce = fallbackEvent(msgs, err)
	} else if err != nil {
		ce.Warnings = append(ce.Warnings, err)
	}
	aucoalesce.ResolveIDsFromCaches(ce, e.users, e.groups)

	ev.Schema = event.Schema
	ev.Host = event.Host{Name: e.opts.HostName, Boot: event.Boot{ID: e.opts.BootID}, Kernel: e.opts.Kernel}
	e.idBuf = append(e.idBuf[:0], e.opts.BootID...)
	e.idBuf = append(e.idBuf, ':')
	e.idBuf = strconv.AppendUint(e.idBuf, uint64(ce.Sequence), 10)
	ev.Event = event.Meta{
		ID:       string(e.idBuf),
		Sequence: ce.Sequence,
		Created:  ce.Timestamp,
		Kind:     event.KindEvent,
		Category: ce.ECS.Event.Category,
		Action:   ce.Summary.Action,
		Outcome:  outcome(ce),
		Type:     recordTypeName(ce.Type),
	}
	ev.Tags = ce.Tags

	e.process(ce, ev)
	if ev.Process != nil {
		if args, argc, ok := execveArgs(msgs); ok {
			ev.Process.Args, ev.Process.ArgsCount = args, argc
		}
		ev.Process.Name = decodeHexField(msgs, "comm", ev.Process.Name)
		ev.Process.Executable = decodeHexField(msgs, "exe", ev.Process.Executable)
	}
	e.user(ce, ev)
	e.syscall(ce, ev)
	e.objects(ce, ev)
	e.auditd(ce, msgs, ev)

	if ev.Process != nil && ev.Process.PID > 0 {
		ppid := 0
		if ev.Process.Parent != nil {
			ppid = ev.Process.Parent.PID
		}
		change := decodeNSChange(ev.Syscall)
		ev.NSChange = change
		e.procs.annotate(ev, ev.Process.PID, ppid, change)
	}
	return nil
}

// unsetID undoes auparse's rendering of the kernel's "no id" (-1) as
// "unset": ids stay numeric strings, as ECS and the SPEC have them.
func unsetID(s string) string {
	if s == "unset" {
		return "4294967295"
	}
	return s
}

func outcome(ce *aucoalesce.Event) string {
	if ce.ECS.Event.Outcome != "" {
		return ce.ECS.Event.Outcome
	}
	switch ce.Result {
	case "success":
		return "success"
	case "fail":
		return "failure"
	}
	return "unknown"
}

func recordTypeName(t auparse.AuditMessageType) string {
	s := t.String()
	// auparse names unknown types "UNKNOWN[1234]"; keep its number visible.
	return s
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}

func (e *Enricher) process(ce *aucoalesce.Event, ev *event.Event) {
	p := ce.Process
	if p.IsEmpty() {
		return
	}
	proc := &event.Process{
		PID:              atoi(p.PID),
		Name:             p.Name,
		Executable:       p.Exe,
		Args:             p.Args,
		WorkingDirectory: p.CWD,
		Title:            p.Title,
	}
	if pp := atoi(p.PPID); pp > 0 {
		proc.Parent = &event.Parent{PID: pp}
	}
	if argc, ok := ce.Data["argc"]; ok {
		proc.ArgsCount = atoi(argc)
		delete(ce.Data, "argc")
	}
	if tty, ok := ce.Data["tty"]; ok {
		if tty != "(none)" {
			proc.TTY = tty
		}
		delete(ce.Data, "tty")
	}
	ev.Process = proc
}

func (e *Enricher) user(ce *aucoalesce.Event, ev *event.Event) {
	ids, names := ce.User.IDs, ce.User.Names
	if len(ids) == 0 {
		return
	}
	ent := func(key string) *event.Entity {
		id, ok := ids[key]
		if !ok {
			return nil
		}
		return &event.Entity{ID: unsetID(id), Name: names[key]}
	}
	u := &event.User{}
	if r := ent("uid"); r != nil {
		u.ID, u.Name = r.ID, r.Name
	}
	u.Audit = ent("auid")
	u.Effective = ent("euid")
	u.Saved = ent("suid")
	u.FS = ent("fsuid")
	if ce.ECS.User.Target.ID != "" {
		u.Target = &event.Entity{ID: ce.ECS.User.Target.ID, Name: ce.ECS.User.Target.Name}
	}
	ev.User = u
	if g := ent("gid"); g != nil {
		ev.Group = g
	}
}

func (e *Enricher) syscall(ce *aucoalesce.Event, ev *event.Event) {
	name, ok := ce.Data["syscall"]
	if !ok {
		return
	}
	s := &event.Syscall{Name: name, Arch: ce.Data["arch"]}
	s.Nr = syscallNumber(s.Arch, name)
	if x, ok := ce.Data["exit"]; ok {
		s.Exit = exitCode(x)
	}
	for _, k := range [...]string{"a0", "a1", "a2", "a3"} {
		if v, ok := ce.Data[k]; ok {
			s.Args = append(s.Args, "0x"+v)
			delete(ce.Data, k)
		}
	}
	for _, k := range [...]string{"syscall", "arch", "exit", "items"} {
		delete(ce.Data, k)
	}
	ev.Syscall = s
}

func (e *Enricher) objects(ce *aucoalesce.Event, ev *event.Event) {
	if f := ce.File; f != nil {
		ev.File = &event.File{Path: f.Path, Device: f.Device, Inode: f.Inode, Mode: f.Mode,
			UID: f.UID, GID: f.GID, Owner: f.Owner, Group: f.Group}
	}
	ev.Source = endpoint(ce.Source)
	ev.Dest = endpoint(ce.Dest)
}

func endpoint(a *aucoalesce.Address) *event.Endpoint {
	if a == nil {
		return nil
	}
	return &event.Endpoint{IP: a.IP, Port: atoi(a.Port), Path: a.Path}
}

func (e *Enricher) auditd(ce *aucoalesce.Event, msgs []*auparse.AuditMessage, ev *event.Event) {
	a := &event.Auditd{Result: ce.Result, Session: unsetID(ce.Session)}
	if ce.Summary.Action != "" || ce.Summary.Actor.Primary != "" {
		s := ce.Summary
		a.Summary = &event.Summary{
			Actor:  event.Actor{Primary: s.Actor.Primary, Secondary: s.Actor.Secondary},
			Action: s.Action,
			Object: event.Object{Type: s.Object.Type, Primary: s.Object.Primary, Secondary: s.Object.Secondary},
			How:    s.How,
		}
	}
	for _, p := range ce.Paths {
		a.Paths = append(a.Paths, fields(p))
	}
	// Fields already placed elsewhere in the event.
	for _, k := range [...]string{"key", "result", "ses", "pid", "ppid"} {
		delete(ce.Data, k)
	}
	if msg, ok := ce.Data["msg"]; ok {
		// User-space messages (logins, sudo, ...) carry their own text.
		ev.Message = msg
	}
	a.Data = fields(ce.Data)
	if e.opts.Raw || len(ce.Warnings) > 0 {
		for _, m := range msgs {
			if m.RecordType == auparse.AUDIT_EOE {
				continue
			}
			a.Records = append(a.Records, "type="+m.RecordType.String()+" msg="+m.RawData)
		}
	}
	for _, w := range ce.Warnings {
		a.Warnings = append(a.Warnings, w.Error())
	}
	ev.Auditd = a
}

// fallbackEvent is the event of records aucoalesce cannot group: the first
// record's identity and each record's fields.
func fallbackEvent(msgs []*auparse.AuditMessage, err error) *aucoalesce.Event {
	m := msgs[0]
	ce := &aucoalesce.Event{
		Timestamp: m.Timestamp,
		Sequence:  m.Sequence,
		Category:  aucoalesce.GetAuditEventType(m.RecordType),
		Type:      m.RecordType,
		Result:    "unknown",
		Data:      map[string]string{},
	}
	if err != nil {
		ce.Warnings = append(ce.Warnings, err)
	}
	for _, m := range msgs {
		if data, derr := m.Data(); derr == nil {
			for k, v := range data {
				if _, dup := ce.Data[k]; !dup {
					ce.Data[k] = v
				}
			}
		}
	}
	ce.ECS.Event.Kind = "event"
	return ce
}

func fields(m map[string]string) event.Fields {
	if len(m) == 0 {
		return nil
	}
	f := make(event.Fields, 0, len(m))
	for k, v := range m {
		f = append(f, event.KV{Key: k, Value: v})
	}
	sort.Slice(f, func(i, j int) bool { return f[i].Key < f[j].Key })
	return f
}

// exitCode turns the SYSCALL record's exit field, which auparse renders as
// an errno name for failures ("ENOENT"), back into its number.
func exitCode(s string) int64 {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if n, ok := errnoByName[strings.TrimSpace(s)]; ok {
		return -int64(n)
	}
	return 0
}
