package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/subject"
)

// tally is what an output holds: the events with the generators' key (by
// sequence number), the sequence numbers of every event, and the loss
// events.
type tally struct {
	keyed      map[uint32]int // sequence number → times seen
	seqs       map[uint32]bool
	loss       []event.Loss
	lossSum    uint64
	byReason   map[string]uint64
	invalid    int
	duplicates int
	others     map[string]int  // events without the key, by type
	pids       map[int]bool    // if set, the processes whose keyed events count
	sentinels  int             // waitIdle's user messages
	unloaded   map[string]bool // BPF programs whose UNLOAD record is in the output, by id
}

func newTally() *tally {
	return &tally{keyed: map[uint32]int{}, seqs: map[uint32]bool{}, byReason: map[string]uint64{}, others: map[string]int{}, unloaded: map[string]bool{}}
}

// add reads JSON lines; a line that is not valid JSON is counted.
func (ty *tally) add(t *testing.T, b []byte, key string) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"auditns.event/`)) {
			if !json.Valid(line) {
				ty.invalid++
			}
			continue
		}
		var ev event.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			ty.invalid++
			continue
		}
		if bytes.Contains(line, []byte(sentinelPrefix)) {
			ty.sentinels++
		}
		ty.event(&ev, key)
	}
}

func (ty *tally) event(ev *event.Event, key string) {
	if ev.Event.Kind == event.KindLoss && ev.Loss != nil {
		ty.loss = append(ty.loss, *ev.Loss)
		ty.lossSum += ev.Loss.Count
		ty.byReason[ev.Loss.Reason] += ev.Loss.Count
		return
	}
	if ev.Event.Sequence != 0 {
		ty.seqs[ev.Event.Sequence] = true
	}
	// The rule's own CONFIG_CHANGE carries the key too: count syscalls.
	if len(ev.Tags) > 0 && ev.Tags[0] == key && ev.Syscall != nil &&
		(ty.pids == nil || ev.Process != nil && ty.pids[ev.Process.PID]) {
		if ty.keyed[ev.Event.Sequence]++; ty.keyed[ev.Event.Sequence] == 2 {
			ty.duplicates++
		}
	} else if ev.Event.Kind != event.KindState {
		ty.others[ev.MessageType()]++
		if ev.MessageType() == "BPF" && ev.Auditd != nil {
			var id, op string
			for _, kv := range ev.Auditd.Data {
				switch kv.Key {
				case "prog-id":
					id = kv.Value
				case "op":
					op = kv.Value
				}
			}
			if op == "UNLOAD" {
				ty.unloaded[id] = true
			}
		}
		if os.Getenv("AUDITNS_E2E_SHOW_OTHERS") != "" {
			b, _ := json.Marshal(ev)
			fmt.Fprintf(os.Stderr, "other: %s\n", b)
		}
	}
}

// requireWhole fails t if the output has a line that is not JSON, an event
// twice, or a loss event that calls missing a number that is in it.
func (ty *tally) requireWhole(t *testing.T) {
	t.Helper()
	if ty.invalid != 0 || ty.duplicates != 0 {
		t.Fatalf("%d invalid lines, %d duplicates", ty.invalid, ty.duplicates)
	}
	if f := ty.falseGaps(); len(f) > 0 {
		t.Fatalf("%d numbers called missing are in the output: %v", len(f), f[:min(len(f), 10)])
	}
}

// requireExact fails t unless every event missing is in one loss event's
// count and no count is invented: generated − delivered, with the
// sentinels of sent (waitIdle's) that are not in the output, is the sum of
// the loss events' counts.
func (ty *tally) requireExact(t *testing.T, generated, sent int) {
	t.Helper()
	missing := generated - len(ty.keyed) + sent - ty.sentinels
	if ty.lossSum != uint64(missing) {
		t.Fatalf("generated − delivered = %d (and %d of %d sentinels missing), loss events sum to %d (%+d): %v",
			generated-len(ty.keyed), sent-ty.sentinels, sent, ty.lossSum, int64(ty.lossSum)-int64(missing), ty.byReason)
	}
}

// falseGaps lists the sequence numbers that loss events call missing and
// that are in the output.
func (ty *tally) falseGaps() []uint32 {
	var out []uint32
	for _, l := range ty.loss {
		if l.Reason != "sequence_gap" || l.From == 0 {
			continue
		}
		for s := l.From; ; s++ {
			if ty.seqs[s] {
				out = append(out, s)
			}
			if s == l.To {
				break
			}
		}
	}
	return out
}

func readTally(t *testing.T, key string, paths ...string) *tally {
	t.Helper()
	ty := newTally()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		ty.add(t, b, key)
	}
	return ty
}

// getppidRuleYAML audits the getppid calls of this process's children
// (the generators), keyed key, and nothing else.
func getppidRuleYAML(t *testing.T, dir, key string) string {
	t.Helper()
	rules := filepath.Join(dir, "audit.rules")
	rule := fmt.Sprintf("-a always,exit -F arch=b64 -S getppid -F ppid=%d -F key=%s\n", os.Getpid(), key)
	if err := os.WriteFile(rules, []byte(rule), 0o600); err != nil {
		t.Fatal(err)
	}
	return "audit:\n  rules_file: " + rules + "\nenrich:\n  ns_rules: false\n"
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// Default configuration (backlog_wait_time 0: the kernel and the reader
// drop rather than stall): a burst of getppid calls from several processes,
// as fast as they go. Every call the output does not have is counted in a
// loss event, once: generated − delivered = Σ loss counts, exactly.
// AUDITNS_E2E_BURST sets the calls (default 60,000; the manual run is
// 200,000).
func TestGetppidBurstLossIsAccounted(t *testing.T) {
	requireKernel(t)
	dir := t.TempDir()
	key := fmt.Sprintf("auditns-e2e-burst-%x", rand.Uint32())
	total := envInt("AUDITNS_E2E_BURST", 60000)
	const procs = 4
	before, _ := kernelState(t)
	r := start(t, getppidRuleYAML(t, dir, key)+os.Getenv("AUDITNS_E2E_EXTRA_YAML"))
	var gens []*generator
	for range procs {
		gens = append(gens, newBurst(t, total/procs, key))
	}
	t0 := time.Now()
	for _, g := range gens {
		g.Go()
	}
	generated := 0
	for _, g := range gens {
		generated += g.Wait(t)
	}
	burst := time.Since(t0)
	st := r.d.Pipeline().Stats()
	sent := waitIdle(t, r)
	asm := r.d.Pipeline().Assembler().Stats()
	r.stop(t)
	after, _ := kernelState(t)
	t.Logf("kernel lost counter %d -> %d (%d)", before.Lost, after.Lost, after.Lost-before.Lost)
	ty := readTally(t, key, r.out)
	delivered := len(ty.keyed)
	t.Logf("other events %v; records read %d; sentinels %d sent, %d in the output", ty.others, st.Reader.Records.Load(), sent, ty.sentinels)
	t.Logf("generated %d in %v, delivered %d, loss events %d summing %d %v; kernel lost %d records, reader dropped %d records, partial records %d, events dropped by auditns %d, discarded %d, late %d",
		generated, burst.Round(time.Millisecond), delivered, len(ty.loss), ty.lossSum, ty.byReason,
		st.KernelLost.Load(), st.Reader.Dropped.Load(), asm.Partial.Load(), asm.Dropped.Load(), asm.Discarded.Load(), asm.Late.Load())
	ty.requireWhole(t)
	ty.requireExact(t, generated, sent)
}

// auditns's own BPF programs make audit records when they are loaded and
// when they are unloaded (AUDIT_BPF op=LOAD, op=UNLOAD). A clean stop
// unloads them while auditns is still the audit daemon, so that those
// records are read: every event auditns itself caused is in its output.
func TestCleanStopReadsTheRecordsOfItsOwnBPFUnload(t *testing.T) {
	requireKernel(t)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	r := start(t, "output:\n  sink: file:"+out+"\n  raw: true\n")
	r.out = out
	loaded, err := subject.Loaded()
	if err != nil || len(loaded) == 0 {
		t.Fatalf("auditns's BPF programs: %v %v", loaded, err)
	}
	var ids []string
	for _, l := range loaded {
		// "name (id N)"
		i := strings.LastIndex(l, "(id ")
		ids = append(ids, strings.TrimSuffix(l[i+len("(id "):], ")"))
	}
	r.stop(t)
	b, err := os.ReadFile(r.out)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		for _, op := range []string{"LOAD", "UNLOAD"} {
			if !bytes.Contains(b, []byte("prog-id="+id+" op="+op)) {
				t.Errorf("no audit record of BPF program %s op=%s in the output", id, op)
			}
		}
	}
	t.Logf("BPF programs %v", ids)
}

// The burst of TestGetppidBurstLossIsAccounted with opens mixed in: an
// open's event has records in the middle (CWD, PATH) that the kernel can
// cut as well as its first and last ones. Exact as well.
func TestMixedBurstLossIsAccounted(t *testing.T) {
	requireKernel(t)
	dir := t.TempDir()
	key := fmt.Sprintf("auditns-e2e-mixed-%x", rand.Uint32())
	total := envInt("AUDITNS_E2E_BURST", 60000)
	var gens []*generator
	var rules []string
	for i := range 4 {
		g := newBurst(t, total/4, key)
		if i%2 == 1 {
			g = newOpenBurst(t, total/4, key)
		}
		gens = append(gens, g)
		rules = append(rules, g.Rule)
	}
	rulesFile := filepath.Join(dir, "audit.rules")
	if err := os.WriteFile(rulesFile, []byte(strings.Join(rules, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, "audit:\n  rules_file: "+rulesFile+"\nenrich:\n  ns_rules: false\n")
	for _, g := range gens {
		g.Go()
	}
	generated := 0
	for _, g := range gens {
		generated += g.Wait(t)
	}
	st := r.d.Pipeline().Stats()
	sent := waitIdle(t, r)
	asm := r.d.Pipeline().Assembler().Stats()
	r.stop(t)
	ty := readTally(t, key, r.out)
	delivered := len(ty.keyed)
	t.Logf("generated %d, delivered %d, loss events %d summing %d %v; kernel lost %d records, reader dropped %d records, partial records %d; others %v",
		generated, delivered, len(ty.loss), ty.lossSum, ty.byReason,
		st.KernelLost.Load(), st.Reader.Dropped.Load(), asm.Partial.Load(), ty.others)
	ty.requireWhole(t)
	ty.requireExact(t, generated, sent)
}

// A clean stop right after a burst, with the kernel's queue still full:
// auditns removes its rules, reads what the kernel queued to its end and
// only then stops, so every event the burst made is in the output or in a
// loss event's count, exactly, with nothing left unread.
func TestCleanStopReadsTheKernelQueueToItsEnd(t *testing.T) {
	requireKernel(t)
	dir := t.TempDir()
	key := fmt.Sprintf("auditns-e2e-stop-%x", rand.Uint32())
	r := start(t, getppidRuleYAML(t, dir, key))
	var gens []*generator
	for range 4 {
		gens = append(gens, newBurst(t, 15000, key))
	}
	for _, g := range gens {
		g.Go()
	}
	generated := 0
	for _, g := range gens {
		generated += g.Wait(t)
	}
	backlog := r.d.Pipeline().Stats().Backlog.Load()
	t0 := time.Now()
	r.stop(t)
	stopped := time.Since(t0)
	ty := readTally(t, key, r.out)
	t.Logf("generated %d, delivered %d, loss events %d summing %d %v; kernel backlog at the last status poll %d; stopped in %v; other events %v",
		generated, len(ty.keyed), len(ty.loss), ty.lossSum, ty.byReason, backlog, stopped.Round(time.Millisecond), ty.others)
	ty.requireWhole(t)
	ty.requireExact(t, generated, 0)
}

// waitIdle waits until auditns has read every record the kernel queued
// before it was called, then for the reassembly window and a status poll:
// every event is out, every EOE that was coming has come, and the kernel's
// counter has been read. The last counts are written at shutdown.
//
// The kernel queues records in order, so a user message sent now (a
// sentinel, which no rule can filter out) comes after every record of the
// load; once it is in the output, so is everything before it. Other
// processes on the host may go on being audited meanwhile: they do not
// delay this.
//
// It returns how many sentinels it sent: the reader may have dropped some
// (as real a loss as any), which the caller's arithmetic counts with
// tally.sentinels.
func waitIdle(t *testing.T, r *running) (sent int) {
	t.Helper()
	prefix := fmt.Sprintf("%s%x-", sentinelPrefix, rand.Uint64())
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		// Sent again every 2 s: the reader may drop one with the load's
		// records when its queue is full.
		if i%20 == 0 {
			sendUserMessage(t, fmt.Sprintf("%s%d", prefix, i))
			sent++
		}
		time.Sleep(100 * time.Millisecond)
		b, err := os.ReadFile(r.out)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(prefix)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("auditns had not read the records of the load 60 s after it ended")
		}
	}
	time.Sleep(3500 * time.Millisecond)
	return sent
}

const sentinelPrefix = "auditns-e2e-sentinel-"

// sendUserMessage sends an AUDIT_USER message (1005) to the kernel, which
// queues it as a record of its own.
func sendUserMessage(t *testing.T, text string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		t.Fatalf("audit socket: %v", err)
	}
	defer unix.Close(fd)
	const auditUser = 1005
	msg := make([]byte, unix.NLMSG_HDRLEN+len(text)+1)
	*(*unix.NlMsghdr)(unsafe.Pointer(&msg[0])) = unix.NlMsghdr{
		Len: uint32(len(msg)), Type: auditUser, Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK, Seq: 1}
	copy(msg[unix.NLMSG_HDRLEN:], text)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatalf("send audit user message: %v", err)
	}
	ack := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, ack, 0)
	if err != nil || n < unix.NLMSG_HDRLEN+4 {
		t.Fatalf("audit user message: no ack (%v)", err)
	}
	if code := *(*int32)(unsafe.Pointer(&ack[unix.NLMSG_HDRLEN])); code != 0 {
		t.Fatalf("audit user message refused: %v", syscall.Errno(-code))
	}
}

// execStorm runs n shell loops of /bin/true with marker until stop.
func execStorm(t *testing.T, n int, marker string, stop <-chan struct{}) {
	t.Helper()
	for range n {
		cmd := exec.Command("/bin/sh", "-c", "while :; do /bin/true "+marker+"; done")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { <-stop; cmd.Process.Kill() }()
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
}

// Concurrent exec storms and getppid storms from several processes, with
// the default rules and namespace rules: no number a loss event calls
// missing is in the output (events that complete late, behind others, are
// not gaps). AUDITNS_E2E_STORM sets the seconds (default 12; the manual run
// is 60).
func TestNoFalseGapsUnderStorms(t *testing.T) {
	requireKernel(t)
	dir := t.TempDir()
	key := fmt.Sprintf("auditns-e2e-storm-%x", rand.Uint32())
	secs := envInt("AUDITNS_E2E_STORM", 12)
	dur := time.Duration(secs) * time.Second
	rules := filepath.Join(dir, "audit.rules")
	rule := fmt.Sprintf("-a always,exit -F arch=b64 -S execve -F key=exec\n-a always,exit -F arch=b64 -S getppid -F ppid=%d -F key=%s\n", os.Getpid(), key)
	if err := os.WriteFile(rules, []byte(rule), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, "audit:\n  rules_file: "+rules+"\n")
	var gens []*generator
	for range 3 {
		gens = append(gens, newGenerator(t, 3000, dur, key))
	}
	stop := make(chan struct{})
	execStorm(t, 3, marker(), stop)
	for _, g := range gens {
		g.Go()
	}
	generated := 0
	for _, g := range gens {
		generated += g.Wait(t)
	}
	close(stop)
	waitIdle(t, r)
	asm := r.d.Pipeline().Assembler().Stats()
	r.stop(t)
	// The shells of the exec storm call getppid too: count the generators'.
	ty := newTally()
	ty.pids = map[int]bool{}
	for _, g := range gens {
		ty.pids[g.cmd.Process.Pid] = true
	}
	b, err := os.ReadFile(r.out)
	if err != nil {
		t.Fatal(err)
	}
	ty.add(t, b, key)
	t.Logf("%v: %d events in the output, getppid generated %d delivered %d; loss events %d summing %d %v; late records %d",
		dur, len(ty.seqs), generated, len(ty.keyed), len(ty.loss), ty.lossSum, ty.byReason, asm.Late.Load())
	ty.requireWhole(t)
	if uint64(generated-len(ty.keyed)) > ty.lossSum {
		t.Fatalf("generated − delivered = %d, more than the loss events' %d", generated-len(ty.keyed), ty.lossSum)
	}
}
