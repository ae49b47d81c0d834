package record

import (
	"bytes"
	"regexp"

	"github.com/elastic/go-libaudit/v2/auparse"
)

// Tokenize appends the key=value fields of body to fields and returns the
// extended slice. It finds exactly what go-libaudit's
//
//	([a-z0-9_-]+)=((?:[^"'\s]+)|'(?:\\'|[^'])*'|"(?:\\"|[^"])*")
//
// finds with FindAll (leftmost-first, non-overlapping), in one pass and
// without backtracking: a match can only start at the first byte of a run
// of key bytes (or where the previous match ended), the run must be
// followed by '=', and a quoted value ends at the first quote not escaped
// by a backslash — or, when there is none, at the last escaped one (where
// the regular expression's backtracking ends it).
//
// The value of a field named msg is not a field: its own fields are,
// marked Inner, in its place (go-libaudit flattens user-space messages).
func Tokenize(body []byte, fields []Field) []Field {
	return tokenize(body, 0, len(body), fields, false)
}

// Byte classes of the regular expression.
const (
	cKey   = 1 << iota // [a-z0-9_-]
	cSpace             // RE2's \s: [\t\n\f\r ]
	cQuote             // ' and "
)

var class = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= cKey
	}
	for c := '0'; c <= '9'; c++ {
		t[c] |= cKey
	}
	t['_'] |= cKey
	t['-'] |= cKey
	for _, c := range " \t\n\f\r" {
		t[c] |= cSpace
	}
	t['\''] |= cQuote
	t['"'] |= cQuote
	return t
}()

func isKey(c byte) bool   { return class[c]&cKey != 0 }
func isSpace(c byte) bool { return class[c]&cSpace != 0 }

func isTrim(c byte) bool { return c == '\'' || c == '"' || c == ' ' }

func tokenize(b []byte, from, to int, fields []Field, inner bool) []Field {
	b = b[:to] // i < len(b) then needs no bounds check
	i := from
	for i < len(b) {
		if !isKey(b[i]) {
			i++
			continue
		}
		ks := i
		for i < len(b) && isKey(b[i]) {
			i++
		}
		ke := i
		if i == to || b[i] != '=' {
			continue
		}
		v := i + 1
		if v == to {
			return fields
		}
		var oe, vs, ve int
		var kind Kind
		switch c := b[v]; {
		case c == '"' || c == '\'':
			oe = quoteEnd(b, v, to, c)
			if oe < 0 {
				// No match starts in this run; look on from the quote.
				i = v
				continue
			}
			kind = Double
			if c == '\'' {
				kind = Single
			}
			vs, ve = v, oe
			for vs < ve && isTrim(b[vs]) {
				vs++
			}
			for ve > vs && isTrim(b[ve-1]) {
				ve--
			}
		case isSpace(c):
			i = v
			continue
		default:
			oe = v + 1
			for oe < len(b) && class[b[oe]]&(cSpace|cQuote) == 0 {
				oe++
			}
			// Neither end of a bare value can be a quote or a space:
			// nothing to trim.
			vs, ve = v, oe
		}
		i = oe
		unset := false
		switch ve - vs {
		case 0:
			unset = true
		case 1:
			unset = b[vs] == '?'
		case 2:
			unset = b[vs] == '?' && b[vs+1] == ','
		case 6:
			unset = string(b[vs:ve]) == "(null)"
		}
		if !unset && ke-ks == 3 && string(b[ks:ke]) == "msg" {
			fields = tokenize(b, vs, ve, fields, true)
			continue
		}
		fields = append(fields, Field{Key: Span{uint32(ks), uint32(ke)}, Orig: Span{uint32(v), uint32(oe)},
			Val: Span{uint32(vs), uint32(ve)}, Kind: kind, Inner: inner, Unset: unset})
	}
	return fields
}

// quoteEnd returns the end (exclusive) of the value quoted with q that
// starts at b[v], or -1 when the regular expression would not match one.
func quoteEnd(b []byte, v, to int, q byte) int {
	lastEsc := -1
	for j := v + 1; j < to; j++ {
		switch b[j] {
		case '\\':
			if j+1 < to && b[j+1] == q {
				j++
				lastEsc = j
			}
		case q:
			return j + 1
		}
	}
	if lastEsc >= 0 {
		return lastEsc + 1
	}
	return -1
}

// Record types whose text go-libaudit rewrites before parsing.
const (
	typeLogin     = uint16(auparse.AUDIT_LOGIN)
	typeCredDisp  = uint16(auparse.AUDIT_CRED_DISP)
	typeUserStart = uint16(auparse.AUDIT_USER_START)
	typeUserEnd   = uint16(auparse.AUDIT_USER_END)
	typeAVC       = uint16(auparse.AUDIT_AVC)
)

// selinuxAVC is go-libaudit's; it runs on AVC records only (SELinux
// denials), which are rare.
var selinuxAVC = regexp.MustCompile(`avc:\s+(\w+)\s+\{\s*(.*)\s*\}\s+for\s+`)

// Normalize returns where the fields of a record of type typ are to be
// found, given msg (the text from its Header.Body on): go-libaudit rewrites
// the text of a few types first. When it does, the rewritten text is
// appended to dst and the body is out[lo:hi] (rewritten true); otherwise
// the body is msg[lo:hi] and out is dst.
func Normalize(typ uint16, msg, dst []byte) (lo, hi int, out []byte, rewritten bool) {
	switch typ {
	case typeAVC:
		m := selinuxAVC.FindSubmatchIndex(msg)
		if m == nil {
			break
		}
		start := len(dst)
		dst = append(dst, "seresult="...)
		dst = append(dst, msg[m[2]:m[3]]...)
		dst = append(dst, " seperms="...)
		for i, p := range bytes.Fields(msg[m[4]:m[5]]) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, p...)
		}
		dst = append(dst, ' ')
		dst = append(dst, msg[m[1]:]...)
		return start, len(dst), dst, true
	case typeLogin:
		if !bytes.Contains(msg, []byte("old ")) && !bytes.Contains(msg, []byte("new ")) {
			break
		}
		start := len(dst)
		dst = append(dst, msg...)
		body := dst[start:]
		replaceN(body, "old ", '_', 2)
		replaceN(body, "new ", '_', 2)
		return start, len(dst), dst, true
	case typeCredDisp, typeUserStart, typeUserEnd:
		const from, to = " (hostname=", " hostname="
		if bytes.Contains(msg, []byte(from)) {
			start := len(dst)
			rest := msg
			for n := 0; n < 2; n++ {
				i := bytes.Index(rest, []byte(from))
				if i < 0 {
					break
				}
				dst = append(dst, rest[:i]...)
				dst = append(dst, to...)
				rest = rest[i+len(from):]
			}
			dst = append(dst, rest...)
			end := len(dst)
			for end > start && (dst[end-1] == ')' || dst[end-1] == '\'') {
				end--
			}
			return start, end, dst, true
		}
		end := len(msg)
		for end > 0 && (msg[end-1] == ')' || msg[end-1] == '\'') {
			end--
		}
		return 0, end, dst, false
	}
	return 0, len(msg), dst, false
}

// replaceN replaces the last byte of the first n occurrences of old in b
// with c (old and its replacement have the same length).
func replaceN(b []byte, old string, c byte, n int) {
	off := 0
	for ; n > 0; n-- {
		i := bytes.Index(b[off:], []byte(old))
		if i < 0 {
			return
		}
		b[off+i+len(old)-1] = c
		off += i + len(old)
	}
}
