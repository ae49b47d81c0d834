package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/auditns/auditns/internal/event"
)

// Attacker-controlled text from the kernel (argv, exe path, comm) with
// terminal escapes, newlines and invalid UTF-8: every line of the output
// stays one valid UTF-8 JSON object, nothing is truncated, valid text is
// exact, and invalid bytes are written as \xNN.
func TestHostileArgvAndExeStayValidJSON(t *testing.T) {
	requireKernel(t)
	r := start(t, "mode: unicast\n")
	dir := t.TempDir()
	exe := filepath.Join(dir, "evil\x1b[31m\nname\xff")
	src, _ := os.ReadFile("/bin/true")
	if err := os.WriteFile(exe, src, 0o755); err != nil {
		t.Fatal(err)
	}
	m := marker()
	args := []string{"\x1b]0;owned\x07", "line1\nline2", "bad\xc3\x28utf8", strings.Repeat("long", 2000), m}
	cmd := exec.Command(exe, args...)
	cmd.Args[0] = "\x1b[2Jargv0"
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, r.out, 10*time.Second, "hostile exec", func(e *event.Event) bool { return hasArg(e, m) })
	if ev.Process.Executable != strings.Replace(exe, "\xff", `\xff`, 1) {
		t.Errorf("executable %q", ev.Process.Executable)
	}
	if ev.Process.Name != "evil\x1b[31m\nname\\xff" { // comm: the first 15 bytes
		t.Errorf("name (comm) %q", ev.Process.Name)
	}
	want := []string{"\x1b[2Jargv0", "\x1b]0;owned\x07", "line1\nline2", `bad\xc3(utf8`, strings.Repeat("long", 2000), m}
	if len(ev.Process.Args) != len(want) {
		t.Fatalf("args %q", ev.Process.Args)
	}
	for i := range want {
		if ev.Process.Args[i] != want[i] {
			t.Errorf("arg %d = %q, want %q", i, ev.Process.Args[i], want[i])
		}
	}
	b, _ := os.ReadFile(r.out)
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if !json.Valid(line) || !utf8.Valid(line) || bytes.ContainsAny(line, "\x1b\x07\x00\r") {
			t.Fatalf("output line is not clean UTF-8 JSON: %q", line)
		}
	}
}
