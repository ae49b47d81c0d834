package enrich

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/auditns/auditns/internal/assemble"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/record"
)

// loadEvents reads recorded records ("TYPE text" as netlink delivers them,
// or "type=NAME msg=..." as audit.log has them) and assembles them.
func loadEvents(t testing.TB, path string) [][]record.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]record.Record
	a := assemble.New(assemble.Options{}, func(recs []record.Record) {
		var ev []record.Record
		for i := range recs {
			ev = append(ev, recs[i].Clone())
		}
		out = append(out, ev)
	}, nil)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "type=") {
			m, err := auparse.ParseLogLine(line)
			if err != nil {
				continue
			}
			a.Push(uint16(m.RecordType), []byte(m.RawData))
			continue
		}
		typ, text, _ := strings.Cut(line, " ")
		n, _ := strconv.Atoi(typ)
		a.Push(uint16(n), []byte(text))
	}
	a.Close()
	return out
}

func newTestEnricher(t testing.TB, raw bool) *Enricher {
	e, err := New(Options{HostName: "h", BootID: "boot", Kernel: "6.18", Raw: raw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func enrichAll(t *testing.T, path string, raw bool) map[uint32]*event.Event {
	e := newTestEnricher(t, raw)
	out := map[uint32]*event.Event{}
	for _, recs := range loadEvents(t, path) {
		ev := new(event.Event)
		if err := e.Enrich(recs, ev); err != nil {
			t.Fatalf("seq %d: %v", recs[0].Seq, err)
		}
		b := ev.AppendJSON(nil)
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %s", b)
		}
		// The event points into the Enricher's buffers until the next
		// Enrich: keep a decoded copy.
		cp := new(event.Event)
		if err := json.Unmarshal(b, cp); err != nil {
			t.Fatal(err)
		}
		out[cp.Event.Sequence] = cp
	}
	return out
}

func TestExecveEventFromRealRecords(t *testing.T) {
	evs := enrichAll(t, "testdata/kernel-6.18-exec-unshare.txt", true)
	ev := evs[21] // /bin/echo 'hé "q"' ESC[31m  (args hex-encoded by the kernel)
	if ev == nil {
		t.Fatal("no event 21")
	}
	p := ev.Process
	if p == nil || p.PID != 14900 || p.Parent.PID != 14898 || p.Executable != "/usr/bin/echo" || p.WorkingDirectory != "/tmp" {
		t.Fatalf("process %+v", p)
	}
	wantArgs := []string{"/bin/echo", "hé \"q\"", "\x1b[31m"}
	if strings.Join(p.Args, "|") != strings.Join(wantArgs, "|") || p.ArgsCount != 3 {
		t.Fatalf("args %q (argc %d), want %q", p.Args, p.ArgsCount, wantArgs)
	}
	if ev.Event.ID != "boot:21" || ev.Auditd.MessageType != "SYSCALL" || ev.Event.Outcome != "success" {
		t.Fatalf("meta %+v", ev.Event)
	}
	if ev.Syscall.Name != "execve" || ev.Syscall.Nr != 59 || ev.Syscall.Arch != "x86_64" || ev.Syscall.Exit != 0 {
		t.Fatalf("syscall %+v", ev.Syscall)
	}
	if len(ev.Tags) != 1 || ev.Tags[0] != "exec" {
		t.Fatalf("tags %v", ev.Tags)
	}
	if ev.User.ID != "0" || ev.User.Name != "root" || ev.User.Audit.ID != "4294967295" {
		t.Fatalf("user %+v", ev.User)
	}
	if len(ev.Auditd.Records) != 7 || len(ev.Auditd.Paths) != 2 {
		t.Fatalf("records %d paths %d", len(ev.Auditd.Records), len(ev.Auditd.Paths))
	}
	b := string(ev.AppendJSON(nil))
	if strings.Contains(b, "\x1b") {
		t.Fatalf("raw ESC in JSON: %s", b)
	}
}

func TestUnshareDecodedAndFailedExecHasErrno(t *testing.T) {
	evs := enrichAll(t, "testdata/kernel-6.18-exec-unshare.txt", false)
	u := evs[23]
	if u.Syscall.Name != "unshare" || u.NSChange == nil || u.NSChange.Op != "unshare" ||
		strings.Join(u.NSChange.Types, ",") != "uts,net" {
		t.Fatalf("unshare: syscall %+v change %+v", u.Syscall, u.NSChange)
	}
	f := evs[24]
	if f.Syscall.Exit != -2 || f.Event.Outcome != "failure" {
		t.Fatalf("failed exec: exit %d outcome %q", f.Syscall.Exit, f.Event.Outcome)
	}
	w := evs[37]
	if w.File == nil || w.File.Path != "/etc/hostname" || w.Tags[0] != "ident" {
		t.Fatalf("file watch: %+v tags %v", w.File, w.Tags)
	}
}

// Records from go-libaudit's own corpus (a RHEL host): user-space messages
// and sockets become events too.
func TestUserSpaceAndSocketRecords(t *testing.T) {
	evs := enrichAll(t, "testdata/rhel7-normal.log", false)
	if len(evs) < 10 {
		t.Fatalf("only %d events", len(evs))
	}
	login := evs[421]
	if login == nil || login.Auditd.MessageType != "USER_LOGIN" || login.Event.Action != "logged-in" ||
		login.Source == nil || login.Source.IP != "96.241.146.97" || login.User.Audit.Name != "cloudsdk" && login.User.Audit.ID != "1000" {
		t.Fatalf("USER_LOGIN: %s", login.AppendJSON(nil))
	}
	conn := evs[58]
	if conn == nil || conn.Syscall.Name != "connect" || conn.Dest == nil || conn.Dest.IP != "169.254.169.254" || conn.Dest.Port != 80 {
		t.Fatalf("connect: %s", conn.AppendJSON(nil))
	}
	// A SOCKADDR whose SYSCALL is missing is still published, raw.
	lone := evs[517647]
	if lone == nil || len(lone.Auditd.Records) != 1 || len(lone.Auditd.Warnings) == 0 {
		t.Fatalf("lone SOCKADDR: %+v", lone)
	}
}

func TestMalformedRecordsDoNotStopAssembly(t *testing.T) {
	var got int
	a := assemble.New(assemble.Options{}, func([]record.Record) { got++ }, nil)
	a.Push(1300, []byte("garbage without a header"))
	a.Push(1300, []byte("audit(1.0:): nothing"))
	a.Push(1305, []byte(`audit(1795868665.170:50): op=set audit_enabled=1 old=1 auid=4294967295 ses=4294967295 res=1`))
	a.Close()
	if got != 1 || a.Stats().Malformed.Load() != 2 {
		t.Fatalf("events %d malformed %d", got, a.Stats().Malformed.Load())
	}
}

func TestDecodeNSChange(t *testing.T) {
	c := decodeNSChange(&event.Syscall{Name: "unshare", Args: []string{"0x7e020080"}})
	if strings.Join(c.Types, ",") != "ipc,uts,user,pid,cgroup,time,net,mnt" || strings.Join(c.ChildrenOnly, ",") != "pid,time" {
		t.Fatalf("%+v", c)
	}
	if decodeNSChange(&event.Syscall{Name: "clone", Args: []string{"0x1200011"}}) != nil {
		t.Fatal("plain fork reported as a namespace change")
	}
	if c := decodeNSChange(&event.Syscall{Name: "clone", Args: []string{"0x40000000"}, Exit: 99}); c == nil || c.Types[0] != "net" || c.ChildrenOnly != nil {
		t.Fatalf("clone: %+v", c)
	}
	if decodeNSChange(&event.Syscall{Name: "unshare", Args: []string{"0x40000000"}, Exit: -1}) != nil {
		t.Fatal("failed unshare reported as a change")
	}
}

func FuzzEnrich(f *testing.F) {
	f.Add(uint16(1300), `audit(1795868665.170:20): arch=c000003e syscall=59 success=yes exit=0 a0=1 items=2 ppid=1 pid=2 comm="sh" exe="/usr/bin/dash" key="exec"`)
	f.Add(uint16(1309), `audit(1795868665.170:20): argc=3 a0="/bin/sh" a1=6364 a2=ZZ`)
	f.Add(uint16(1327), `audit(1795868665.170:20): proctitle=2F62696E2F7368002D63`)
	e, err := New(Options{BootID: "b"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, typ uint16, text string) {
		r, err := record.Parse(typ, []byte(text))
		if err != nil {
			return
		}
		var ev event.Event
		if e.Enrich([]record.Record{*r}, &ev) != nil {
			return
		}
		if b := ev.AppendJSON(nil); !json.Valid(b) {
			t.Fatalf("invalid JSON %s", b)
		}
	})
}

// The kernel splits a long argument into chunks (aN_len, aN[i]) and a long
// argv over several EXECVE records; every argument is still recovered.
func TestExecveArgsChunkedAndContinued(t *testing.T) {
	long := strings.Repeat("long", 2000)
	hexLong := strings.ToUpper(hex.EncodeToString([]byte(long)))
	recs := []string{
		`audit(1795868665.170:9): argc=4 a0="prog" a1=6C696E65310A6C696E6532 a2_len=8000 a2[0]=` + hexLong[:7000] + ` a2[1]=` + hexLong[7000:14000],
		`audit(1795868665.170:9): a2[2]=` + hexLong[14000:] + ` a3="last"`,
	}
	var rs []record.Record
	for _, r := range recs {
		m, err := record.Parse(typeExecve, []byte(r))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, *m)
	}
	args, argc, ok := newTestEnricher(t, false).execveArgs(rs)
	if !ok || argc != 4 || len(args) != 4 || args[0] != "prog" || args[1] != "line1\nline2" || args[2] != long || args[3] != "last" {
		t.Fatalf("ok %v argc %d args %q", ok, argc, args)
	}
}

// Enrich uses the clock SetClock gave, and reads it again after a zero one.
func TestSetClock(t *testing.T) {
	e, _ := newPair(t)
	recs := parseLines(benchLines("getppid", 20))
	var ev event.Event
	at := time.Unix(1795868665, 0)
	e.SetClock(at)
	if err := e.Enrich(recs, &ev); err != nil || e.clock != at.UnixNano() {
		t.Fatalf("clock %d, want %d (%v)", e.clock, at.UnixNano(), err)
	}
	e.SetClock(time.Time{})
	if err := e.Enrich(recs, &ev); err != nil || time.Since(time.Unix(0, e.clock)) > time.Minute {
		t.Fatalf("clock %d not read (%v)", e.clock, err)
	}
}

// scribble overwrites the bytes of recs: what still points to them shows.
func scribble(recs []record.Record) {
	for _, r := range recs {
		for i := range r.Text {
			r.Text[i] = '#'
		}
		for i := range r.Body {
			r.Body[i] = '#'
		}
	}
}

// An event enriched again, its records in other memory (the first ones
// overwritten), is the same: the memos of the last records notwithstanding.
func FuzzEnrichAgain(f *testing.F) {
	for _, ev := range corpusEvents(f) {
		f.Add(ev)
	}
	e, _ := newPair(f)
	f.Fuzz(func(t *testing.T, s string) {
		recs := parseLines(s)
		if len(recs) == 0 {
			return
		}
		var ev event.Event
		if err := e.Enrich(recs, &ev); err != nil {
			t.Fatal(err)
		}
		first := string(ev.AppendJSON(nil))
		scribble(recs)
		if err := e.Enrich(parseLines(s), &ev); err != nil {
			t.Fatal(err)
		}
		if second := string(ev.AppendJSON(nil)); second != first {
			t.Fatalf("records:\n%s\n got %s\nwant %s", s, second, first)
		}
	})
}

// After any event, any other is enriched as without the memos.
func FuzzEnrichAfterOther(f *testing.F) {
	evs := corpusEvents(f)
	for i := range evs {
		f.Add(evs[i], evs[(i+1)%len(evs)])
	}
	hdr := "audit(1795868665.170:20): "
	f.Add("1300 "+hdr+"arch=c000003e syscall=2 success=yes exit=3 a0=1 a1=2 a2=3 a3=4 items=0 ppid=1 pid=2 comm=\"x\" exe=\"/x\" key=\"k\"",
		"1300 "+hdr+"arch=c000003e syscall=2 success=yes exit=3 a0=10 a1=2 a2=3 a3=44 items=0 ppid=1 pid=2 comm=\"x\" exe=\"/x\" key=\"k\"")
	e, _ := newPair(f)
	ref, _ := newPair(f)
	f.Fuzz(func(t *testing.T, s1, s2 string) {
		r1, r2 := parseLines(s1), parseLines(s2)
		if len(r1) == 0 || len(r2) == 0 {
			return
		}
		var ev event.Event
		if err := e.Enrich(r1, &ev); err != nil {
			t.Fatal(err)
		}
		scribble(r1)
		if err := e.Enrich(r2, &ev); err != nil {
			t.Fatal(err)
		}
		got := string(ev.AppendJSON(nil))
		ref.sortMemo = sortMemo{}
		if err := ref.Enrich(parseLines(s2), &ev); err != nil {
			t.Fatal(err)
		}
		if want := string(ev.AppendJSON(nil)); got != want {
			t.Fatalf("after:\n%s\nrecords:\n%s\n got %s\nwant %s", s1, s2, got, want)
		}
	})
}

// The text of a user-space message that is not key=value fields (auditctl
// -m) is the event's message, as go-libaudit's reference has it too.
func TestFreeTextUserMessage(t *testing.T) {
	e, l := newPair(t)
	recs := parseLines("1005 audit(1795868700.001:9): pid=1 uid=0 auid=4294967295 ses=4294967295 subj=unconfined msg='backup of /srv started'")
	got, want := enrichBoth(t, e, l, recs)
	var ev event.Event
	if err := ev.UnmarshalJSON(got); err != nil || ev.Message != "backup of /srv started" || !bytes.Equal(got, want) {
		t.Fatalf("%v %q\n got %s\nwant %s", err, ev.Message, got, want)
	}
	for _, text := range []string{"audit(1.2:3): msg='op=x res=1'", "audit(1.2:3): msg='", "audit(1.2:3): a=1"} {
		if m := freeTextMsg(text); m != "" {
			t.Errorf("%q: %q", text, m)
		}
	}
}
