package render

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/auditns/auditns/internal/event"
)

// hostile is an exec whose exe, argv, title and path carry terminal escape
// sequences (CSI, OSC with BEL, C1 CSI as UTF-8), newlines, NULs, DEL,
// invalid UTF-8 and a bidi override.
func hostile() *event.Event {
	return &event.Event{
		Schema: event.Schema,
		Event: event.Meta{ID: "b:97", Sequence: 97, Created: time.Date(2026, 11, 28, 12, 2, 37, 994123000, time.UTC),
			Kind: event.KindEvent, Category: []string{"process"}, Action: "executed", Outcome: "success"},
		Auditd: &event.Auditd{MessageType: "SYSCALL"},
		Host:   event.Host{Name: "web-1", Boot: event.Boot{ID: "b"}},
		Tags:   []string{"exec"},
		Process: &event.Process{PID: 3218, Parent: &event.Parent{PID: 3210}, Name: "evil",
			Executable: "/tmp/\x1b[31mevil\n\x00\xff",
			Args:       []string{"\x1b]0;pwned\x07", "a b", "x\u009by\x7f", "\u202egnp.exe", "\r\t"},
			Title:      "\x1b[2Jtitle"},
		User:    &event.User{ID: "0", Name: "root", Audit: &event.Entity{ID: "4294967295"}, Effective: &event.Entity{ID: "0", Name: "root"}},
		Syscall: &event.Syscall{Name: "execve", Nr: 59, Arch: "x86_64"},
		NS:      &event.NS{IPC: event.NSRef{Serial: 1, Inum: 1}, PID: event.NSRef{Serial: 4, Inum: 2}, Net: event.NSRef{Serial: 13, Inum: 3}, Mnt: event.NSRef{Serial: 8, Inum: 4}},
		File:    &event.File{Path: "/tmp/\x1b[2J\xc2\x9b"},
	}
}

// viaTopic is what tail and replay see: the daemon's encoding, decoded
// with encoding/json.
func viaTopic(t *testing.T, e *event.Event) (*event.Event, []byte) {
	t.Helper()
	raw := e.AppendJSON(nil)
	var got event.Event
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	return &got, raw
}

func checkTerminalSafe(t *testing.T, line []byte) {
	t.Helper()
	if len(line) == 0 || line[len(line)-1] != '\n' {
		t.Fatalf("line does not end in a newline: %q", line)
	}
	body := line[:len(line)-1]
	for i, c := range body {
		if c < 0x20 || c == 0x7f {
			t.Fatalf("control byte %#x at %d in %q", c, i, line)
		}
	}
	if !utf8.Valid(body) {
		t.Fatalf("invalid UTF-8 in %q", line)
	}
	for _, r := range string(body) {
		if unsafeRune(r) && r >= 0x80 {
			t.Fatalf("unsafe rune %U in %q", r, line)
		}
	}
}

func TestLineEscapesHostileText(t *testing.T) {
	e, _ := viaTopic(t, hostile())
	got := Line(nil, e, false)
	want := `2026-11-28T12:02:37.994Z web-1 pid:4 net:13 mnt:8 uid=0(root) pid=3218 ppid=3210 SYSCALL execve executed ` +
		`exe=/tmp/\x1b[31mevil\n\x00\xff ` +
		`argv=["\x1b]0;pwned\x07" "a b" x\u009by\x7f \u202egnp.exe \r\t] ` +
		`path=/tmp/\x1b[2J\u009b success keys=exec` + "\n"
	if string(got) != want {
		t.Fatalf("line:\n got %s\nwant %s", got, want)
	}
	checkTerminalSafe(t, got)
	if bytes.IndexByte(got, 0x1b) >= 0 {
		t.Fatal("ESC reached the line")
	}
}

func TestLineTitleAndColour(t *testing.T) {
	e, _ := viaTopic(t, hostile())
	e.Process.Args = nil
	e.Event.Outcome = "failure"
	e.Container = &event.Container{ID: "3f2a9c0d1e2b4455", Runtime: "docker"}
	e.User = &event.User{ID: "1000", Name: "alice", Audit: &event.Entity{ID: "1000", Name: "alice"}, Effective: &event.Entity{ID: "0", Name: "root"}}
	plain := Line(nil, e, false)
	want := `2026-11-28T12:02:37.994Z web-1 ctr:3f2a9c0d1e2b uid=1000(alice) euid=0(root) auid=1000(alice) pid=3218 ppid=3210 SYSCALL execve executed ` +
		`exe=/tmp/\x1b[31mevil\n\x00\xff title=\x1b[2Jtitle path=/tmp/\x1b[2J\u009b failure keys=exec` + "\n"
	if string(plain) != want {
		t.Fatalf("line:\n got %s\nwant %s", plain, want)
	}
	col := Line(nil, e, true)
	// The only escape sequences are our SGR colours; without them the
	// line is the plain one.
	sgr := regexp.MustCompile("\x1b\\[[0-9;]*m")
	if stripped := sgr.ReplaceAll(col, nil); !bytes.Equal(stripped, plain) {
		t.Fatalf("coloured line minus SGR differs:\n got %q\nwant %q", stripped, plain)
	}
	if !bytes.Contains(col, []byte(sgrRed+"failure"+sgrReset)) {
		t.Fatalf("failure not in red: %q", col)
	}
}

func TestLineOtherKinds(t *testing.T) {
	created := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		e    *event.Event
		want string
	}{
		{&event.Event{Event: event.Meta{Created: created, Kind: event.KindLoss}, Host: event.Host{Name: "h"},
			Loss: &event.Loss{Reason: "sequence_gap", Count: 3, From: 4, To: 6}},
			"2026-11-28T12:00:00.000Z h LOSS sequence_gap count=3 seq=4-6\n"},
		{&event.Event{Event: event.Meta{Created: created, Kind: event.KindState}, Host: event.Host{Name: "h"}, Message: "auditns \x1b[1mstarted"},
			`2026-11-28T12:00:00.000Z h STATE msg="auditns \x1b[1mstarted"` + "\n"},
		{&event.Event{Event: event.Meta{Created: created, Kind: event.KindEvent, Action: "logged-in", Outcome: "failure"}, Auditd: &event.Auditd{MessageType: "USER_LOGIN"},
			Host: event.Host{Name: "h"}, User: &event.User{ID: "0", Audit: &event.Entity{ID: "1000"}},
			Process: &event.Process{PID: 7, Name: "sshd"}, Source: &event.Endpoint{IP: "2001:db8::1", Port: 22}},
			"2026-11-28T12:00:00.000Z h ns:- uid=0 auid=1000 pid=7 USER_LOGIN logged-in comm=sshd src=[2001:db8::1]:22 failure\n"},
		{&event.Event{Event: event.Meta{Kind: event.KindEvent}},
			"- - ns:- -\n"},
	}
	for _, c := range cases {
		got := Line(nil, c.e, false)
		if string(got) != c.want {
			t.Errorf("line:\n got %q\nwant %q", got, c.want)
		}
		checkTerminalSafe(t, got)
	}
}

func TestEscape(t *testing.T) {
	cases := map[string]string{
		"plain /usr/bin/ls":  "plain /usr/bin/ls",
		"\x1b[31m":           `\x1b[31m`,
		"\x00\x07\x08\x7f":   `\x00\x07\x08\x7f`,
		"a\nb\rc\td":         `a\nb\rc\td`,
		"\xc2\x9b1m":         `\u009b1m`, // C1 CSI encoded as UTF-8
		"\xc2\x85":           `\u0085`,   // NEL
		"\x9b":               `\x9b`,     // a raw 8-bit CSI byte is invalid UTF-8
		"\xff\xfe":           `\xff\xfe`,
		"half\xe2\x9c":       `half\xe2\x9c`,
		"\u202e\u200b\u2028": `\u202e\u200b\u2028`,
		"\U000e0041":         `\U000e0041`, // a tag character (Cf)
		"é✓日本 ok":            "é✓日本 ok",
		`\x1b already text`:  `\x1b already text`,
	}
	for in, want := range cases {
		if got := string(Escape(nil, in)); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzEscape(f *testing.F) {
	f.Add("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\")
	f.Add("\xc2\x9b2J\xe2\x80\xae")
	f.Fuzz(func(t *testing.T, s string) {
		checkTerminalSafe(t, append(Escape(nil, s), '\n'))
	})
}

func TestTerminalJSON(t *testing.T) {
	_, raw := viaTopic(t, hostile())
	// The daemon escapes C0 and DEL but leaves C1 and format characters as
	// UTF-8: on a terminal they are escaped, and the value is unchanged.
	if terminalSafe(raw) {
		t.Fatal("test value should contain C1 characters")
	}
	out := TerminalJSON(nil, raw)
	checkTerminalSafe(t, out)
	var a, b any
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("not valid JSON: %v: %s", err, out)
	}
	json.Unmarshal(raw, &b)
	if !jsonEqual(a, b) {
		t.Fatalf("value changed:\n got %s\nwant %s", out, raw)
	}

	// A safe value passes byte for byte.
	safe := []byte(`{"schema":"auditns.event/1","x":"\u001b[31m"}`)
	if got := TerminalJSON(nil, safe); !bytes.Equal(got, append(safe, '\n')) {
		t.Fatalf("safe value altered: %q", got)
	}
	// Raw controls, invalid UTF-8 and astral format characters.
	odd := []byte("{\"a\":\n\"\x7f\xff\U000e0041\"}")
	out = TerminalJSON(nil, odd)
	checkTerminalSafe(t, out)
	var m map[string]string
	if err := json.Unmarshal(out, &m); err != nil || m["a"] != "\x7f\ufffd\U000e0041" {
		t.Fatalf("odd value: %q -> %q (%v)", odd, out, err)
	}
	// Not JSON at all: escaped text.
	out = TerminalJSON(nil, []byte("not json \x1b[2J\n"))
	checkTerminalSafe(t, out)
	if string(out) != `not json \x1b[2J\n`+"\n" {
		t.Fatalf("non-JSON: %q", out)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestUseColor(t *testing.T) {
	var buf bytes.Buffer
	if UseColor(&buf) {
		t.Fatal("a buffer is not a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) || UseColor(f) {
		t.Fatal("a regular file is not a terminal")
	}
	t.Setenv("NO_COLOR", "1")
	if UseColor(os.Stdout) {
		t.Fatal("NO_COLOR must turn colour off")
	}
}
