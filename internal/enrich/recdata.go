package enrich

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/elastic/go-libaudit/v2/auparse"
	"golang.org/x/sys/unix"

	"github.com/auditns/auditns/internal/record"
)

// Record types the enrichment treats apart.
const (
	typeUserCmd   = uint16(auparse.AUDIT_USER_CMD)
	typeUserTTY   = uint16(auparse.AUDIT_USER_TTY)
	typeUserLogin = uint16(auparse.AUDIT_USER_LOGIN)
	typeSyscall   = uint16(auparse.AUDIT_SYSCALL)
	typePath      = uint16(auparse.AUDIT_PATH)
	typeSockaddr  = uint16(auparse.AUDIT_SOCKADDR)
	typeExecve    = uint16(auparse.AUDIT_EXECVE)
	typeTTY       = uint16(auparse.AUDIT_TTY)
	typeEOE       = uint16(auparse.AUDIT_EOE)
	typeSeccomp   = uint16(auparse.AUDIT_SECCOMP)
	typeProctitle = uint16(auparse.AUDIT_PROCTITLE)
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

// add appends an entry and returns its index.
func (d *rdata) add(key, val string, k kid, field int32) int {
	d.ents = append(d.ents, ent{key: key, val: val, kid: k, field: field})
	return len(d.ents) - 1
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
