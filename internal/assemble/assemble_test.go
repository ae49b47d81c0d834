package assemble

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/auditns/auditns/internal/record"
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
	{1302, `audit(1795868665.170:21): item=1 name="/lib64/ld-linux-x86-64.so.2" inode=262171 dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0`},
	{1327, `audit(1795868665.170:21): proctitle=2F62696E2F6563686F0068C3A920227122001B5B33316D`},
	{1320, `audit(1795868665.170:21): `},
}

func withSeq(text string, seq int) string {
	return fmt.Sprintf("audit(1795868665.170:%d):%s", seq, text[len("audit(1795868665.170:21):"):])
}

type collect struct {
	events [][]record.Record
	gaps   []Gap
}

func newCollect(o Options) (*Assembler, *collect) {
	c := &collect{}
	a := New(o, func(recs []record.Record) {
		var ev []record.Record
		for i := range recs {
			ev = append(ev, recs[i].Clone())
		}
		c.events = append(c.events, ev)
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
	if len(c.events) != 2 || c.events[0][0].Seq != 22 || c.events[1][0].Seq != 23 {
		t.Fatalf("events %d, first seq %d", len(c.events), c.events[0][0].Seq)
	}
	for _, ev := range c.events {
		if len(ev) != 6 { // EOE is a marker, not a record of the event
			t.Fatalf("event %d has %d records", ev[0].Seq, len(ev))
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

// BenchmarkAssembleExecve pushes the 7 records of an execve event (and its
// EOE) through the Assembler; go-libaudit is the Assembler as it was
// (auparse.Parse and the Reassembler), auditns is this one, which also
// finds every record's fields (go-libaudit parses them later, in Data).
func BenchmarkAssembleExecve(b *testing.B) {
	recs := make([][]byte, len(execve21))
	run := func(b *testing.B, push func(typ uint16, data []byte)) {
		b.ReportAllocs()
		seq := 1
		for b.Loop() {
			for i, r := range execve21 {
				recs[i] = append(recs[i][:0], "audit(1795868665.170:"...)
				recs[i] = strconv.AppendInt(recs[i], int64(seq), 10)
				recs[i] = append(recs[i], r.text[len("audit(1795868665.170:21"):]...)
				push(r.typ, recs[i])
			}
			seq++
		}
	}
	b.Run("go-libaudit", func(b *testing.B) {
		a := newLegacy(1024, 2*time.Second, func([]*auparse.AuditMessage) {}, nil)
		run(b, a.Push)
	})
	b.Run("auditns", func(b *testing.B) {
		a := New(Options{}, func([]record.Record) {}, nil)
		run(b, a.Push)
	})
}

// pushes decodes fuzz input into records: a type, a sequence number (some
// of them around the 32-bit wrap) and a text naming the push.
func pushes(data []byte) (maxInFlight int, recs []struct {
	typ  uint16
	text string
}) {
	types := []uint16{1300, 1309, 1302, 1327, 1320, 1320, 1112, 1305, 2100, 1400, 1999, 1101, 1300, 1327}
	if len(data) == 0 {
		return 1, nil
	}
	maxInFlight = int(data[0]%6) + 1
	data = data[1:]
	for i := 0; i+1 < len(data); i += 2 {
		typ := types[int(data[i])%len(types)]
		v := uint32(data[i+1] % 24)
		seq := 1000 + v
		if v >= 18 {
			seq = 4294967290 + (v - 18)
		}
		text := fmt.Sprintf("audit(1.000:%d): n=%d", seq, i)
		if data[i]%37 == 36 {
			text = "audit(1.000:x): malformed"
		}
		recs = append(recs, struct {
			typ  uint16
			text string
		}{typ, text})
	}
	return maxInFlight, recs
}

// The Assembler groups, orders and evicts exactly as go-libaudit's
// Reassembler did (timeouts aside: both wait an hour here). Its gaps are its
// own: no number reported missing was pushed, and none is reported twice
// (go-libaudit reported a number missing as soon as a later event left).
func FuzzAssembleLikeGoLibaudit(f *testing.F) {
	f.Add([]byte{3, 0, 1, 1, 1, 3, 1, 4, 1, 0, 3, 0, 2, 3, 2, 6, 5, 4, 3, 0, 20, 3, 20, 0, 0, 6, 9})
	f.Add([]byte{1, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 3, 1, 4, 2, 4, 3, 12, 19, 0, 18, 4, 18})
	f.Fuzz(func(t *testing.T, data []byte) {
		max, recs := pushes(data)
		var got, want strings.Builder
		var gaps []Gap
		a := New(Options{MaxInFlight: max, Timeout: time.Hour}, func(rs []record.Record) {
			fmt.Fprintf(&got, "%d:", rs[0].Seq)
			for _, r := range rs {
				fmt.Fprintf(&got, " %d %s,", r.Type, r.Text)
			}
			got.WriteString("\n")
		}, func(g Gap) { gaps = append(gaps, g) })
		l := newLegacy(max, time.Hour, func(ms []*auparse.AuditMessage) {
			fmt.Fprintf(&want, "%d:", ms[0].Sequence)
			for _, m := range ms {
				fmt.Fprintf(&want, " %d %s,", m.RecordType, m.RawData)
			}
			want.WriteString("\n")
		}, nil)
		pushed := map[uint32]bool{}
		for _, r := range recs {
			a.Push(r.typ, []byte(r.text))
			l.Push(r.typ, []byte(r.text))
			if h, err := record.ParseHeader([]byte(r.text)); err == nil && r.typ != 1320 {
				pushed[h.Seq] = true
			}
		}
		a.Close()
		l.Close()
		if got.String() != want.String() {
			t.Fatalf("max %d pushes %v\n got:\n%s\nwant:\n%s", max, recs, got.String(), want.String())
		}
		if a.Stats().Malformed.Load() != l.stats.Malformed.Load() {
			t.Fatal("stats differ")
		}
		reported := map[uint32]bool{}
		for _, g := range gaps {
			for s := g.From; ; s++ {
				if pushed[s] || reported[s] {
					t.Fatalf("pushes %v: gap %v holds %d (pushed %v, reported before %v)", recs, gaps, s, pushed[s], reported[s])
				}
				reported[s] = true
				if s == g.To {
					break
				}
			}
		}
	})
}

// An event's timeout counts from the clock of the last Flush before its
// first record (the pipeline flushes before every batch).
func TestTimeoutCountsFromLastFlush(t *testing.T) {
	a, c := newCollect(Options{Timeout: time.Second})
	t0 := a.base.Add(time.Hour)
	a.FlushAt(t0)
	a.Push(execve21[0].typ, []byte(execve21[0].text))
	a.FlushAt(t0.Add(999 * time.Millisecond))
	if len(c.events) != 0 {
		t.Fatal("emitted before the timeout")
	}
	a.FlushAt(t0.Add(1001 * time.Millisecond))
	if len(c.events) != 1 {
		t.Fatalf("after timeout: %d events", len(c.events))
	}
}

// The header memo answers what record.ParseHeader answers.
func TestHeaderMemoLikeParseHeader(t *testing.T) {
	a, _ := newCollect(Options{})
	texts := []string{
		"audit(1795868665.170:21): arch=c000003e", "audit(1795868665.170:21): proctitle=41", "audit(1795868665.170:21):",
		"audit(1795868665.170:21)x", "audit(1795868665.170:211): x", "audit(1795868665.170:21) x=1", "audit(1795868665.170:2): x",
		"audit(1795868665.170:21)): x", "x(1.2:3): a=b", "x(1.2:3): a=b", "x(1.2:3) a=b", "audit(1.2:3", "audit(1.2:3)",
		"audit(1795868665.170:21): x", "audit(1795868665.171:21): x", "audit(99999999999999999999.170:21): x",
	}
	for round := 0; round < 2; round++ {
		for _, s := range texts {
			got, gerr := a.header([]byte(s))
			want, werr := record.ParseHeader([]byte(s))
			if got != want || (gerr == nil) != (werr == nil) {
				t.Fatalf("%q: %+v %v, want %+v %v", s, got, gerr, want, werr)
			}
		}
	}
}

// Records whose bodies repeat, or differ in one field, get the fields
// record.Parse finds, body for body.
func TestRepeatedBodiesLikeParse(t *testing.T) {
	a, c := newCollect(Options{})
	bodies := []string{
		`arch=c000003e syscall=110 success=yes exit=1 a0=7 items=0 ppid=1 pid=2 comm="x" exe="/x" key="k"`,
		`arch=c000003e syscall=110 success=yes exit=1 a0=7 items=0 ppid=1 pid=2 comm="x" exe="/x" key="k"`,
		`arch=c000003e syscall=110 success=yes exit=12 a0=7 items=0 ppid=1 pid=2 comm="x" exe="/x" key="k"`,
		`arch=c000003e syscall=110 success=yes exit=1 a0=7 items=0 ppid=1 pid=2 comm="x" exe="/x" key="k"`,
		`arch=c000003e syscall=110 success=yes exit=1 a0=7 items=0 ppid=1 pid=2 comm="x" exe="/x" key="k"`,
		``, ``, `a=1 msg='b=2 c="3"'`, `a=1 msg='b=2 c="3"'`,
	}
	var texts []string
	for i, body := range bodies {
		text := fmt.Sprintf("audit(1795868665.170:%d): %s", 100+i, body)
		texts = append(texts, text)
		a.Push(1300, []byte(text))
		a.Push(1320, []byte(fmt.Sprintf("audit(1795868665.170:%d): ", 100+i)))
	}
	if len(c.events) != len(bodies) {
		t.Fatalf("%d events", len(c.events))
	}
	for i, ev := range c.events {
		want, err := record.Parse(1300, []byte(texts[i]))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ev[0].Fields) != fmt.Sprint(want.Fields) || string(ev[0].Body) != string(want.Body) {
			t.Fatalf("%q: fields %v, want %v", texts[i], ev[0].Fields, want.Fields)
		}
	}
}

// The fields of every record the Assembler emits are record.Parse's of its
// text, the header memo notwithstanding: records whose texts
// share headers or tails, pushed one after another.
func FuzzFieldsLikeParse(f *testing.F) {
	f.Add(uint16(1300), execve21[0].text, withSeq(execve21[0].text, 22))
	f.Add(uint16(1300), "audit(1.2:3): a=1 b=\"x\"", "audit(1.2:34): a=1 b=\"x\"")
	f.Add(uint16(1327), execve21[4].text, execve21[4].text)
	f.Add(uint16(1300), "audit(1.2:3): x=1 a0=1 a1=ff y=\"z\"", "audit(1.2:4): x=1 a0=12 a1=f y=\"z\"")
	f.Add(uint16(1300), "audit(1.2:3): x=1 a0=1 a1=ff y=z", "audit(1.2:4): x=1 a0=1 a1=\"f y=z")
	f.Add(uint16(1300), "audit(1.2:3): x=1 msg=a=1 y=z", "audit(1.2:4): x=1 msg=b=22 y=z")
	f.Add(uint16(1300), `audit(1.2:3): x=1 a0=1 a1=2 w=4 v="5"`, `audit(1.2:4): x=1 a0="1 a1=2 w=4 v="5"`)
	f.Fuzz(func(t *testing.T, typ uint16, t1, t2 string) {
		a, c := newCollect(Options{})
		for _, text := range []string{t1, t2, t1, t2 + " ", t1} {
			a.Push(typ, []byte(text))
			a.Push(1300, []byte(text))
		}
		a.Close()
		for _, ev := range c.events {
			for _, r := range ev {
				want, err := record.Parse(r.Type, r.Text)
				if err != nil {
					t.Fatalf("%q: %v", r.Text, err)
				}
				if fmt.Sprint(r.Fields) != fmt.Sprint(want.Fields) || string(r.Body) != string(want.Body) {
					t.Fatalf("%q: fields %v, want %v", r.Text, r.Fields, want.Fields)
				}
			}
		}
	})
}

// drops names records of event seq as the reader's marker does (a SYSCALL
// record's items= not known).
func drops(seq uint32, types ...uint16) []DroppedRecord {
	var out []DroppedRecord
	for _, t := range types {
		out = append(out, DroppedRecord{Seq: seq, Type: t, Items: -1})
	}
	return out
}

// push sends every record of execve21 with sequence number seq.
func push(a *Assembler, seq int, types ...uint16) {
	for _, r := range execve21 {
		if len(types) > 0 && !slices.Contains(types, r.typ) {
			continue
		}
		a.Push(r.typ, []byte(withSeq(r.text, seq)))
	}
}

// An event whose records come after later events' (its process was
// preempted between the kernel numbering it and queueing it) is not a gap,
// however many events overtake it within the window; a number that does
// not come within the window after a later one is, once.
func TestLateEventWithinWindowIsNoGap(t *testing.T) {
	a, c := newCollect(Options{Timeout: time.Second})
	t0 := a.base.Add(time.Hour)
	a.FlushAt(t0)
	push(a, 10)
	push(a, 12) // 11 is late
	a.FlushAt(t0.Add(900 * time.Millisecond))
	push(a, 11)
	push(a, 14) // 13 is late
	a.FlushAt(t0.Add(1800 * time.Millisecond))
	if len(c.gaps) != 0 {
		t.Fatalf("gaps %v before the window ended", c.gaps)
	}
	a.FlushAt(t0.Add(2000 * time.Millisecond))
	if len(c.gaps) != 1 || c.gaps[0] != (Gap{13, 13}) {
		t.Fatalf("gaps %v, want [{13 13}]", c.gaps)
	}
	push(a, 15)
	a.Close()
	if len(c.gaps) != 1 || a.Stats().Missing.Load() != 1 || len(c.events) != 5 {
		t.Fatalf("gaps %v missing %d events %d", c.gaps, a.Stats().Missing.Load(), len(c.events))
	}
}

// Records auditns dropped: an event whose first records were dropped is
// counted once as dropped and its later records are discarded; it is no
// gap. An event already started keeps its records and is not counted. The
// records auditns dropped are not taken for records the kernel cut; those
// of a dropped event that neither auditns dropped nor came later are.
func TestDroppedRecordsCountEventsOnce(t *testing.T) {
	var dropped, partial int
	a, c := newCollect(Options{Timeout: time.Second,
		OnDropped: func(n int) { dropped += n }, OnPartial: func(n int) { partial += n }})
	t0 := a.base.Add(time.Hour)
	a.FlushAt(t0)
	push(a, 20)
	a.Push(execve21[0].typ, []byte(withSeq(execve21[0].text, 21))) // 21 started
	a.Drop(drops(21, 1309, 1307, 1302, 1302, 1327, 1320))          // 21's tail
	a.Drop(drops(22, 1300, 1309))                                  // 22 lost whole, its tail comes later
	a.Drop(drops(23, 1300, 1327, 1320))                            // 23 lost whole
	a.Drop(drops(25, 1300))                                        // 25 lost whole; the kernel cut its PROCTITLE and EOE
	// 26 lost whole, its SYSCALL with items=2; the kernel cut a PATH, its
	// PROCTITLE and its EOE.
	a.Drop(append([]DroppedRecord{{Seq: 26, Type: 1300, Items: 2}}, drops(26, 1309, 1307, 1302)...))
	push(a, 22, 1327, 1320) // 22's tail: discarded
	push(a, 24)
	a.FlushAt(t0.Add(5 * time.Second))
	a.Close()
	if dropped != 4 || len(c.gaps) != 0 || partial != 5 {
		t.Fatalf("dropped %d gaps %v partial %d", dropped, c.gaps, partial)
	}
	if len(c.events) != 3 || a.Stats().Discarded.Load() != 1 {
		t.Fatalf("events %d discarded %d", len(c.events), a.Stats().Discarded.Load())
	}
}

// The records the kernel cut from SYSCALL events that arrived: a missing
// PROCTITLE and EOE count 2, a missing EOE after the PROCTITLE counts 1,
// each once a window has passed after the event left; a whole event 0.
func TestPartialSyscallEventsCounted(t *testing.T) {
	var partial int
	a, _ := newCollect(Options{Timeout: time.Second, OnPartial: func(n int) { partial += n }})
	t0 := a.base.Add(time.Hour)
	a.FlushAt(t0)
	push(a, 30)
	push(a, 31, 1300, 1309, 1307, 1302)       // no PROCTITLE, no EOE
	push(a, 32, 1300, 1309, 1307, 1302, 1327) // no EOE
	push(a, 33, 1300, 1309, 1307, 1302, 1327) // EOE late, within the window
	a.FlushAt(t0.Add(500 * time.Millisecond))
	push(a, 33, 1320)
	a.FlushAt(t0.Add(3 * time.Second)) // 31 and 32 leave, their records due
	if partial != 0 || a.PendingCut() != 2 {
		t.Fatalf("partial %d, pending cut %d before the window after the events left, want 0 and 2 (31's)", partial, a.PendingCut())
	}
	a.FlushAt(t0.Add(5 * time.Second))
	if partial != 3 || a.PendingCut() != 0 {
		t.Fatalf("partial %d, pending cut %d, want 3 and 0", partial, a.PendingCut())
	}
}

// An event pushed out by the in-flight limit before the rest of its records
// came: records that come later, or that the reader names dropped in the
// next batch's marker, are not taken for records the kernel cut; only what
// neither came nor was dropped within the window is.
func TestEventLeftEarlyIsNotCountedCut(t *testing.T) {
	var partial int
	a, c := newCollect(Options{Timeout: time.Second, MaxInFlight: 2, OnPartial: func(n int) { partial += n }})
	t0 := a.base.Add(time.Hour)
	a.FlushAt(t0)
	head := []uint16{1300, 1309, 1307, 1302}
	push(a, 40, head...) // the reader dropped 40's tail
	push(a, 41, head...) // 41's PROCTITLE comes late; the kernel cut its EOE
	push(a, 42, head...) // the kernel cut 42's tail
	push(a, 43, head...) // three in flight: 40 leaves
	push(a, 44, head...) // 41 leaves
	a.Drop(drops(40, 1327, 1320))
	push(a, 41, 1327)
	a.FlushAt(t0.Add(3 * time.Second)) // 42, 43 and 44 time out
	a.FlushAt(t0.Add(5 * time.Second))
	// 41: EOE; 42, 43, 44: PROCTITLE and EOE.
	if partial != 7 {
		t.Fatalf("partial %d, want 7 (events %d)", partial, len(c.events))
	}
}

// The kernel can cut records from the middle of an event too. A SYSCALL
// record's items= says how many PATH records follow, after a CWD record:
// those the event lacks are cut, unless they come late or the reader
// names them dropped.
func TestMiddleRecordsCutAreCounted(t *testing.T) {
	var partial int
	a, c := newCollect(Options{Timeout: time.Second, OnPartial: func(n int) { partial += n }})
	t0 := a.base.Add(time.Hour)
	a.FlushAt(t0)
	push(a, 60)                               // whole
	push(a, 61, 1300, 1309, 1307, 1327, 1320) // both PATHs cut
	push(a, 62, 1300, 1309, 1302, 1327, 1320) // CWD cut
	// 63: one PATH dropped by the reader before its event left, the other
	// named dropped after.
	push(a, 63, 1300, 1309, 1307)
	a.Drop(drops(63, 1302))
	push(a, 63, 1327, 1320)
	a.Drop(drops(63, 1302))
	a.FlushAt(t0.Add(5 * time.Second))
	if partial != 3 || len(c.events) != 4 {
		t.Fatalf("partial %d, want 3 (61's two PATHs, 62's CWD); events %d", partial, len(c.events))
	}
	if n := len(c.events[1]); n != 4 { // SYSCALL, EXECVE, CWD, PROCTITLE
		t.Fatalf("event 61 has %d records", n)
	}
}

// An event that timed out while the reader's queue was full: the marker
// that names its tail as dropped comes later, within the window, and takes
// it back from what the kernel is taken to have cut.
func TestTimedOutEventsTailNamedDroppedLaterIsNotCut(t *testing.T) {
	var partial int
	a, _ := newCollect(Options{Timeout: time.Second, OnPartial: func(n int) { partial += n }})
	t0 := a.base.Add(time.Hour)
	a.FlushAt(t0)
	push(a, 50, 1300, 1309, 1307, 1302)
	a.FlushAt(t0.Add(1500 * time.Millisecond)) // 50 times out
	if a.PendingCut() != 2 {
		t.Fatalf("pending cut %d, want 2", a.PendingCut())
	}
	a.Drop(drops(50, 1327, 1320))
	a.FlushAt(t0.Add(5 * time.Second))
	if partial != 0 || a.PendingCut() != 0 {
		t.Fatalf("partial %d, pending cut %d, want 0 and 0", partial, a.PendingCut())
	}
}

// Counting resumes where a previous run stopped: numbers from there that
// never come are gaps.
func TestResumeCountsFromTheWatermark(t *testing.T) {
	a, c := newCollect(Options{})
	a.Resume(100)
	push(a, 103)
	a.Close()
	if len(c.gaps) != 1 || c.gaps[0] != (Gap{100, 102}) {
		t.Fatalf("gaps %v", c.gaps)
	}
}

// The window grows with the numbers in flight and the bitmap keeps its bits.
func TestTrackerGrowsAcrossManyNumbers(t *testing.T) {
	var tr seqTracker
	var got []Gap
	rep := func(f, to uint32) { got = append(got, Gap{f, to}) }
	for s := uint32(1); s < 100000; s++ {
		if s != 5 && s != 70000 {
			tr.mark(s, 0, rep)
		}
	}
	tr.settle(10, 100, rep)
	if len(got) != 0 || tr.low != 5 {
		t.Fatalf("early: %v low %d", got, tr.low)
	}
	tr.settle(101, 100, rep)
	if len(got) != 2 || got[0] != (Gap{5, 5}) || got[1] != (Gap{70000, 70000}) || tr.low != 100000 {
		t.Fatalf("gaps %v low %d", got, tr.low)
	}
}

// A run that stops with events in flight and numbers not yet come leaves a
// checkpoint; a run resumed from it counts exactly the numbers the first
// did not emit, and nothing it did.
func TestCheckpointResumeCountsWhatWasNotEmitted(t *testing.T) {
	a, c := newCollect(Options{Timeout: time.Second})
	t0 := a.base.Add(time.Hour)
	a.FlushAt(t0)
	push(a, 100)
	push(a, 102)             // 101 has not come
	push(a, 103, 1300, 1309) // 103 in flight
	push(a, 104)             // held behind 103
	push(a, 106)             // 105 has not come
	top, open, ok := a.Checkpoint(nil, 100)
	if !ok || top != 107 || fmt.Sprint(open) != "[101 105 103 104 106]" {
		t.Fatalf("checkpoint %d %v %v", top, open, ok)
	}
	b, c2 := newCollect(Options{Timeout: time.Second})
	b.FlushAt(t0)
	b.ResumeFrom(top, open)
	push(b, 101) // it came after all
	push(b, 108) // 107 never comes
	b.FlushAt(t0.Add(3 * time.Second))
	b.Close()
	if fmt.Sprint(c2.gaps) != "[{103 106} {107 107}]" || len(c.gaps) != 0 {
		t.Fatalf("gaps after resume %v", c2.gaps)
	}
}

// Runs of numbers already settled but not dropped from the tracker's queue
// yet are not open.
func TestCheckpointSkipsSettledRuns(t *testing.T) {
	a, _ := newCollect(Options{Timeout: time.Second})
	t0 := a.base.Add(time.Hour)
	a.FlushAt(t0)
	push(a, 10)
	push(a, 13) // 11, 12 open
	push(a, 11)
	push(a, 12)
	a.FlushAt(t0) // the watermark reaches the top, past the run
	top, open, ok := a.Checkpoint(nil, 100)
	if !ok || top != 14 || len(open) != 0 {
		t.Fatalf("checkpoint %d %v %v", top, open, ok)
	}
	push(a, 16) // 14, 15 open
	top, open, ok = a.Checkpoint(nil, 100)
	if !ok || top != 17 || fmt.Sprint(open) != "[14 15]" {
		t.Fatalf("checkpoint %d %v %v", top, open, ok)
	}
}
