// Package netlink is auditns's connection to the kernel's audit subsystem:
// the unicast daemon socket (auditns is the audit daemon: it sets the kernel's
// audit settings and loads rules) or the read-only multicast group (auditns
// reads beside auditd or journald), and the reader that moves records from
// the socket to the rest of the pipeline without ever waiting on it.
package netlink

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/rule"
)

// Mode is how auditns attaches to the kernel.
type Mode string

const (
	// Unicast makes auditns the audit daemon (the kernel's audit pid). It
	// needs CAP_AUDIT_CONTROL in the initial user and pid namespaces.
	Unicast Mode = "unicast"
	// Multicast reads the audit multicast group beside another daemon. It
	// needs CAP_AUDIT_READ and the initial network namespace, and it cannot
	// change kernel settings or rules.
	Multicast Mode = "multicast"
)

// FailureMode is the kernel's reaction to a critical audit error (auditctl -f).
type FailureMode = libaudit.FailureMode

// The kernel's failure modes. go-libaudit's own constants all equal 0 (an
// iota slip), so auditns defines them.
const (
	FailureSilent FailureMode = 0
	FailurePrintk FailureMode = 1
	FailurePanic  FailureMode = 2
)

// Defaults of Options (and of the configuration keys audit.backlog_limit and
// audit.receive_buffer).
const (
	// DefaultBacklogLimit: bursts of exec storms overflow the kernel's own
	// default of 64.
	DefaultBacklogLimit = 16384
	// DefaultReceiveBuffer absorbs a burst while the pipeline catches up.
	DefaultReceiveBuffer = 8 << 20
)

// Options configure a Conn. The zero value of each field means its default.
type Options struct {
	// Mode is Unicast (default) or Multicast.
	Mode Mode
	// BacklogLimit is the kernel's queue of records not yet read (auditctl
	// -b). Default DefaultBacklogLimit.
	BacklogLimit uint32
	// RateLimit caps records per second in the kernel (auditctl -r); 0 (the
	// default) is no limit.
	RateLimit uint32
	// BacklogWaitTime is how long, in jiffies, an audited process waits when
	// the backlog is full (auditctl --backlog_wait_time). The default, 0,
	// never stalls audited processes: the kernel drops and counts in "lost",
	// which auditns reports, and the reader drops too when the pipeline is
	// behind. Above 0 nothing is dropped: the reader waits for the pipeline
	// and the kernel holds audited processes (see Run).
	BacklogWaitTime int32
	// Failure is the kernel's failure mode (auditctl -f): FailureSilent,
	// FailurePrintk or FailurePanic. Set it explicitly; config defaults it to
	// printk.
	Failure FailureMode
	// Immutable locks the configuration until reboot (auditctl -e 2), applied
	// last. auditns then cannot remove its rules on exit.
	Immutable bool
	// Rules are the rules to load, in auditctl syntax, already parsed
	// (see ParseRules). Unicast only.
	Rules []Rule
	// ExcludeSelf adds a rule, first, that stops the kernel auditing
	// auditns's own syscalls, which would otherwise feed back into the
	// stream. Default true through config.
	ExcludeSelf bool
	// ReceiveBuffer is the socket receive buffer in bytes; default
	// DefaultReceiveBuffer.
	ReceiveBuffer int
	// SettingsFile, when set (unicast), is where the kernel settings Open
	// found are saved before it changes them, so that an instance that
	// starts after one that crashed (kill -9) restores the host's original
	// settings on exit rather than the crashed instance's.
	SettingsFile string
	// Logger receives start-up and shutdown lines; default slog.Default().
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.Mode == "" {
		o.Mode = Unicast
	}
	if o.BacklogLimit == 0 {
		o.BacklogLimit = DefaultBacklogLimit
	}
	if o.ReceiveBuffer == 0 {
		o.ReceiveBuffer = DefaultReceiveBuffer
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Conn is an open connection to the kernel's audit subsystem. Close restores
// the host: it removes the rules Conn added, puts back the enabled flag it
// found and releases the audit pid.
type Conn struct {
	opts    Options
	sock    *socket
	client  *libaudit.AuditClient
	control *libaudit.AuditClient // status queries, so replies never mix with events
	log     *slog.Logger

	initial *libaudit.AuditStatus
	scratch []byte      // the reader's gathering buffer, reused
	mm      *mmsgReader // the reader's receive slots, made on first use
	added   [][]byte    // wire rules to delete on Close, in load order
	// draining: the rules are gone and the reader waits for the pipeline
	// rather than drop what is left (RemoveRules).
	draining atomic.Bool
	closeMu  sync.Mutex
	closed   bool
}

// Open connects to the kernel. In unicast mode it becomes the audit daemon,
// applies the kernel settings and loads the rules; any failure undoes what
// was done so far.
func Open(opts Options) (*Conn, error) {
	opts.defaults()
	c := &Conn{opts: opts, log: opts.Logger}
	switch opts.Mode {
	case Unicast, Multicast:
	default:
		return nil, fmt.Errorf("invalid mode %q: expected unicast or multicast", opts.Mode)
	}
	if opts.Mode == Multicast && (len(opts.Rules) > 0 || opts.Immutable) {
		return nil, errors.New("multicast mode cannot load rules or change kernel settings: remove the rules file (audit.rules_file) or use mode unicast")
	}

	var err error
	c.control, err = libaudit.NewAuditClient(nil)
	if err != nil {
		return nil, err
	}
	c.initial, err = c.control.GetStatus()
	if err != nil {
		c.control.Close()
		return nil, fmt.Errorf("read kernel audit status: %w", err)
	}

	groups := uint32(0)
	if opts.Mode == Multicast {
		groups = libaudit.NetlinkGroupReadLog
	}
	c.sock, err = newSocket(groups, opts.ReceiveBuffer)
	if err != nil {
		c.control.Close()
		return nil, err
	}
	c.client = &libaudit.AuditClient{Netlink: c.sock}
	if opts.Mode == Unicast && opts.SettingsFile != "" {
		if err := c.saveOrRecoverSettings(); err != nil {
			c.Close()
			return nil, err
		}
	}
	if opts.Mode == Unicast {
		if err := c.becomeDaemon(); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *Conn) becomeDaemon() error {
	o := c.opts
	if c.initial.Enabled == 2 {
		return fmt.Errorf("%w: the kernel's audit configuration is immutable (auditctl -e 2) until reboot; %s", ErrUnicastRefused, useMulticast)
	}
	if c.initial.PID != 0 && c.initial.PID != uint32(os.Getpid()) && processExists(int(c.initial.PID)) {
		return fmt.Errorf("%w: another audit daemon (pid %d%s) holds the kernel's audit pid; stop it, or %s",
			ErrUnicastRefused, c.initial.PID, commOf(int(c.initial.PID)), useMulticast)
	}
	// The audit pid first, on the event socket (the kernel sends records to
	// the socket that set it): the kernel numbers the records of the
	// changes that follow, and with no daemon registered it would discard
	// them. Everything else goes on the control socket: a reply awaited on
	// the event socket skips the records that come before it, and those
	// records (CONFIG_CHANGE of the settings and rules) would be lost.
	steps := []struct {
		what string
		do   func() error
	}{
		{"become the audit daemon (set audit pid)", func() error { return c.client.SetPID(libaudit.WaitForReply) }},
		{"set backlog_limit", func() error { return c.control.SetBacklogLimit(o.BacklogLimit, libaudit.WaitForReply) }},
		{"set rate_limit", func() error { return c.control.SetRateLimit(o.RateLimit, libaudit.WaitForReply) }},
		{"set backlog_wait_time", func() error { return c.control.SetBacklogWaitTime(o.BacklogWaitTime, libaudit.WaitForReply) }},
		{"set failure_mode", func() error { return c.control.SetFailure(o.Failure, libaudit.WaitForReply) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return permissionHint(fmt.Errorf("%s: %w", s.what, err))
		}
	}
	rules := o.Rules
	if o.ExcludeSelf {
		self, err := selfExclusionRules(os.Getpid())
		if err != nil {
			return err
		}
		rules = append(self, rules...)
	}
	c.removeStaleSelfRules()
	for _, r := range rules {
		if err := c.control.AddRule(r.wire); err != nil {
			if err.Error() == "rule exists" {
				// Left by an instance that died before it could clean up,
				// or a duplicate line: adopt it so that Close removes it.
				c.log.Warn("audit rule already loaded; adopting it", "rule", r.Text, "source", r.Source)
			} else {
				return permissionHint(fmt.Errorf("load audit rule %s (%q): %w", r.Source, r.Text, err))
			}
		}
		c.added = append(c.added, r.wire)
	}
	if err := c.control.SetEnabled(true, libaudit.WaitForReply); err != nil {
		return permissionHint(fmt.Errorf("enable auditing: %w", err))
	}
	if o.Immutable {
		if err := c.control.SetImmutable(libaudit.WaitForReply); err != nil {
			return fmt.Errorf("make audit configuration immutable: %w", err)
		}
	}
	return nil
}

// removeStaleSelfRules deletes self-exclusion rules a crashed instance left.
func (c *Conn) removeStaleSelfRules() {
	rules, err := c.control.GetRules()
	if err != nil {
		return
	}
	for _, wire := range rules {
		text, err := rule.ToCommandLine(wire, false)
		if err != nil || !strings.Contains(text, "key="+SelfRuleKey) {
			continue
		}
		if err := c.control.DeleteRule(wire); err != nil {
			c.log.Warn("could not remove a stale auditns rule", "rule", text, "error", err)
			continue
		}
		c.log.Info("removed a rule left by an auditns that did not exit cleanly", "rule", text)
	}
}

// Initial is the kernel's audit status as Open found it.
func (c *Conn) Initial() libaudit.AuditStatus { return *c.initial }

// RulesLoaded is how many rules Conn loaded (including its own).
func (c *Conn) RulesLoaded() int { return len(c.added) }

// Status asks the kernel for its audit status on a separate control socket,
// so it is safe while the reader runs.
func (c *Conn) Status() (*libaudit.AuditStatus, error) {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return nil, errors.New("audit connection closed")
	}
	return c.control.GetStatus()
}

// RemoveRules removes the rules Conn added while the reader goes on, so that
// a clean stop can read what the kernel has queued to its end: no rule makes
// new events meanwhile. It reports whether there is an end to wait for: in
// multicast mode, and with immutable rules, there is none. Close removes
// whatever rules are left.
func (c *Conn) RemoveRules() (bool, error) {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed || c.opts.Mode != Unicast || c.client == nil || c.opts.Immutable {
		return false, nil
	}
	// The reader stops dropping first: the kernel's records of the rules'
	// removal are read too.
	c.draining.Store(true)
	err := c.removeRules()
	return err == nil, err
}

// removeRules deletes the rules Conn added, newest first, on the control
// socket: the event socket may be full of records whose replies would have
// to be skipped. Its caller holds closeMu.
func (c *Conn) removeRules() error {
	var errs []error
	var left [][]byte // rules not removed, for Close to try again
	for i := len(c.added) - 1; i >= 0; i-- {
		if err := c.control.DeleteRule(c.added[i]); err != nil {
			errs = append(errs, fmt.Errorf("remove audit rule: %w", err))
			left = append([][]byte{c.added[i]}, left...)
		}
	}
	if len(c.added) > 0 {
		c.log.Info("removed audit rules", "count", len(c.added)-len(errs))
	}
	c.added = left
	return errors.Join(errs...)
}

// Close removes the rules Conn added, restores the enabled flag it found and
// releases the audit pid. It is safe to call more than once and from any
// goroutine, but the reader must have stopped first.
func (c *Conn) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	if c.opts.Mode == Unicast && c.client != nil && !c.opts.Immutable {
		if err := c.removeRules(); err != nil {
			errs = append(errs, err)
		}
		if c.initial.Enabled == 0 {
			if err := c.control.SetEnabled(false, libaudit.WaitForReply); err != nil {
				errs = append(errs, fmt.Errorf("restore audit enabled=0: %w", err))
			}
		}
		// Put the kernel settings back as they were found.
		in := c.initial
		defer func() {
			if c.opts.SettingsFile != "" && len(errs) == 0 {
				os.Remove(c.opts.SettingsFile)
			}
		}()
		for _, err := range []error{
			c.control.SetBacklogLimit(in.BacklogLimit, libaudit.WaitForReply),
			c.control.SetRateLimit(in.RateLimit, libaudit.WaitForReply),
			c.control.SetBacklogWaitTime(int32(in.BacklogWaitTime), libaudit.WaitForReply),
			c.control.SetFailure(FailureMode(in.Failure), libaudit.WaitForReply),
		} {
			if err != nil {
				errs = append(errs, fmt.Errorf("restore kernel audit settings: %w", err))
			}
		}
	}
	if c.client != nil {
		// Close clears the audit pid when SetPID succeeded.
		if err := c.client.Close(); err != nil {
			errs = append(errs, fmt.Errorf("release audit pid: %w", err))
		}
	} else if c.sock != nil {
		c.sock.Close()
	}
	if c.control != nil {
		c.control.Close()
	}
	return errors.Join(errs...)
}

// savedSettings is the SettingsFile's content.
type savedSettings struct {
	PID    int                  `json:"pid"`
	Status libaudit.AuditStatus `json:"status"`
}

func (c *Conn) saveOrRecoverSettings() error {
	path := c.opts.SettingsFile
	if b, err := os.ReadFile(path); err == nil {
		var s savedSettings
		if json.Unmarshal(b, &s) == nil && s.PID != os.Getpid() && !processExists(s.PID) {
			c.log.Warn("a previous auditns did not exit cleanly; the kernel settings it found will be restored on exit",
				"pid", s.PID, "enabled", s.Status.Enabled, "backlog_limit", s.Status.BacklogLimit, "failure_mode", s.Status.Failure)
			saved := s.Status
			c.initial = &saved
		}
	}
	b, err := json.Marshal(savedSettings{PID: os.Getpid(), Status: *c.initial})
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save kernel settings (state_dir): %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("save kernel settings to %s: %w", path, err)
	}
	return nil
}

// ErrUnicastRefused is why unicast mode cannot work on this host (another
// audit daemon, an immutable configuration): a setting to change, not a
// failure to retry.
var ErrUnicastRefused = errors.New("mode: unicast is not possible on this host")

const useMulticast = "set mode: multicast (--mode multicast, AUDITNS_MODE=multicast) to read the audit multicast group beside it"

// commOf is ", NAME" for pid's command name, or "" when unknown.
func commOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return ", " + strings.TrimSpace(string(b))
}

func processExists(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

func permissionHint(err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w (unicast mode needs CAP_AUDIT_CONTROL in the initial user and pid namespaces)", err)
	}
	return err
}
