package event

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// AppendString appends s as a JSON string. The output is always valid UTF-8
// JSON whatever s holds: control characters are escaped as \u00XX, and each
// byte that is not part of valid UTF-8 is written as the four characters
// \xNN (JSON "\\xNN"), so attacker-controlled text from the kernel (comm,
// exe, argv, paths) can neither break the JSON nor be silently altered into
// another valid string. Nothing is truncated.
func AppendString(b []byte, s string) []byte {
	// Most values need no escaping: find that out first, then copy them
	// whole.
	i := 0
	for i+8 <= len(s) && plain8(load8(s, i)) {
		i += 8
	}
	for i < len(s) && plainByte[s[i]] {
		i++
	}
	if i < len(s) {
		return appendEscaped(b, s, i)
	}
	n := len(b)
	if cap(b)-n < len(s)+2 {
		b = slices.Grow(b, len(s)+2)
	}
	b = b[:n+len(s)+2]
	b[n] = '"'
	copy(b[n+1:], s)
	b[n+1+len(s)] = '"'
	return b
}

// plainByte marks the bytes written as they are: printable ASCII but '"'
// and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendEscaped is AppendString for s whose first byte needing a look is
// s[i].
func appendEscaped(b []byte, s string, i int) []byte {
	b = append(b, '"')
	start := 0
	for i < len(s) {
		// Eight bytes at a time while none needs a look: no control
		// character, quote, backslash, DEL or non-ASCII byte.
		for i+8 <= len(s) && plain8(load8(s, i)) {
			i += 8
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if plainByte[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"':
				b = append(b, '\\', '"')
			case '\\':
				b = append(b, '\\', '\\')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, '\\', '\\', 'x', hex[c>>4], hex[c&0xf])
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// load8 reads s[i:i+8] as a little-endian word (the caller checks bounds;
// the compiler makes one load of the eight).
func load8(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// plain8 reports whether none of the eight bytes of x needs escaping or
// UTF-8 checking: each is in 0x20-0x7e and is neither '"' nor '\\'. A
// false answer may be wrong (the byte-wise loop then decides), a true one
// never is.
func plain8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	zero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	bad := x&highs | // non-ASCII
		(x-0x20*ones)&^x&highs | // below 0x20
		zero(x^('"'*ones)) | zero(x^('\\'*ones)) | zero(x^(0x7f*ones))
	return bad == 0
}

const hex = "0123456789abcdef"

// nsKeys are NSTypes as keys.
var nsKeys = [8]string{`"ipc":`, `"uts":`, `"user":`, `"pid":`, `"cgroup":`, `"time":`, `"net":`, `"mnt":`}

// AppendTime appends t as an RFC 3339 JSON string in UTC with microseconds
// (truncated), as t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
// would, without its layout interpretation: the time of every event is
// formatted.
func AppendTime(b []byte, t time.Time) []byte {
	const maxSec = 253402300799 // 9999-12-31T23:59:59Z
	sec := t.Unix()
	if sec < 0 || sec > maxSec {
		b = append(b, '"')
		b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
		return append(b, '"')
	}
	days, rem := uint64(sec)/86400, uint64(sec)%86400
	// Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
	z := days + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if mp >= 10 {
		m = mp - 9
		y++
	}
	us := uint64(t.Nanosecond()) / 1000
	var o [29]byte
	o[0] = '"'
	o[1], o[2], o[3], o[4] = byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10)
	o[5] = '-'
	o[6], o[7] = byte('0'+m/10), byte('0'+m%10)
	o[8] = '-'
	o[9], o[10] = byte('0'+d/10), byte('0'+d%10)
	o[11] = 'T'
	h, mi, s := rem/3600, rem/60%60, rem%60
	o[12], o[13] = byte('0'+h/10), byte('0'+h%10)
	o[14] = ':'
	o[15], o[16] = byte('0'+mi/10), byte('0'+mi%10)
	o[17] = ':'
	o[18], o[19] = byte('0'+s/10), byte('0'+s%10)
	o[20] = '.'
	for i := 26; i > 20; i-- {
		o[i] = byte('0' + us%10)
		us /= 10
	}
	o[27], o[28] = 'Z', '"'
	return append(b, o[:]...)
}

// The encoder appends by value: every helper takes the buffer and returns
// it, so nothing is stored through a pointer (no write barrier while the
// garbage collector runs), and constant text is appended whole. Keys are
// written with their leading comma (`,"name":`); an object whose first
// member is optional is written from a mark with its first comma, which
// openAt then turns into the '{' (see openAt).

// kstr appends k and v as a JSON string. A value with nothing to escape
// (most) is written with its key in one reservation of the buffer.
func kstr(b []byte, k, v string) []byte {
	i := 0
	for i+8 <= len(v) && plain8(load8(v, i)) {
		i += 8
	}
	for i < len(v) && plainByte[v[i]] {
		i++
	}
	if i < len(v) {
		b = append(b, k...)
		return appendEscaped(b, v, i)
	}
	n := len(b)
	need := len(k) + len(v) + 2
	if cap(b)-n < need {
		b = slices.Grow(b, need)
	}
	b = b[:n+need]
	n += copy(b[n:], k)
	b[n] = '"'
	n++
	n += copy(b[n:], v)
	b[n] = '"'
	return b
}

// kstrOpt is kstr when v is not empty.
func kstrOpt(b []byte, k, v string) []byte {
	if v == "" {
		return b
	}
	return kstr(b, k, v)
}

func kint(b []byte, k string, v int64) []byte {
	b = append(b, k...)
	return strconv.AppendInt(b, v, 10)
}

func kuint(b []byte, k string, v uint64) []byte {
	b = append(b, k...)
	return strconv.AppendUint(b, v, 10)
}

// kstrs appends k and vs as an array of strings.
func kstrs(b []byte, k string, vs []string) []byte {
	b = append(b, k...)
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, v)
	}
	return append(b, ']')
}

func kstrsOpt(b []byte, k string, vs []string) []byte {
	if len(vs) == 0 {
		return b
	}
	return kstrs(b, k, vs)
}

// openAt closes the object whose members were appended from mark on,
// each after a comma: the first comma becomes the object's '{' ("{}"
// when there is none).
func openAt(b []byte, mark int) []byte {
	if len(b) == mark {
		return append(b, '{', '}')
	}
	b[mark] = '{'
	return append(b, '}')
}

// entity appends k (`,"name":`) and e, if any.
func entity(b []byte, k string, e *Entity) []byte {
	if e == nil {
		return b
	}
	b = append(b, k...)
	m := len(b)
	b = kstrOpt(b, `,"id":`, e.ID)
	b = kstrOpt(b, `,"name":`, e.Name)
	return openAt(b, m)
}

// fields appends f as an object.
func fields(b []byte, f Fields) []byte {
	m := len(b)
	for _, kv := range f {
		b = append(b, ',')
		b = AppendString(b, kv.Key)
		b = append(b, ':')
		b = AppendString(b, kv.Value)
	}
	return openAt(b, m)
}

// endpoint appends e as ECS has it: the address as the record has it
// (an IP address, or a unix socket's path), the IP address again in ip
// when it is one (ip is an ECS ip field: "?" or a host name would make
// an index reject the document), and the port.
func endpoint(b []byte, k string, e *Endpoint) []byte {
	if e == nil {
		return b
	}
	b = append(b, k...)
	m := len(b)
	if e.IP != "" {
		b = kstr(b, `,"address":`, e.IP)
		if isIP(e.IP) {
			b = kstr(b, `,"ip":`, e.IP)
		}
	} else {
		b = kstrOpt(b, `,"address":`, e.Path)
	}
	if e.Port != 0 {
		b = kint(b, `,"port":`, int64(e.Port))
	}
	return openAt(b, m)
}

// isIP reports whether s is an IPv4 or IPv6 address without a zone
// (which an ip field does not take).
func isIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

func timeOpt(b []byte, k string, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = append(b, k...)
	return AppendTime(b, t)
}

// hostJSON is the last host object encoded: a daemon's events all have
// the same.
type hostJSON struct {
	name, boot, kernel string
	json               []byte
}

var lastHost atomic.Pointer[hostJSON]

// appendHost appends `,"host":{...}`, copied from the last one encoded when
// it is the same host.
func appendHost(b []byte, h *Host) []byte {
	if c := lastHost.Load(); c != nil && c.name == h.Name && c.boot == h.Boot.ID && c.kernel == h.Kernel {
		return append(b, c.json...)
	}
	start := len(b)
	b = kstr(b, `,"host":{"name":`, h.Name)
	b = kstr(b, `,"boot":{"id":`, h.Boot.ID)
	b = append(b, `},"os":{"type":"linux"`...)
	b = kstrOpt(b, `,"kernel":`, h.Kernel)
	b = append(b, '}', '}')
	lastHost.Store(&hostJSON{name: strings.Clone(h.Name), boot: strings.Clone(h.Boot.ID), kernel: strings.Clone(h.Kernel),
		json: bytes.Clone(b[start:])})
	return b
}

// Agent is what every event says of the auditns that wrote it (agent.*
// besides its name and type, which are "auditns").
type Agent struct {
	Version string
	// ID identifies the installation on its host and stays the same
	// across restarts.
	ID string
}

var agentJSON atomic.Pointer[[]byte]

// SetAgent sets the agent object of the events encoded from now on; until
// it is called they name auditns without a version or id.
func SetAgent(a Agent) {
	b := appendAgent(nil, a)
	agentJSON.Store(&b)
}

func appendAgent(b []byte, a Agent) []byte {
	b = append(b, `,"agent":{"name":"auditns","type":"auditns"`...)
	b = kstrOpt(b, `,"version":`, a.Version)
	b = kstrOpt(b, `,"id":`, a.ID)
	return append(b, '}')
}

var defaultAgent = appendAgent(nil, Agent{})

func agentBytes() []byte {
	if p := agentJSON.Load(); p != nil {
		return *p
	}
	return defaultAgent
}

// The subject's ids are written in three places: ECS's process.user,
// real_user, saved_user, group, real_group and saved_group (members of
// the process object); ECS's user object (the real uid and gid, the
// effective uid and the target user, as Auditbeat and most detection
// rules read them); and, for what ECS has no field for (the login uid,
// the filesystem uid and gid), auditns.user and auditns.group.

// AppendJSON appends e as one JSON object (no trailing newline).
func (e *Event) AppendJSON(b []byte) []byte { return e.appendJSON(b, nil) }

// appendJSON is AppendJSON, with c's memos when c is not nil. The objects
// are written in EventFields' order.
func (e *Event) appendJSON(b []byte, c *Encoder) []byte {
	b = append(b, `{"@timestamp":`...)
	if !e.Timestamp.IsZero() {
		b = AppendTime(b, e.Timestamp)
	} else {
		b = AppendTime(b, e.Event.Created)
	}
	b = append(b, `,"ecs":{"version":"`+ECSVersion+`"}`...)
	b = append(b, agentBytes()...)
	b = e.appendEventObject(b)
	b = appendHost(b, &e.Host)

	b = kstrsOpt(b, `,"tags":`, e.Tags)
	b = kstrOpt(b, `,"message":`, e.Message)

	var procIDs, userObj, ownIDs []byte
	if c != nil {
		procIDs, userObj, ownIDs = c.users.ids(e)
	}
	b = e.appendProcessAndUser(b, c != nil, procIDs, userObj)
	if c := e.Container; c != nil {
		b = kstr(b, `,"container":{"id":`, c.ID)
		b = kstrOpt(b, `,"runtime":`, c.Runtime)
		b = append(b, '}')
	}
	if e.File != nil {
		b = appendFile(b, e.File)
	}
	b = endpoint(b, `,"source":`, e.Source)
	b = endpoint(b, `,"destination":`, e.Dest)
	if e.Auditd != nil {
		b = appendAuditd(b, e.Auditd)
	}
	b = e.appendAuditnsObject(b, c != nil, ownIDs)
	return append(b, '}')
}

// appendEventObject appends ECS's event object.
func (e *Event) appendEventObject(b []byte) []byte {
	b = kstr(b, `,"event":{"id":`, e.Event.ID)
	b = kuint(b, `,"sequence":`, uint64(e.Event.Sequence))
	b = timeOpt(b, `,"created":`, e.Event.Created)
	switch e.Event.Kind {
	case KindEvent:
		b = append(b, `,"kind":"`+KindEvent+`"`...)
	case KindLoss:
		b = append(b, `,"kind":"`+ECSKindLoss+`"`...)
	default:
		b = kstr(b, `,"kind":`, e.Event.Kind)
	}
	b = kstrsOpt(b, `,"category":`, e.Event.Category)
	b = kstrsOpt(b, `,"type":`, e.Event.Type)
	b = kstrOpt(b, `,"action":`, e.Event.Action)
	b = kstrOpt(b, `,"outcome":`, e.Event.Outcome)
	b = append(b, `,"module":"`+Module+`","dataset":"`+Dataset+`"`...)
	if a := e.Auditd; a != nil && len(a.Records) > 0 {
		b = append(b, `,"original":"`...)
		for i, r := range a.Records {
			if i > 0 {
				b = append(b, '\\', 'n')
			}
			b = appendStringBody(b, r)
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendProcessAndUser appends the process object and the user object.
// With memo (an Encoder's), the ids are procIDs and userObj, which the
// Encoder's memo of the last ids written made.
func (e *Event) appendProcessAndUser(b []byte, memo bool, procIDs, userObj []byte) []byte {
	if p := e.Process; p != nil || e.User != nil || e.Group != nil {
		start := len(b)
		b = append(b, `,"process":`...)
		m := len(b)
		if p != nil {
			b = appendProcessFields(b, p)
		}
		if memo {
			b = append(b, procIDs...)
		} else {
			b = appendProcIDs(b, e.User, e.Group)
		}
		if p == nil && len(b) == m {
			b = b[:start]
		} else {
			b = openAt(b, m)
		}
	}
	if memo {
		return append(b, userObj...)
	}
	return appendUserObject(b, e.User, e.Group)
}

// appendAuditnsObject appends auditns's own fields, last in the event:
// replay adds ns_info at the end of this object. With memo, ownIDs are the
// auditns.user and auditns.group members the Encoder's memo made.
func (e *Event) appendAuditnsObject(b []byte, memo bool, ownIDs []byte) []byte {
	if e.Schema == Schema {
		b = append(b, `,"auditns":{"schema":"`+Schema+`"`...)
	} else {
		b = kstr(b, `,"auditns":{"schema":`, e.Schema)
	}
	if e.NS != nil {
		b = appendNS(b, e.NS, e.Host.Boot.ID)
	}
	b = kstrOpt(b, `,"ns_src":`, e.NSSrc)
	if c := e.NSChange; c != nil {
		b = kstr(b, `,"ns_change":{"op":`, c.Op)
		b = kstrsOpt(b, `,"types":`, c.Types)
		b = kstrsOpt(b, `,"children_only":`, c.ChildrenOnly)
		b = append(b, '}')
	}
	if e.Syscall != nil {
		b = appendSyscall(b, e.Syscall)
	}
	if memo {
		b = append(b, ownIDs...)
	} else {
		b = appendOwnIDs(b, e.User, e.Group)
	}
	if e.Label != "" {
		b = kstr(b, `,"subject":{"label":`, e.Label)
		b = append(b, '}')
	}
	if e.Loss != nil {
		b = appendLoss(b, e.Loss)
	}
	if e.NSInfo != nil {
		b = append(b, `,"ns_info":`...)
		b = e.NSInfo.AppendJSON(b)
	}
	return append(b, '}')
}

// appendProcessFields appends the members of the process object that
// describe the process (its ids come from the user and group).
func appendProcessFields(b []byte, p *Process) []byte {
	if p.PID != 0 {
		b = kint(b, `,"pid":`, int64(p.PID))
	}
	if p.VPID != 0 {
		b = kint(b, `,"vpid":`, int64(p.VPID))
	}
	b = kstrOpt(b, `,"entity_id":`, p.EntityID)
	if p.Parent != nil {
		b = kint(b, `,"parent":{"pid":`, int64(p.Parent.PID))
		b = kstrOpt(b, `,"entity_id":`, p.Parent.EntityID)
		b = append(b, '}')
	}
	b = kstrOpt(b, `,"name":`, p.Name)
	b = kstrOpt(b, `,"executable":`, p.Executable)
	b = kstrsOpt(b, `,"args":`, p.Args)
	if p.ArgsCount != 0 {
		b = kint(b, `,"args_count":`, int64(p.ArgsCount))
	}
	b = kstrOpt(b, `,"working_directory":`, p.WorkingDirectory)
	b = kstrOpt(b, `,"title":`, p.Title)
	if major, minor, ok := TTYDevice(p.TTY); ok {
		b = kint(b, `,"tty":{"char_device":{"major":`, int64(major))
		b = kint(b, `,"minor":`, int64(minor))
		b = append(b, '}', '}')
	}
	return b
}

// appendFile appends the file object.
func appendFile(b []byte, f *File) []byte {
	b = append(b, `,"file":`...)
	m := len(b)
	b = kstrOpt(b, `,"path":`, f.Path)
	b = kstrOpt(b, `,"device":`, f.Device)
	b = kstrOpt(b, `,"inode":`, f.Inode)
	b = kstrOpt(b, `,"mode":`, f.Mode)
	b = kstrOpt(b, `,"uid":`, f.UID)
	b = kstrOpt(b, `,"gid":`, f.GID)
	b = kstrOpt(b, `,"owner":`, f.Owner)
	b = kstrOpt(b, `,"group":`, f.Group)
	b = openAt(b, m)
	return b
}

// appendAuditd appends the auditd object.
func appendAuditd(b []byte, a *Auditd) []byte {
	b = append(b, `,"auditd":`...)
	m := len(b)
	b = kstrOpt(b, `,"message_type":`, a.MessageType)
	b = kstrOpt(b, `,"result":`, a.Result)
	b = kstrOpt(b, `,"session":`, a.Session)
	if s := a.Summary; s != nil {
		b = append(b, `,"summary":{"actor":`...)
		ma := len(b)
		b = kstrOpt(b, `,"primary":`, s.Actor.Primary)
		b = kstrOpt(b, `,"secondary":`, s.Actor.Secondary)
		b = openAt(b, ma)
		b = kstrOpt(b, `,"action":`, s.Action)
		b = append(b, `,"object":`...)
		mo := len(b)
		b = kstrOpt(b, `,"type":`, s.Object.Type)
		b = kstrOpt(b, `,"primary":`, s.Object.Primary)
		b = kstrOpt(b, `,"secondary":`, s.Object.Secondary)
		b = openAt(b, mo)
		b = kstrOpt(b, `,"how":`, s.How)
		b = append(b, '}')
	}
	if len(a.Paths) > 0 {
		b = append(b, `,"paths":[`...)
		for i, p := range a.Paths {
			if i > 0 {
				b = append(b, ',')
			}
			b = fields(b, p)
		}
		b = append(b, ']')
	}
	if len(a.Data) > 0 {
		b = append(b, `,"data":`...)
		b = fields(b, a.Data)
	}
	b = kstrsOpt(b, `,"warnings":`, a.Warnings)
	b = openAt(b, m)
	return b
}

// appendNS appends the auditns.ns object: the namespaces an event's process
// is in, named by the boot they belong to.
func appendNS(b []byte, n *NS, bootID string) []byte {
	b = append(b, `,"ns":`...)
	m := len(b)
	for i, t := range nsKeys {
		r := n.At(i)
		if *r == (NSRef{}) {
			continue
		}
		b = append(b, ',')
		b = append(b, t...)
		b = kuint(b, `{"serial":`, r.Serial)
		b = kuint(b, `,"inum":`, r.Inum)
		if r.ID != 0 {
			b = kuint(b, `,"id":`, r.ID)
		}
		if r.Serial != 0 {
			b = kstr(b, `,"name":`, bootID)
			b[len(b)-1] = '/'
			b = strconv.AppendUint(b, r.Serial, 10)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = openAt(b, m)
	return b
}

// appendSyscall appends the auditns.syscall object.
func appendSyscall(b []byte, s *Syscall) []byte {
	b = append(b, `,"syscall":`...)
	m := len(b)
	b = kstrOpt(b, `,"name":`, s.Name)
	b = kint(b, `,"nr":`, int64(s.Nr))
	b = kstrOpt(b, `,"arch":`, s.Arch)
	b = kint(b, `,"exit":`, s.Exit)
	b = kstrsOpt(b, `,"args":`, s.Args)
	b = openAt(b, m)
	return b
}

// appendLoss appends the auditns.loss object.
func appendLoss(b []byte, l *Loss) []byte {
	b = kstr(b, `,"loss":{"reason":`, l.Reason)
	b = kuint(b, `,"count":`, l.Count)
	if l.From != 0 {
		b = kuint(b, `,"from":`, uint64(l.From))
	}
	if l.To != 0 {
		b = kuint(b, `,"to":`, uint64(l.To))
	}
	if l.KernelLost != 0 {
		b = kuint(b, `,"kernel_lost":`, uint64(l.KernelLost))
	}
	b = append(b, '}')
	return b
}

// appendStringBody appends s as AppendString does, without the quotes.
func appendStringBody(b []byte, s string) []byte {
	start := len(b)
	b = AppendString(b, s)
	n := copy(b[start:], b[start+1:len(b)-1])
	return b[:start+n]
}

// AppendJSON appends n as the JSON object of ns_info.
func (n *NSInfos) AppendJSON(b []byte) []byte {
	m := len(b)
	for i, t := range nsKeys {
		in := *n.At(i)
		if in == nil {
			continue
		}
		b = append(b, ',')
		b = append(b, t...)
		b = kstr(b, `{"id":`, in.ID)
		b = kstr(b, `,"type":`, in.Type)
		if in.IsInit {
			b = append(b, `,"is_init":true`...)
		}
		if c := in.CreatedBy; c != nil {
			b = append(b, `,"created_by":`...)
			mc := len(b)
			b = kstrOpt(b, `,"event":`, c.Event)
			b = kstrOpt(b, `,"op":`, c.Op)
			if c.PID != 0 {
				b = kint(b, `,"pid":`, int64(c.PID))
			}
			b = kstrOpt(b, `,"exe":`, c.Exe)
			b = openAt(b, mc)
		}
		b = timeOpt(b, `,"first_seen":`, in.FirstSeen)
		b = timeOpt(b, `,"last_seen":`, in.LastSeen)
		b = timeOpt(b, `,"gone":`, in.Gone)
		b = append(b, '}')
	}
	return openAt(b, m)
}

// MarshalJSON encodes f as a JSON object in its order.
func (f Fields) MarshalJSON() ([]byte, error) {
	return fields(nil, f), nil
}

// UnmarshalJSON decodes a JSON object into f, sorted by key.
func (f *Fields) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*f = (*f)[:0]
	for k, v := range m {
		*f = append(*f, KV{k, v})
	}
	f.Sort()
	return nil
}

// Sort orders f by key.
func (f Fields) Sort() {
	// Insertion sort: records have a few dozen fields at most, and this
	// avoids the allocation sort.Slice would make.
	for i := 1; i < len(f); i++ {
		for j := i; j > 0 && f[j].Key < f[j-1].Key; j-- {
			f[j], f[j-1] = f[j-1], f[j]
		}
	}
}
