package enrich

// How entries leave the process cache: exits seen by pidfd, the grace
// period of dead entries, eviction when it is full.

import (
	"time"

	"golang.org/x/sys/unix"
)

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
