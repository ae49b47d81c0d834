// Package render turns auditns events (auditns.event/2 and /1) into one readable line each
// for `auditns tail` and `auditns replay`, and keeps untrusted text from
// reaching a terminal as anything but text.
//
// Escaping (Escape): every string taken from an event goes through it. C0
// control characters and DEL become \xNN (\n, \r and \t keep their short
// forms), C1 control characters (U+0080-U+009F, which terminals may act on
// as 8-bit CSI, OSC, ...) and Unicode format and separator characters
// (bidirectional overrides, zero-width characters, U+2028/U+2029) become
// \uXXXX, and each byte that is not valid UTF-8 becomes \xNN. Backslashes
// are left alone: the daemon already writes invalid bytes of kernel text as
// the text \xNN, which therefore reads the same as an escaped control byte.
// Colour codes are only ever added around escaped text, and only when the
// caller says the output is a terminal.
package render

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/auditns/auditns/internal/event"
)

const hex = "0123456789abcdef"

// TimeLayout is the time column: UTC with milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// unsetID is the login uid of a process that never logged in.
const unsetID = "4294967295"

// Escape appends s to dst with every control character, terminal escape
// sequence introducer, invisible format character and invalid UTF-8 byte
// written as visible text (see the package comment).
func Escape(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		if c < utf8.RuneSelf { // C0 or DEL
			dst = append(dst, s[start:i]...)
			switch c {
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'x', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'x', hex[c>>4], hex[c&0xf])
			i++
			start = i
			continue
		}
		if unsafeRune(r) {
			dst = append(dst, s[start:i]...)
			dst = appendU(dst, r)
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// unsafeRune reports whether r (>= U+0080) must not reach a terminal as is:
// C1 controls, format characters (Cf: bidi overrides, zero-width), line and
// paragraph separators, and U+FFFD-like non-characters are not; other
// printable text is.
func unsafeRune(r rune) bool {
	return r <= 0x9f || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) ||
		r&0xfffe == 0xfffe || (r >= 0xfdd0 && r <= 0xfdef)
}

func appendU(dst []byte, r rune) []byte {
	if r > 0xffff {
		dst = append(dst, '\\', 'U')
		for s := 28; s >= 0; s -= 4 {
			dst = append(dst, hex[(r>>s)&0xf])
		}
		return dst
	}
	return append(dst, '\\', 'u', hex[(r>>12)&0xf], hex[(r>>8)&0xf], hex[(r>>4)&0xf], hex[r&0xf])
}

// needsQuote reports whether a value must be quoted to stay one field.
func needsQuote(s string, brackets bool) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '"':
			return true
		case '[', ']':
			if brackets {
				return true
			}
		}
	}
	return false
}

// appendValue appends s escaped, in double quotes (with \" inside) when it
// has a space or a quote or is empty.
func appendValue(dst []byte, s string, brackets bool) []byte {
	if !needsQuote(s, brackets) {
		return Escape(dst, s)
	}
	dst = append(dst, '"')
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			break
		}
		dst = Escape(dst, s[:i])
		dst = append(dst, '\\', '"')
		s = s[i+1:]
	}
	dst = Escape(dst, s)
	return append(dst, '"')
}

// ANSI SGR sequences used when colour is on.
const (
	sgrReset  = "\x1b[0m"
	sgrDim    = "\x1b[2m"
	sgrBold   = "\x1b[1m"
	sgrRed    = "\x1b[31m"
	sgrGreen  = "\x1b[32m"
	sgrYellow = "\x1b[33m"
	sgrCyan   = "\x1b[36m"
	sgrBoldRd = "\x1b[1;31m"
)

// line builds one output line.
type line struct {
	b     []byte
	color bool
}

func (l *line) sp() {
	if len(l.b) > 0 && l.b[len(l.b)-1] != ' ' {
		l.b = append(l.b, ' ')
	}
}

func (l *line) on(sgr string) {
	if l.color {
		l.b = append(l.b, sgr...)
	}
}

func (l *line) off() {
	if l.color {
		l.b = append(l.b, sgrReset...)
	}
}

// word appends an escaped, unquoted word.
func (l *line) word(s string) {
	l.sp()
	l.b = Escape(l.b, s)
}

// kv appends key=value with the value escaped and quoted when needed.
func (l *line) kv(k, v string) {
	l.sp()
	l.b = append(l.b, k...)
	l.b = append(l.b, '=')
	l.b = appendValue(l.b, v, false)
}

// Line appends to dst the readable line of e, ending in '\n':
//
//	TIME HOST NS USER pid=N [ppid=N] TYPE [SYSCALL] [ACTION] [exe=...] [argv=[...]]
//	  [path=...] [src=...] [dst=...] [ns_change=op(types)] [msg=...] [OUTCOME] [keys=...]
//
// NS is the container ("ctr:" and the first 12 characters of its id) when
// there is one, else the pid, net and mnt serials ("pid:4 net:13 mnt:8").
// With color, ANSI colours mark the time, type, outcome and keys.
func Line(dst []byte, e *event.Event, color bool) []byte {
	l := line{b: dst, color: color}
	l.on(sgrDim)
	if t := e.When(); t.IsZero() {
		l.b = append(l.b, "-"...)
	} else {
		l.b = t.UTC().AppendFormat(l.b, TimeLayout)
	}
	l.off()
	l.word(orDash(e.Host.Name))

	switch e.Event.Kind {
	case event.KindLoss:
		l.sp()
		l.on(sgrBoldRd)
		l.b = append(l.b, "LOSS"...)
		l.off()
		if x := e.Loss; x != nil {
			l.word(x.Reason)
			l.kv("count", strconv.FormatUint(x.Count, 10))
			if x.From != 0 || x.To != 0 {
				l.kv("seq", strconv.FormatUint(uint64(x.From), 10)+"-"+strconv.FormatUint(uint64(x.To), 10))
			}
			if x.KernelLost != 0 {
				l.kv("kernel_lost", strconv.FormatUint(uint64(x.KernelLost), 10))
			}
		}
		if e.Message != "" {
			l.kv("msg", e.Message)
		}
		return l.end()
	case event.KindState:
		l.sp()
		l.on(sgrYellow)
		l.b = append(l.b, "STATE"...)
		l.off()
		if e.Message != "" {
			l.kv("msg", e.Message)
		}
		return l.end()
	}

	l.namespaces(e)
	l.user(e.User)
	if p := e.Process; p != nil {
		if p.PID != 0 {
			l.kv("pid", strconv.Itoa(p.PID))
		}
		if p.Parent != nil && p.Parent.PID != 0 {
			l.kv("ppid", strconv.Itoa(p.Parent.PID))
		}
	}
	l.sp()
	l.on(sgrBold)
	l.b = Escape(l.b, orDash(e.MessageType()))
	l.off()
	if s := e.Syscall; s != nil {
		if s.Name != "" {
			l.word(s.Name)
		} else {
			l.kv("syscall", strconv.Itoa(s.Nr))
		}
	}
	if e.Event.Action != "" {
		l.word(e.Event.Action)
	}
	if p := e.Process; p != nil {
		l.program(p)
	}
	if f := e.File; f != nil && f.Path != "" {
		l.kv("path", f.Path)
	}
	if s := endpoint(e.Source); s != "" {
		l.kv("src", s)
	}
	if d := endpoint(e.Dest); d != "" {
		l.kv("dst", d)
	}
	if c := e.NSChange; c != nil {
		l.kv("ns_change", c.Op+"("+strings.Join(c.Types, ",")+")")
	}
	if e.Message != "" {
		l.kv("msg", e.Message)
	}
	if o := e.Event.Outcome; o != "" {
		l.outcome(o)
	}
	if len(e.Tags) > 0 {
		l.keys(e.Tags)
	}
	return l.end()
}

// program writes p's exe (or comm) and its argv (or title).
func (l *line) program(p *event.Process) {
	if p.Executable != "" {
		l.kv("exe", p.Executable)
	} else if p.Name != "" {
		l.kv("comm", p.Name)
	}
	switch {
	case len(p.Args) > 0:
		l.sp()
		l.b = append(l.b, "argv=["...)
		for i, a := range p.Args {
			if i > 0 {
				l.b = append(l.b, ' ')
			}
			l.b = appendValue(l.b, a, true)
		}
		if p.ArgsCount > len(p.Args) {
			l.b = append(l.b, " ...("...)
			l.b = strconv.AppendInt(l.b, int64(p.ArgsCount-len(p.Args)), 10)
			l.b = append(l.b, " more)"...)
		}
		l.b = append(l.b, ']')
	case p.Title != "":
		l.kv("title", p.Title)
	}
}

// outcome writes o, coloured by what it says.
func (l *line) outcome(o string) {
	l.sp()
	switch o {
	case "success":
		l.on(sgrGreen)
	case "failure":
		l.on(sgrRed)
	default:
		l.on(sgrYellow)
	}
	l.b = Escape(l.b, o)
	l.off()
}

// keys writes the rule keys (tags).
func (l *line) keys(tags []string) {
	l.sp()
	l.on(sgrCyan)
	l.b = append(l.b, "keys="...)
	for i, t := range tags {
		if i > 0 {
			l.b = append(l.b, ',')
		}
		l.b = appendValue(l.b, t, false)
	}
	l.off()
}

func (l *line) end() []byte { return append(l.b, '\n') }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// namespaces appends the container or the pid/net/mnt serials.
func (l *line) namespaces(e *event.Event) {
	if c := e.Container; c != nil && c.ID != "" {
		id := c.ID
		if len(id) > 12 {
			id = id[:12]
		}
		l.sp()
		l.b = append(l.b, "ctr:"...)
		l.b = Escape(l.b, id)
		return
	}
	l.sp()
	n := 0
	if e.NS != nil {
		for _, i := range [3]int{3, 6, 7} { // pid, net, mnt
			r := e.NS.At(i)
			if r.Serial == 0 {
				continue
			}
			if n > 0 {
				l.b = append(l.b, ' ')
			}
			l.b = append(l.b, event.NSTypes[i]...)
			l.b = append(l.b, ':')
			l.b = strconv.AppendUint(l.b, r.Serial, 10)
			n++
		}
	}
	if n == 0 {
		l.b = append(l.b, "ns:-"...)
	}
}

func (l *line) entity(k, id, name string) {
	l.sp()
	l.b = append(l.b, k...)
	l.b = append(l.b, '=')
	l.b = appendValue(l.b, orDash(id), false)
	if name != "" && name != id {
		l.b = append(l.b, '(')
		l.b = Escape(l.b, name)
		l.b = append(l.b, ')')
	}
}

// user appends uid, euid when it differs, and auid when set.
func (l *line) user(u *event.User) {
	if u == nil {
		return
	}
	l.entity("uid", u.ID, u.Name)
	if ef := u.Effective; ef != nil && ef.ID != u.ID {
		l.entity("euid", ef.ID, ef.Name)
	}
	if a := u.Audit; a != nil && a.ID != "" && a.ID != unsetID {
		l.entity("auid", a.ID, a.Name)
	}
}

func endpoint(e *event.Endpoint) string {
	switch {
	case e == nil:
		return ""
	case e.Path != "":
		return e.Path
	case e.IP == "":
		return ""
	case e.Port == 0:
		return e.IP
	case strings.Contains(e.IP, ":"):
		return "[" + e.IP + "]:" + strconv.Itoa(e.Port)
	}
	return e.IP + ":" + strconv.Itoa(e.Port)
}

// Time formats t like the time column.
func Time(t time.Time) string { return t.UTC().Format(TimeLayout) }
