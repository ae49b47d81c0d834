package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/auparse"
	"github.com/elastic/go-libaudit/v2/rule"
	"github.com/elastic/go-libaudit/v2/rule/flags"
	"golang.org/x/sys/unix"

	"github.com/auditns/auditns/internal/netlink"
)

var benchKeyField = []byte(` key="` + benchKey + `"`)

// baselineResult is the baseline consumer's last line on stdout.
type baselineResult struct {
	Records  uint64  `json:"records"`
	Events   uint64  `json:"events"`
	Overruns uint64  `json:"overruns"`
	Latency  []int64 `json:"latency_ns,omitempty"` // receive time - generator time, per event (latency mode)
	Origin   []int64 `json:"origin_ns,omitempty"`  // the generator's time of each (a1)
	Errors   []string
}

// runBaseline is the ceiling: a plain go-libaudit consumer. It becomes the
// audit daemon (SetPID), sets auditns's default backlog_limit and the bench's
// backlog_wait_time (-wait, the same value auditns gets), enables auditing, adds one rule and counts what it
// receives: no assembly, no enrichment, no encoding, no output. It prints
// READY when the rule is loaded, "PROGRESS records events" every 100 ms,
// and on SIGTERM removes its rule, restores the settings it changed,
// releases the audit pid and prints a baselineResult. (One function of
// ~130 lines: the settings it changes and their undo steps share one
// scope, undone in reverse order on every path out.)
func runBaseline(args []string) {
	fs := flag.NewFlagSet("baseline", flag.ExitOnError)
	var ruleTexts ruleList
	fs.Var(&ruleTexts, "rule", "an audit rule, auditctl syntax (repeatable)")
	recordTo := fs.String("record", "", "also write every record received to this file, one a line as \"TYPE text\" (for micro-benchmarks over real records)")
	rcvbuf := fs.Int("rcvbuf", netlink.DefaultReceiveBuffer, "socket receive buffer in bytes (auditns's audit.receive_buffer default); 0 = go-libaudit's default")
	wait := fs.Int("wait", 0, "backlog_wait_time in jiffies (the bench passes the same to auditns)")
	latency := fs.Bool("latency", false, "record receive time - a1 (the generator's clock) per SYSCALL record")
	_ = fs.Parse(args)

	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
	wires, err := buildRules(ruleTexts)
	if err != nil {
		fail(err)
	}
	var rec *bufio.Writer
	if *recordTo != "" {
		f, err := os.Create(*recordTo)
		if err != nil {
			fail(err)
		}
		// Flushed at the end, before the result (the process then exits).
		rec = bufio.NewWriterSize(f, 1<<20)
	}

	// The event socket is opened first so that it is the only audit
	// netlink socket when the receive buffer is set.
	c, err := libaudit.NewAuditClient(nil)
	if err != nil {
		fail(err)
	}
	if *rcvbuf > 0 {
		if err := setAuditRcvbuf(*rcvbuf); err != nil {
			fail(err)
		}
	}
	ctl, err := libaudit.NewAuditClient(nil)
	if err != nil {
		fail(err)
	}
	initial, err := ctl.GetStatus()
	if err != nil {
		fail(err)
	}

	var undo []func() error
	cleanup := func() []string {
		var errs []string
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](); err != nil {
				errs = append(errs, err.Error())
			}
		}
		undo = nil
		return errs
	}
	step := func(what string, do func() error, un func() error) {
		if err := do(); err != nil {
			errs := cleanup()
			fail(fmt.Errorf("%s: %w (cleanup errors: %v)", what, err, errs))
		}
		if un != nil {
			undo = append(undo, un)
		}
	}
	// The pid is released last (undo runs backwards): SetPID is done first.
	step("set audit pid", func() error { return c.SetPID(libaudit.WaitForReply) }, func() error {
		if err := c.Close(); err != nil {
			return fmt.Errorf("release audit pid: %w", err)
		}
		return nil
	})
	step("set backlog_limit", func() error { return c.SetBacklogLimit(netlink.DefaultBacklogLimit, libaudit.WaitForReply) }, func() error {
		return ctl.SetBacklogLimit(initial.BacklogLimit, libaudit.WaitForReply)
	})
	step("set backlog_wait_time", func() error { return c.SetBacklogWaitTime(int32(*wait), libaudit.WaitForReply) }, func() error {
		return ctl.SetBacklogWaitTime(int32(initial.BacklogWaitTime), libaudit.WaitForReply)
	})
	step("enable auditing", func() error { return c.SetEnabled(true, libaudit.WaitForReply) }, func() error {
		if initial.Enabled == 0 {
			return ctl.SetEnabled(false, libaudit.WaitForReply)
		}
		return nil
	})
	for _, wire := range wires {
		step("add rule", func() error { return c.AddRule(wire) }, func() error { return ctl.DeleteRule(wire) })
	}

	cnt := &baselineCounter{rec: rec, latency: *latency}
	go cnt.receive(c)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("READY")
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			fmt.Printf("PROGRESS %d %d\n", cnt.records.Load(), cnt.events.Load())
			continue
		case <-sig:
		}
		break
	}
	// A receive error from now on is the socket being closed by cleanup.
	rerr, _ := cnt.recvErr.Load().(string)
	errs := cleanup()
	ctl.Close()
	res := baselineResult{Records: cnt.records.Load(), Events: cnt.events.Load(), Overruns: cnt.overruns.Load(), Errors: errs}
	if rerr != "" {
		res.Errors = append(res.Errors, "receive: "+rerr)
	}
	if rec != nil {
		cnt.mu.Lock()
		if err := rec.Flush(); err != nil {
			res.Errors = append(res.Errors, "record: "+err.Error())
		}
		cnt.mu.Unlock()
	}
	cnt.mu.Lock()
	res.Latency, res.Origin = cnt.lat, cnt.origin
	cnt.mu.Unlock()
	b, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", b)
	if len(errs) > 0 {
		os.Exit(1)
	}
	os.Exit(0)
}

// buildRules turns rules in auditctl syntax into the kernel's format.
func buildRules(texts []string) ([]rule.WireFormat, error) {
	var wires []rule.WireFormat
	for _, text := range texts {
		r, err := flags.Parse(text)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", text, err)
		}
		wire, err := rule.Build(r)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", text, err)
		}
		wires = append(wires, wire)
	}
	return wires, nil
}

// baselineCounter counts what the baseline receives.
type baselineCounter struct {
	records, events, overruns atomic.Uint64
	recvErr                   atomic.Value
	latency                   bool
	mu                        sync.Mutex // rec, lat, origin
	rec                       *bufio.Writer
	lat, origin               []int64
}

// receive reads the audit socket until it fails.
func (k *baselineCounter) receive(c *libaudit.AuditClient) {
	for {
		m, err := c.Receive(false)
		if err != nil {
			if errors.Is(err, syscall.ENOBUFS) {
				k.overruns.Add(1)
				continue
			}
			if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EAGAIN) {
				continue
			}
			k.recvErr.Store(err.Error())
			return
		}
		if m.Type < 1100 {
			continue // control replies
		}
		k.records.Add(1)
		if k.rec != nil {
			k.mu.Lock()
			fmt.Fprintf(k.rec, "%d %s\n", m.Type, m.Data)
			k.mu.Unlock()
		}
		// Only the workload's events: not the SYSCALL record of this
		// process's own configuration messages, which has no key.
		if m.Type == auparse.AUDIT_SYSCALL && bytes.Contains(m.Data, benchKeyField) {
			k.events.Add(1)
			if k.latency {
				now := time.Now().UnixNano()
				if a1, ok := recordA1(m.Data); ok {
					k.mu.Lock()
					k.lat = append(k.lat, now-a1)
					k.origin = append(k.origin, a1)
					k.mu.Unlock()
				}
			}
		}
	}
}

// recordA1 extracts a1 (hex) from a SYSCALL record's text.
func recordA1(data []byte) (int64, bool) {
	i := bytes.Index(data, []byte(" a1="))
	if i < 0 {
		return 0, false
	}
	v := data[i+4:]
	if j := bytes.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	n, err := strconv.ParseUint(string(v), 16, 64)
	return int64(n), err == nil
}

// setAuditRcvbuf sets the receive buffer of the process's only audit
// netlink socket (go-libaudit does not expose its descriptor).
func setAuditRcvbuf(size int) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	found := -1
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil || dom != unix.AF_NETLINK {
			continue
		}
		proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
		if err != nil || proto != unix.NETLINK_AUDIT {
			continue
		}
		if found >= 0 {
			return errors.New("more than one audit netlink socket open")
		}
		found = fd
	}
	if found < 0 {
		return errors.New("no audit netlink socket found")
	}
	if err := unix.SetsockoptInt(found, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); err != nil {
		return unix.SetsockoptInt(found, unix.SOL_SOCKET, unix.SO_RCVBUF, size)
	}
	return nil
}

// ruleList is the repeatable -rule flag.
type ruleList []string

func (r *ruleList) String() string { return strings.Join(*r, "; ") }
func (r *ruleList) Set(v string) error {
	*r = append(*r, v)
	return nil
}
