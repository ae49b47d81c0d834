package event

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
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

// load8 reads s[i:i+8] as a little-endian word (the caller checks bounds).
func load8(s string, i int) uint64 {
	return binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))
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

// jw is a tiny writer for one JSON object at a time; it tracks whether a
// comma is needed so the hand-written encoders stay readable.
type jw struct {
	b     []byte
	comma bool
}

// key writes k, a key already quoted and followed by its colon
// (`"name":`), after a comma when one is needed.
func (w *jw) key(k string) {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.comma = true
	w.b = append(w.b, k...)
}

func (w *jw) open()  { w.b = append(w.b, '{'); w.comma = false }
func (w *jw) close() { w.b = append(w.b, '}'); w.comma = true }

// str writes k and v. A value with nothing to escape (most) is written
// with its key in one reservation of the buffer.
func (w *jw) str(k, v string) {
	i := 0
	for i+8 <= len(v) && plain8(load8(v, i)) {
		i += 8
	}
	for i < len(v) && plainByte[v[i]] {
		i++
	}
	if i < len(v) {
		w.key(k)
		w.b = appendEscaped(w.b, v, i)
		return
	}
	b := w.b
	n := len(b)
	need := 1 + len(k) + len(v) + 2
	if cap(b)-n < need {
		b = slices.Grow(b, need)
	}
	b = b[:n+need]
	if w.comma {
		b[n] = ','
		n++
	}
	n += copy(b[n:], k)
	b[n] = '"'
	n++
	n += copy(b[n:], v)
	b[n] = '"'
	w.b = b[:n+1]
	w.comma = true
}

func (w *jw) strOpt(k, v string) {
	if v != "" {
		w.str(k, v)
	}
}

func (w *jw) int(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
}

func (w *jw) uint(k string, v uint64) {
	w.key(k)
	w.b = strconv.AppendUint(w.b, v, 10)
}

func (w *jw) strs(k string, vs []string) {
	w.key(k)
	w.b = append(w.b, '[')
	for i, v := range vs {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.b = AppendString(w.b, v)
	}
	w.b = append(w.b, ']')
}

func (w *jw) strsOpt(k string, vs []string) {
	if len(vs) > 0 {
		w.strs(k, vs)
	}
}

func (w *jw) entity(k string, e *Entity) {
	if e == nil {
		return
	}
	w.key(k)
	w.open()
	w.strOpt(`"id":`, e.ID)
	w.strOpt(`"name":`, e.Name)
	w.close()
}

func (w *jw) fields(f Fields) {
	w.open()
	for _, kv := range f {
		if w.comma {
			w.b = append(w.b, ',')
		}
		w.comma = true
		w.b = AppendString(w.b, kv.Key)
		w.b = append(w.b, ':')
		w.b = AppendString(w.b, kv.Value)
	}
	w.close()
}

// AppendJSON appends e as one JSON object (no trailing newline).
func (e *Event) AppendJSON(b []byte) []byte {
	w := jw{b: b}
	w.open()
	w.str(`"schema":`, e.Schema)

	w.key(`"event":`)
	w.open()
	w.str(`"id":`, e.Event.ID)
	w.uint(`"sequence":`, uint64(e.Event.Sequence))
	w.key(`"created":`)
	w.b = AppendTime(w.b, e.Event.Created)
	w.str(`"kind":`, e.Event.Kind)
	w.strsOpt(`"category":`, e.Event.Category)
	w.strOpt(`"action":`, e.Event.Action)
	w.strOpt(`"outcome":`, e.Event.Outcome)
	w.strOpt(`"type":`, e.Event.Type)
	w.close()

	w.key(`"host":`)
	w.open()
	w.str(`"name":`, e.Host.Name)
	w.key(`"boot":`)
	w.open()
	w.str(`"id":`, e.Host.Boot.ID)
	w.close()
	w.strOpt(`"kernel":`, e.Host.Kernel)
	w.close()

	w.strsOpt(`"tags":`, e.Tags)
	w.strOpt(`"message":`, e.Message)

	if p := e.Process; p != nil {
		w.key(`"process":`)
		w.open()
		if p.PID != 0 {
			w.int(`"pid":`, int64(p.PID))
		}
		if p.Parent != nil {
			w.key(`"parent":`)
			w.open()
			w.int(`"pid":`, int64(p.Parent.PID))
			w.close()
		}
		w.strOpt(`"name":`, p.Name)
		w.strOpt(`"executable":`, p.Executable)
		w.strsOpt(`"args":`, p.Args)
		if p.ArgsCount != 0 {
			w.int(`"args_count":`, int64(p.ArgsCount))
		}
		w.strOpt(`"working_directory":`, p.WorkingDirectory)
		w.strOpt(`"title":`, p.Title)
		w.strOpt(`"tty":`, p.TTY)
		w.close()
	}
	if u := e.User; u != nil {
		w.key(`"user":`)
		w.open()
		w.strOpt(`"id":`, u.ID)
		w.strOpt(`"name":`, u.Name)
		w.entity(`"audit":`, u.Audit)
		w.entity(`"effective":`, u.Effective)
		w.entity(`"saved":`, u.Saved)
		w.entity(`"filesystem":`, u.FS)
		w.entity(`"target":`, u.Target)
		w.close()
	}
	w.entity(`"group":`, e.Group)
	if s := e.Syscall; s != nil {
		w.key(`"syscall":`)
		w.open()
		w.strOpt(`"name":`, s.Name)
		w.int(`"nr":`, int64(s.Nr))
		w.strOpt(`"arch":`, s.Arch)
		w.int(`"exit":`, s.Exit)
		w.strsOpt(`"args":`, s.Args)
		w.close()
	}
	if n := e.NS; n != nil {
		w.key(`"ns":`)
		w.open()
		for i, t := range nsKeys {
			r := n.At(i)
			if *r == (NSRef{}) {
				continue
			}
			w.key(t)
			w.open()
			w.uint(`"serial":`, r.Serial)
			w.uint(`"inum":`, r.Inum)
			w.close()
		}
		w.close()
	}
	w.strOpt(`"ns_src":`, e.NSSrc)
	if c := e.NSChange; c != nil {
		w.key(`"ns_change":`)
		w.open()
		w.str(`"op":`, c.Op)
		w.strsOpt(`"types":`, c.Types)
		w.strsOpt(`"children_only":`, c.ChildrenOnly)
		w.close()
	}
	if c := e.Container; c != nil {
		w.key(`"container":`)
		w.open()
		w.str(`"id":`, c.ID)
		w.strOpt(`"runtime":`, c.Runtime)
		w.close()
	}
	if f := e.File; f != nil {
		w.key(`"file":`)
		w.open()
		w.strOpt(`"path":`, f.Path)
		w.strOpt(`"device":`, f.Device)
		w.strOpt(`"inode":`, f.Inode)
		w.strOpt(`"mode":`, f.Mode)
		w.strOpt(`"uid":`, f.UID)
		w.strOpt(`"gid":`, f.GID)
		w.strOpt(`"owner":`, f.Owner)
		w.strOpt(`"group":`, f.Group)
		w.close()
	}
	w.endpoint(`"source":`, e.Source)
	w.endpoint(`"destination":`, e.Dest)
	if l := e.Loss; l != nil {
		w.key(`"loss":`)
		w.open()
		w.str(`"reason":`, l.Reason)
		w.uint(`"count":`, l.Count)
		if l.From != 0 {
			w.uint(`"from":`, uint64(l.From))
		}
		if l.To != 0 {
			w.uint(`"to":`, uint64(l.To))
		}
		if l.KernelLost != 0 {
			w.uint(`"kernel_lost":`, uint64(l.KernelLost))
		}
		w.close()
	}
	if a := e.Auditd; a != nil {
		w.key(`"auditd":`)
		w.open()
		w.strOpt(`"result":`, a.Result)
		w.strOpt(`"session":`, a.Session)
		if s := a.Summary; s != nil {
			w.key(`"summary":`)
			w.open()
			w.key(`"actor":`)
			w.open()
			w.strOpt(`"primary":`, s.Actor.Primary)
			w.strOpt(`"secondary":`, s.Actor.Secondary)
			w.close()
			w.strOpt(`"action":`, s.Action)
			w.key(`"object":`)
			w.open()
			w.strOpt(`"type":`, s.Object.Type)
			w.strOpt(`"primary":`, s.Object.Primary)
			w.strOpt(`"secondary":`, s.Object.Secondary)
			w.close()
			w.strOpt(`"how":`, s.How)
			w.close()
		}
		if len(a.Paths) > 0 {
			w.key(`"paths":`)
			w.b = append(w.b, '[')
			for i, p := range a.Paths {
				if i > 0 {
					w.b = append(w.b, ',')
				}
				w.fields(p)
			}
			w.b = append(w.b, ']')
		}
		if len(a.Data) > 0 {
			w.key(`"data":`)
			w.fields(a.Data)
		}
		w.strsOpt(`"records":`, a.Records)
		w.strsOpt(`"warnings":`, a.Warnings)
		w.close()
	}
	if e.NSInfo != nil {
		w.key(`"ns_info":`)
		w.b = e.NSInfo.AppendJSON(w.b)
	}
	w.close()
	return w.b
}

// AppendJSON appends n as the JSON object of ns_info.
func (n *NSInfos) AppendJSON(b []byte) []byte {
	w := jw{b: b}
	w.open()
	for i, t := range nsKeys {
		in := *n.At(i)
		if in == nil {
			continue
		}
		w.key(t)
		w.open()
		w.str(`"id":`, in.ID)
		w.str(`"type":`, in.Type)
		if in.IsInit {
			w.key(`"is_init":`)
			w.b = append(w.b, "true"...)
		}
		if c := in.CreatedBy; c != nil {
			w.key(`"created_by":`)
			w.open()
			w.strOpt(`"event":`, c.Event)
			w.strOpt(`"op":`, c.Op)
			if c.PID != 0 {
				w.int(`"pid":`, int64(c.PID))
			}
			w.strOpt(`"exe":`, c.Exe)
			w.close()
		}
		w.timeOpt(`"first_seen":`, in.FirstSeen)
		w.timeOpt(`"last_seen":`, in.LastSeen)
		w.timeOpt(`"gone":`, in.Gone)
		w.close()
	}
	w.close()
	return w.b
}

func (w *jw) timeOpt(k string, t time.Time) {
	if !t.IsZero() {
		w.key(k)
		w.b = AppendTime(w.b, t)
	}
}

func (w *jw) endpoint(k string, e *Endpoint) {
	if e == nil {
		return
	}
	w.key(k)
	w.open()
	w.strOpt(`"ip":`, e.IP)
	if e.Port != 0 {
		w.int(`"port":`, int64(e.Port))
	}
	w.strOpt(`"path":`, e.Path)
	w.close()
}

// MarshalJSON encodes f as a JSON object in its order.
func (f Fields) MarshalJSON() ([]byte, error) {
	w := jw{}
	w.fields(f)
	return w.b, nil
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
