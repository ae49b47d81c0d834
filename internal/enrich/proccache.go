package enrich

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/auditns/auditns/internal/container"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/serial"
)

// Observer reads and identifies the namespaces of a live process: the
// namespace registry (*serial.Registry).
type Observer interface {
	// Observe returns the namespaces of pid, with zero entries for types
	// it could not read.
	Observe(pid int, cause serial.Cause) (serial.Set, error)
	// Exited tells the registry that a process it observed is gone.
	Exited(pid int, when time.Time)
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
	// pinned: the entry holds a reference on c.pins for each of its
	// namespaces (see sameAsParent), dropped when it dies or is dropped.
	pinned bool
	// watched: pidfd is in the epoll set. Else the entry is in c.lazy:
	// its exit is noticed by polling (see lazyBatch).
	watched bool
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
	kick     int // eventfd that tells the watcher that c.lazy is not empty
	done     chan struct{}
	bootWall time.Time

	buf []byte

	// forChildren remembers, per parent pid, the unshare/setns that gave
	// its future children new pid or time namespaces, so that the creator
	// of those namespaces is known when a child is first observed.
	forChildren map[int]serial.Cause

	// pidfdOK: procfs is the kernel's own (c.proc is /proc), so what a
	// pidfd tells about a process is what /proc tells. False with a
	// substitute procfs (tests), where only files are read.
	pidfdOK bool
	// noNSIoctl, noInfoIoctl: the kernel answered that it does not know
	// PIDFD_GET_<type>_NAMESPACE (< 6.11) or PIDFD_GET_INFO (< 6.13); the
	// /proc files are used instead. Only the observing goroutine uses them.
	noNSIoctl, noInfoIoctl bool
	// pins hold an nsfs fd per namespace that a live entry's children are
	// compared with (sameAsParent), by inode number; guarded by mu.
	pins map[uint64]*nsPin
	// cgroups caches the container of a cgroup v2 cgroup by its id.
	cgroups container.Cache

	// lazy are live entries not (yet) in the epoll set; guarded by mu.
	lazy      []*procEntry
	pollBuf   []unix.PollFd
	lastSweep time.Time
	lazySince time.Time // when the oldest of c.lazy became lazy
	// dead are the entries marked dead, oldest first; guarded by mu.
	dead []deadRef
	// polling: the watcher waits at most lazyPeriod (else it is kicked
	// when an entry becomes lazy); guarded by mu.
	polling bool
}

// A process met through its parent (the registry not asked) is not put in
// the epoll set at once: most are short-lived (an exec storm's processes
// have one event each and exit within a millisecond), and adding a pidfd
// to the set, waking the watcher when it exits and taking it out again
// cost more than observing it. Such entries are in c.lazy, and their exit
// is noticed by a poll of them all, when lazyBatch have gathered (by the
// observer) or every lazyPeriod (by the watcher); one still alive then,
// or one that has a second event, is moved to the epoll set. An event of
// a lazy entry polls its pidfd before it is answered from the cache, so a
// lazy entry never answers for a process that has exited.
const (
	lazyBatch  = 64
	lazyPeriod = 100 // ms
)

type deadRef struct {
	pid int
	e   *procEntry
}

// nsPin is an open nsfs fd of a namespace, held while refs live entries
// (parents of new processes) are in it.
type nsPin struct {
	fd   int
	refs int
}

// maxPins bounds the namespaces pinned (and the fds that costs).
const maxPins = 256

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

		forChildren: make(map[int]serial.Cause),
		pins:        make(map[uint64]*nsPin),
		pidfdOK:     filepath.Clean(procRoot) == "/proc",
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
	c.kick, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(c.epfd)
		unix.Close(c.wake)
		return nil, err
	}
	unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, c.kick, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: -2})
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
	for inum, p := range c.pins {
		unix.Close(p.fd)
		delete(c.pins, inum)
	}
	unix.Close(c.epfd)
	unix.Close(c.wake)
	unix.Close(c.kick)
	return nil
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
		if e.watched {
			c.mu.Unlock()
			ev.NS, ev.Container, ev.NSSrc = e.ns, e.container, srcObserved
			return
		}
		// A lazy entry: alive? (then watched from now on)
		if !exited(e.pidfd) {
			c.watchLocked(e)
			c.mu.Unlock()
			ev.NS, ev.Container, ev.NSSrc = e.ns, e.container, srcObserved
			return
		}
		now := time.Now()
		gone := c.retireLocked(e, now, nil)
		c.mu.Unlock()
		c.tellExited(gone, now)
	} else {
		c.mu.Unlock()
	}

	op := ""
	if change != nil {
		op = change.Op
		if len(change.ChildrenOnly) > 0 {
			cause := c.cause(ev, op)
			cause.Types = serial.MaskOfNames(change.ChildrenOnly)
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
					if ct == t && !slices.Contains(change.ChildrenOnly, t) {
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
//
// What is read through the pidfd (namespaces by PIDFD_GET_<type>_NAMESPACE,
// the cgroup id by PIDFD_GET_INFO) is the pidfd's process by construction.
// What is read by /proc/<pid> path may belong to a newer process if the one
// of the pidfd exited and its pid was reused meanwhile: such reads are
// trusted only if the pidfd's process is still alive after them, so the
// reads stay here, in order, before that check.
func (c *procCache) observe(ev *event.Event, pid, ppid int, op string, types []string) *procEntry {
	r, _, errno := unix.RawSyscall(unix.SYS_PIDFD_OPEN, uintptr(pid), 0, 0)
	if errno != 0 {
		return nil
	}
	pidfd := int(r)
	keep := false
	defer func() {
		if !keep {
			unix.Close(pidfd)
		}
	}()
	// An exited process (a zombie not yet reaped) has no namespaces left
	// to read: the final check below would refuse whatever was read, so
	// read nothing (exec storms meet many such processes).
	if exited(pidfd) {
		return nil
	}
	if !c.startedBy(pid, ev.When()) {
		return nil
	}
	e := &procEntry{ppid: ppid, pidfd: pidfd}
	byPath := false // something was read by /proc/<pid> path
	cgid, haveCG := c.cgroupID(pidfd)
	if c.obs != nil && op == "" {
		var p bool
		e.ns, p = c.sameAsParent(pid, pidfd, ppid)
		byPath = byPath || p
	}
	asked := false // the registry was asked: it wants to hear of the exit
	if c.obs != nil && e.ns == nil {
		if exited(pidfd) {
			return nil // not worth the registry's opens and ioctls
		}
		byPath, asked = true, true
		e.ns = c.askRegistry(ev, pid, ppid, op, types)
	}
	learn := false // the container is cgroup cgid's, to cache once proven the process's
	if ct, ok := c.cgroups.Get(cgid, haveCG); ok {
		e.container = ct
	} else if data, err := c.read(pid, "cgroup"); err == nil {
		byPath = true
		e.container = container.FromCgroup(data)
		if !container.V2Only(data) {
			c.cgroups.SawHybrid()
		} else if haveCG {
			learn = true
		}
	}
	// If the process exited while we read by path, what we read may be
	// partial, or another process's.
	if byPath && exited(pidfd) {
		return nil
	}
	if learn {
		// Cached only if the process was in the same cgroup before and
		// after the read (the file is then cgroup cgid's).
		if again, ok := c.cgroupID(pidfd); ok && again == cgid {
			c.cgroups.Put(cgid, e.container)
		}
	}
	if e.ns == nil && c.obs != nil {
		return nil
	}
	keep = true
	c.store(pid, e, asked)
	return e
}

// askRegistry has the namespace registry read pid's namespaces, naming
// what made them (the event's syscall, or, for the first child after its
// parent's unshare(CLONE_NEWPID), the parent's, which is where the new pid
// namespace appears).
func (c *procCache) askRegistry(ev *event.Event, pid, ppid int, op string, types []string) *event.NS {
	cause := c.cause(ev, op)
	cause.Types = serial.MaskOfNames(types)
	if op == "" {
		c.mu.Lock()
		if pc, ok := c.forChildren[ppid]; ok {
			cause = pc
		}
		c.mu.Unlock()
	}
	set, err := c.obs.Observe(pid, cause)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Debug("read namespaces", "pid", pid, "error", err)
	}
	return set.NS()
}

// store caches e, which holds pid's pidfd from now on, and watches for the
// process's exit: in the epoll set when the registry was asked (it wants
// to hear of the exit at once), else lazily, by polling in batches.
func (c *procCache) store(pid int, e *procEntry, asked bool) {
	pidfd := e.pidfd
	c.mu.Lock()
	if old := c.entries[pid]; old != nil && old.pidfd >= 0 {
		delete(c.byFD, old.pidfd)
		unix.Close(old.pidfd)
		old.pidfd = -1
		c.unpinLocked(old)
	}
	if len(c.entries) >= c.max {
		c.makeRoomLocked(time.Now())
	}
	c.entries[pid] = e
	c.byFD[pidfd] = pid
	if !asked {
		now := time.Now()
		if len(c.lazy) == 0 {
			c.lazySince = now
		}
		c.lazy = append(c.lazy, e)
		var gone []int
		if len(c.lazy) >= lazyBatch {
			gone = c.reapLocked(now, nil)
		}
		kick := !c.polling
		c.polling = true
		c.mu.Unlock()
		if kick {
			unix.Write(c.kick, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		}
		c.tellExited(gone, now)
		return
	}
	e.watched = true
	c.mu.Unlock()
	if err := unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, pidfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(pidfd)}); err != nil {
		c.mu.Lock()
		if e.pidfd == pidfd { // not evicted meanwhile
			delete(c.byFD, pidfd)
			unix.Close(pidfd)
			e.pidfd = -1
			c.diedLocked(pid, e, time.Now())
			c.unpinLocked(e)
		}
		c.mu.Unlock()
	}
}

// The syscalls of observing a new process that never block (pidfd_open,
// poll without timeout, the pidfd ioctls, close_range) are made raw: a
// dozen per process, the scheduler's bookkeeping around each (and sysmon
// taking the P of a thread in a syscall) cost more than they. Reads of
// /proc files, which can wait for a lock (cgroup_mutex), are not; nor is
// fstat, whose syscall and struct differ between architectures.

func (c *procCache) cause(ev *event.Event, op string) serial.Cause {
	cause := serial.Cause{EventID: ev.Event.ID, Time: ev.When(), Op: op}
	if ev.Process != nil {
		cause.PID, cause.Exe = ev.Process.PID, ev.Process.Executable
	}
	return cause
}

// startedBy reports whether the process now at pid was started no later
// than the event (with a tick of slack), i.e. whether it can be the event's
// subject rather than a newer process that reused the pid. The caller holds
// a pidfd of the process, opened before the call.
func (c *procCache) startedBy(pid int, when time.Time) bool {
	if c.bootWall.IsZero() || when.IsZero() {
		return true
	}
	limit := when.Add(50 * time.Millisecond)
	// A process that exists now started no later than now: while the
	// event is less than the slack old (the usual case: auditns keeps up),
	// the start time need not be read. This is the test below with now
	// for the start time, on the same clock (bootWall + CLOCK_BOOTTIME),
	// and the start time is never later than now: it accepts nothing the
	// test below would refuse. (Not with a substitute procfs, whose stat
	// files the tests decide.)
	var ts unix.Timespec
	if c.pidfdOK && unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil &&
		!c.bootWall.Add(time.Duration(ts.Nano())).After(limit) {
		return true
	}
	// Not a substitute for this test, though it was considered: "the
	// process at pid is in all of its live parent's namespaces and
	// PIDFD_GET_INFO gives the event's ppid, so whether or not the pid was
	// reused the namespaces reported are the parent's, as they would be
	// (inherited) for a subject gone". The values may agree, but not what
	// they claim: if the pid was reused, the subject may have been made in
	// new namespaces by clone3 (invisible to audit) and be gone; its event
	// would then say "observed" for its parent's namespaces, where this
	// test makes it "inherited" (or "cached", from what was seen of it
	// before), which tells a reader that they were not seen on it.
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
	return !start.After(limit)
}

// read returns the contents of /proc/<pid>/<name> in c.buf (valid until
// the next read); name is a file made at once (stat, cgroup). Plain syscalls: an os.File would try to register the fd
// with the netpoller, for nothing.
func (c *procCache) read(pid int, name string) ([]byte, error) {
	path := c.proc + "/" + strconv.Itoa(pid) + "/" + name
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	c.buf = c.buf[:0]
	for {
		if len(c.buf) == cap(c.buf) {
			c.buf = append(c.buf, 0)[:len(c.buf)]
		}
		n, err := unix.Read(fd, c.buf[len(c.buf):cap(c.buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		short := n < cap(c.buf)-len(c.buf)
		c.buf = c.buf[:len(c.buf)+n]
		if short {
			// The files read here (stat, cgroup) are one seq_file record
			// (proc_single_show): a read returns all of it that fits, so
			// a short read is the end; no read for the EOF.
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
