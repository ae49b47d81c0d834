package enrich

// Whether a process is in its parent's namespaces, by pidfd ioctls or by
// /proc links, and the namespace files the cache holds open (pins).

import (
	"bytes"
	"strconv"
	"unsafe"

	"github.com/auditns/auditns/internal/event"
	"golang.org/x/sys/unix"
)

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
