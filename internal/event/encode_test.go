package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"
)

func sample() *Event {
	return &Event{
		Schema:    Schema,
		Timestamp: time.Date(2026, 11, 28, 12, 2, 37, 994000000, time.UTC),
		Event: Meta{ID: "b:97", Sequence: 97, Created: time.Date(2026, 11, 28, 12, 2, 38, 1000, time.UTC),
			Kind: KindEvent, Category: []string{"process"}, Type: []string{"start"}, Action: "executed", Outcome: "success"},
		Host:    Host{Name: "web-1", Boot: Boot{ID: "b"}, Kernel: "6.18.44"},
		Tags:    []string{"exec"},
		Process: &Process{PID: 3218, VPID: 1, EntityID: "b:3218:1234", Parent: &Parent{PID: 3210, EntityID: "b:3210:1200"}, Name: "unshare", Executable: "/usr/bin/unshare", Args: []string{"unshare", "-n"}, ArgsCount: 2, WorkingDirectory: "/tmp", Title: "unshare -n", TTY: "pts1"},
		User: &User{ID: "1000", Name: "alice", Audit: &Entity{ID: "4294967295"}, Effective: &Entity{ID: "0", Name: "root"},
			Saved: &Entity{ID: "0", Name: "root"}, FS: &Entity{ID: "0", Name: "root"}, Target: &Entity{ID: "0", Name: "root"}},
		Group: &Group{ID: "1000", Name: "alice", Effective: &Entity{ID: "0", Name: "root"}, Saved: &Entity{ID: "0", Name: "root"},
			FS: &Entity{ID: "0", Name: "root"}},
		Label:     "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023",
		Syscall:   &Syscall{Name: "unshare", Nr: 272, Arch: "x86_64", Exit: -1, Args: []string{"0x40000000"}},
		NS:        &NS{IPC: NSRef{Serial: 1, Inum: 4026531839}, Net: NSRef{Serial: 13, Inum: 4026532177, ID: 4105}},
		NSSrc:     "observed",
		NSChange:  &NSChange{Op: "unshare", Types: []string{"net"}},
		Container: &Container{ID: "abc", Runtime: "docker"},
		File:      &File{Path: "/etc/passwd", Inode: "12"},
		Source:    &Endpoint{IP: "127.0.0.1", Port: 22},
		Dest:      &Endpoint{Path: "/run/x.sock"},
		NSInfo:    &NSInfos{Net: &NSInfo{ID: "b/13", Type: "net", FirstSeen: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}},
		Loss:      &Loss{Reason: "sequence_gap", Count: 3, From: 4, To: 6},
		Auditd: &Auditd{MessageType: "SYSCALL", Result: "success", Session: "1", Summary: &Summary{Actor: Actor{Primary: "root"}, Action: "ran", Object: Object{Type: "file", Primary: "/bin/x"}},
			Paths: []Fields{{{"item", "0"}, {"name", "/bin/x"}}}, Data: Fields{{"a0", "1"}, {"weird\"key", "v"}},
			Records: []string{"type=SYSCALL msg=audit(1:2): x"}},
	}
}

// What the encoder writes decodes to the event it was written from.
func TestAppendJSONRoundTripsThroughUnmarshalJSON(t *testing.T) {
	for _, kind := range []string{KindEvent, KindLoss, KindState} {
		e := sample()
		e.Event.Kind = kind
		roundTrip(t, e)
	}
}

func roundTrip(t *testing.T, e *Event) {
	b := e.AppendJSON(nil)
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	var got Event
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, e) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v\njson %s", got, *e, b)
	}
	std, err := json.Marshal(e)
	if err != nil || !bytes.Equal(std, b) {
		t.Fatalf("MarshalJSON: %v\n%s", err, std)
	}
}

// A version 1 event reads as the same event in the Go model: its
// event.created is the kernel's time, its event.type the record type, its
// group the real gid.
func TestUnmarshalJSONReadsVersion1(t *testing.T) {
	v1 := `{"schema":"auditns.event/1","event":{"id":"b:97","sequence":97,"created":"2026-11-28T12:02:37.994000Z","kind":"loss","category":["process"],"action":"executed","outcome":"success","type":"SYSCALL"},` +
		`"host":{"name":"web-1","boot":{"id":"b"},"kernel":"6.18.44"},"process":{"pid":3218,"parent":{"pid":3210},"name":"unshare","tty":"pts1"},` +
		`"user":{"id":"0","name":"root","audit":{"id":"1000"},"effective":{"id":"0"}},"group":{"id":"0","name":"root"},` +
		`"syscall":{"name":"unshare","nr":272,"arch":"x86_64","exit":0},"ns":{"net":{"serial":13,"inum":4026532177}},"ns_src":"observed",` +
		`"loss":{"reason":"sequence_gap","count":3,"from":4,"to":6},"auditd":{"result":"success","records":["type=SYSCALL msg=audit(1:2): x"]},"ns_info":{"net":{"id":"b/13","type":"net"}}}`
	var e Event
	if err := json.Unmarshal([]byte(v1), &e); err != nil {
		t.Fatal(err)
	}
	want := Event{Schema: SchemaV1, Timestamp: time.Date(2026, 11, 28, 12, 2, 37, 994000000, time.UTC),
		Event:   Meta{ID: "b:97", Sequence: 97, Kind: KindLoss, Category: []string{"process"}, Action: "executed", Outcome: "success"},
		Host:    Host{Name: "web-1", Boot: Boot{ID: "b"}, Kernel: "6.18.44"},
		Process: &Process{PID: 3218, Parent: &Parent{PID: 3210}, Name: "unshare", TTY: "pts1"},
		User:    &User{ID: "0", Name: "root", Audit: &Entity{ID: "1000"}, Effective: &Entity{ID: "0"}},
		Group:   &Group{ID: "0", Name: "root"},
		Syscall: &Syscall{Name: "unshare", Nr: 272, Arch: "x86_64"},
		NS:      &NS{Net: NSRef{Serial: 13, Inum: 4026532177}}, NSSrc: "observed",
		Loss:   &Loss{Reason: "sequence_gap", Count: 3, From: 4, To: 6},
		Auditd: &Auditd{MessageType: "SYSCALL", Result: "success", Records: []string{"type=SYSCALL msg=audit(1:2): x"}},
		NSInfo: &NSInfos{Net: &NSInfo{ID: "b/13", Type: "net"}},
	}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("\n got %+v\nwant %+v", e, want)
	}
	if err := json.Unmarshal([]byte(`{"schema":"auditns.namespace/1"}`), &e); !errors.Is(err, ErrNotEvent) {
		t.Fatalf("a registry record: %v", err)
	}
}

// The terminal names the kernel writes map to their devices and back.
func TestTTYDevice(t *testing.T) {
	for name, dev := range map[string][2]int{"pts0": {136, 0}, "pts255": {136, 255}, "pts256": {137, 0}, "pts2047": {143, 255},
		"tty1": {4, 1}, "tty63": {4, 63}, "ttyS0": {4, 64}, "ttyS3": {4, 67}, "console": {5, 1}, "tty": {5, 0}} {
		major, minor, ok := TTYDevice(name)
		if !ok || major != dev[0] || minor != dev[1] || TTYName(major, minor) != name {
			t.Errorf("%s: %d %d %v, back %q", name, major, minor, ok, TTYName(major, minor))
		}
	}
	for _, name := range []string{"", "(none)", "pts", "pts01", "pts-1", "pts+1", "pts2048", "tty64", "ttyS192", "ttyUSB0", "pts1x"} {
		if _, _, ok := TTYDevice(name); ok {
			t.Errorf("%q has a device", name)
		}
	}
}

func TestAppendStringHostileBytes(t *testing.T) {
	cases := map[string]string{
		"plain":             `"plain"`,
		"a\"b\\c":           `"a\"b\\c"`,
		"\x1b[31mred\n\x00": `"\u001b[31mred\n\u0000"`,
		"\xff\xfeok":        `"\\xff\\xfeok"`,
		"é✓":                `"é✓"`,
		"\x7f":              `"\u007f"`,
		"half\xe2\x9c":      `"half\\xe2\\x9c"`,
	}
	for in, want := range cases {
		got := string(AppendString(nil, in))
		if got != want {
			t.Errorf("AppendString(%q) = %s, want %s", in, got, want)
		}
		if !json.Valid([]byte(got)) || !utf8.ValidString(got) {
			t.Errorf("AppendString(%q) = %s is not valid UTF-8 JSON", in, got)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("\x1b]0;title\x07")
	f.Add("\xc3\x28")
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString(nil, s)
		if !json.Valid(b) || !utf8.Valid(b) {
			t.Fatalf("invalid output %q for %q", b, s)
		}
		if bytes.ContainsAny(b, "\x00\x1b\n\r") {
			t.Fatalf("control byte passed through: %q", b)
		}
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("valid UTF-8 altered: %q -> %q", s, back)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	e := sample()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkEncodingJSONBaseline is encoding/json's reflection over the
// same event (its Go layout: Event's MarshalJSON is the encoder).
func BenchmarkEncodingJSONBaseline(b *testing.B) {
	type plain Event
	e := (*plain)(sample())
	b.ReportAllocs()
	for b.Loop() {
		json.Marshal(e)
	}
}

// appendStringRef is AppendString byte by byte, as it was before its
// eight-byte fast path.
func appendStringRef(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
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

// Every byte value at every position of an eight-byte word (and around
// it) is escaped as the byte-wise loop escapes it.
func TestAppendStringLikeByteWise(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 19; pos++ {
			for _, n := range []int{pos + 1, 8, 16, 19, 24} {
				if pos >= n {
					continue
				}
				s := []byte("abcdefghijklmnopqrstuvwx")[:n]
				s[pos] = byte(c)
				if got, want := AppendString(nil, string(s)), appendStringRef(nil, string(s)); !bytes.Equal(got, want) {
					t.Fatalf("%q: %s, want %s", s, got, want)
				}
			}
		}
	}
	for _, s := range []string{"", "é✓ and some more text", "/usr/bin/\xe2\x9c\x93\xe2\x9c", "0123456\xe2\x9c\x93abcdefg"} {
		if got, want := AppendString(nil, s), appendStringRef(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendStringLikeByteWise(f *testing.F) {
	f.Add("\x1b]0;title\x07 and a longer tail")
	f.Add("abcdefg\xc3\x28abcdefgh")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := AppendString(nil, s), appendStringRef(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: %s, want %s", s, got, want)
		}
	})
}

// AppendTime writes what time's layout writes, from 1970 to 9999 and
// outside it.
func TestAppendTimeLikeAppendFormat(t *testing.T) {
	ref := func(tm time.Time) string {
		return `"` + tm.UTC().Format("2006-01-02T15:04:05.000000Z07:00") + `"`
	}
	check := func(tm time.Time) {
		t.Helper()
		if got, want := string(AppendTime(nil, tm)), ref(tm); got != want {
			t.Fatalf("%v: %s, want %s", tm, got, want)
		}
	}
	check(time.Unix(0, 0))
	check(time.Unix(-1, 999999999))
	check(time.Unix(253402300799, 999999999))
	check(time.Unix(253402300800, 0))
	check(time.Date(2000, 2, 29, 23, 59, 59, 999999, time.UTC))
	check(time.Date(2100, 3, 1, 0, 0, 0, 1000, time.UTC))
	check(time.Date(2026, 11, 28, 12, 2, 37, 994000000, time.FixedZone("x", -7*3600)))
	check(time.Now())
	x := uint64(1)
	for i := 0; i < 200000; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		check(time.Unix(int64(x%253402300800), int64(x>>20)%1e9))
	}
}

func TestNSKeysAreNSTypes(t *testing.T) {
	for i, k := range nsKeys {
		if k != `"`+NSTypes[i]+`":` {
			t.Fatalf("nsKeys[%d] = %s, NSTypes[%d] = %s", i, k, i, NSTypes[i])
		}
	}
}

func BenchmarkEncoder(b *testing.B) {
	e := sample()
	var c Encoder
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.AppendJSON(buf[:0], e)
	}
	b.SetBytes(int64(len(buf)))
}
