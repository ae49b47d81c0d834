// Package enrich turns an assembled audit event (its records) into an
// auditns.event/2 object: ECS fields with go-libaudit's aucoalesce
// semantics (its normalization tables: action, category, summary), resolved
// user and group names, decoded arguments and proctitle, the subject's
// namespaces and container, and what a namespace-changing syscall changed.
//
// The event is built straight from the records' parsed fields (package
// record) without copying them: the strings of an event built by Enrich
// are views of the records and of the Enricher's buffers. They are valid
// until the next call of Enrich and, for the records' text, until the
// Assembler's emit callback returns; event.id, and what the process cache
// keeps, are copies.
package enrich

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

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
	// Kernel is host.os.kernel (uname -r).
	Kernel string
	// Raw includes the records as the kernel sent them in event.original.
	Raw bool
	// Subjects tells each event's subject's namespaces and process
	// identity (the kernel-side source, package subject). Nil: the
	// Enricher reads them from /proc itself (NewProcSubjects with these
	// Options).
	Subjects Subjects
	// Namespaces resolves a live process's namespaces for the /proc
	// reader; nil leaves ns out.
	Namespaces Observer
	// ProcRoot is where procfs is mounted; default /proc.
	ProcRoot string
	// CacheSize bounds the per-process cache (and the pidfds it holds);
	// default DefaultCacheSize.
	CacheSize int
	// Logger receives warnings.
	Logger *slog.Logger
	// Offline enriches records of the past, maybe of another host
	// (auditns convert): nothing is looked up in /proc (the namespaces are
	// unknown) nor in this host's user and group databases (ids keep no
	// names but root's).
	Offline bool
}

// Enricher builds events. Enrich is called from one goroutine; the
// process cache is shared with the goroutine that watches process exits.
type Enricher struct {
	opts  Options
	names names
	// subjects answers for namespaces; procs is the same when it is the
	// /proc reader this Enricher built.
	subjects Subjects
	procs    *procCache
	log      *slog.Logger
	now      func() time.Time

	// Per event, reused.
	c        cev
	rd       []*rdata
	sb       []byte // decoded values and built strings of the event
	tagBuf   []string
	aargs    []string
	args     []string
	argParts []argPart
	argSlots []argSlot
	clock    int64 // now, in unix nanoseconds
	clockSet int64 // the clock SetClock gave; 0: Enrich reads it
	kv       []event.KV
	paths    []event.Fields
	out      out

	idArena []byte // event ids, never rewritten
	exes    map[string]string
	lastExe string
	cats    map[[2]*aucoalesce.Normalization]ecsCats

	// Memos of the last arch and its syscall table.
	arch     auparse.AuditArch
	archStr  string
	archOK   bool
	sortMemo sortMemo
	// The last arch field parsed: as written (hex) and its value.
	archHex    string
	archHexVal int64
	sysArch    string
	sysTable   []string
}

// out holds the objects an event points to.
type out struct {
	proc     event.Process
	parent   event.Parent
	user     event.User
	ents     [numIDs]event.Entity
	target   event.Entity
	group    event.Group
	sys      event.Syscall
	sysArgs  [4]string
	file     event.File
	src, dst event.Endpoint
	auditd   event.Auditd
	summary  event.Summary
	records  []string
}

// New returns an Enricher. Close releases what the process cache holds.
func New(opts Options) (*Enricher, error) {
	if opts.BootID == "" {
		return nil, fmt.Errorf("enrich: boot id is required")
	}
	opts.setDefaults()
	e := &Enricher{
		opts:  opts,
		names: newNames(),
		log:   opts.Logger,
		now:   time.Now,
		exes:  make(map[string]string),
		cats:  make(map[[2]*aucoalesce.Normalization]ecsCats),
	}
	norms()
	if opts.Offline {
		// This host's users are not the ones the records name.
		none := func(string) string { return "" }
		e.names.userByID.lookup, e.names.groupByID.lookup, e.names.userByName.lookup = none, none, none
	}
	if e.subjects = opts.Subjects; e.subjects == nil {
		var err error
		if e.procs, err = newProcCache(opts.ProcRoot, opts.CacheSize, opts.Namespaces, opts.Logger); err != nil {
			return nil, err
		}
		e.subjects = e.procs
	}
	return e, nil
}

// Close closes the subject source (the /proc reader's exit watcher and
// pidfds, or the kernel-side programs).
func (e *Enricher) Close() error { return e.subjects.Close() }

// SetClock sets the time Enrich uses (event.created, and for how long
// resolved names are kept) until the next SetClock, so that a caller
// enriching a batch of events reads the clock once for the batch; a zero
// time makes Enrich read the clock for every event again.
func (e *Enricher) SetClock(now time.Time) {
	e.clockSet = 0
	if !now.IsZero() {
		e.clockSet = now.UnixNano()
	}
}

// Enrich fills ev (which it resets) from the records of one event.
func (e *Enricher) Enrich(recs []record.Record, ev *event.Event) error {
	*ev = event.Event{}
	if len(recs) == 0 {
		return fmt.Errorf("enrich: no records")
	}
	e.sb = e.sb[:0]
	e.kv = e.kv[:0]
	e.paths = e.paths[:0]
	for len(e.rd) < len(recs) {
		e.rd = append(e.rd, &rdata{})
	}
	d := e.rd[:len(recs)]
	for i := range recs {
		d[i].build(&recs[i], e)
	}
	c := &e.c
	c.reset()
	// An EOE that ends the list is not a record of the event.
	n := len(recs)
	if recs[n-1].Type == typeEOE {
		n--
	}
	switch {
	case n == 0:
		e.fallback(c, recs, d, errNoRecords)
	case !e.coalesce(c, recs[:n], d[:n]):
		e.fallback(c, recs, d, errNoSyscall)
	}
	if e.clock = e.clockSet; e.clock == 0 {
		e.clock = e.now().UnixNano()
	}
	e.resolve(c, e.clock)

	// ev is zero: its fields are set one by one (a composite literal is
	// built aside and copied, with write barriers while the collector
	// marks).
	ev.Schema = event.Schema
	ev.Host.Name, ev.Host.Boot.ID, ev.Host.Kernel = e.opts.HostName, e.opts.BootID, e.opts.Kernel
	m := &ev.Event
	ev.Timestamp = c.hdr.Time()
	m.ID = e.eventID(c.hdr.Seq)
	m.Sequence = c.hdr.Seq
	m.Created = time.Unix(0, e.clock).UTC()
	m.Kind = event.KindEvent
	m.Category = c.category
	m.Type = c.types
	m.Action = c.action
	m.Outcome = outcome(c)
	ev.Tags = c.tags
	ev.Label = c.label

	o := &e.out
	e.process(c, recs, ev)
	e.user(c, ev)
	e.syscall(c, ev)
	if c.hasFile {
		f := c.file
		o.file = event.File{Path: f.path, Device: f.device, Inode: f.inode, Mode: f.mode,
			UID: f.uid, GID: f.gid, Owner: f.owner, Group: f.group}
		ev.File = &o.file
	}
	ev.Source = endpoint(&o.src, c.src)
	ev.Dest = endpoint(&o.dst, c.dst)
	e.auditd(c, recs, ev)

	if e.opts.Offline {
		ev.NSChange = decodeNSChange(ev.Syscall)
		ev.NSSrc = srcUnknown
	} else if ev.Process != nil && ev.Process.PID > 0 {
		ppid := 0
		if ev.Process.Parent != nil {
			ppid = ev.Process.Parent.PID
		}
		change := decodeNSChange(ev.Syscall)
		ev.NSChange = change
		e.subjects.Annotate(ev, ev.Process.PID, ppid, change, recs[len(recs)-1].Type == typeEOE)
	}
	return nil
}

// eventID returns "<boot_id>:<seq>" carved from an arena of ids that is
// never rewritten: the id outlives the event (the batch keeps it).
func (e *Enricher) eventID(seq uint32) string {
	need := len(e.opts.BootID) + 11
	if cap(e.idArena)-len(e.idArena) < need {
		e.idArena = make([]byte, 0, max(16<<10, need))
	}
	start := len(e.idArena)
	e.idArena = append(e.idArena, e.opts.BootID...)
	e.idArena = append(e.idArena, ':')
	e.idArena = strconv.AppendUint(e.idArena, uint64(seq), 10)
	return unsafe.String(&e.idArena[start], len(e.idArena)-start)
}

// itoa appends n to the event's buffer.
func (e *Enricher) itoa(n int64) string {
	start := len(e.sb)
	e.sb = strconv.AppendInt(e.sb, n, 10)
	return record.View(e.sb[start:])
}

// intern returns a copy of s that outlives the event (the process cache
// may keep the executable), one per distinct value.
func (e *Enricher) intern(s string) string {
	if s == e.lastExe {
		return e.lastExe
	}
	if v, ok := e.exes[s]; ok {
		e.lastExe = v
		return v
	}
	if len(e.exes) >= 4096 {
		clear(e.exes)
	}
	v := strings.Clone(s)
	e.exes[v] = v
	e.lastExe = v
	return v
}

// typeNames caches auparse's names of the record types below 4096.
var typeNames = sync.OnceValue(func() *[4096]string {
	var t [4096]string
	for i := range t {
		t[i] = auparse.AuditMessageType(i).String()
	}
	return &t
})

// typeName is auparse's name of a record type; it names unknown types
// "UNKNOWN[1234]", which keeps their number visible.
func typeName(t uint16) string {
	if int(t) < len(typeNames()) {
		return typeNames()[t]
	}
	return auparse.AuditMessageType(t).String()
}

// resolve is aucoalesce's ResolveIDsFromCaches, for what auditns
// publishes.
func (e *Enricher) resolve(c *cev, now int64) {
	if v := e.names.userByID.get(c.actor1, now); v != "" {
		c.actor1 = v
	}
	if v := e.names.userByID.get(c.actor2, now); v != "" {
		c.actor2 = v
	}
	if c.hasFile {
		if c.file.uid != "" {
			c.file.owner = e.names.userByID.get(c.file.uid, now)
		}
		if c.file.gid != "" {
			c.file.group = e.names.groupByID.get(c.file.gid, now)
		}
	}
	t := &c.target
	if (t.ID == "") != (t.Name == "") {
		if t.ID != "" {
			t.Name = e.names.userByID.get(t.ID, now)
		} else {
			t.ID = e.names.userByName.get(t.Name, now)
		}
	}
}

func outcome(c *cev) string {
	if c.ecsOutcome != "" {
		return c.ecsOutcome
	}
	switch c.result {
	case "success":
		return "success"
	case "fail":
		return "failure"
	}
	return "unknown"
}

// unsetID undoes auparse's rendering of the kernel's "no id" (-1) as
// "unset": ids stay numeric strings, as ECS and the SPEC have them.
func unsetID(s string) string {
	if s == "unset" {
		return "4294967295"
	}
	return s
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}

func (e *Enricher) process(c *cev, recs []record.Record, ev *event.Event) {
	if !c.hasProc {
		return
	}
	o := &e.out
	p := &o.proc
	*p = event.Process{}
	p.PID = atoi(c.pid)
	p.Name = c.comm
	p.Executable = c.exe
	p.Args = c.args
	p.WorkingDirectory = c.cwd
	p.Title = c.title
	if pp := atoi(c.ppid); pp > 0 {
		o.parent = event.Parent{PID: pp}
		p.Parent = &o.parent
	}
	if x := c.data.get(kArgc); x != nil {
		p.ArgsCount = atoi(x.val)
		x.dead = true
	}
	if x := c.data.get(kTty); x != nil && x.val != "(none)" {
		// Also kept in auditd.data: ECS's process.tty is the device,
		// which not every name maps to.
		p.TTY = x.val
	}
	if args, argc, ok := e.execveArgs(recs); ok {
		p.Args, p.ArgsCount = args, argc
	}
	p.Name = e.decodeHexField(recs, " comm=", p.Name)
	p.Executable = e.intern(e.decodeHexField(recs, " exe=", p.Executable))
	ev.Process = p
}

// decodeHexField undoes the kernel's hex encoding of a SYSCALL record
// field (comm, exe) that go-libaudit left encoded: the kernel writes the
// value unquoted, as hex, when it holds a space, quote, control character
// or non-ASCII byte.
func (e *Enricher) decodeHexField(recs []record.Record, key, val string) string {
	if val == "" || !record.IsHex(val) {
		return val
	}
	start := len(e.sb)
	e.sb = append(append(e.sb, key...), val...)
	needle := e.sb[start:]
	found := false
	for i := range recs {
		if recs[i].Type == typeSyscall && strings.Contains(record.View(recs[i].Text), record.View(needle)) {
			found = true
			break
		}
	}
	e.sb = e.sb[:start]
	if !found {
		return val
	}
	e.sb, _ = record.AppendUnhex(e.sb, val)
	return record.View(e.sb[start:])
}

// The subject's ids, in the order of user's arrays.
const (
	idUID = iota
	idAuid
	idEuid
	idSuid
	idFsuid
	idGid
	idEgid
	idSgid
	idFsgid
	numIDs
)

// idIndex is the index of an id of the subject, -1 for another id field
// (ouid, old-auid, ...), which stays in auditd.data.
func idIndex(x *ent) int {
	switch x.kid {
	case kUid:
		return idUID
	case kAuid:
		return idAuid
	case kEuid:
		return idEuid
	case kSuid:
		return idSuid
	case kFsuid:
		return idFsuid
	case kGid:
		return idGid
	case kNone:
		switch x.key {
		case "egid":
			return idEgid
		case "sgid":
			return idSgid
		case "fsgid":
			return idFsgid
		}
	}
	return -1
}

func (e *Enricher) user(c *cev, ev *event.Event) {
	var ids [numIDs]string
	var have [numIDs]bool
	any := false
	for _, i := range c.ids {
		x := &c.data.ents[i]
		if x.dead {
			continue
		}
		if j := idIndex(x); j >= 0 {
			ids[j], have[j], any = x.val, true, true
		} else {
			x.moved = false
		}
	}
	if !any {
		return
	}
	now := e.clock
	o := &e.out
	name := func(j int) string {
		if j >= idGid {
			return e.names.groupByID.get(ids[j], now)
		}
		return e.names.userByID.get(ids[j], now)
	}
	ent := func(j int) *event.Entity {
		if !have[j] {
			return nil
		}
		o.ents[j] = event.Entity{ID: unsetID(ids[j]), Name: name(j)}
		return &o.ents[j]
	}
	if have[idUID] || have[idAuid] || have[idEuid] || have[idSuid] || have[idFsuid] || c.target.ID != "" {
		o.user = event.User{}
		u := &o.user
		if have[idUID] {
			u.ID, u.Name = unsetID(ids[idUID]), name(idUID)
		}
		u.Audit, u.Effective, u.Saved, u.FS = ent(idAuid), ent(idEuid), ent(idSuid), ent(idFsuid)
		if c.target.ID != "" {
			o.target = event.Entity{ID: c.target.ID, Name: c.target.Name}
			u.Target = &o.target
		}
		ev.User = u
	}
	if have[idGid] || have[idEgid] || have[idSgid] || have[idFsgid] {
		o.group = event.Group{}
		g := &o.group
		if have[idGid] {
			g.ID, g.Name = unsetID(ids[idGid]), name(idGid)
		}
		g.Effective, g.Saved, g.FS = ent(idEgid), ent(idSgid), ent(idFsgid)
		ev.Group = g
	}
}

func (e *Enricher) syscall(c *cev, ev *event.Event) {
	name := c.data.get(kSyscall)
	if name == nil {
		return
	}
	o := &e.out
	s := &o.sys
	*s = event.Syscall{}
	s.Name = name.val
	if x := c.data.get(kArch); x != nil {
		s.Arch = x.val
	}
	if c.nrOK && c.nrName == s.Name {
		// The number the record had (no other has the same name).
		s.Nr = c.nr
	} else {
		s.Nr = syscallNumber(s.Arch, s.Name)
	}
	if x := c.data.get(kExit); x != nil {
		s.Exit = exitCode(x.val)
	}
	n := 0
	for _, k := range [...]kid{kA0, kA1, kA2, kA3} {
		if x := c.data.get(k); x != nil {
			start := len(e.sb)
			e.sb = append(append(e.sb, "0x"...), x.val...)
			o.sysArgs[n] = record.View(e.sb[start:])
			n++
			x.dead = true
		}
	}
	if n > 0 {
		s.Args = o.sysArgs[:n:n]
	}
	for _, k := range [...]kid{kSyscall, kArch, kExit, kItems} {
		c.data.del(k)
	}
	ev.Syscall = s
}

func endpoint(dst *event.Endpoint, a addr) *event.Endpoint {
	if !a.set {
		return nil
	}
	*dst = event.Endpoint{IP: a.ip, Port: atoi(a.port), Path: a.path}
	return dst
}

func (e *Enricher) auditd(c *cev, recs []record.Record, ev *event.Event) {
	o := &e.out
	a := &o.auditd
	*a = event.Auditd{}
	a.MessageType = typeName(c.hdr.Type)
	a.Result, a.Session = c.result, unsetID(c.session)
	if c.action != "" || c.actor1 != "" {
		sm := &o.summary
		sm.Actor.Primary, sm.Actor.Secondary = c.actor1, c.actor2
		sm.Action = c.action
		sm.Object.Type, sm.Object.Primary, sm.Object.Secondary = c.objType, c.obj1, c.obj2
		sm.How = c.how
		a.Summary = sm
	}
	for _, p := range c.paths {
		e.paths = append(e.paths, e.fields(p))
	}
	if len(e.paths) > 0 {
		a.Paths = e.paths
	}
	// Fields already placed elsewhere in the event.
	for _, k := range [...]kid{kKey, kResult, kSes, kPid, kPpid} {
		c.data.del(k)
	}
	if x := c.data.get(kMsg); x != nil {
		// User-space messages (logins, sudo, ...) carry their own text.
		ev.Message = x.val
	} else {
		ev.Message = freeTextMsg(record.View(c.hdr.Text))
	}
	a.Data = e.fields(c.data)
	if e.opts.Raw || len(c.warnings) > 0 {
		o.records = o.records[:0]
		for i := range recs {
			r := &recs[i]
			if r.Type == typeEOE {
				continue
			}
			start := len(e.sb)
			e.sb = append(e.sb, "type="...)
			e.sb = append(e.sb, typeName(r.Type)...)
			e.sb = append(e.sb, " msg="...)
			e.sb = append(e.sb, r.Text...)
			o.records = append(o.records, record.View(e.sb[start:]))
		}
		a.Records = o.records
	}
	if len(c.warnings) > 0 {
		a.Warnings = c.warnings
	}
	ev.Auditd = a
}

// fields are d's live entries sorted by key.
func (e *Enricher) fields(d *rdata) event.Fields {
	start := len(e.kv)
	for i := range d.ents {
		if x := &d.ents[i]; !x.dead && !x.moved {
			e.kv = append(e.kv, event.KV{Key: x.key, Value: x.val})
		}
	}
	if len(e.kv) == start {
		return nil
	}
	f := event.Fields(e.kv[start:len(e.kv):len(e.kv)])
	e.sortFields(f)
	return f
}

// sortMemo is the order sortFields put the last keys it sorted in: the
// records of a type have their keys in the same order (PATH records: 15),
// so the order found for one is the next one's.
type sortMemo struct {
	keys []string // views of buf
	buf  []byte
	perm []uint8 // position i of the sorted fields is the input's perm[i]
	tmp  event.Fields
}

// sortFields is sortFields, by the memo's order when f's keys are the
// memo's, in their order.
func (e *Enricher) sortFields(f event.Fields) {
	n := len(f)
	if n < 2 {
		return
	}
	if n > 64 {
		f.Sort()
		return
	}
	m := &e.sortMemo
	if n == len(m.keys) && sameKeys(f, m.keys) {
		m.permute(f)
		return
	}
	var pre [64]uint64
	var idx [64]uint8
	for i := range f {
		pre[i], idx[i] = prefix8(f[i].Key), uint8(i)
	}
	// sortFields' insertion sort, on the indexes.
	for i := 1; i < n; i++ {
		for j := i; j > 0; j-- {
			a, b := pre[j], pre[j-1]
			if a > b || a == b && f[idx[j]].Key >= f[idx[j-1]].Key {
				break
			}
			pre[j], pre[j-1] = b, a
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	m.perm = append(m.perm[:0], idx[:n]...)
	m.buf = m.buf[:0]
	for i := range f {
		m.buf = append(m.buf, f[i].Key...)
	}
	m.keys = m.keys[:0]
	from := 0
	for i := range f {
		k := ""
		if l := len(f[i].Key); l > 0 {
			k = record.View(m.buf[from : from+l])
			from += l
		}
		m.keys = append(m.keys, k)
	}
	m.permute(f)
}

func sameKeys(f event.Fields, keys []string) bool {
	for i := range f {
		if f[i].Key != keys[i] {
			return false
		}
	}
	return true
}

// permute puts f in the memo's order.
func (m *sortMemo) permute(f event.Fields) {
	m.tmp = append(m.tmp[:0], f...)
	for i, j := range m.perm {
		f[i] = m.tmp[j]
	}
	clear(m.tmp) // no views of this event's records kept
}

// sortFields sorts f by key (event.Fields.Sort's order) comparing the
// keys' first eight bytes as integers first: records have a few dozen
// fields, often sharing no prefix.
func sortFields(f event.Fields) {
	var pre [64]uint64
	if len(f) > len(pre) {
		f.Sort()
		return
	}
	for i := range f {
		pre[i] = prefix8(f[i].Key)
	}
	for i := 1; i < len(f); i++ {
		for j := i; j > 0; j-- {
			a, b := pre[j], pre[j-1]
			if a > b || a == b && f[j].Key >= f[j-1].Key {
				break
			}
			f[j], f[j-1] = f[j-1], f[j]
			pre[j], pre[j-1] = b, a
		}
	}
}

// prefix8 is the first eight bytes of s, big-endian, zero-padded: it
// orders as the strings do, ties broken by the whole strings.
func prefix8(s string) uint64 {
	var v uint64
	for i := 0; i < 8; i++ {
		v <<= 8
		if i < len(s) {
			v |= uint64(s[i])
		}
	}
	return v
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

// freeTextMsg is the msg='...' of a user-space record whose text is not
// key=value fields (auditctl -m, an application's own message), which
// go-libaudit's parser drops; "" for another record.
func freeTextMsg(text string) string {
	i := strings.LastIndex(text, " msg='")
	if i < 0 {
		return ""
	}
	v := strings.TrimRight(text[i+len(" msg='"):], " \n")
	if len(v) < 2 || v[len(v)-1] != '\'' || strings.IndexByte(v, '=') >= 0 {
		return ""
	}
	return v[:len(v)-1]
}
