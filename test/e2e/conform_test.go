package e2e

import (
	"bytes"
	nlbinary "encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/auditns/auditns/internal/conform"
	"github.com/auditns/auditns/internal/event"
)

// What the conformance child does (AUDITNS_E2E_CONFORM=DIR), once its
// stdin is closed: the syscalls a SIEM's rules look at, each made once on
// one thread, user-space records written as PAM and auditctl -m write
// them, then an exec.
func conformChild(dir string) {
	runtime.LockOSThread()
	buf := make([]byte, 1)
	os.Stdin.Read(buf)
	must := func(what string, err error) {
		if err != nil {
			fmt.Fprintf(os.Stderr, "conform child: %s: %v\n", what, err)
			os.Exit(1)
		}
	}
	watched := filepath.Join(dir, "watched")
	// open (the old syscall) and openat of a watched file.
	pathp, _ := unix.BytePtrFromString(watched)
	fd, _, errno := unix.Syscall(unix.SYS_OPEN, uintptr(unsafe.Pointer(pathp)), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if errno != 0 {
		must("open", errno)
	}
	unix.Write(int(fd), []byte("x"))
	unix.Close(int(fd))
	fd2, err := unix.Openat(unix.AT_FDCWD, watched, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	must("openat", err)
	unix.Close(fd2)
	// chmod and chown.
	_, _, errno = unix.Syscall(unix.SYS_CHMOD, uintptr(unsafe.Pointer(pathp)), 0o600, 0)
	if errno != 0 {
		must("chmod", errno)
	}
	_, _, errno = unix.Syscall(unix.SYS_CHOWN, uintptr(unsafe.Pointer(pathp)), 0, 0)
	if errno != 0 {
		must("chown", errno)
	}
	// bind, connect, accept over TCP on loopback, and connect to a unix
	// socket.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	must("listen", err)
	c, err := net.Dial("tcp4", ln.Addr().String())
	must("connect", err)
	a, err := ln.Accept()
	must("accept", err)
	a.Close()
	c.Close()
	ln.Close()
	sock := filepath.Join(dir, "s.sock")
	uln, err := net.Listen("unix", sock)
	must("bind unix", err)
	uc, err := net.Dial("unix", sock)
	must("connect unix", err)
	uc.Close()
	uln.Close()
	// unshare a uts namespace on this thread, then setns back.
	orig, err := unix.Open("/proc/thread-self/ns/uts", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	must("open uts", err)
	must("unshare", unix.Unshare(unix.CLONE_NEWUTS))
	must("setns", unix.Setns(orig, unix.CLONE_NEWUTS))
	// User-space records, as auditctl -m (USER) and PAM (USER_LOGIN)
	// write them.
	must("user message", userMessage(1005, "auditns conformance test"))
	must("user login", userMessage(1112, `op=login acct="root" exe="/usr/sbin/sshd" hostname=? addr=127.0.0.1 terminal=ssh res=failed`))
	// setuid, setgid and setresgid on this thread (raw: Go's would make
	// them on every thread); the group ids change.
	for _, call := range []struct {
		nr      uintptr
		a, b, c uintptr
	}{{unix.SYS_SETUID, 0, 0, 0}, {unix.SYS_SETGID, 0, 0, 0}, {unix.SYS_SETRESGID, 100, 100, 0}} {
		if _, _, errno := unix.RawSyscall(call.nr, call.a, call.b, call.c); errno != 0 {
			must(fmt.Sprint("set*id ", call.nr), errno)
		}
	}
	must("exec", syscall.Exec("/bin/true", []string{"/bin/true", "auditns-conform"}, nil))
}

// userMessage sends a user-space audit record of type typ with text.
func userMessage(typ uint16, text string) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(text)+1)
	msg = append(append(msg, text...), 0)
	nlbinary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	nlbinary.NativeEndian.PutUint16(msg[4:], typ)
	nlbinary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	nlbinary.NativeEndian.PutUint32(msg[8:], 1)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	ack := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, ack, 0)
	if err != nil {
		return err
	}
	if n >= unix.NLMSG_HDRLEN+4 && nlbinary.NativeEndian.Uint16(ack[4:]) == unix.NLMSG_ERROR {
		if e := int32(nlbinary.NativeEndian.Uint32(ack[unix.NLMSG_HDRLEN:])); e != 0 {
			return syscall.Errno(-e)
		}
	}
	return nil
}

// Events recorded from the running kernel for the syscalls and records a
// SIEM's rules look at are ECS documents the JSON Schema accepts, and so
// are the registry records and auditns's own events in the same stream.
func TestRealKernelEventsConform(t *testing.T) {
	requireKernel(t)
	c, err := conform.New()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "AUDITNS_E2E_CONFORM="+dir)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	child.Stderr = &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	pid := child.Process.Pid
	rules := []string{
		fmt.Sprintf("-a always,exit -F arch=b64 -S execve,open,openat,chmod,chown,connect,bind,accept,accept4,setuid,setgid,setresgid,unshare,setns -F pid=%d -F key=conform", pid),
		"-w " + filepath.Join(dir, "watched") + " -p rwa -k conform-watch",
	}
	rulesFile := filepath.Join(t.TempDir(), "audit.rules")
	if err := os.WriteFile(rulesFile, []byte(strings.Join(rules, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, "mode: unicast\noutput:\n  raw: true\n  flush_interval: 20ms\n  sink: file:"+filepath.Join(dir, "events.jsonl")+
		"\naudit:\n  rules_file: "+rulesFile+"\n")
	r.out = filepath.Join(dir, "events.jsonl")
	stdin.Close()
	if err := child.Wait(); err != nil {
		t.Fatalf("conformance child: %v\n%s", err, stderr.String())
	}
	// Every syscall and record type arrives.
	want := []string{"execve", "open", "openat", "chmod", "chown", "connect", "bind", "accept4", "setuid", "setgid", "setresgid",
		"unshare", "setns", "USER", "USER_LOGIN"}
	deadline := time.Now().Add(15 * time.Second)
	var missing []string
	for {
		seen := map[string]bool{}
		for _, e := range decodedEvents(t, r.out) {
			if e.Syscall != nil && e.Process != nil && e.Process.PID == pid {
				seen[e.Syscall.Name] = true
			}
			if e.Process != nil && e.Process.PID == pid {
				seen[e.MessageType()] = true
			}
		}
		missing = missing[:0]
		for _, w := range want {
			if !seen[w] {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(missing) > 0 {
		for _, e := range decodedEvents(t, r.out) {
			pid := 0
			if e.Process != nil {
				pid = e.Process.PID
			}
			t.Logf("%s pid %d %s", e.MessageType(), pid, e.Message)
		}
		t.Fatalf("no events for %v", missing)
	}
	r.stop(t)

	b, err := os.ReadFile(r.out)
	if err != nil {
		t.Fatal(err)
	}
	var nEvents, nRecords int
	kinds := map[string]int{}
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if bytes.HasPrefix(line, []byte(`{"schema":"auditns.namespace/1"`)) {
			nRecords++
			for _, v := range c.Record(line) {
				t.Errorf("line %d: registry record: %s", i+1, v)
			}
			continue
		}
		nEvents++
		for _, v := range c.Event(line) {
			t.Errorf("line %d: %s\n%s", i+1, v, line)
		}
		var e event.Event
		if err := e.UnmarshalJSON(line); err == nil {
			kinds[e.Event.Kind]++
		}
	}
	t.Logf("%d events (%v), %d registry records checked", nEvents, kinds, nRecords)
	// The uid and gid changes are in ECS's places; a login's peer and
	// outcome in ECS's.
	for _, e := range decodedEvents(t, r.out) {
		if e.MessageType() == "USER_LOGIN" && e.Process != nil && e.Process.PID == pid {
			if e.Source == nil || e.Source.IP != "127.0.0.1" || e.Event.Outcome != "failure" || !slices.Contains(e.Event.Category, "authentication") {
				t.Errorf("USER_LOGIN: source %+v outcome %s category %v", e.Source, e.Event.Outcome, e.Event.Category)
			}
		}
		if e.MessageType() == "USER" && e.Process != nil && e.Process.PID == pid && e.Message != "auditns conformance test" {
			t.Errorf("USER message %q", e.Message)
		}
		if e.Syscall != nil && e.Syscall.Name == "setresgid" && e.Process != nil && e.Process.PID == pid {
			if e.Group == nil || e.Group.ID != "100" || e.Group.Effective == nil || e.Group.Effective.ID != "100" ||
				e.Group.Saved == nil || e.Group.Saved.ID != "0" || e.Group.FS == nil {
				t.Errorf("setresgid(100, 100, 0) event's groups %+v", e.Group)
			}
		}
	}
	if kinds[event.KindState] < 2 || nRecords < 8 {
		t.Errorf("state events %d, registry records %d", kinds[event.KindState], nRecords)
	}
}

// decodedEvents are the events of path.
func decodedEvents(t *testing.T, path string) []*event.Event {
	t.Helper()
	b, _ := os.ReadFile(path)
	var out []*event.Event
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"`+event.Schema+`"`)) {
			continue
		}
		e := new(event.Event)
		if err := e.UnmarshalJSON(line); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		out = append(out, e)
	}
	return out
}

// auditns convert reads a log on stdin and writes conforming events on
// stdout; a line that is no record is named on stderr with its number.
func TestCLIConvert(t *testing.T) {
	c, err := conform.New()
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile("../../internal/enrich/testdata/golibaudit-ubuntu-24.04-linux-6.8.0.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(auditnsBinary(t), "convert", "--boot-id", "b", "--host", "web-1", "--raw", "-")
	cmd.Stdin = bytes.NewReader(append(append([]byte("not a record\n"), log...), "\n"...))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	n, v := c.Lines(stdout.Bytes())
	for _, x := range v {
		t.Error(x)
	}
	if n == 0 || !strings.Contains(stderr.String(), "convert: line 1: ") ||
		!strings.Contains(stderr.String(), fmt.Sprintf("%d events, 1 malformed lines", n)) ||
		!bytes.Contains(stdout.Bytes(), []byte(`"host":{"name":"web-1"`)) || !bytes.Contains(stdout.Bytes(), []byte(`"id":"b:`)) {
		t.Fatalf("%d events; stderr %s", n, stderr.String())
	}
}
