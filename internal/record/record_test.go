package record

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/elastic/go-libaudit/v2/auparse"
)

// The reference: go-libaudit's own extraction (auparse.extractKeyValuePairs
// and normalizeAuditMessage, unexported there), copied.
var refKV = regexp.MustCompile(`([a-z0-9_-]+)=((?:[^"'\s]+)|'(?:\\'|[^'])*'|"(?:\\"|[^"])*")`)

type refField struct{ orig, value string }

func refExtract(msg string) map[string]refField {
	out := map[string]refField{}
	for _, m := range refKV.FindAllStringSubmatch(msg, -1) {
		key, orig := m[1], m[2]
		value := strings.Trim(orig, `'" `)
		switch value {
		case "", "?", "?,", "(null)":
			continue
		}
		if key == "msg" {
			for k, v := range refExtract(value) {
				out[k] = v
			}
			continue
		}
		out[key] = refField{orig, value}
	}
	return out
}

var refAVC = regexp.MustCompile(`avc:\s+(\w+)\s+\{\s*(.*)\s*\}\s+for\s+`)

func refNormalize(typ uint16, msg string) string {
	switch typ {
	case typeAVC:
		i := refAVC.FindStringSubmatchIndex(msg)
		if i == nil {
			return msg
		}
		perms := strings.Fields(msg[i[4]:i[5]])
		return fmt.Sprintf("seresult=%v seperms=%v %v", msg[i[2]:i[3]], strings.Join(perms, ","), msg[i[1]:])
	case typeLogin:
		msg = strings.Replace(msg, "old ", "old_", 2)
		return strings.Replace(msg, "new ", "new_", 2)
	case typeCredDisp, typeUserStart, typeUserEnd:
		msg = strings.Replace(msg, " (hostname=", " hostname=", 2)
		return strings.TrimRight(msg, ")'")
	}
	return msg
}

// flatten is what go-libaudit would hold in its map for r's fields.
func flatten(r *Record) map[string]refField {
	out := map[string]refField{}
	for _, f := range r.Fields {
		if !f.Unset {
			out[r.Str(f.Key)] = refField{r.Str(f.Orig), r.Str(f.Val)}
		}
	}
	return out
}

// check compares Parse with go-libaudit on one record and checks that
// every span lies inside the record's bytes.
func check(t *testing.T, typ uint16, text string) {
	t.Helper()
	r, err := Parse(typ, []byte(text))
	m, rerr := auparse.Parse(auparse.AuditMessageType(typ), text)
	if (err == nil) != (rerr == nil) {
		t.Fatalf("%q: error %v, go-libaudit %v", text, err, rerr)
	}
	if err != nil {
		if err.Error() != rerr.Error() {
			t.Fatalf("%q: error %q, go-libaudit %q", text, err, rerr)
		}
		return
	}
	if r.Seq != m.Sequence || !r.Time().Equal(m.Timestamp) || string(r.Text) != m.RawData {
		t.Fatalf("%q: header %d %v %q, go-libaudit %d %v %q", text, r.Seq, r.Time(), r.Text, m.Sequence, m.Timestamp, m.RawData)
	}
	// go-libaudit: no data when nothing follows the header.
	_, derr := m.Data()
	if (r.Body == nil) != (derr != nil && derr.Error() == "message has no data content") {
		t.Fatalf("%q: body %q, go-libaudit %v", text, r.Body, derr)
	}
	for _, f := range r.Fields {
		for _, s := range []Span{f.Key, f.Orig, f.Val} {
			if s.Start > s.End || int(s.End) > len(r.Body) {
				t.Fatalf("%q: span %v outside the body (%d bytes)", text, s, len(r.Body))
			}
		}
		if f.Val.Start < f.Orig.Start || f.Val.End > f.Orig.End || f.Key.End >= f.Orig.Start {
			t.Fatalf("%q: spans %+v out of order", text, f)
		}
	}
	if r.Body == nil {
		return
	}
	h, _ := ParseHeader(r.Text)
	want := refExtract(refNormalize(typ, m.RawData[h.Body:]))
	got := flatten(r)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%q:\n got %v\nwant %v", text, got, want)
	}
}

var cases = []struct {
	typ  uint16
	text string
}{
	{1300, `audit(1795868665.170:21): arch=c000003e syscall=59 success=yes exit=0 a0=5562ac588048 a1=5562ac5880a8 a2=5562ac588308 a3=8 items=2 ppid=14898 pid=14900 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="echo" exe="/usr/bin/echo" key="exec"`},
	{1309, `audit(1795868665.170:21): argc=3 a0="/bin/echo" a1=68C3A920227122 a2=1B5B33316D`},
	{1309, `audit(1795868665.170:9): argc=4 a0="prog" a2_len=8000 a2[0]=6C6F6E67 a2[1]=6C6F`},
	{1327, `audit(1795868665.170:21): proctitle=2F62696E2F6563686F0068C3A920227122001B5B33316D`},
	{1320, `audit(1795868665.170:21): `},
	{1320, `audit(1795868665.170:21)`},
	{1105, `audit(1481077043.170:416): pid=1298 uid=0 auid=1000 ses=1 subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 msg='op=PAM:session_open grantors=pam_selinux acct="andrew_kroh" exe="/usr/sbin/sshd" hostname=pool addr=96.241.146.97 terminal=ssh res=success'`},
	{1105, `audit(1170021601.344:297): user pid=13015 uid=0 auid=0 subj=system_u:system_r:crond_t:s0-s0:c0.c1023 msg='PAM: session open acct=root : exe="/usr/sbin/crond" (hostname=?, addr=?, terminal=cron res=success)'`},
	{1006, `audit(1170021601.343:296): login pid=13015 uid=0 old auid=4294967295 new auid=0 old ses=1 new ses=2`},
	{1400, `audit(1170021493.977:293): avc:  denied  { read write } for  pid=13010 comm="pickup" name="maildrop" dev=hda7 ino=14911367 scontext=system_u:system_r:postfix_pickup_t:s0 tcontext=system_u:object_r:postfix_spool_t:s0 tclass=dir`},
	{1400, `audit(1.2:3): apparmor="DENIED" operation="open" profile="/usr/sbin/cupsd" name="/etc/shadow" pid=1 comm="cupsd" requested_mask="r"`},
	{1107, `audit(1.2:3): msg='text=it\'s "quoted" exe="/x" res=success'`},
	{1107, `audit(1.2:3): msg='unterminated exe="/usr/bin/x" res=success`},
	{1107, `audit(1.2:3): a='x\'y b="p\"q" c='\\' d=e"f'g=h i="`},
	{1107, `audit(1.2:3): A=1 b-c_d=2 x==3 =4 y= z=" " w=''  v=?, u=(null) t=? msg=? k="a=b"`},
	{1107, `audit(1.2:3): k=v	tab=1` + "\n" + `nl=2 ff=3` + "\f" + `x=y`},
	{1107, "audit(1.2:3): bad=\xff\xfe ok=\xc3\xa9 q=\"\xff\""},
	{1300, `x=1 audit(1.2:3): y=2`},
	{1300, `audit(+1.-2:3): y=2`},
	{1300, `audit(1.2:4294967296): y=2`},
	{1300, `audit(1.2:): y=2`},
	{1300, `audit(1.2:4294967295): y=2`},
	{1300, `audit(1234567890123456789.1:2): y=2`},
	{1300, `audit(12345678901234567890.1:2): y=2`},
	{1300, `audit(1.2:3)x y=2`},
	{1300, `audit(1.2:3) y=2`},
	{1300, `audit(1.2:03):y=2`},
	{1300, `garbage`},
	{1300, ``},
	{1300, "  \t audit(1.2:3): a=b  \n\x00"},
}

func TestParseMatchesGoLibaudit(t *testing.T) {
	for _, c := range cases {
		check(t, c.typ, c.text)
	}
}

// Every record of the recorded corpus parses as go-libaudit parses it.
func TestParseCorpus(t *testing.T) {
	files, _ := filepath.Glob("../enrich/testdata/*.*")
	n := 0
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "type=") {
				m, err := auparse.ParseLogLine(line)
				if err != nil {
					continue
				}
				check(t, uint16(m.RecordType), m.RawData)
			} else if typ, text, ok := strings.Cut(line, " "); ok {
				n, _ := strconv.Atoi(typ)
				check(t, uint16(n), text)
			}
			n++
		}
		f.Close()
	}
	if n < 300 {
		t.Fatalf("only %d records in the corpus", n)
	}
}

func TestFieldsOfMsgAreInner(t *testing.T) {
	r, err := Parse(1101, []byte(`audit(1.2:3): pid=1 msg='op=x acct="root" res=success'`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, f := range r.Fields {
		got = append(got, fmt.Sprintf("%s=%s/%v/%v", r.Key(i), r.Value(i), f.Kind, f.Inner))
	}
	want := "pid=1/0/false op=x/0/true acct=root/1/true res=success/0/true"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %s, want %s", strings.Join(got, " "), want)
	}
	if i := r.Lookup("acct"); i < 0 || r.Value(i) != "root" {
		t.Fatalf("lookup acct: %d", i)
	}
}

func TestHex(t *testing.T) {
	if !IsUpperHex([]byte("2F62")) || IsUpperHex([]byte("2f62")) || IsUpperHex([]byte("2F6")) || IsUpperHex([]byte("2G")) {
		t.Fatal("IsUpperHex")
	}
	b, ok := AppendUnhex([]byte("x"), []byte("2f62"))
	if !ok || string(b) != "x/b" {
		t.Fatalf("%q %v", b, ok)
	}
	if b, ok := AppendUnhex([]byte("x"), []byte("2f6")); ok || string(b) != "x" {
		t.Fatalf("odd: %q %v", b, ok)
	}
}

func FuzzParseRecord(f *testing.F) {
	for _, c := range cases {
		f.Add(c.typ, c.text)
	}
	f.Fuzz(func(t *testing.T, typ uint16, text string) {
		// Never panics, fields are inside the record and agree with
		// go-libaudit's regular expression.
		check(t, typ, text)
		r, err := Parse(typ, []byte(text))
		if err != nil {
			return
		}
		var buf []byte
		for _, f := range r.Fields {
			if IsUpperHex(r.Bytes(f.Orig)) {
				var ok bool
				if buf, ok = AppendUnhex(buf[:0], r.Bytes(f.Orig)); !ok || len(buf) != f.Orig.Len()/2 {
					t.Fatalf("hex %q", r.Bytes(f.Orig))
				}
			}
		}
	})
}

// BenchmarkParseRecord is the per-record parse of the assembler: the
// getppid storm's SYSCALL record. go-libaudit parses with auparse.Parse
// and Data (regular expression, map, enrichment); auditns finds the header
// and the fields' spans (the enrichment moves to enrich, measured there).
func BenchmarkParseRecord(b *testing.B) {
	text := []byte(`audit(1795868665.170:21): arch=c000003e syscall=110 success=yes exit=14898 a0=0 a1=0 a2=0 a3=0 items=0 ppid=14890 pid=14898 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="bench" exe="/usr/local/bin/auditns-bench" key="auditns-bench"`)
	b.Run("go-libaudit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, err := auparse.Parse(auparse.AUDIT_SYSCALL, string(text))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.Data(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("auditns", func(b *testing.B) {
		b.ReportAllocs()
		var fields []Field
		for b.Loop() {
			t := bytes.TrimSpace(text)
			h, err := ParseHeader(t)
			if err != nil {
				b.Fatal(err)
			}
			fields = Tokenize(t[h.Body:], fields[:0])
		}
		if len(fields) != 25 {
			b.Fatalf("%d fields", len(fields))
		}
	})
}

func TestAppendUpperUnhex(t *testing.T) {
	for _, h := range []string{"", "2F62", "2f62", "2F6", "2G", "ZZ", "0A0a", "FF00"} {
		got, ok := AppendUpperUnhex([]byte("x"), h)
		want, wok := AppendUnhex([]byte("x"), h)
		if ok != IsUpperHex(h) || ok && string(got) != string(want) || !ok && string(got) != "x" || ok && !wok {
			t.Errorf("%q: %q %v", h, got, ok)
		}
	}
}

// appendUpperUnhexRef is AppendUpperUnhex a pair of digits at a time.
func appendUpperUnhexRef(dst []byte, h string) ([]byte, bool) {
	if !IsUpperHex(h) {
		return dst, false
	}
	for i := 0; i+1 < len(h); i += 2 {
		dst = append(dst, hexVal[h[i]]&0xf<<4|hexVal[h[i+1]]&0xf)
	}
	return dst, true
}

// Every byte value at every position of words of digits decodes, or is
// refused, as the pair-wise loop decides.
func TestAppendUpperUnhexLikePairwise(t *testing.T) {
	const digits = "0123456789ABCDEF"
	base := []byte(strings.Repeat(digits, 3))
	for _, n := range []int{0, 2, 14, 16, 18, 30, 32, 34, 48} {
		for pos := -1; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				h := append([]byte(nil), base[:n]...)
				if pos >= 0 {
					h[pos] = byte(c)
				}
				got, gok := AppendUpperUnhex([]byte("x"), h)
				want, wok := appendUpperUnhexRef([]byte("x"), string(h))
				if gok != wok || !bytes.Equal(got, want) {
					t.Fatalf("%q: %q %v, want %q %v", h, got, gok, want, wok)
				}
				if pos < 0 {
					break
				}
			}
		}
	}
}

func FuzzAppendUpperUnhex(f *testing.F) {
	f.Add("2F62696E2F7472756500")
	f.Add("2f62696E2F7472756500")
	f.Fuzz(func(t *testing.T, h string) {
		got, gok := AppendUpperUnhex([]byte("x"), h)
		want, wok := appendUpperUnhexRef([]byte("x"), h)
		if gok != wok || !bytes.Equal(got, want) {
			t.Fatalf("%q: %q %v, want %q %v", h, got, gok, want, wok)
		}
	})
}

func TestItems(t *testing.T) {
	for text, want := range map[string]int32{
		`audit(1795868665.170:21): arch=c000003e syscall=59 success=yes exit=0 items=2 ppid=1 pid=2`: 2,
		`audit(1795868665.170:21): arch=c000003e syscall=110 success=yes exit=1 items=0 ppid=1`:      0,
		`audit(1795868665.170:21): arch=c000003e syscall=257 items=13`:                               13,
		`audit(1795868665.170:21): arch=c000003e syscall=257 items=`:                                 -1,
		`audit(1795868665.170:21): arch=c000003e syscall=257 items=123456`:                           -1,
		`audit(1795868665.170:21): res=1`:                                                            -1,
	} {
		if got := Items([]byte(text)); got != want {
			t.Errorf("Items(%q) = %d, want %d", text, got, want)
		}
		body := []byte(text[len("audit(1795868665.170:21):"):])
		if got := FieldItems(body, Tokenize(body, nil)); got != want {
			t.Errorf("FieldItems(%q) = %d, want %d", body, got, want)
		}
	}
}
