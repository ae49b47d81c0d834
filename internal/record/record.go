// Package record parses the text of one kernel audit record: its header
// "audit(SEC.MSEC:SEQ): " and its key=value fields, without regular
// expressions and without allocating. Fields are spans of the record's own
// bytes; decoding a hex-encoded value appends to a buffer the caller owns.
//
// The fields found are exactly the ones go-libaudit's auparse finds with its
// regular expression (a test holds the two in agreement, and a fuzz test
// keeps it so): the same keys ([a-z0-9_-]+ only), bare values up to a
// space or quote, "double" and 'single' quoted values with \" and \'
// escapes, the fields of a msg='...' value (user-space records) in place of
// msg itself, and the same few record types rewritten before parsing
// (AVC, LOGIN, USER_START, USER_END, CRED_DISP).
package record

import (
	"bytes"
	"errors"
	"strconv"
	"time"
	"unsafe"
)

// ErrHeader is returned for a record whose header cannot be parsed; the
// text is go-libaudit's.
var ErrHeader = errors.New("invalid audit message header")

// Kind is how a value was written.
type Kind uint8

// Kinds of value.
const (
	Bare   Kind = iota // key=value
	Double             // key="value"
	Single             // key='value'
)

// Span is a range of a record's bytes: [Start, End).
type Span struct{ Start, End uint32 }

// Len is the span's length.
func (s Span) Len() int { return int(s.End - s.Start) }

// Field is one key=value of a record, as spans of the record's Body.
type Field struct {
	Key  Span
	Orig Span // the value as written, quotes included
	Val  Span // Orig without its surrounding quotes and spaces
	Kind Kind
	// Inner is set for the fields of a msg='...' value (msg itself is
	// not a field: go-libaudit flattens it).
	Inner bool
	// Unset is set when the value is one go-libaudit drops: "", "?",
	// "?," or "(null)".
	Unset bool
}

// Record is one parsed audit record. Its slices belong to whoever parsed
// it: the Assembler's records are valid until its emit callback returns.
type Record struct {
	Type uint16
	Seq  uint32
	Sec  int64 // seconds since the epoch
	Msec int64 // milliseconds
	// Text is the record as the kernel sent it, surrounding white space
	// removed: go-libaudit's RawData.
	Text []byte
	// Body is the text the fields were found in (see Body in Header);
	// nil when the record has nothing after its header.
	Body   []byte
	Fields []Field
}

// Time is the record's timestamp.
func (r *Record) Time() time.Time { return time.Unix(r.Sec, r.Msec*int64(time.Millisecond)).UTC() }

// Bytes returns the bytes of s in the record's Body.
func (r *Record) Bytes(s Span) []byte { return r.Body[s.Start:s.End:s.End] }

// Str returns the bytes of s as a string that shares the record's memory:
// it is valid only as long as the record's bytes are (for the Assembler's
// records, until emit returns). Copy it (strings.Clone) to keep it.
func (r *Record) Str(s Span) string { return View(r.Body[s.Start:s.End]) }

// Key is the key of field i (a view: see Str).
func (r *Record) Key(i int) string { return r.Str(r.Fields[i].Key) }

// Value is the value of field i, quotes removed (a view: see Str).
func (r *Record) Value(i int) string { return r.Str(r.Fields[i].Val) }

// Lookup returns the index of the last field named key whose value is not
// unset, as go-libaudit would see it, or -1.
func (r *Record) Lookup(key string) int {
	for i := len(r.Fields) - 1; i >= 0; i-- {
		f := &r.Fields[i]
		if !f.Unset && f.Key.Len() == len(key) && r.Str(f.Key) == key {
			return i
		}
	}
	return -1
}

// View returns b as a string without copying. The string is valid only
// while b is not modified.
func View(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// Header is the parsed "audit(SEC.MSEC:SEQ):" of a record.
type Header struct {
	Sec, Msec int64
	Seq       uint32
	// End is the index of the header's ')'.
	End int
	// Body is where go-libaudit starts looking for fields: the index, in
	// the text from End on, of the first ':' or ' ' — which it then uses
	// as an index into the whole text (so it looks from the second byte
	// on, header included; that finds nothing in a real header, but it is
	// what decides the fields of a malformed one). -1 when nothing
	// follows the header: the record has no fields at all.
	Body int
}

// ParseHeader parses the header of a record's text (surrounding space
// already trimmed) as go-libaudit does.
func ParseHeader(text []byte) (Header, error) {
	if h, ok := fastHeader(text); ok {
		return h, nil
	}
	start := bytes.IndexByte(text, '(')
	if start < 0 {
		return Header{}, ErrHeader
	}
	dot := bytes.IndexByte(text[start:], '.')
	if dot < 0 {
		return Header{}, ErrHeader
	}
	dot += start
	sep := bytes.IndexByte(text[dot:], ':')
	if sep < 0 {
		return Header{}, ErrHeader
	}
	sep += dot
	end := bytes.IndexByte(text[sep:], ')')
	if end < 0 {
		return Header{}, ErrHeader
	}
	end += sep
	var h Header
	var err error
	if h.Sec, err = strconv.ParseInt(View(text[start+1:dot]), 10, 64); err != nil {
		return Header{}, ErrHeader
	}
	if h.Msec, err = strconv.ParseInt(View(text[dot+1:sep]), 10, 64); err != nil {
		return Header{}, ErrHeader
	}
	seq, err := strconv.ParseUint(View(text[sep+1:end]), 10, 32)
	if err != nil {
		return Header{}, ErrHeader
	}
	h.Seq, h.End, h.Body = uint32(seq), end, -1
	for i, c := range text[end:] {
		if c == ':' || c == ' ' {
			h.Body = i
			break
		}
	}
	return h, nil
}

// fastHeader parses the header as the kernel writes it,
// "audit(SEC.MSEC:SEQ):", and gives up (ok false) on anything else, for
// ParseHeader's general path to decide.
func fastHeader(t []byte) (h Header, ok bool) {
	if len(t) < 12 || string(t[:6]) != "audit(" {
		return h, false
	}
	i := 6
	if h.Sec, i, ok = digits(t, i, 18); !ok || i == len(t) || t[i] != '.' {
		return h, false
	}
	if h.Msec, i, ok = digits(t, i+1, 18); !ok || i == len(t) || t[i] != ':' {
		return h, false
	}
	seq, i, ok := digits(t, i+1, 10)
	if !ok || i+1 >= len(t) || t[i] != ')' || seq > 1<<32-1 || t[i+1] != ':' && t[i+1] != ' ' {
		return h, false
	}
	h.Seq, h.End, h.Body = uint32(seq), i, 1
	return h, true
}

// digits reads 1 to max decimal digits from t[i:].
func digits(t []byte, i, max int) (n int64, end int, ok bool) {
	start := i
	for i < len(t) && i-start < max && t[i] >= '0' && t[i] <= '9' {
		n = n*10 + int64(t[i]-'0')
		i++
	}
	if i == start || i < len(t) && t[i] >= '0' && t[i] <= '9' {
		return 0, i, false
	}
	return n, i, true
}

// Parse parses one record into a new Record that shares text's memory
// (surrounding white space is trimmed first). It allocates; the Assembler
// uses the parts (ParseHeader, Normalize, Tokenize) on its own buffers.
func Parse(typ uint16, text []byte) (*Record, error) {
	text = bytes.TrimSpace(text)
	h, err := ParseHeader(text)
	if err != nil {
		return nil, err
	}
	r := &Record{Type: typ, Seq: h.Seq, Sec: h.Sec, Msec: h.Msec, Text: text}
	if h.Body < 0 {
		return r, nil
	}
	msg := text[h.Body:]
	lo, hi, buf, rewritten := Normalize(typ, msg, nil)
	if rewritten {
		r.Body = buf[lo:hi:hi]
	} else {
		r.Body = msg[lo:hi:hi]
	}
	if r.Body == nil {
		r.Body = []byte{}
	}
	r.Fields = Tokenize(r.Body, nil)
	return r, nil
}

// Clone returns a copy of r that owns its bytes and fields, to keep a
// record past the life of the buffers it was parsed in.
func (r *Record) Clone() Record {
	c := *r
	c.Text = bytes.Clone(r.Text)
	if r.Body != nil {
		c.Body = append([]byte{}, r.Body...)
	}
	c.Fields = append([]Field(nil), r.Fields...)
	return c
}

// Items returns the items= of a SYSCALL record's text: how many PATH
// records its event has. It is -1 when there is none. The kernel writes
// items= before the fields a process controls (comm, exe, key), so the
// first match is the kernel's. FieldItems does the same for a record
// already tokenized, at a fraction of the cost.
func Items(text []byte) int32 {
	i := bytes.Index(text, []byte(" items="))
	if i < 0 {
		return -1
	}
	v := text[i+len(" items="):]
	if j := bytes.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return itemsValue(v)
}

// FieldItems is Items for a record's body and its fields (Tokenize).
func FieldItems(body []byte, fields []Field) int32 {
	for i := range fields {
		f := &fields[i]
		if f.Key.Len() == len("items") && !f.Inner && string(body[f.Key.Start:f.Key.End]) == "items" {
			return itemsValue(body[f.Val.Start:f.Val.End])
		}
	}
	return -1
}

// itemsValue parses an items= value: at most 4 digits (the kernel's
// names per syscall are far fewer), else -1.
func itemsValue(v []byte) int32 {
	if len(v) == 0 || len(v) > 4 {
		return -1
	}
	n := int32(0)
	for _, c := range v {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int32(c-'0')
	}
	return n
}
