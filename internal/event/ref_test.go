package event

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The encoder as it was before it appended by value: the reference of
// TestAppendJSONLikeReference.

// rjw is a tiny writer for one JSON object at a time; it tracks whether a
// comma is needed so the hand-written encoders stay readable.
type rjw struct {
	b     []byte
	comma bool
}

// key writes k, a key already quoted and followed by its colon
// (`"name":`), after a comma when one is needed.
func (w *rjw) key(k string) {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.comma = true
	w.b = append(w.b, k...)
}

func (w *rjw) open()  { w.b = append(w.b, '{'); w.comma = false }
func (w *rjw) close() { w.b = append(w.b, '}'); w.comma = true }

// str writes k and v. A value with nothing to escape (most) is written
// with its key in one reservation of the buffer.
func (w *rjw) str(k, v string) {
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

func (w *rjw) strOpt(k, v string) {
	if v != "" {
		w.str(k, v)
	}
}

func (w *rjw) int(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
}

func (w *rjw) uint(k string, v uint64) {
	w.key(k)
	w.b = strconv.AppendUint(w.b, v, 10)
}

func (w *rjw) strs(k string, vs []string) {
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

func (w *rjw) strsOpt(k string, vs []string) {
	if len(vs) > 0 {
		w.strs(k, vs)
	}
}

func (w *rjw) entity(k string, e *Entity) {
	if e == nil {
		return
	}
	w.key(k)
	w.open()
	w.strOpt(`"id":`, e.ID)
	w.strOpt(`"name":`, e.Name)
	w.close()
}

func (w *rjw) fields(f Fields) {
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
func refAppendJSON(e *Event, b []byte) []byte {
	w := rjw{b: b}
	w.open()
	w.key(`"@timestamp":`)
	if !e.Timestamp.IsZero() {
		w.b = AppendTime(w.b, e.Timestamp)
	} else {
		w.b = AppendTime(w.b, e.Event.Created)
	}
	w.key(`"ecs":`)
	w.open()
	w.str(`"version":`, ECSVersion)
	w.close()
	w.b = append(w.b, agentBytes()...)

	w.key(`"event":`)
	w.open()
	w.str(`"id":`, e.Event.ID)
	w.uint(`"sequence":`, uint64(e.Event.Sequence))
	w.timeOpt(`"created":`, e.Event.Created)
	if e.Event.Kind == KindLoss {
		w.str(`"kind":`, ECSKindLoss)
	} else {
		w.str(`"kind":`, e.Event.Kind)
	}
	w.strsOpt(`"category":`, e.Event.Category)
	w.strsOpt(`"type":`, e.Event.Type)
	w.strOpt(`"action":`, e.Event.Action)
	w.strOpt(`"outcome":`, e.Event.Outcome)
	w.str(`"module":`, Module)
	w.str(`"dataset":`, Dataset)
	if e.Auditd != nil && len(e.Auditd.Records) > 0 {
		w.str(`"original":`, strings.Join(e.Auditd.Records, "\n"))
	}
	w.close()

	w.key(`"host":`)
	w.open()
	w.str(`"name":`, e.Host.Name)
	w.key(`"boot":`)
	w.open()
	w.str(`"id":`, e.Host.Boot.ID)
	w.close()
	w.key(`"os":`)
	w.open()
	w.str(`"type":`, "linux")
	w.strOpt(`"kernel":`, e.Host.Kernel)
	w.close()
	w.close()

	w.strsOpt(`"tags":`, e.Tags)
	w.strOpt(`"message":`, e.Message)

	u, g := e.User, e.Group
	if u == nil {
		u = &User{}
	}
	if g == nil {
		g = &Group{}
	}
	procIDs := u.Effective != nil || u.ID != "" || u.Name != "" || u.Saved != nil ||
		g.Effective != nil || g.ID != "" || g.Name != "" || g.Saved != nil
	if p := e.Process; p != nil || procIDs {
		w.key(`"process":`)
		w.open()
		if p != nil {
			if p.PID != 0 {
				w.int(`"pid":`, int64(p.PID))
			}
			if p.VPID != 0 {
				w.int(`"vpid":`, int64(p.VPID))
			}
			w.strOpt(`"entity_id":`, p.EntityID)
			if p.Parent != nil {
				w.key(`"parent":`)
				w.open()
				w.int(`"pid":`, int64(p.Parent.PID))
				w.strOpt(`"entity_id":`, p.Parent.EntityID)
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
			if major, minor, ok := TTYDevice(p.TTY); ok {
				w.key(`"tty":`)
				w.open()
				w.key(`"char_device":`)
				w.open()
				w.int(`"major":`, int64(major))
				w.int(`"minor":`, int64(minor))
				w.close()
				w.close()
			}
		}
		w.entity(`"user":`, u.Effective)
		w.idName(`"real_user":`, u.ID, u.Name)
		w.entity(`"saved_user":`, u.Saved)
		w.entity(`"group":`, g.Effective)
		w.idName(`"real_group":`, g.ID, g.Name)
		w.entity(`"saved_group":`, g.Saved)
		w.close()
	}
	if u.ID != "" || u.Name != "" || u.Effective != nil || u.Target != nil || g.ID != "" || g.Name != "" {
		w.key(`"user":`)
		w.open()
		w.strOpt(`"id":`, u.ID)
		w.strOpt(`"name":`, u.Name)
		w.entity(`"effective":`, u.Effective)
		w.entity(`"target":`, u.Target)
		w.idName(`"group":`, g.ID, g.Name)
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
	if a := e.Auditd; a != nil {
		w.key(`"auditd":`)
		w.open()
		w.strOpt(`"message_type":`, a.MessageType)
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
		w.strsOpt(`"warnings":`, a.Warnings)
		w.close()
	}

	w.key(`"auditns":`)
	w.open()
	w.str(`"schema":`, e.Schema)
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
			if r.ID != 0 {
				w.uint(`"id":`, r.ID)
			}
			if r.Serial != 0 {
				w.str(`"name":`, e.Host.Boot.ID+"/"+strconv.FormatUint(r.Serial, 10))
			}
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
	if u.Audit != nil || u.FS != nil {
		w.key(`"user":`)
		w.open()
		w.entity(`"audit":`, u.Audit)
		w.entity(`"filesystem":`, u.FS)
		w.close()
	}
	if g.FS != nil {
		w.key(`"group":`)
		w.open()
		w.entity(`"filesystem":`, g.FS)
		w.close()
	}
	if e.Label != "" {
		w.key(`"subject":`)
		w.open()
		w.str(`"label":`, e.Label)
		w.close()
	}
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
	if e.NSInfo != nil {
		w.key(`"ns_info":`)
		w.b = refNSInfosJSON(e.NSInfo, w.b)
	}
	w.close()
	w.close()
	return w.b
}

func (w *rjw) idName(k, id, name string) {
	if id == "" && name == "" {
		return
	}
	w.key(k)
	w.open()
	w.strOpt(`"id":`, id)
	w.strOpt(`"name":`, name)
	w.close()
}

// AppendJSON appends n as the JSON object of ns_info.
func refNSInfosJSON(n *NSInfos, b []byte) []byte {
	w := rjw{b: b}
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

func (w *rjw) timeOpt(k string, t time.Time) {
	if !t.IsZero() {
		w.key(k)
		w.b = AppendTime(w.b, t)
	}
}

func (w *rjw) endpoint(k string, e *Endpoint) {
	if e == nil {
		return
	}
	w.key(k)
	w.open()
	if e.IP != "" {
		w.str(`"address":`, e.IP)
		if net.ParseIP(e.IP) != nil && !strings.Contains(e.IP, "%") {
			w.str(`"ip":`, e.IP)
		}
	} else {
		w.strOpt(`"address":`, e.Path)
	}
	if e.Port != 0 {
		w.int(`"port":`, int64(e.Port))
	}
	w.close()
}

// randomEvent fills each field of an event, or leaves it out, as the bits
// of r say; strings are sometimes empty, sometimes need escaping.
func randomEvent(r *rand.Rand) *Event {
	str := func() string {
		switch r.IntN(5) {
		case 0:
			return ""
		case 1:
			return "a\"b\\c\x01\xff é"
		case 2:
			return "/usr/local/bin/something-longer"
		}
		return strconv.Itoa(r.IntN(100000))
	}
	strs := func() []string {
		var s []string
		for n := r.IntN(4); n > 0; n-- {
			s = append(s, str())
		}
		return s
	}
	maybe := func() bool { return r.IntN(2) == 0 }
	ent := func() *Entity {
		if maybe() {
			return nil
		}
		return &Entity{ID: str(), Name: str()}
	}
	tm := func() time.Time {
		if maybe() {
			return time.Time{}
		}
		return time.Unix(r.Int64N(4e9), r.Int64N(1e9))
	}
	fields := func() Fields {
		var f Fields
		for n := r.IntN(4); n > 0; n-- {
			f = append(f, KV{str(), str()})
		}
		return f
	}
	tty := func() string {
		return [...]string{"", "pts0", "pts300", "tty1", "ttyS2", "console", "tty", "(none)", "pts01", str()}[r.IntN(10)]
	}
	e := &Event{Schema: Schema, Timestamp: tm(), Event: Meta{ID: str(), Sequence: r.Uint32(), Created: tm(), Kind: [...]string{KindEvent, KindLoss, KindState, ""}[r.IntN(4)],
		Category: strs(), Type: strs(), Action: str(), Outcome: str()},
		Host: Host{Name: str(), Boot: Boot{ID: str()}, Kernel: str()}, Tags: strs(), Message: str(), NSSrc: str(), Label: str()}
	if maybe() {
		e.Schema = str()
	}
	if maybe() {
		e.Process = &Process{PID: r.IntN(3), VPID: r.IntN(3), EntityID: str(), Name: str(), Executable: str(), Args: strs(), ArgsCount: r.IntN(2),
			WorkingDirectory: str(), Title: str(), TTY: tty()}
		if maybe() {
			e.Process.Parent = &Parent{PID: r.IntN(3), EntityID: str()}
		}
	}
	if maybe() {
		e.User = &User{ID: str(), Name: str(), Audit: ent(), Effective: ent(), Saved: ent(), FS: ent(), Target: ent()}
	}
	if maybe() {
		e.Group = &Group{ID: str(), Name: str(), Effective: ent(), Saved: ent(), FS: ent()}
	}
	if maybe() {
		e.Syscall = &Syscall{Name: str(), Nr: r.IntN(400) - 1, Arch: str(), Exit: r.Int64N(5) - 2, Args: strs()}
	}
	if maybe() {
		e.NS = &NS{}
		for i := range NSTypes {
			if maybe() {
				*e.NS.At(i) = NSRef{Serial: r.Uint64N(3), Inum: r.Uint64N(3), ID: r.Uint64N(3)}
			}
		}
	}
	if maybe() {
		e.NSChange = &NSChange{Op: str(), Types: strs(), ChildrenOnly: strs()}
	}
	if maybe() {
		e.Container = &Container{ID: str(), Runtime: str()}
	}
	if maybe() {
		e.File = &File{Path: str(), Device: str(), Inode: str(), Mode: str(), UID: str(), GID: str(), Owner: str(), Group: str()}
	}
	if maybe() {
		e.Source = &Endpoint{IP: [...]string{"", "10.1.2.3", "::1", "?", "fe80::1%eth0"}[r.IntN(5)], Port: r.IntN(2), Path: str()}
	}
	if maybe() {
		e.Dest = &Endpoint{IP: [...]string{"", "10.1.2.3", str()}[r.IntN(3)], Port: r.IntN(2), Path: str()}
	}
	if maybe() {
		e.Loss = &Loss{Reason: str(), Count: r.Uint64N(3), From: r.Uint32N(2), To: r.Uint32N(2), KernelLost: r.Uint32N(2)}
	}
	if maybe() {
		e.Auditd = &Auditd{MessageType: str(), Result: str(), Session: str(), Data: fields(), Records: strs(), Warnings: strs()}
		if maybe() {
			e.Auditd.Summary = &Summary{Actor: Actor{str(), str()}, Action: str(), Object: Object{str(), str(), str()}, How: str()}
		}
		for n := r.IntN(3); n > 0; n-- {
			e.Auditd.Paths = append(e.Auditd.Paths, fields())
		}
	}
	if maybe() {
		e.NSInfo = &NSInfos{}
		for i := range NSTypes {
			if maybe() {
				in := &NSInfo{ID: str(), Type: str(), IsInit: maybe(), FirstSeen: tm(), LastSeen: tm(), Gone: tm()}
				if maybe() {
					in.CreatedBy = &NSCreator{Event: str(), Op: str(), PID: r.IntN(2), Exe: str()}
				}
				*e.NSInfo.At(i) = in
			}
		}
	}
	return e
}

// The encoder writes what the one it replaced wrote, byte for byte.
func TestAppendJSONLikeReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		e := randomEvent(r)
		got, want := e.AppendJSON([]byte("x")), refAppendJSON(e, []byte("x"))
		if !bytes.Equal(got, want) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
		if !json.Valid(got[1:]) {
			t.Fatalf("invalid JSON %s", got[1:])
		}
	}
	for _, e := range []*Event{sample(), {}} {
		if got, want := e.AppendJSON(nil), refAppendJSON(e, nil); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	}
}

// An Encoder writes what AppendJSON writes, over sequences of events whose
// users and groups repeat, change in one string or in which are set, and
// whose strings are rewritten after they were encoded.
func TestEncoderLikeAppendJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var c Encoder
	var prev *Event
	for i := 0; i < 50000; i++ {
		e := randomEvent(r)
		if prev != nil && r.IntN(3) > 0 {
			// The previous identities again, as other strings (copies),
			// sometimes with one string or entity changed.
			e.User, e.Group = cloneUser(prev.User), cloneGroup(prev.Group)
			switch r.IntN(6) {
			case 0:
				if e.User != nil {
					e.User.Name += "x"
				}
			case 1:
				if e.User != nil {
					e.User.Saved = nil
				}
			case 2:
				if e.Group != nil {
					e.Group.ID = ""
				}
			case 3:
				e.Group = &Group{}
			case 4:
				if e.Group != nil {
					e.Group.FS = &Entity{ID: "7"}
				}
			}
		}
		got, want := c.AppendJSON([]byte("x"), e), e.AppendJSON([]byte("x"))
		if !bytes.Equal(got, want) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
		prev = e
	}
}

func cloneEntity(e *Entity) *Entity {
	if e == nil {
		return nil
	}
	return &Entity{ID: string([]byte(e.ID)), Name: string([]byte(e.Name))}
}

func cloneUser(u *User) *User {
	if u == nil {
		return nil
	}
	return &User{ID: string([]byte(u.ID)), Name: string([]byte(u.Name)), Audit: cloneEntity(u.Audit),
		Effective: cloneEntity(u.Effective), Saved: cloneEntity(u.Saved), FS: cloneEntity(u.FS), Target: cloneEntity(u.Target)}
}

func cloneGroup(g *Group) *Group {
	if g == nil {
		return nil
	}
	return &Group{ID: string([]byte(g.ID)), Name: string([]byte(g.Name)), Effective: cloneEntity(g.Effective),
		Saved: cloneEntity(g.Saved), FS: cloneEntity(g.FS)}
}
