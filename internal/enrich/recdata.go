package enrich

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/elastic/go-libaudit/v2/auparse"
	"golang.org/x/sys/unix"

	"github.com/auditns/auditns/internal/record"
)

// Record types the enrichment treats apart (linux/audit.h).
const (
	typeUserCmd   = 1123
	typeUserTTY   = 1124
	typeUserLogin = 1112
	typeSyscall   = 1300
	typePath      = 1302
	typeSockaddr  = 1306
	typeExecve    = 1309
	typeTTY       = 1319
	typeEOE       = 1320
	typeSeccomp   = 1326
	typeProctitle = 1327
)

// ent is one key and value of a record as go-libaudit's AuditMessage.Data
// holds them after its enrichment. Strings are views of the record or of
// the Enricher's scratch buffer: valid for the current event only.
type ent struct {
	key   string
	val   string
	kid   kid
	dead  bool  // deleted
	moved bool  // not part of the data: moved to the event's ids, or dropped
	field int32 // the record field it was read from; -1 when made up
}

// rdata is one record's Data(): its fields, last occurrence of a key
// winning, without go-libaudit's dropped values, enriched as auparse
// enriches them (unset ids, SELinux contexts split, result, errno names,
// hex decoding, arch and syscall names, sockaddr decoded, exec arguments).
type rdata struct {
	rec   *record.Record
	ents  []ent
	idx   [numKids]int32 // ents index + 1; 0 when absent
	bloom uint64         // of the keys of kNone entries
	err   error          // Data() failed: the record has no data at all
	keyF  int32          // the key field (audit rule keys), -1 when none
	args  []int32        // EXECVE: entry of argument N >= 4, -1 when none
	nr    int            // the syscall number, when syscall was translated
	nrOK  bool
}

var (
	errNoData = errors.New("message has no data content")
	errArgc   = errors.New("argc key not found")
)

func keyNotFound(k kid) error { return fmt.Errorf("%s key not found", kidNames[k]) }

// get returns the live entry of a known key (moved entries have no index).
func (d *rdata) get(k kid) *ent {
	if i := d.idx[k]; i > 0 && !d.ents[i-1].dead {
		return &d.ents[i-1]
	}
	return nil
}

func (d *rdata) val(k kid) (string, bool) {
	if e := d.get(k); e != nil {
		return e.val, true
	}
	return "", false
}

func (d *rdata) del(k kid) {
	if e := d.get(k); e != nil {
		e.dead = true
	}
}

func bloomBit(key string) uint64 {
	if key == "" {
		return 1
	}
	return 1 << ((uint(len(key))*7 + uint(key[0]) + uint(key[len(key)-1])*3) & 63)
}

// set adds key=val or replaces the value of key (go-libaudit's map add),
// and returns the entry's index.
func (d *rdata) set(key, val string, k kid, field int32) int {
	if k != kNone {
		if i := d.idx[k]; i > 0 {
			e := &d.ents[i-1]
			e.val, e.field, e.dead = val, field, false
			return int(i - 1)
		}
		n := d.add(key, val, k, field)
		d.idx[k] = int32(n + 1)
		return n
	}
	b := bloomBit(key)
	if d.bloom&b != 0 {
		for i := range d.ents {
			e := &d.ents[i]
			if e.kid == kNone && !e.moved && e.key == key {
				e.val, e.field, e.dead = val, field, false
				return i
			}
		}
	}
	d.bloom |= b
	return d.add(key, val, k, field)
}

// add appends an entry and returns its index. It writes the entry field
// by field: a composite literal is built on the stack with narrow stores
// and copied with wide loads, which stalls on store forwarding.
func (d *rdata) add(key, val string, k kid, field int32) int {
	n := len(d.ents)
	if n == cap(d.ents) {
		d.ents = append(d.ents, ent{})
	} else {
		d.ents = d.ents[:n+1]
	}
	e := &d.ents[n]
	e.key, e.val = key, val
	e.kid, e.dead, e.moved, e.field = k, false, false, field
	return n
}

// lookup finds a live entry by name.
func (d *rdata) lookup(key string) *ent {
	if k := classify(key); k != kNone {
		return d.get(k)
	}
	if len(key) == 0 || d.bloom&bloomBit(key) == 0 {
		return nil
	}
	for i := range d.ents {
		e := &d.ents[i]
		if e.kid == kNone && !e.dead && !e.moved && e.key == key {
			return e
		}
	}
	return nil
}

// move takes entry i out of the data (kept for the event's ids).
func (d *rdata) move(i int) {
	x := &d.ents[i]
	x.moved = true
	if x.kid != kNone && d.idx[x.kid] == int32(i+1) {
		d.idx[x.kid] = 0
	}
}

func (d *rdata) orig(e *ent) []byte {
	if e.field < 0 {
		return nil
	}
	return d.rec.Bytes(d.rec.Fields[e.field].Orig)
}

// build fills d from rec as auparse's Data() would.
func (d *rdata) build(rec *record.Record, e *Enricher) {
	d.rec, d.ents, d.idx, d.bloom, d.err, d.keyF, d.nrOK = rec, d.ents[:0], [numKids]int32{}, 0, nil, -1, false
	d.args = d.args[:0]
	if rec.Body == nil {
		d.err = errNoData
		return
	}
	for i := range rec.Fields {
		f := &rec.Fields[i]
		if f.Unset {
			continue
		}
		key := rec.Str(f.Key)
		k := classify(key)
		j := d.set(key, rec.Str(f.Val), k, int32(i))
		if rec.Type == typeExecve && k == kNone {
			d.indexArg(key, j)
		}
	}
	d.err = d.enrich(e)
}

// syscallMemo is the data of the last SYSCALL record built, for the next
// one with the same text after its header (a process making the same call
// again and again): its fields are the same, and so is what build makes of
// them, but for the strings that are views of the record, kept here as
// offsets into the text after the header.
type syscallMemo struct {
	valid  bool
	misses int    // lookups missed since the last hit
	tail   []byte // the record's body after its header
	ents   []memoEnt
	idx    [numKids]int32
	bloom  uint64
	keyF   int32
	nr     int
	nrOK   bool

	// The arguments a0 to a3 differ from call to call: a record that is
	// the memo's but for their values (fields i0 to i0+3, bytes ws to we
	// of the tail) is built from the memo too, when no other entry is a
	// view of those bytes. fields are the memo's, as spans of the tail.
	win    bool
	i0     int
	ws, we int
	fields []record.Field
}

// memoEnt is an entry whose key and value are views of the tail (off >= 0)
// or strings that outlive the record (off < 0: kept in the ent). arg >= 0
// is the field of an argument whose key and value the entry is.
type memoEnt struct {
	ent
	keyOff, valOff int32
	arg            int
}

// argsAt reports whether fields i to i+3 are a0 to a3, written bare: what
// the build of a SYSCALL record takes as they are (syscall() decorates
// them later).
func argsAt(rec *record.Record, i int) bool {
	if i < 0 || i+3 >= len(rec.Fields) {
		return false
	}
	for k := 0; k < 4; k++ {
		f := &rec.Fields[i+k]
		if f.Kind != record.Bare || f.Unset || f.Inner || f.Key.Len() != 2 {
			return false
		}
		if kb := rec.Bytes(f.Key); kb[0] != 'a' || kb[1] != byte('0'+k) {
			return false
		}
	}
	return true
}

// sameFields reports whether rec's fields, as spans of the tail at off,
// are the memo's: before the arguments where they are, after them moved by
// delta bytes.
func (m *syscallMemo) sameFields(rec *record.Record, off, delta int) bool {
	for j := range rec.Fields {
		if j >= m.i0 && j <= m.i0+3 {
			continue
		}
		d := off
		if j > m.i0+3 {
			d += delta
		}
		f := rec.Fields[j]
		u := uint32(-d)
		f.Key.Start, f.Key.End = f.Key.Start+u, f.Key.End+u
		f.Orig.Start, f.Orig.End = f.Orig.Start+u, f.Orig.End+u
		f.Val.Start, f.Val.End = f.Val.Start+u, f.Val.End+u
		if f != m.fields[j] {
			return false
		}
	}
	return true
}

// tailStart is where the fields of a record's body start to depend on
// nothing before them: after a header that ends with ')' and holds no
// '=' (no field starts in it or crosses its end). -1 when there is none.
func tailStart(body []byte) int {
	i := bytes.IndexByte(body, ')')
	if i < 0 || bytes.IndexByte(body[:i], '=') >= 0 {
		return -1
	}
	return i + 1
}

// buildSyscall is build for a SYSCALL record, from the memo when the
// record's tail is the memo's.
func (d *rdata) buildSyscall(rec *record.Record, e *Enricher) {
	m := &e.sysMemo
	off := -1
	if rec.Body != nil && len(rec.Body) <= 8192 {
		off = tailStart(rec.Body)
	}
	if off >= 0 && m.valid {
		tail := rec.Body[off:]
		hit, delta := bytes.Equal(m.tail, tail), 0
		if !hit && m.win && len(rec.Fields) == len(m.fields) && argsAt(rec, m.i0) {
			// The same but for the arguments' values?
			nws := int(rec.Fields[m.i0].Orig.Start) - off
			nwe := int(rec.Fields[m.i0+3].Orig.End) - off
			delta = nwe - m.we
			hit = nws == m.ws && len(tail)-nwe == len(m.tail)-m.we &&
				bytes.Equal(tail[:nws], m.tail[:m.ws]) && bytes.Equal(tail[nwe:], m.tail[m.we:]) &&
				m.sameFields(rec, off, delta)
		}
		if hit {
			m.misses = 0
			d.fromMemo(rec, tail, m, delta)
			return
		}
	}
	d.build(rec, e)
	// When records keep missing (the calls' arguments differ), remembering
	// each costs more than it saves: one in 64 is.
	if m.misses++; m.misses > 2 && m.misses%64 != 0 {
		return
	}
	m.valid = false
	if off < 0 || d.err != nil {
		return
	}
	// Remember it, if every string is a view of the tail or outlives the
	// record (not a view of the event's buffer, e.sb).
	m.win, m.i0 = false, -1
	for i := 0; i+3 < len(rec.Fields); i++ {
		if argsAt(rec, i) {
			m.win, m.i0 = true, i
			m.ws, m.we = int(rec.Fields[i].Orig.Start)-off, int(rec.Fields[i+3].Orig.End)-off
			break
		}
	}
	m.win = m.win && m.ws >= 0
	m.ents = m.ents[:0]
	for i := range d.ents {
		x := &d.ents[i]
		me := memoEnt{ent: *x, arg: -1}
		var ok bool
		if me.keyOff, ok = offsetIn(x.key, rec.Body, off, e.sb); !ok {
			return
		}
		if me.valOff, ok = offsetIn(x.val, rec.Body, off, e.sb); !ok {
			return
		}
		if m.win {
			if j := int(x.field); j >= m.i0 && j <= m.i0+3 && sameView(x.key, rec.Str(rec.Fields[j].Key)) && sameView(x.val, rec.Str(rec.Fields[j].Val)) {
				me.arg = j
			} else if overlaps(me.keyOff, len(x.key), m.ws, m.we) || overlaps(me.valOff, len(x.val), m.ws, m.we) {
				m.win = false
			}
		}
		m.ents = append(m.ents, me)
	}
	m.tail = append(m.tail[:0], rec.Body[off:]...)
	m.fields = append(m.fields[:0], rec.Fields...)
	u := uint32(-off)
	for i := range m.fields {
		f := &m.fields[i]
		f.Key.Start, f.Key.End = f.Key.Start+u, f.Key.End+u
		f.Orig.Start, f.Orig.End = f.Orig.Start+u, f.Orig.End+u
		f.Val.Start, f.Val.End = f.Val.Start+u, f.Val.End+u
	}
	m.idx, m.bloom, m.keyF, m.nr, m.nrOK = d.idx, d.bloom, d.keyF, d.nr, d.nrOK
	m.valid = true
}

// fromMemo fills d from the memo for rec, whose tail is the memo's but
// for the arguments' values, which end delta bytes further than the
// memo's (0 when the tails are the same).
func (d *rdata) fromMemo(rec *record.Record, tail []byte, m *syscallMemo, delta int) {
	d.rec, d.idx, d.bloom, d.err, d.keyF, d.nr, d.nrOK = rec, m.idx, m.bloom, nil, m.keyF, m.nr, m.nrOK
	d.args = d.args[:0]
	d.ents = slices.Grow(d.ents[:0], len(m.ents))[:len(m.ents)]
	at := func(o int32, n int) string {
		i := int(o)
		if i >= m.we {
			i += delta
		}
		return record.View(tail[i : i+n])
	}
	for i := range m.ents {
		me := &m.ents[i]
		x := &d.ents[i]
		*x = me.ent
		if me.arg >= 0 {
			f := &rec.Fields[me.arg]
			x.key, x.val = rec.Str(f.Key), rec.Str(f.Val)
			continue
		}
		if me.keyOff >= 0 {
			x.key = at(me.keyOff, len(me.key))
		}
		if me.valOff >= 0 {
			x.val = at(me.valOff, len(me.val))
		}
	}
}

// sameView reports whether a and b are the same bytes in memory.
func sameView(a, b string) bool {
	return len(a) == len(b) && unsafe.StringData(a) == unsafe.StringData(b)
}

// overlaps reports whether the n bytes at off (off >= 0: a view of the
// tail) meet the bytes ws to we.
func overlaps(off int32, n, ws, we int) bool {
	return off >= 0 && int(off) < we && int(off)+n > ws
}

// offsetIn returns where s is in body[off:] (>= 0), or -1 when s is a
// string that outlives the record: neither a view of body nor of scratch.
// ok is false when s is a view of scratch, which the next event rewrites,
// or of body before off.
func offsetIn(s string, body []byte, off int, scratch []byte) (int32, bool) {
	if len(s) == 0 {
		return -1, true
	}
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	if within(p, body) {
		if t := uintptr(unsafe.Pointer(unsafe.SliceData(body))) + uintptr(off); p >= t && p+uintptr(len(s)) <= t+uintptr(len(body)-off) {
			return int32(p - t), true
		}
		return -1, false
	}
	if within(p, scratch[:cap(scratch)]) {
		return -1, false
	}
	return -1, true
}

// within reports whether p points into b.
func within(p uintptr, b []byte) bool {
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return len(b) > 0 && p >= start && p < start+uintptr(len(b))
}

// enrich is auparse's enrichData.
func (d *rdata) enrich(e *Enricher) error {
	for _, k := range [...]kid{kAuid, kOldAuid, kSes} {
		if x := d.get(k); x != nil && (x.val == "4294967295" || x.val == "-1") {
			x.val = "unset"
		}
	}
	d.selinux(kSubj, &subjKeys)
	d.result()
	if x := d.get(kExit); x != nil {
		if n, err := strconv.Atoi(x.val); err == nil && n < 0 {
			if name, ok := auparse.AuditErrnoToName[-1*n]; ok {
				x.val = name
			}
		}
	}
	if x := d.get(kKey); x != nil {
		d.keyF = x.field
		x.dead = true
	}
	d.hexDecode(e, kCwd)

	switch d.rec.Type {
	case typeSeccomp:
		x := d.get(kSig)
		if x == nil {
			return keyNotFound(kSig)
		}
		n, err := strconv.Atoi(x.val)
		if err != nil {
			return fmt.Errorf("failed to parse sig: %w", err)
		}
		if name := unix.SignalName(syscall.Signal(n)); name != "" {
			x.val = name
		}
		fallthrough
	case typeSyscall:
		x := d.get(kArch)
		if x == nil {
			return keyNotFound(kArch)
		}
		arch := e.archHexVal
		if x.val != e.archHex || e.archHex == "" {
			var err error
			if arch, err = strconv.ParseInt(x.val, 16, 64); err != nil {
				return fmt.Errorf("failed to parse arch: %w", err)
			}
			// The next record's is most likely the same.
			e.archHex, e.archHexVal = strings.Clone(x.val), arch
		}
		x.val = e.archName(auparse.AuditArch(arch))
		s := d.get(kSyscall)
		if s == nil {
			return keyNotFound(kSyscall)
		}
		n, err := strconv.Atoi(s.val)
		if err != nil {
			return fmt.Errorf("failed to parse syscall: %w", err)
		}
		if name, ok := e.syscallName(x.val, n); ok {
			s.val = name
			d.nr, d.nrOK = n, true
		}
		if !d.hexDecode(e, kExe) {
			return keyNotFound(kExe)
		}
	case typeSockaddr:
		return d.sockaddr(e)
	case typeProctitle:
		if !d.hexDecode(e, kProctitle) {
			return keyNotFound(kProctitle)
		}
	case typeUserCmd:
		if !d.hexDecode(e, kCmd) {
			return keyNotFound(kCmd)
		}
	case typeTTY, typeUserTTY:
		if !d.hexDecode(e, kData) {
			return keyNotFound(kData)
		}
	case typeExecve:
		return d.execve(e)
	case typePath:
		d.selinux(kObj, &objKeys)
		d.hexDecode(e, kName)
	case typeUserLogin:
		d.hexDecode(e, kAcct)
	}
	return nil
}

var (
	subjKeys = [...]string{"subj_user", "subj_role", "subj_domain", "subj_level", "subj_category"}
	objKeys  = [...]string{"obj_user", "obj_role", "obj_domain", "obj_level", "obj_category"}
)

// selinux splits a context user:role:domain:level:category into fields
// (strings.SplitN(v, ":", 5)).
func (d *rdata) selinux(k kid, keys *[5]string) {
	x := d.get(k)
	if x == nil {
		return
	}
	x.dead = true
	v := x.val
	for i := range keys {
		part, more := v, false
		if i < len(keys)-1 {
			if j := strings.IndexByte(v, ':'); j >= 0 {
				part, v, more = v[:j], v[j+1:], true
			}
		}
		d.set(keys[i], part, kNone, -1)
		if !more {
			return
		}
	}
}

// result turns success= (syscalls) or res= (the others) into result.
func (d *rdata) result() {
	x := d.get(kSuccess)
	if x == nil {
		if x = d.get(kRes); x == nil {
			return
		}
	}
	x.dead = true
	v := x.val
	r := "fail"
	if lowerIs(v, "yes") || v == "1" || len(v) >= 3 && lowerIs(v[:3], "suc") {
		r = "success"
	}
	d.set("result", r, kResult, -1)
}

// lowerIs reports whether strings.ToLower(s) == lower, for an ASCII
// lower: only ASCII letters lower-case to ASCII letters there.
func lowerIs(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// hexDecode decodes the value of k when it was written as upper-case hex,
// NULs becoming spaces (auparse's hexDecode). It reports whether k exists.
func (d *rdata) hexDecode(e *Enricher, k kid) bool {
	x := d.get(k)
	if x == nil {
		return false
	}
	if o := d.orig(x); o != nil {
		start := len(e.sb)
		var ok bool
		if e.sb, ok = record.AppendUpperUnhex(e.sb, o); ok {
			b := e.sb[start:]
			for i, c := range b {
				if c == 0 {
					b[i] = ' '
				}
			}
			x.val = record.View(b)
		}
	}
	return true
}

// execve checks the arguments go-libaudit requires and decodes them (hex
// up to the first NUL). auditns reads the arguments itself (execveArgs);
// this is for the warnings and the process.args of the rare event that
// only go-libaudit's parsing recognises.
func (d *rdata) execve(e *Enricher) error {
	x := d.get(kArgc)
	if x == nil {
		return errArgc
	}
	count, err := strconv.ParseUint(x.val, 10, 32)
	if err != nil {
		return fmt.Errorf("failed to convert argc='%v' to number: %w",
			struct{ orig, value string }{record.View(d.orig(x)), x.val}, err)
	}
	for i := 0; i < int(count); i++ {
		a := d.arg(i)
		if a == nil {
			return fmt.Errorf("failed to find arg a%d", i)
		}
		if o := d.orig(a); o != nil {
			start := len(e.sb)
			var ok bool
			if e.sb, ok = record.AppendUpperUnhex(e.sb, o); ok {
				b := e.sb[start:]
				if j := strings.IndexByte(record.View(b), 0); j >= 0 {
					b = b[:j]
				}
				a.val = record.View(b)
			}
		}
	}
	return nil
}

// indexArg notes where argument aN (N >= 4, written as strconv.Itoa
// writes it) is, so that a long argv is checked in linear time.
func (d *rdata) indexArg(k string, j int) {
	if len(k) < 2 || len(k) > 11 || k[0] != 'a' || k[1] == '0' {
		return
	}
	n := 0
	for i := 1; i < len(k); i++ {
		c := k[i]
		if c < '0' || c > '9' {
			return
		}
		n = n*10 + int(c-'0')
	}
	if n < 4 || n > 1<<20 {
		return
	}
	for len(d.args) <= n {
		d.args = append(d.args, -1)
	}
	d.args[n] = int32(j)
}

// arg returns the entry of argument i ("a"+i).
func (d *rdata) arg(i int) *ent {
	if i < 4 {
		return d.get(kA0 + kid(i))
	}
	if i >= len(d.args) || d.args[i] < 0 {
		return nil
	}
	x := &d.ents[d.args[i]]
	if x.dead {
		return nil
	}
	return x
}

// tags are the audit rule keys of the record: a hex list separated by
// \x01, or key="name" (key="key=name" from old auditctl).
func (d *rdata) tags(e *Enricher) []string {
	if d.keyF < 0 {
		return nil
	}
	f := &d.rec.Fields[d.keyF]
	out := e.tagBuf[:0]
	start := len(e.sb)
	var ok bool
	if e.sb, ok = record.AppendUpperUnhex(e.sb, d.rec.Bytes(f.Orig)); ok {
		s := record.View(e.sb[start:])
		for {
			i := strings.IndexByte(s, 1)
			if i < 0 {
				break
			}
			out = append(out, s[:i])
			s = s[i+1:]
		}
		out = append(out, s)
	} else {
		v := d.rec.Str(f.Val)
		if i := strings.IndexByte(v, '='); i >= 0 {
			v = v[i+1:]
		}
		out = append(out, v)
	}
	e.tagBuf = out
	return out
}

// sockaddr decodes saddr into family, addr, port, path (and flow, saddr):
// auparse's parseSockaddr, with its errors.
func (d *rdata) sockaddr(e *Enricher) error {
	x := d.get(kSaddr)
	if x == nil {
		return keyNotFound(kSaddr)
	}
	s := x.val
	wrap := func(err error) error { return fmt.Errorf("failed to parse saddr: %w", err) }
	if len(s) < 4 {
		return wrap(fmt.Errorf("invalid family: too short: %d", len(s)))
	}
	start := len(e.sb)
	e.sb = append(append(e.sb, s[2:4]...), s[0:2]...)
	family, err := hexToDec(record.View(e.sb[start:]))
	if err != nil {
		return wrap(err)
	}
	put := func(key, val string) { d.set(key, val, classify(key), -1) }
	switch family {
	case 1:
		b, err := upperUnhex(e, s[4:])
		if err != nil {
			return wrap(err)
		}
		if i := strings.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		x.dead = true
		put("family", "unix")
		put("path", b)
	case 2:
		if len(s) < 16 {
			return wrap(fmt.Errorf("invalid socket address size family=ipv4: %d", len(s)))
		}
		port, err := hexToDec(s[4:8])
		if err != nil {
			return wrap(err)
		}
		start := len(e.sb)
		for i := 8; i < 16; i += 2 {
			if i > 8 {
				e.sb = append(e.sb, '.')
			}
			n, _ := hexToDec(s[i : i+2])
			e.sb = strconv.AppendInt(e.sb, int64(n), 10)
		}
		ip := record.View(e.sb[start:])
		x.dead = true
		put("family", "ipv4")
		put("addr", ip)
		put("port", e.itoa(int64(port)))
	case 10:
		if len(s) < 48 {
			return wrap(fmt.Errorf("invalid socket address size family=ipv6: %d", len(s)))
		}
		port, err := hexToDec(s[4:8])
		if err != nil {
			return wrap(err)
		}
		flow, err := hexToDec(s[8:16])
		if err != nil {
			return wrap(err)
		}
		b, err := hex.DecodeString(s[16:48])
		if err != nil {
			return wrap(err)
		}
		x.dead = true
		put("family", "ipv6")
		put("addr", net.IP(b).String())
		put("port", e.itoa(int64(port)))
		if flow > 0 {
			put("flow", e.itoa(int64(flow)))
		}
	case 16:
		x.dead = true
		put("family", "netlink")
		put("saddr", s)
	default:
		x.dead = true
		put("family", e.itoa(int64(family)))
		put("saddr", s)
	}
	return nil
}

func hexToDec(h string) (int32, error) {
	n, err := strconv.ParseInt(h, 16, 32)
	return int32(n), err
}

// upperUnhex decodes upper-case hex as auparse's decodeUppercaseHexString,
// with its errors.
func upperUnhex(e *Enricher, h string) (string, error) {
	if len(h)%2 == 1 {
		return "", hex.ErrLength
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return "", hex.InvalidByteError(c)
		}
	}
	start := len(e.sb)
	e.sb, _ = record.AppendUnhex(e.sb, h)
	return record.View(e.sb[start:]), nil
}
