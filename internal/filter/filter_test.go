package filter

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/auditns/auditns/internal/event"
)

const boot = "55b0d7d6-1111-2222-3333-444455556666"

func execEvent() *event.Event {
	return &event.Event{
		Schema: event.Schema,
		Event: event.Meta{ID: boot + ":97", Sequence: 97, Created: time.Unix(1800000000, 0).UTC(),
			Kind: event.KindEvent, Action: "executed", Outcome: "success"},
		Auditd:  &event.Auditd{MessageType: "SYSCALL"},
		Host:    event.Host{Name: "web-1", Boot: event.Boot{ID: boot}},
		Tags:    []string{"exec", "auditns-ns"},
		Process: &event.Process{PID: 3218, Name: "unshare", Executable: "/usr/bin/unshare", Args: []string{"unshare", "-n"}},
		User: &event.User{ID: "1000", Name: "alice", Audit: &event.Entity{ID: "1000", Name: "alice"},
			Effective: &event.Entity{ID: "0", Name: "root"}},
		Syscall:   &event.Syscall{Name: "execve", Nr: 59, Arch: "x86_64"},
		NS:        &event.NS{IPC: event.NSRef{Serial: 1, Inum: 4026531839}, PID: event.NSRef{Serial: 4, Inum: 4026531836}, Net: event.NSRef{Serial: 13, Inum: 4026532177}},
		Container: &event.Container{ID: "3f2a9c0d1e2b" + strings.Repeat("a", 52), Runtime: "docker"},
	}
}

func loginEvent() *event.Event {
	return &event.Event{
		Schema: event.Schema,
		Event:  event.Meta{ID: boot + ":98", Sequence: 98, Kind: event.KindEvent, Outcome: "failure"}, Auditd: &event.Auditd{MessageType: "USER_LOGIN"},
		Host: event.Host{Name: "web-1", Boot: event.Boot{ID: boot}},
		User: &event.User{ID: "0", Audit: &event.Entity{ID: "4294967295"}},
	}
}

func lossEvent() *event.Event {
	return &event.Event{
		Schema: event.Schema,
		Event:  event.Meta{ID: boot + ":l1", Kind: event.KindLoss},
		Host:   event.Host{Name: "web-1", Boot: event.Boot{ID: boot}},
		Loss:   &event.Loss{Reason: "kernel_lost", Count: 3},
	}
}

func TestMatch(t *testing.T) {
	ex, login, loss := execEvent(), loginEvent(), lossEvent()
	cases := []struct {
		name  string
		args  []string
		match map[*event.Event]bool
	}{
		{"none", nil, map[*event.Event]bool{ex: true, login: true, loss: true}},
		{"ns serial any type", []string{"--ns", "13"}, map[*event.Event]bool{ex: true, login: false}},
		{"ns serial any type, init", []string{"--ns", "4"}, map[*event.Event]bool{ex: true}},
		{"ns typed", []string{"--ns", "net:13"}, map[*event.Event]bool{ex: true, login: false, loss: true}},
		{"ns typed wrong type", []string{"--ns", "mnt:13"}, map[*event.Event]bool{ex: false}},
		{"ns typed other serial", []string{"--ns", "net:14"}, map[*event.Event]bool{ex: false}},
		{"ns boot/serial", []string{"--ns", boot + "/13"}, map[*event.Event]bool{ex: true}},
		{"ns boot/serial other boot", []string{"--ns", "ffff/13"}, map[*event.Event]bool{ex: false}},
		{"ns type:boot/serial", []string{"--ns", "net:" + boot + "/13"}, map[*event.Event]bool{ex: true}},
		{"ns upper-case type", []string{"--ns", "NET:13"}, map[*event.Event]bool{ex: true}},
		{"ns alternatives OR", []string{"--ns", "net:99", "--ns", "pid:4"}, map[*event.Event]bool{ex: true}},
		{"ns comma list OR", []string{"--ns", "net:99,net:13"}, map[*event.Event]bool{ex: true}},
		{"container prefix", []string{"--container", "3f2a9c"}, map[*event.Event]bool{ex: true, login: false}},
		{"container upper-case prefix", []string{"--container", "3F2A9C"}, map[*event.Event]bool{ex: true}},
		{"container other", []string{"--container", "3f2b"}, map[*event.Event]bool{ex: false}},
		{"pid", []string{"--pid", "3218"}, map[*event.Event]bool{ex: true, login: false}},
		{"pid other", []string{"--pid", "3219"}, map[*event.Event]bool{ex: false}},
		{"uid real", []string{"--uid", "1000"}, map[*event.Event]bool{ex: true, login: false}},
		{"uid effective", []string{"--uid", "0"}, map[*event.Event]bool{ex: true, login: true}},
		{"uid name", []string{"--uid", "alice"}, map[*event.Event]bool{ex: true, login: false}},
		{"auid", []string{"--auid", "1000"}, map[*event.Event]bool{ex: true, login: false}},
		{"auid unset", []string{"--auid", "unset"}, map[*event.Event]bool{ex: false, login: true}},
		{"auid -1", []string{"--auid", "-1"}, map[*event.Event]bool{login: true}},
		{"exe glob full path", []string{"--exe", "/usr/bin/*"}, map[*event.Event]bool{ex: true, login: false}},
		{"exe base name", []string{"--exe", "unsh*"}, map[*event.Event]bool{ex: true}},
		{"exe no match", []string{"--exe", "/bin/*"}, map[*event.Event]bool{ex: false}},
		{"exe with comma not split", []string{"--exe", "/usr/bin/a,b"}, map[*event.Event]bool{ex: false}},
		{"key", []string{"--key", "auditns-ns"}, map[*event.Event]bool{ex: true, login: false}},
		{"key other", []string{"--key", "identity"}, map[*event.Event]bool{ex: false}},
		{"syscall name", []string{"--syscall", "execve"}, map[*event.Event]bool{ex: true, login: false}},
		{"syscall name case", []string{"--syscall", "EXECVE"}, map[*event.Event]bool{ex: true}},
		{"syscall number", []string{"--syscall", "59"}, map[*event.Event]bool{ex: true}},
		{"syscall other", []string{"--syscall", "open"}, map[*event.Event]bool{ex: false}},
		{"type", []string{"--type", "USER_LOGIN"}, map[*event.Event]bool{ex: false, login: true, loss: true}},
		{"type lower case", []string{"--type", "syscall"}, map[*event.Event]bool{ex: true, login: false}},
		{"AND of flags", []string{"--ns", "net:13", "--pid", "3218", "--key", "exec"}, map[*event.Event]bool{ex: true}},
		{"AND with one failing", []string{"--ns", "net:13", "--pid", "1"}, map[*event.Event]bool{ex: false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			spec := AddFlags(fs)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			f, err := spec.Build()
			if err != nil {
				t.Fatal(err)
			}
			for e, want := range c.match {
				if got := f.Match(e); got != want {
					t.Errorf("Match(%s) = %v, want %v", e.Event.ID, got, want)
				}
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string // substring of the error
	}{
		{[]string{"--ns", "nett:13"}, `--ns "nett:13": unknown namespace type "nett"`},
		{[]string{"--ns", "0"}, `--ns "0": expected SERIAL`},
		{[]string{"--ns", "x"}, `--ns "x": expected SERIAL`},
		{[]string{"--ns", "/13"}, `--ns "/13": expected BOOT_ID/SERIAL`},
		{[]string{"--pid", "-3"}, `--pid "-3": expected a process id`},
		{[]string{"--pid", "abc"}, `--pid "abc": expected a process id`},
		{[]string{"--exe", "[a"}, `--exe "[a": expected a glob`},
		{[]string{"--syscall", "-1"}, `--syscall "-1": expected a syscall name`},
		{[]string{"--key", ""}, `--key: expected a value`},
	}
	for _, c := range cases {
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		spec := AddFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		_, err := spec.Build()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line containing %q", c.args, err, c.want)
		}
	}
}

func TestNilAndEmpty(t *testing.T) {
	var f *Filter
	if !f.Empty() || !f.Match(execEvent()) {
		t.Fatal("nil filter must match everything")
	}
	g, err := (&Spec{}).Build()
	if err != nil || !g.Empty() || !g.Match(loginEvent()) {
		t.Fatal("empty filter must match everything")
	}
}
