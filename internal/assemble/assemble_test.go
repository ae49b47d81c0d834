package assemble

import (
	"fmt"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"
)

// Records as the kernel (6.18) sent them for one execve, sequence 21.
var execve21 = []struct {
	typ  uint16
	text string
}{
	{1300, `audit(1795868665.170:21): arch=c000003e syscall=59 success=yes exit=0 a0=5562ac588048 a1=5562ac5880a8 a2=5562ac588308 a3=8 items=2 ppid=14898 pid=14900 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="echo" exe="/usr/bin/echo" key="exec"`},
	{1309, `audit(1795868665.170:21): argc=3 a0="/bin/echo" a1=68C3A920227122 a2=1B5B33316D`},
	{1307, `audit(1795868665.170:21): cwd="/tmp"`},
	{1302, `audit(1795868665.170:21): item=0 name="/bin/echo" inode=247141 dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0`},
	{1327, `audit(1795868665.170:21): proctitle=2F62696E2F6563686F0068C3A920227122001B5B33316D`},
	{1320, `audit(1795868665.170:21): `},
}

func withSeq(text string, seq int) string {
	return fmt.Sprintf("audit(1795868665.170:%d):%s", seq, text[len("audit(1795868665.170:21):"):])
}

type collect struct {
	events [][]*auparse.AuditMessage
	gaps   []Gap
}

func newCollect(o Options) (*Assembler, *collect) {
	c := &collect{}
	a := New(o, func(m []*auparse.AuditMessage) {
		c.events = append(c.events, append([]*auparse.AuditMessage(nil), m...))
	}, func(g Gap) { c.gaps = append(c.gaps, g) })
	return a, c
}

func TestInterleavedOutOfOrderEventsAssembleInSequence(t *testing.T) {
	a, c := newCollect(Options{})
	// Two events interleaved record by record, the later one first.
	for i := range execve21 {
		a.Push(execve21[i].typ, []byte(withSeq(execve21[i].text, 23)))
		a.Push(execve21[i].typ, []byte(withSeq(execve21[i].text, 22)))
	}
	a.Close()
	if len(c.events) != 2 || c.events[0][0].Sequence != 22 || c.events[1][0].Sequence != 23 {
		t.Fatalf("events %d, first seq %d", len(c.events), c.events[0][0].Sequence)
	}
	for _, ev := range c.events {
		if len(ev) != 5 { // EOE is a marker, not a record of the event
			t.Fatalf("event %d has %d records", ev[0].Sequence, len(ev))
		}
	}
	if len(c.gaps) != 0 {
		t.Fatalf("gaps %v", c.gaps)
	}
}

func TestMissingEOEEmittedAfterTimeout(t *testing.T) {
	a, c := newCollect(Options{Timeout: 50 * time.Millisecond})
	// SYSCALL and EXECVE only: no PROCTITLE, no EOE (a record was lost).
	a.Push(execve21[0].typ, []byte(execve21[0].text))
	a.Push(execve21[1].typ, []byte(execve21[1].text))
	a.Flush()
	if len(c.events) != 0 {
		t.Fatal("emitted before the timeout")
	}
	time.Sleep(80 * time.Millisecond)
	a.Flush()
	if len(c.events) != 1 || len(c.events[0]) != 2 {
		t.Fatalf("after timeout: %d events", len(c.events))
	}
}

func TestSequenceGapsReportedWithRange(t *testing.T) {
	a, c := newCollect(Options{})
	for _, seq := range []int{10, 11, 15, 16, 20} {
		for _, r := range execve21 {
			a.Push(r.typ, []byte(withSeq(r.text, seq)))
		}
	}
	a.Close()
	want := []Gap{{12, 14}, {17, 19}}
	if len(c.gaps) != 2 || c.gaps[0] != want[0] || c.gaps[1] != want[1] {
		t.Fatalf("gaps %v, want %v", c.gaps, want)
	}
	if a.Stats().Missing.Load() != 6 || a.Stats().Events.Load() != 5 {
		t.Fatalf("missing %d events %d", a.Stats().Missing.Load(), a.Stats().Events.Load())
	}
}

func TestMalformedRecordsCounted(t *testing.T) {
	a, c := newCollect(Options{})
	a.Push(1300, []byte("no header"))
	a.Push(1300, []byte("audit(x:y): z"))
	a.Push(1300, nil)
	for _, r := range execve21 {
		a.Push(r.typ, []byte(r.text))
	}
	a.Close()
	if a.Stats().Malformed.Load() != 3 || len(c.events) != 1 {
		t.Fatalf("malformed %d events %d", a.Stats().Malformed.Load(), len(c.events))
	}
}

func FuzzPush(f *testing.F) {
	for _, r := range execve21 {
		f.Add(r.typ, r.text)
	}
	f.Fuzz(func(t *testing.T, typ uint16, text string) {
		a, _ := newCollect(Options{})
		a.Push(typ, []byte(text))
		a.Push(execve21[0].typ, []byte(execve21[0].text))
		a.Close()
	})
}

func BenchmarkAssembleExecve(b *testing.B) {
	a := New(Options{}, func([]*auparse.AuditMessage) {}, nil)
	recs := make([][]byte, len(execve21))
	b.ReportAllocs()
	seq := 1
	for b.Loop() {
		for i, r := range execve21 {
			recs[i] = append(recs[i][:0], withSeq(r.text, seq)...)
			a.Push(r.typ, recs[i])
		}
		seq++
	}
}
