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
	"unsafe"

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

// watch marks entries dead as their processes exit.
func (c *procCache) watch() {
	defer close(c.done)
	evs := make([]unix.EpollEvent, 64)
	var exited []int
	for {
		c.mu.Lock()
		timeout := 10000
		c.polling = len(c.lazy) > 0
		if c.polling {
			left := lazyPeriod*time.Millisecond - time.Since(c.lazySince)
			timeout = max(1, int(left.Milliseconds())+1)
		}
		c.mu.Unlock()
		n, err := unix.EpollWait(c.epfd, evs, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			c.log.Error("process exit watcher stopped", "error", err)
			return
		}
		now := time.Now()
		exited = exited[:0]
		c.mu.Lock()
		for _, ev := range evs[:n] {
			fd := int(ev.Fd)
			if fd == -1 {
				c.mu.Unlock()
				return
			}
			if fd == -2 {
				var b [8]byte
				unix.Read(c.kick, b[:])
				continue
			}
			pid, ok := c.byFD[fd]
			if !ok {
				continue
			}
			delete(c.byFD, fd)
			unix.Close(fd) // also removes it from the epoll set
			if e := c.entries[pid]; e != nil && e.pidfd == fd {
				e.pidfd = -1
				c.diedLocked(pid, e, now)
				c.unpinLocked(e)
			}
			delete(c.forChildren, pid)
			exited = append(exited, pid)
		}
		if len(c.lazy) > 0 && now.Sub(c.lazySince) >= lazyPeriod*time.Millisecond {
			exited = c.reapLocked(now, exited)
		}
		if now.Sub(c.lastSweep) > time.Second {
			c.sweepLocked(now)
		}
		c.mu.Unlock()
		c.tellExited(exited, now)
	}
}

func (c *procCache) tellExited(pids []int, now time.Time) {
	if c.obs != nil {
		for _, pid := range pids {
			c.obs.Exited(pid, now)
		}
	}
}

// reapLocked polls the lazy entries: those exited are marked dead (their
// pids appended to exited), the others moved to the epoll set.
func (c *procCache) reapLocked(now time.Time, exited []int) []int {
	c.lazySince = now
	pfds := c.pollBuf[:0]
	live := c.lazy[:0]
	for _, e := range c.lazy {
		if e.pidfd >= 0 && !e.watched {
			live = append(live, e)
			pfds = append(pfds, unix.PollFd{Fd: int32(e.pidfd), Events: unix.POLLIN})
		}
	}
	clear(c.lazy[len(live):])
	c.lazy = live
	c.pollBuf = pfds
	if len(pfds) == 0 {
		return exited
	}
	if _, err := unix.Poll(pfds, 0); err != nil {
		return exited // EINTR, ENOMEM: next time
	}
	stay := live[:0]
	for i, e := range live {
		if pfds[i].Revents != 0 {
			exited = c.retireLocked(e, now, exited)
		} else if !c.watchLocked(e) {
			stay = append(stay, e)
		}
	}
	clear(live[len(stay):])
	c.lazy = stay
	return exited
}

// retireLocked marks e dead now, closing its pidfd, and appends its pid
// to exited.
func (c *procCache) retireLocked(e *procEntry, now time.Time, exited []int) []int {
	pid, ok := c.byFD[e.pidfd]
	delete(c.byFD, e.pidfd)
	unix.Close(e.pidfd)
	e.pidfd = -1
	e.deadAt = now
	c.unpinLocked(e)
	if ok {
		c.diedLocked(pid, e, now)
		delete(c.forChildren, pid)
		exited = append(exited, pid)
	}
	return exited
}

// diedLocked records that entry e of pid is dead since now, in the queue
// of dead entries (in order of death) that sweepLocked and makeRoomLocked
// take from.
func (c *procCache) diedLocked(pid int, e *procEntry, now time.Time) {
	e.deadAt = now
	c.dead = append(c.dead, deadRef{pid, e})
}

// watchLocked puts a live lazy entry's pidfd in the epoll set; the watcher
// then marks it dead when it exits. Where that fails (false) it stays lazy.
func (c *procCache) watchLocked(e *procEntry) bool {
	if unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, e.pidfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(e.pidfd)}) != nil {
		return false
	}
	e.watched = true
	return true
}

// sweepLocked forgets dead entries past their grace period: the oldest
// of the queue of dead entries, no scan of the cache.
func (c *procCache) sweepLocked(now time.Time) {
	if len(c.entries) < c.max/2 {
		return // (while there is room, they may answer later still)
	}
	c.lastSweep = now
	for len(c.dead) > 0 && now.Sub(c.dead[0].e.deadAt) > deadGrace {
		c.popDeadLocked()
	}
}

// popDeadLocked forgets the oldest dead entry (if it is still the entry of
// its pid: a pid's entry may have been replaced or evicted since).
func (c *procCache) popDeadLocked() {
	d := c.dead[0]
	c.dead[0] = deadRef{}
	c.dead = c.dead[1:]
	if c.entries[d.pid] == d.e {
		delete(c.entries, d.pid)
	}
	if len(c.dead) == 0 {
		c.dead = c.dead[:0:0] // let the array go
	}
}

// makeRoomLocked brings a full cache below its bound: it forgets the
// entries of the processes that exited first, and only when none is left,
// live ones (evictLocked).
func (c *procCache) makeRoomLocked(now time.Time) {
	c.sweepLocked(now)
	for len(c.entries) >= c.max && len(c.dead) > 0 {
		c.popDeadLocked()
	}
	if len(c.entries) >= c.max {
		c.evictLocked()
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
// trusted only if the pidfd's process is still alive after them.
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
		cause := c.cause(ev, op)
		cause.Types = serial.MaskOfNames(types)
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
		e.ns = set.NS()
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
	keep = true
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
		return e
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
	return e
}

// pidfdInfo is struct pidfd_info up to PIDFD_INFO_SIZE_VER0 (64 bytes,
// Linux 6.13), which every kernel with PIDFD_GET_INFO accepts.
type pidfdInfo struct {
	mask     uint64
	cgroupid uint64
	pid      uint32
	tgid     uint32
	ppid     uint32
	ids      [9]uint32 // ruid ... fsgid
	_        uint32
}

// pidfdGetInfo is PIDFD_GET_INFO for a struct of pidfdInfo's size.
const pidfdGetInfo = 0xc0000000 | unsafe.Sizeof(pidfdInfo{})<<16 | 0xff<<8 | 11

// cgroupID returns the id of pidfd's process's cgroup v2 cgroup, by
// PIDFD_GET_INFO; ok is false where the kernel cannot tell.
func (c *procCache) cgroupID(pidfd int) (id uint64, ok bool) {
	if !c.pidfdOK || c.noInfoIoctl || !c.cgroups.Wanted() {
		return 0, false
	}
	info := pidfdInfo{mask: unix.PIDFD_INFO_CGROUPID}
	_, _, errno := unix.RawSyscall(unix.SYS_IOCTL, uintptr(pidfd), pidfdGetInfo, uintptr(unsafe.Pointer(&info)))
	if errno == unix.ENOTTY || errno == unix.EINVAL {
		c.noInfoIoctl = true
	}
	if errno != 0 || info.mask&unix.PIDFD_INFO_CGROUPID == 0 {
		return 0, false
	}
	return info.cgroupid, true
}

// exited reports whether the process of pidfd has exited (a pidfd polls
// readable then).
func exited(pidfd int) bool {
	pfd := unix.PollFd{Fd: int32(pidfd), Events: unix.POLLIN}
	var zero unix.Timespec
	n, _, _ := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	return int(n) > 0
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

// sameAsParent returns the parent's namespaces when the new process pid
// (pidfd) is in every one of them, or nil. A child usually is (fork and
// exec keep namespaces), and comparing inode numbers costs a fraction of
// identifying namespaces through the registry (an open and an ioctl each).
// It is exact because the parent is alive: its namespaces are alive, so
// their inode numbers cannot have been given to other namespaces; the
// parent's pidfd is checked after the comparison. byPath reports that the
// comparison read /proc/<pid>/ns/* (the caller then checks that pidfd's
// process is still alive, i.e. that the links were its own).
func (c *procCache) sameAsParent(pid, pidfd, ppid int) (ns *event.NS, byPath bool) {
	c.mu.Lock()
	p := c.entries[ppid]
	var pns *event.NS
	pfd := -1
	if p != nil && p.pidfd >= 0 && p.ns != nil && c.forChildren[ppid].Op == "" {
		pns, pfd = p.ns, p.pidfd
	}
	c.mu.Unlock()
	if pns == nil {
		return nil, false
	}
	for i := range event.NSTypes {
		if pns.At(i).Serial == 0 {
			return nil, false
		}
	}
	fds := [8]int{-1, -1, -1, -1, -1, -1, -1, -1}
	same, known := false, false
	if c.pidfdOK && !c.noNSIoctl {
		same, known = c.sameByPidfd(pidfd, pns, &fds)
	}
	if !known {
		byPath = true
		same = c.sameByLink(pid, pns)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Under the lock the watcher cannot close the pidfd (and its number
	// cannot be reused) while it is polled.
	if same && (p.pidfd != pfd || exited(pfd)) {
		same = false // the parent exited meanwhile: not proof any more
	}
	if same && known && !p.pinned {
		c.pinLocked(p, &fds)
	}
	if known {
		closeFDs(fds[:])
	}
	if !same {
		return nil, byPath
	}
	return pns, byPath
}

// closeFDs closes the fds (-1: none) of fds, with one close_range when
// they are consecutive numbers (as fds opened in a row usually are): the
// range then holds no other fd.
func closeFDs(fds []int) {
	lo, hi, n := -1, -1, 0
	for _, fd := range fds {
		if fd < 0 {
			continue
		}
		if n == 0 || fd < lo {
			lo = fd
		}
		if fd > hi {
			hi = fd
		}
		n++
	}
	if n > 1 && hi-lo+1 == n {
		if _, _, errno := unix.RawSyscall(unix.SYS_CLOSE_RANGE, uintptr(lo), uintptr(hi), 0); errno == 0 {
			return
		}
	}
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// nsIoctl is PIDFD_GET_<type>_NAMESPACE, in event.NSTypes order.
var nsIoctl = [8]uintptr{
	0xff02, // ipc
	0xff0a, // uts
	0xff09, // user
	0xff05, // pid (the process's own, as /proc/<pid>/ns/pid)
	0xff01, // cgroup
	0xff07, // time (its own, as /proc/<pid>/ns/time)
	0xff04, // net
	0xff03, // mnt
}

// sameByPidfd compares the namespaces of pidfd's process with pns by
// opening each through the pidfd (an ioctl and an fstat; no /proc lookups,
// which cost more on a process never looked at). The opened fds are left in
// fds (-1: none) for the caller to pin or close: a namespace with an open fd
// keeps its nsfs inode, which the next child's ioctl then finds instead of
// making a new one. known is false if the kernel has not these ioctls.
func (c *procCache) sameByPidfd(pidfd int, pns *event.NS, fds *[8]int) (same, known bool) {
	for i, req := range nsIoctl {
		r, _, errno := unix.RawSyscall(unix.SYS_IOCTL, uintptr(pidfd), req, 0)
		if errno != 0 {
			if errno == unix.ENOTTY || errno == unix.EINVAL || errno == unix.EOPNOTSUPP {
				if errno != unix.EOPNOTSUPP {
					c.noNSIoctl = true
				}
				for j := 0; j < i; j++ {
					unix.Close(fds[j])
					fds[j] = -1
				}
				return false, false
			}
			return false, true // exited (ESRCH), not allowed, ...
		}
		fds[i] = int(r)
		var st unix.Stat_t
		if unix.Fstat(fds[i], &st) != nil || st.Ino != pns.At(i).Inum {
			return false, true
		}
	}
	return true, true
}

// sameByLink compares the namespaces of the process at pid with pns by
// reading its /proc/<pid>/ns links.
func (c *procCache) sameByLink(pid int, pns *event.NS) bool {
	var link [64]byte
	base := c.proc + "/" + strconv.Itoa(pid) + "/ns/"
	for i, t := range event.NSTypes {
		n, err := unix.Readlink(base+t, link[:])
		if err != nil {
			return false
		}
		inum, ok := parseNSLink(link[:n])
		if !ok || inum != pns.At(i).Inum {
			return false
		}
	}
	return true
}

// pinLocked makes p hold a pin on each of its namespaces, taking the fds
// from fds (set to -1 when taken): an fd of the same namespace, opened
// through a child in it. A pin keeps a namespace no longer than its member
// p is alive and in the cache (unpinLocked), so auditns never keeps a
// namespace alive that would otherwise be gone, save a parent that left
// its namespace without an audited setns or unshare.
func (c *procCache) pinLocked(p *procEntry, fds *[8]int) {
	fresh := 0
	for i := range fds {
		if c.pins[p.ns.At(i).Inum] == nil {
			fresh++
		}
	}
	if len(c.pins)+fresh > maxPins {
		return
	}
	for i := range fds {
		inum := p.ns.At(i).Inum
		if pin := c.pins[inum]; pin != nil {
			pin.refs++
			continue
		}
		c.pins[inum] = &nsPin{fd: fds[i], refs: 1}
		fds[i] = -1
	}
	p.pinned = true
}

// unpinLocked drops e's pins, closing those no other entry holds.
func (c *procCache) unpinLocked(e *procEntry) {
	if !e.pinned {
		return
	}
	e.pinned = false
	for i := range event.NSTypes {
		inum := e.ns.At(i).Inum
		if pin := c.pins[inum]; pin != nil {
			if pin.refs--; pin.refs <= 0 {
				unix.Close(pin.fd)
				delete(c.pins, inum)
			}
		}
	}
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
			e.pidfd = -1
		}
		c.unpinLocked(e)
		delete(c.entries, pid)
		if len(c.entries) < c.max {
			return
		}
	}
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
