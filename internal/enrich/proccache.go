package enrich

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/auditns/auditns/internal/event"
)

// Observer reads and identifies the namespaces of a live process. The
// namespace registry (serial.Registry) implements it through a small
// adapter, so enrich needs nothing else from it.
type Observer interface {
	// Observe returns the namespaces of pid, in event.NSTypes order, with
	// zero entries for types it could not read.
	Observe(pid int, cause Cause) ([8]event.NSRef, error)
	// Exited tells the registry that a process it observed is gone.
	Exited(pid int, when time.Time)
}

// Cause is the event on whose account namespaces are observed: it names
// the creator of namespaces seen for the first time.
type Cause struct {
	EventID string
	Time    time.Time
	Op      string // "unshare", "setns", "clone" when the event created them
	// Types are the namespace types the syscall created (from its flags);
	// nil means any type new in this observation.
	Types []string
	PID   int
	Exe   string
}

// Values of ns_src.
const (
	srcObserved  = "observed"
	srcCached    = "cached"
	srcInherited = "inherited"
	srcUnknown   = "unknown"
)

// procEntry is what is known about one live or recently exited process.
// ns and container are shared by every event of the process and never
// mutated once published: a change replaces them.
type procEntry struct {
	ppid      int
	ns        *event.NS
	container *event.Container
	pidfd     int // -1 once the process has exited
	deadAt    time.Time
}

// procCache remembers each process's namespaces and container so that
// events of a known process cost no /proc reads. Entries are kept honest
// without polling: a pidfd per process sits in an epoll set, and a watcher
// goroutine marks the entry dead the moment the process exits, so a pid that
// is reused never inherits the old process's namespaces. Dead entries stay a
// while to answer late events of short-lived processes (ns_src "cached").
type procCache struct {
	mu      sync.Mutex
	entries map[int]*procEntry
	byFD    map[int]int // pidfd → pid
	max     int
	proc    string
	obs     Observer
	log     *slog.Logger

	epfd     int
	wake     int // eventfd that stops the watcher
	done     chan struct{}
	bootWall time.Time

	hits, misses atomic.Uint64
	buf          []byte

	// forChildren remembers, per parent pid, the unshare/setns that gave
	// its future children new pid or time namespaces, so that the creator
	// of those namespaces is known when a child is first observed.
	forChildren map[int]Cause
}

// deadGrace is how long an exited process's entry answers late events.
const deadGrace = 30 * time.Second

func newProcCache(procRoot string, max int, obs Observer, log *slog.Logger) (*procCache, error) {
	c := &procCache{
		entries: make(map[int]*procEntry),
		byFD:    make(map[int]int),
		max:     max,
		proc:    procRoot,
		obs:     obs,
		log:     log,
		done:    make(chan struct{}),
		buf:     make([]byte, 0, 4096),

		forChildren: make(map[int]Cause),
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err == nil {
		c.bootWall = time.Now().Add(-time.Duration(ts.Nano()))
	}
	var err error
	c.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	c.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(c.epfd)
		return nil, err
	}
	unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, c.wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1})
	go c.watch()
	return c, nil
}

func (c *procCache) close() error {
	var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}
	unix.Write(c.wake, one)
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	for fd := range c.byFD {
		unix.Close(fd)
	}
	c.byFD = map[int]int{}
	unix.Close(c.epfd)
	unix.Close(c.wake)
	return nil
}

func (c *procCache) stats() (uint64, uint64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits.Load(), c.misses.Load(), len(c.entries)
}

// watch marks entries dead as their processes exit.
func (c *procCache) watch() {
	defer close(c.done)
	evs := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(c.epfd, evs, 10000)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			c.log.Error("process exit watcher stopped", "error", err)
			return
		}
		now := time.Now()
		var exited []int
		c.mu.Lock()
		for _, ev := range evs[:n] {
			fd := int(ev.Fd)
			if fd == -1 {
				c.mu.Unlock()
				return
			}
			pid, ok := c.byFD[fd]
			if !ok {
				continue
			}
			delete(c.byFD, fd)
			unix.Close(fd) // also removes it from the epoll set
			if e := c.entries[pid]; e != nil && e.pidfd == fd {
				e.pidfd = -1
				e.deadAt = now
			}
			delete(c.forChildren, pid)
			exited = append(exited, pid)
		}
		c.sweepLocked(now)
		c.mu.Unlock()
		if c.obs != nil {
			for _, pid := range exited {
				c.obs.Exited(pid, now)
			}
		}
	}
}

// sweepLocked forgets dead entries past their grace period.
func (c *procCache) sweepLocked(now time.Time) {
	if len(c.entries) < c.max/2 {
		return
	}
	for pid, e := range c.entries {
		if e.pidfd < 0 && now.Sub(e.deadAt) > deadGrace {
			delete(c.entries, pid)
		}
	}
}

// annotate sets ev.NS, ev.NSSrc and ev.Container for the subject pid.
func (c *procCache) annotate(ev *event.Event, pid, ppid int, change *event.NSChange) {
	if change != nil && change.Op == "clone" {
		// The caller keeps its namespaces; the child (the return value)
		// has the new ones: observe it now, naming this event its creator.
		if child := int(ev.Syscall.Exit); child > 0 {
			c.observe(ev, child, pid, change.Op, change.Types)
		}
		change = nil
	}
	c.mu.Lock()
	e := c.entries[pid]
	if change == nil && e != nil && e.pidfd >= 0 && (ppid == 0 || e.ppid == ppid) {
		c.mu.Unlock()
		c.hits.Add(1)
		ev.NS, ev.Container, ev.NSSrc = e.ns, e.container, srcObserved
		return
	}
	c.mu.Unlock()
	c.misses.Add(1)

	op := ""
	if change != nil {
		op = change.Op
		if len(change.ChildrenOnly) > 0 {
			cause := c.cause(ev, op)
			cause.Types = change.ChildrenOnly
			c.mu.Lock()
			c.forChildren[pid] = cause
			c.mu.Unlock()
		}
	}
	var types []string
	if change != nil {
		types = change.Types
	}
	if fresh := c.observe(ev, pid, ppid, op, types); fresh != nil {
		if change != nil && len(change.Types) == 0 && e != nil && e.ns != nil {
			// setns with nstype 0: name the types that actually changed.
			change.Types = diffTypes(e.ns, fresh.ns)
		}
		ev.NS, ev.Container, ev.NSSrc = fresh.ns, fresh.container, srcObserved
		return
	}

	// The process is gone (or is no longer the subject of this event).
	c.mu.Lock()
	if e != nil && e.ns != nil && (ppid == 0 || e.ppid == ppid) && change == nil {
		ev.NS, ev.Container, ev.NSSrc = e.ns, e.container, srcCached
		c.mu.Unlock()
		return
	}
	p := c.entries[ppid]
	c.mu.Unlock()
	if p == nil && ppid > 1 {
		// A short-lived child of a process auditns has not met yet: its
		// parent, alive, tells what it was born into.
		p = c.observe(ev, ppid, 0, "", nil)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ppid > 0 && p != nil && p.ns != nil {
		ns := p.ns
		if change != nil && len(change.Types) > 0 {
			// What the process changed cannot be known from its parent.
			cp := *ns
			for i, t := range event.NSTypes {
				for _, ct := range change.Types {
					if ct == t && !contains(change.ChildrenOnly, t) {
						*cp.At(i) = event.NSRef{}
					}
				}
			}
			ns = &cp
		}
		ev.NS, ev.Container, ev.NSSrc = ns, p.container, srcInherited
		return
	}
	ev.NSSrc = srcUnknown
}

// observe reads a live process's namespaces and container and caches them
// under pid. It returns nil when the process is gone or started after the
// event (its pid was reused): never a wrong observed value.
func (c *procCache) observe(ev *event.Event, pid, ppid int, op string, types []string) *procEntry {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	keep := false
	defer func() {
		if !keep {
			unix.Close(pidfd)
		}
	}()
	if !c.startedBy(pid, ev.Event.Created) {
		return nil
	}
	e := &procEntry{ppid: ppid, pidfd: pidfd}
	if c.obs != nil && op == "" {
		e.ns = c.sameAsParent(pid, ppid)
	}
	if c.obs != nil && e.ns == nil {
		cause := c.cause(ev, op)
		cause.Types = types
		if op == "" {
			c.mu.Lock()
			if pc, ok := c.forChildren[ppid]; ok {
				// The first child after its parent's unshare(CLONE_NEWPID)
				// is where the new pid namespace appears.
				cause = pc
			}
			c.mu.Unlock()
		}
		set, err := c.obs.Observe(pid, cause)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Debug("read namespaces", "pid", pid, "error", err)
		}
		ns := &event.NS{}
		any := false
		for i := range set {
			*ns.At(i) = set[i]
			any = any || set[i].Serial != 0
		}
		if any {
			e.ns = ns
		}
	}
	if data, err := c.read(pid, "cgroup"); err == nil {
		e.container = containerFromCgroup(data)
	}
	// If the process exited while we read, what we read may be partial.
	pfd := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	if n, _ := unix.Poll(pfd, 0); n > 0 {
		return nil
	}
	if e.ns == nil && c.obs != nil {
		return nil
	}
	c.mu.Lock()
	if old := c.entries[pid]; old != nil && old.pidfd >= 0 {
		delete(c.byFD, old.pidfd)
		unix.Close(old.pidfd)
	}
	if len(c.entries) >= c.max {
		c.sweepLocked(time.Now())
		c.evictLocked()
	}
	c.entries[pid] = e
	c.byFD[pidfd] = pid
	c.mu.Unlock()
	if err := unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, pidfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(pidfd)}); err != nil {
		c.mu.Lock()
		delete(c.byFD, pidfd)
		e.pidfd = -1
		e.deadAt = time.Now()
		c.mu.Unlock()
		return e
	}
	keep = true
	return e
}

func (c *procCache) cause(ev *event.Event, op string) Cause {
	cause := Cause{EventID: ev.Event.ID, Time: ev.Event.Created, Op: op}
	if ev.Process != nil {
		cause.PID, cause.Exe = ev.Process.PID, ev.Process.Executable
	}
	return cause
}

// sameAsParent returns the parent's namespaces when the new process pid
// is in every one of them, or nil. A child usually is (fork and exec keep
// namespaces), and comparing inode numbers (readlink of /proc/PID/ns/*)
// costs a fraction of identifying namespaces through the registry (an open
// and an ioctl each). It is exact because the parent is alive: its
// namespaces are alive, so their inode numbers cannot have been given to
// other namespaces; the parent's pidfd is checked after the comparison.
func (c *procCache) sameAsParent(pid, ppid int) *event.NS {
	c.mu.Lock()
	p := c.entries[ppid]
	var pns *event.NS
	pfd := -1
	if p != nil && p.pidfd >= 0 && p.ns != nil && c.forChildren[ppid].Op == "" {
		pns, pfd = p.ns, p.pidfd
	}
	c.mu.Unlock()
	if pns == nil {
		return nil
	}
	var link [64]byte
	base := c.proc + "/" + strconv.Itoa(pid) + "/ns/"
	for i, t := range event.NSTypes {
		ref := pns.At(i)
		if ref.Serial == 0 {
			return nil
		}
		n, err := unix.Readlink(base+t, link[:])
		if err != nil {
			return nil
		}
		inum, ok := parseNSLink(link[:n])
		if !ok || inum != ref.Inum {
			return nil
		}
	}
	// Under the lock the watcher cannot close the pidfd (and its number
	// cannot be reused) while it is polled.
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.pidfd != pfd {
		return nil
	}
	pfds := []unix.PollFd{{Fd: int32(pfd), Events: unix.POLLIN}}
	if n, _ := unix.Poll(pfds, 0); n > 0 {
		return nil // the parent exited meanwhile: not proof any more
	}
	return pns
}

// parseNSLink reads the inode number of an nsfs link, "net:[4026531833]".
func parseNSLink(b []byte) (uint64, bool) {
	i := bytes.IndexByte(b, '[')
	if i < 0 || len(b) < i+3 || b[len(b)-1] != ']' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[i+1:len(b)-1]), 10, 64)
	return n, err == nil
}

// evictLocked makes room when the cache is full of live processes: it
// forgets one (its next event is observed again, at the cost of /proc reads).
func (c *procCache) evictLocked() {
	for pid, e := range c.entries {
		if e.pidfd >= 0 {
			delete(c.byFD, e.pidfd)
			unix.Close(e.pidfd)
		}
		delete(c.entries, pid)
		if len(c.entries) < c.max {
			return
		}
	}
}

// startedBy reports whether the process now at pid was started no later
// than the event (with a tick of slack), i.e. whether it can be the event's
// subject rather than a newer process that reused the pid.
func (c *procCache) startedBy(pid int, when time.Time) bool {
	if c.bootWall.IsZero() || when.IsZero() {
		return true
	}
	data, err := c.read(pid, "stat")
	if err != nil {
		return false
	}
	// Field 22 (starttime) counts clock ticks (USER_HZ=100) since boot; the
	// command name (field 2) may hold spaces and parentheses, so count
	// from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return false
	}
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 20 {
		return false
	}
	ticks, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return false
	}
	start := c.bootWall.Add(time.Duration(ticks) * 10 * time.Millisecond)
	return !start.After(when.Add(50 * time.Millisecond))
}

func (c *procCache) read(pid int, name string) ([]byte, error) {
	path := c.proc + "/" + strconv.Itoa(pid) + "/" + name
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c.buf = c.buf[:0]
	for {
		if len(c.buf) == cap(c.buf) {
			c.buf = append(c.buf, 0)[:len(c.buf)]
		}
		n, err := f.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		if err != nil || n == 0 {
			break
		}
	}
	return c.buf, nil
}

func diffTypes(a, b *event.NS) []string {
	var out []string
	for i, t := range event.NSTypes {
		if *a.At(i) != *b.At(i) {
			out = append(out, t)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
