package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/auditns/auditns/internal/serial"
	"github.com/auditns/auditns/internal/testenv"
)

// `auditns ns` prints the creator's exe, which the audited process chose:
// it reaches the terminal escaped, C1 controls and bidi overrides included.
func TestNSTableIsTerminalSafe(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	reg, err := serial.Open(serial.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if reg.Method() != serial.IDKernel {
		reg.Close()
		t.Skip("the registry needs kernel namespace ids here (Linux >= 6.18) to register a namespace by id")
	}
	exe := "/tmp/\x1b[31mevil\n\x00\xff x\u009b2Jy \u202egnp.exe"
	var k serial.KnownSet
	k.NS[serial.UTS] = serial.Known{ID: 1 << 62, Inum: 4026599999}
	if _, err := reg.Identify(os.Getpid(), &k, serial.Cause{EventID: "b:1", Time: time.Now(), Op: "unshare", Exe: exe, Types: serial.MaskOf(serial.UTS)}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	cmd := nsCmd()
	cmd.SetArgs([]string{"--state-dir", dir})
	runErr := cmd.Execute()
	os.Stdout = stdout
	w.Close()
	out, _ := readAll(r)
	if runErr != nil {
		t.Fatal(runErr)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		terminalSafe(t, line)
		if strings.Contains(line, "unshare by pid") {
			found = true
			if !strings.Contains(line, `\u009b`) || !strings.Contains(line, `\u202e`) || !strings.Contains(line, `\x1b[31m`) {
				t.Errorf("creator not escaped visibly: %q", line)
			}
		}
	}
	if !found {
		t.Fatalf("no creator line in %q", out)
	}
}

func readAll(f *os.File) (string, error) {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String(), nil
		}
	}
}
