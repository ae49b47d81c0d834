package enrich

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/elastic/go-libaudit/v2/aucoalesce"

	"github.com/auditns/auditns/internal/record"
)

// cev is the event go-libaudit's aucoalesce.CoalesceMessages (and
// ResolveIDsFromCaches) would build from the records, reduced to what
// auditns publishes, built from the records' parsed fields. The rules,
// and the warnings, are aucoalesce's.
type cev struct {
	hdr      *record.Record // timestamp, sequence and type
	result   string
	session  string
	tags     []string
	warnings []string

	// data is the event's data (aucoalesce's Event.Data): the data of
	// its SYSCALL record (or only record), the entries newEvent moves to
	// ids excluded, to which the other records' are added; own when
	// there is no such record.
	data *rdata
	own  rdata
	ids  []int32 // the subject's ids (User.IDs): entries of data, moved

	actor1, actor2 string // summary actor: primary, secondary
	action         string
	objType        string
	obj1, obj2     string // summary object: primary, secondary
	how            string

	paths    []*rdata
	file     fileObj
	hasFile  bool
	src, dst addr
	args     []string // EXECVE arguments as go-libaudit reads them
	hasArgs  bool

	category   []string
	types      []string // ECS event.type
	ecsOutcome string
	label      string                   // the subject's security label (subj)
	target     aucoalesce.ECSEntityData // ECS user.target

	pid, ppid, title, comm, exe, cwd string
	hasProc                          bool

	nr     int // the syscall number the data's syscall name was translated from
	nrName string
	nrOK   bool
}

type fileObj struct{ path, device, inode, mode, uid, gid, owner, group string }

type addr struct {
	set            bool
	ip, port, path string
}

func (c *cev) reset() {
	own, ids, paths, args, warnings := c.own.ents[:0], c.ids[:0], c.paths[:0], c.args[:0], c.warnings[:0]
	*c = cev{}
	c.own.ents, c.ids, c.paths, c.args, c.warnings = own, ids, paths, args, warnings
	c.own.keyF = -1
	c.data = &c.own
}

func (c *cev) warn(err error) { c.warnings = append(c.warnings, err.Error()) }

// value is aucoalesce's getValue: the data, then the ids.
func (c *cev) value(key string) (string, bool) {
	if x := c.data.lookup(key); x != nil {
		return x.val, true
	}
	for _, i := range c.ids {
		if x := &c.data.ents[i]; !x.dead && x.key == key {
			return x.val, true
		}
	}
	return "", false
}

var (
	errNoSyscall = errors.New("missing syscall message in compound event")
	errNoRecords = errors.New("messages is empty")
)

// coalesce is CoalesceMessages over the records' data d (one per record).
// It reports false when the records cannot be grouped (no SYSCALL in a
// compound event): fallback then makes the event.
func (e *Enricher) coalesce(c *cev, recs []record.Record, d []*rdata) bool {
	if len(recs) == 1 {
		e.newEvent(c, &recs[0], d[0])
	} else {
		special, sys := -1, -1
		for i := range recs {
			if i == 0 && recs[i].Type != typeSyscall {
				special = i
				continue
			}
			if recs[i].Type == typeSyscall {
				sys = i
				break
			}
		}
		if sys < 0 {
			return false
		}
		hdr := sys
		if special >= 0 {
			hdr = special
		}
		e.newEvent(c, &recs[hdr], d[sys])
		for i := range recs {
			e.addRecord(c, &recs[i], d[i])
		}
	}
	e.normalize(c)
	// addProcess
	for _, k := range [...]kid{kPid, kPpid, kProctitle, kComm, kExe, kCwd} {
		x := c.data.get(k)
		if x == nil {
			continue
		}
		x.dead = true
		switch k {
		case kPid:
			c.pid = x.val
		case kPpid:
			c.ppid = x.val
		case kProctitle:
			c.title = x.val
		case kComm:
			c.comm = x.val
		case kExe:
			c.exe = x.val
		case kCwd:
			c.cwd = x.val
		}
	}
	c.hasProc = c.pid != "" || c.ppid != "" || c.title != "" || c.comm != "" || c.exe != "" || c.cwd != "" || len(c.args) > 0
	return true
}

// newEvent takes the event's identity from hdr and its data from p (the
// SYSCALL record of a compound event, or the only record).
func (e *Enricher) newEvent(c *cev, hdr *record.Record, p *rdata) {
	c.hdr = hdr
	if p.err != nil {
		c.warn(p.err)
		return
	}
	c.result = "unknown"
	if x := p.get(kResult); x != nil {
		c.result = x.val
	}
	if x := p.get(kSes); x != nil {
		c.session = x.val
	}
	if x := p.get(kAuid); x != nil {
		c.actor1 = x.val
	}
	if x := p.get(kUid); x != nil {
		c.actor2 = x.val
	}
	if x := p.get(kSyscall); x != nil && p.nrOK {
		c.nr, c.nrName, c.nrOK = p.nr, x.val, true
	}
	c.tags = p.tags(e)
	if i := p.idx[kSubj]; i > 0 {
		// Split into subj_* by build, which leaves the whole (dead).
		c.label = p.ents[i-1].val
	}
	// p's data becomes the event's: result and ses are taken out, the
	// ids set apart, the SELinux labels dropped.
	c.data = p
	for i := range p.ents {
		x := &p.ents[i]
		if x.dead {
			continue
		}
		switch {
		case x.kid == kResult || x.kid == kSes:
			p.move(i)
		case x.kid != kNone:
			// A known key: its name's tests are made once (kidIDs).
			if kidIDs[x.kid] {
				p.move(i)
				c.ids = append(c.ids, int32(i))
			}
		case isIDKey(x.key):
			p.move(i)
			c.ids = append(c.ids, int32(i))
		case strings.HasPrefix(x.key, "subj_"):
			p.move(i)
		}
	}
}

// isIDKey tells the keys aucoalesce takes for the subject's ids.
func isIDKey(key string) bool {
	return strings.HasSuffix(key, "uid") || strings.HasSuffix(key, "gid")
}

// kidIDs marks the known keys that are ids; no known key starts with
// "subj_" (newEvent's third case).
var kidIDs = func() (t [numKids]bool) {
	for k, name := range kidNames {
		t[k] = isIDKey(name)
		if strings.HasPrefix(name, "subj_") {
			panic("enrich: known key " + name + " starts with subj_")
		}
	}
	return t
}()

// addRecord is normalizeCompound's treatment of one record.
func (e *Enricher) addRecord(c *cev, r *record.Record, d *rdata) {
	switch r.Type {
	case typeSyscall:
		c.data.del(kItems)
	case typePath:
		if d.err != nil {
			c.warn(fmt.Errorf("failed to parse PATH message: %w", d.err))
			return
		}
		c.paths = append(c.paths, d)
	case typeSockaddr:
		if d.err != nil {
			c.warn(fmt.Errorf("failed to parse SOCKADDR message: %w", d.err))
			return
		}
		sys := c.data.get(kSyscall)
		if sys == nil {
			c.warn(errors.New("failed to add SOCKADDR data because syscall is unknown"))
			return
		}
		var a addr
		for i := range d.ents {
			x := &d.ents[i]
			if x.dead {
				continue
			}
			start := len(e.sb)
			e.sb = append(append(e.sb, "socket_"...), x.key...)
			c.data.set(record.View(e.sb[start:]), x.val, kNone, -1)
			switch x.key {
			case "addr":
				a.ip = x.val
			case "port":
				a.port = x.val
			case "path":
				a.path = x.val
			}
		}
		a.set = a.ip != "" || a.port != "" || a.path != ""
		switch sys.val {
		case "recvfrom", "recvmsg", "accept", "accept4":
			if a.set {
				c.src = a
			}
		case "connect", "sendto", "sendmsg":
			if a.set {
				c.dst = a
			}
		}
	case typeExecve:
		if d.err != nil {
			c.warn(fmt.Errorf("failed to parse EXECVE message: %w", d.err))
			return
		}
		argc := d.get(kArgc)
		c.data.set("argc", argc.val, kArgc, -1)
		count, _ := strconv.ParseUint(argc.val, 10, 32) // d.err covers errors
		args := e.aargs[:0]
		for i := 0; i < int(count); i++ {
			args = append(args, d.arg(i).val)
		}
		e.aargs = args
		if len(args) == 0 {
			args = nil
		}
		c.args, c.hasArgs = args, true
	default:
		if d.err != nil {
			c.warn(fmt.Errorf("failed to parse message: %w", d.err))
			return
		}
		for i := range d.ents {
			x := &d.ents[i]
			if x.dead {
				continue
			}
			if c.data.lookup(x.key) != nil {
				c.warn(fmt.Errorf("duplicate key (%v) from %v message", x.key, typeName(r.Type)))
				continue
			}
			c.data.set(x.key, x.val, x.kid, -1)
		}
	}
}

// fallback is the event of records that cannot be grouped: the first
// record's identity, every record's fields (the first of a key wins).
func (e *Enricher) fallback(c *cev, recs []record.Record, d []*rdata, why error) {
	c.reset()
	c.hdr = &recs[0]
	c.result = "unknown"
	c.warn(why)
	for i := range recs {
		if d[i].err != nil {
			continue
		}
		for j := range d[i].ents {
			x := &d[i].ents[j]
			if !x.dead && c.data.lookup(x.key) == nil {
				c.data.set(x.key, x.val, x.kid, -1)
			}
		}
	}
}

var interpreters = [...]string{"/usr/bin/python", "/usr/bin/sh", "/usr/bin/bash", "/usr/bin/perl"}

// normalize is aucoalesce's applyNormalization.
func (e *Enricher) normalize(c *cev) {
	// setHowDefaults
	if x := c.data.get(kExe); x != nil {
		c.how = x.val
	} else if x := c.data.get(kComm); x != nil {
		c.how = x.val
	}
	for _, p := range interpreters {
		if strings.HasPrefix(c.how, p) {
			if x := c.data.get(kComm); x != nil {
				c.how = x.val
			}
			break
		}
	}

	sys := c.data.get(kSyscall)
	var sysName string
	if sys != nil {
		sysName = sys.val
	}
	norm, sysNorm := normFor(c.hdr.Type, typeName(c.hdr.Type), sysName, sys != nil,
		func(f string) bool { return c.data.lookup(f) != nil })
	if norm == nil {
		c.warn(errors.New("no normalization found for event"))
		return
	}
	cats := e.categories(norm, sysNorm)
	c.category, c.types = cats.category, cats.types
	if sysNorm != nil && sysNorm != norm && c.result == "fail" {
		c.ecsOutcome = "failure"
	}
	c.action = norm.Action
	c.objType = norm.ObjectWhat
	switch norm.ObjectWhat {
	case "file", "filesystem":
		if len(c.paths) > 0 {
			if err := e.setFileObject(c, norm.ObjectPathIndex); err != nil {
				c.warn(fmt.Errorf("failed to set file object: %w", err))
			}
		}
	case "socket":
		if x := c.data.lookup("socket_addr"); x != nil {
			c.obj1 = x.val
		} else if x := c.data.lookup("socket_path"); x != nil {
			c.obj1 = x.val
		}
		if x := c.data.lookup("socket_port"); x != nil {
			c.obj2 = x.val
		}
	}
	set := func(keys []string, dst *string, what string) {
		if len(keys) == 0 {
			return
		}
		for _, k := range keys {
			if v, ok := c.value(k); ok {
				*dst = v
				return
			}
		}
		c.warn(fmt.Errorf("failed to set %s using keys=%v because they were not found", what, keys))
	}
	set(norm.SubjectPrimaryFieldName.Values, &c.actor1, "subject primary")
	set(norm.SubjectSecondaryFieldName.Values, &c.actor2, "subject secondary")
	set(norm.ObjectPrimaryFieldName.Values, &c.obj1, "object primary")
	set(norm.ObjectSecondaryFieldName.Values, &c.obj2, "object secondary")
	set(norm.How.Values, &c.how, "how")

	if !c.src.set && len(norm.SourceIP.Values) > 0 {
		found := false
		for _, k := range norm.SourceIP.Values {
			if x := c.data.lookup(k); x != nil {
				x.dead = true
				c.src = addr{set: true, ip: x.val}
				found = true
				break
			}
		}
		if !found {
			c.warn(fmt.Errorf("failed to set source IP using keys=%v because they were not found", norm.SourceIP.Values))
		}
	}

	for _, m := range norms().targets[norm] {
		var v string
		switch m.from {
		case 1:
			v = c.actor1
		case 2:
			v = c.actor2
		case 3:
			v = c.obj1
		case 4:
			v = c.obj2
		default:
			v = m.read(c.aucoalesceEvent())
		}
		setEntity(&c.target, v)
	}
}

// aucoalesceEvent is c as an aucoalesce.Event, for the ECS mappings that
// read its maps (none of the events auditns sees often).
func (c *cev) aucoalesceEvent() *aucoalesce.Event {
	ev := &aucoalesce.Event{Data: map[string]string{}}
	ev.User.IDs = map[string]string{}
	for _, x := range c.data.ents {
		if !x.dead && !x.moved {
			ev.Data[strings.Clone(x.key)] = strings.Clone(x.val)
		}
	}
	for _, i := range c.ids {
		if x := c.data.ents[i]; !x.dead {
			ev.User.IDs[strings.Clone(x.key)] = strings.Clone(x.val)
		}
	}
	ev.Summary.Actor.Primary, ev.Summary.Actor.Secondary = c.actor1, c.actor2
	ev.Summary.Object.Primary, ev.Summary.Object.Secondary = c.obj1, c.obj2
	return ev
}

// setEntity is aucoalesce's ECSEntityData.set.
func setEntity(d *aucoalesce.ECSEntityData, v string) {
	if v == "" || v == "unset" || v == "4294967295" || v == "-1" {
		*d = aucoalesce.ECSEntityData{ID: "unset"}
		return
	}
	if _, err := strconv.ParseUint(v, 10, 64); err == nil {
		d.ID = v
	} else {
		d.Name = v
	}
}

// setFileObject is aucoalesce's: the object file is the path at the
// normalization's index, or the first after it that is not a PARENT or
// UNKNOWN.
func (e *Enricher) setFileObject(c *cev, hint int) error {
	i := 0
	if len(c.paths) > hint {
		i = hint
	}
	path := c.paths[i]
	for _, p := range c.paths[i:] {
		if nt, _ := p.val(kNametype); nt != "PARENT" && nt != "UNKNOWN" {
			path = p
			break
		}
	}
	c.hasFile = true
	c.file = fileObj{}
	if v, ok := path.val(kName); ok {
		c.obj1, c.file.path = v, v
	}
	if v, ok := path.val(kInode); ok {
		c.file.inode = v
	}
	if v, ok := path.val(kRdev); ok {
		c.file.device = v
	}
	if v, ok := path.val(kMode); ok {
		mode, err := strconv.ParseUint(v, 8, 64)
		if err != nil {
			return fmt.Errorf("failed to parse file mode: %w", err)
		}
		m := os.FileMode(mode)
		start := len(e.sb)
		perm := uint64(0o7777 & m)
		if perm < 0o1000 {
			e.sb = append(e.sb, '0')
		}
		if perm < 0o100 {
			e.sb = append(e.sb, '0')
		}
		if perm < 0o10 {
			e.sb = append(e.sb, '0')
		}
		e.sb = strconv.AppendUint(e.sb, perm, 8)
		c.file.mode = record.View(e.sb[start:])
		switch {
		case m.IsRegular():
			c.objType = "file"
		case m.IsDir():
			c.objType = "directory"
		case m&os.ModeCharDevice != 0:
			c.objType = "character-device"
		case m&0o60000 != 0:
			c.objType = "block-device"
		case m&os.ModeNamedPipe != 0:
			c.objType = "named-pipe"
		case m&os.ModeSymlink != 0:
			c.objType = "symlink"
		case m&os.ModeSocket != 0:
			c.objType = "socket"
		}
	}
	if v, ok := path.val(kOuid); ok {
		c.file.uid = v
	}
	if v, ok := path.val(kOgid); ok {
		c.file.gid = v
	}
	return nil
}
