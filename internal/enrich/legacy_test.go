package enrich

import (
	"encoding/hex"
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

// legacyEnricher is Enrich as it was on go-libaudit (auparse.Parse,
// aucoalesce.CoalesceMessages, its id caches), kept as the reference of the
// differential tests and the baseline of the benchmarks.
type legacyEnricher struct {
	opts   Options
	users  *aucoalesce.EntityCache
	groups *aucoalesce.EntityCache
	procs  *procCache
	idBuf  []byte
	// now is event.created.
	now time.Time
}

func newLegacyEnricher(opts Options) (*legacyEnricher, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 8192
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &legacyEnricher{
		opts:   opts,
		users:  aucoalesce.NewUserCache(5 * time.Minute),
		groups: aucoalesce.NewGroupCache(5 * time.Minute),
	}
	var err error
	e.procs, err = newProcCache(opts.ProcRoot, opts.CacheSize, opts.Namespaces, opts.Logger)
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (e *legacyEnricher) Close() error { return e.procs.close() }

// Enrich fills ev (which it resets) from the records of one event.
func (e *legacyEnricher) Enrich(recs []record.Record, ev *event.Event) error {
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
	return e.EnrichMessages(msgs, ev)
}

// EnrichMessages is Enrich on go-libaudit's parsed records.
func (e *legacyEnricher) EnrichMessages(msgs []*auparse.AuditMessage, ev *event.Event) error {
	*ev = event.Event{}
	ce, err := aucoalesce.CoalesceMessages(msgs)
	if ce == nil {
		// Records that cannot be grouped (a PATH whose SYSCALL was lost,
		// say) are still an event: publish what is there, raw, with why.
		ce = legacyFallbackEvent(msgs, err)
	} else if err != nil {
		ce.Warnings = append(ce.Warnings, err)
	}
	aucoalesce.ResolveIDsFromCaches(ce, e.users, e.groups)

	ev.Schema = event.Schema
	ev.Host = event.Host{Name: e.opts.HostName, Boot: event.Boot{ID: e.opts.BootID}, Kernel: e.opts.Kernel}
	e.idBuf = append(e.idBuf[:0], e.opts.BootID...)
	e.idBuf = append(e.idBuf, ':')
	e.idBuf = strconv.AppendUint(e.idBuf, uint64(ce.Sequence), 10)
	ev.Timestamp = ce.Timestamp
	ev.Event = event.Meta{
		ID:       string(e.idBuf),
		Sequence: ce.Sequence,
		Created:  e.now.UTC(),
		Kind:     event.KindEvent,
		Category: ce.ECS.Event.Category,
		Type:     ce.ECS.Event.Type,
		Action:   ce.Summary.Action,
		Outcome:  legacyOutcome(ce),
	}
	ev.Tags = ce.Tags
	if l := ce.User.SELinux; len(l) > 0 {
		var parts []string
		for _, k := range []string{"user", "role", "domain", "level", "category"} {
			if v, ok := l[k]; ok {
				parts = append(parts, v)
			}
		}
		ev.Label = strings.Join(parts, ":")
	}

	e.process(ce, ev)
	if ev.Process != nil {
		if args, argc, ok := legacyExecveArgs(msgs); ok {
			ev.Process.Args, ev.Process.ArgsCount = args, argc
		}
		ev.Process.Name = legacyDecodeHexField(msgs, "comm", ev.Process.Name)
		ev.Process.Executable = legacyDecodeHexField(msgs, "exe", ev.Process.Executable)
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
func legacyUnsetID(s string) string {
	if s == "unset" {
		return "4294967295"
	}
	return s
}

func legacyOutcome(ce *aucoalesce.Event) string {
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

func legacyRecordTypeName(t auparse.AuditMessageType) string {
	s := t.String()
	// auparse names unknown types "UNKNOWN[1234]"; keep its number visible.
	return s
}

func legacyAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}

func (e *legacyEnricher) process(ce *aucoalesce.Event, ev *event.Event) {
	p := ce.Process
	if p.IsEmpty() {
		return
	}
	proc := &event.Process{
		PID:              legacyAtoi(p.PID),
		Name:             p.Name,
		Executable:       p.Exe,
		Args:             p.Args,
		WorkingDirectory: p.CWD,
		Title:            p.Title,
	}
	if pp := legacyAtoi(p.PPID); pp > 0 {
		proc.Parent = &event.Parent{PID: pp}
	}
	if argc, ok := ce.Data["argc"]; ok {
		proc.ArgsCount = legacyAtoi(argc)
		delete(ce.Data, "argc")
	}
	if tty, ok := ce.Data["tty"]; ok && tty != "(none)" {
		proc.TTY = tty
	}
	ev.Process = proc
}

func (e *legacyEnricher) user(ce *aucoalesce.Event, ev *event.Event) {
	ids, names := ce.User.IDs, ce.User.Names
	if len(ids) == 0 {
		return
	}
	ent := func(key string) *event.Entity {
		id, ok := ids[key]
		if !ok {
			return nil
		}
		return &event.Entity{ID: legacyUnsetID(id), Name: names[key]}
	}
	known := map[string]bool{}
	for _, k := range []string{"uid", "auid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid"} {
		known[k] = true
	}
	for k, v := range ids {
		if !known[k] {
			ce.Data[k] = v
		}
	}
	if ent("uid") != nil || ent("auid") != nil || ent("euid") != nil || ent("suid") != nil || ent("fsuid") != nil ||
		ce.ECS.User.Target.ID != "" {
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
	}
	if ent("gid") != nil || ent("egid") != nil || ent("sgid") != nil || ent("fsgid") != nil {
		g := &event.Group{}
		if r := ent("gid"); r != nil {
			g.ID, g.Name = r.ID, r.Name
		}
		g.Effective, g.Saved, g.FS = ent("egid"), ent("sgid"), ent("fsgid")
		ev.Group = g
	}
}

func (e *legacyEnricher) syscall(ce *aucoalesce.Event, ev *event.Event) {
	name, ok := ce.Data["syscall"]
	if !ok {
		return
	}
	s := &event.Syscall{Name: name, Arch: ce.Data["arch"]}
	s.Nr = syscallNumber(s.Arch, name)
	if x, ok := ce.Data["exit"]; ok {
		s.Exit = legacyExitCode(x)
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

func (e *legacyEnricher) objects(ce *aucoalesce.Event, ev *event.Event) {
	if f := ce.File; f != nil {
		ev.File = &event.File{Path: f.Path, Device: f.Device, Inode: f.Inode, Mode: f.Mode,
			UID: f.UID, GID: f.GID, Owner: f.Owner, Group: f.Group}
	}
	ev.Source = legacyEndpoint(ce.Source)
	ev.Dest = legacyEndpoint(ce.Dest)
}

func legacyEndpoint(a *aucoalesce.Address) *event.Endpoint {
	if a == nil {
		return nil
	}
	return &event.Endpoint{IP: a.IP, Port: legacyAtoi(a.Port), Path: a.Path}
}

func (e *legacyEnricher) auditd(ce *aucoalesce.Event, msgs []*auparse.AuditMessage, ev *event.Event) {
	a := &event.Auditd{MessageType: legacyRecordTypeName(ce.Type), Result: ce.Result, Session: legacyUnsetID(ce.Session)}
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
		a.Paths = append(a.Paths, legacyFields(p))
	}
	// Fields already placed elsewhere in the event.
	for _, k := range [...]string{"key", "result", "ses", "pid", "ppid"} {
		delete(ce.Data, k)
	}
	if msg, ok := ce.Data["msg"]; ok {
		// User-space messages (logins, sudo, ...) carry their own text.
		ev.Message = msg
	} else {
		for _, m := range msgs {
			if m.RecordType == ce.Type {
				ev.Message = freeTextMsg(m.RawData)
				break
			}
		}
	}
	a.Data = legacyFields(ce.Data)
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
func legacyFallbackEvent(msgs []*auparse.AuditMessage, err error) *aucoalesce.Event {
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

func legacyFields(m map[string]string) event.Fields {
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
func legacyExitCode(s string) int64 {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if n, ok := errnoByName[strings.TrimSpace(s)]; ok {
		return -int64(n)
	}
	return 0
}

// execveArgs reads the arguments of an exec from its EXECVE records
// itself. The kernel splits what does not fit: a long argument becomes
// aN_len=LEN aN[0]=... aN[1]=..., and a long argv continues in further
// EXECVE records without argc; go-libaudit rejects both forms and would
// leave the event with no arguments at all. Values are "quoted" text or
// hex (when the argument holds spaces, quotes, control or non-ASCII bytes).
func legacyExecveArgs(msgs []*auparse.AuditMessage) (args []string, argc int, ok bool) {
	argc = -1
	var parts map[int]*strings.Builder
	var plain map[int]string
	for _, m := range msgs {
		if m.RecordType != auparse.AUDIT_EXECVE {
			continue
		}
		text := m.RawData
		if i := strings.Index(text, "): "); i >= 0 && strings.HasPrefix(text, "audit(") {
			text = text[i+3:]
		}
		for len(text) > 0 {
			text = strings.TrimLeft(text, " ")
			eq := strings.IndexByte(text, '=')
			if eq <= 0 {
				break
			}
			key := text[:eq]
			text = text[eq+1:]
			var val string
			quoted := strings.HasPrefix(text, `"`)
			if quoted {
				end := strings.IndexByte(text[1:], '"')
				if end < 0 {
					val, text = text[1:], ""
				} else {
					val, text = text[1:end+1], text[end+2:]
				}
			} else if sp := strings.IndexByte(text, ' '); sp >= 0 {
				val, text = text[:sp], text[sp:]
			} else {
				val, text = text, ""
			}
			if !quoted {
				if b, err := hex.DecodeString(val); err == nil {
					val = string(b)
				}
			}
			switch {
			case key == "argc":
				argc, _ = strconv.Atoi(val)
			case strings.HasPrefix(key, "a") && strings.HasSuffix(key, "_len"):
				// The total length; the chunks carry the bytes.
			case strings.HasPrefix(key, "a") && strings.Contains(key, "["):
				n, err := strconv.Atoi(key[1:strings.IndexByte(key, '[')])
				if err != nil {
					continue
				}
				if parts == nil {
					parts = map[int]*strings.Builder{}
				}
				if parts[n] == nil {
					parts[n] = &strings.Builder{}
				}
				parts[n].WriteString(val)
			case strings.HasPrefix(key, "a"):
				n, err := strconv.Atoi(key[1:])
				if err != nil {
					continue
				}
				if plain == nil {
					plain = map[int]string{}
				}
				plain[n] = val
			}
		}
	}
	if argc < 0 {
		return nil, 0, false
	}
	// (Capped here: the original made room for argc, which is untrusted:
	// argc=7061737327 exhausted memory.)
	args = make([]string, 0, min(argc, 1024))
	for i := 0; i < argc; i++ {
		if b := parts[i]; b != nil {
			args = append(args, b.String())
		} else if v, ok := plain[i]; ok {
			args = append(args, v)
		} else {
			// The kernel could not log every argument (its limit); the
			// args present are kept and args_count says how many there were.
			break
		}
	}
	return args, argc, true
}

// decodeHexField undoes the kernel's hex encoding of a SYSCALL record
// field (comm, exe) when go-libaudit left it encoded: the kernel writes
// the value unquoted, as hex, when it holds a space, quote, control
// character or non-ASCII byte.
func legacyDecodeHexField(msgs []*auparse.AuditMessage, key, val string) string {
	if val == "" || len(val)%2 != 0 {
		return val
	}
	for _, m := range msgs {
		if m.RecordType != auparse.AUDIT_SYSCALL {
			continue
		}
		if strings.Contains(m.RawData, " "+key+"="+val) {
			if b, err := hex.DecodeString(val); err == nil {
				return string(b)
			}
		}
	}
	return val
}
