package serial

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Retirement. A namespace is alive while a task is in it (its ns/<type>
// link, or pid_for_children / time_for_children), an nsfs bind mount
// (`ip netns add`) holds it in some live mount namespace, or a live
// namespace of the registry names it as owner or parent. The sweep looks for
// these holders in /proc; a namespace found unheld by two consecutive
// sweeps, and not observed since the first began, is retired. What the sweep
// cannot see (an nsfs fd held open by another process, a pidfd on one of a
// pid namespace's processes) can make it retire a live namespace early: that
// namespace then gets a second serial when it is next observed (a split,
// never a merge of two namespaces under one serial).

type inoKey struct {
	t   Type
	ino uint64
}

func (r *Registry) kickSweep() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Registry) sweeper() {
	defer r.wg.Done()
	delay := time.NewTimer(time.Hour)
	delay.Stop()
	full := time.NewTicker(r.opts.FullSweepEvery)
	defer full.Stop()
	// A failed write is retried (a whole rewrite) every second.
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	defer delay.Stop()
	pending := false
	arm := func() {
		if !pending {
			delay.Reset(r.opts.SweepDelay)
			pending = true
		}
	}
	for {
		select {
		case <-r.done:
			return
		case <-r.kick:
			arm()
		case <-delay.C:
			pending = false
			if r.sweep(false) {
				arm()
			}
		case <-full.C:
			if r.sweep(true) {
				arm()
			}
			r.maybeCompact()
		case <-retry.C:
			r.recoverWrites()
		}
	}
}

// sweep checks the candidates (all live namespaces with full) and retires
// those that nothing holds. It reports whether candidates wait for a
// confirming sweep. The /proc scan runs without the lock: what Observe
// sees meanwhile is told apart by the sweep's generation.
func (r *Registry) sweep(full bool) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.gen++
	gen := r.gen
	cands := r.sweepCandidatesLocked(full)
	if len(cands) == 0 && !full {
		r.mu.Unlock()
		return false
	}
	var mask TypeMask
	want := make(map[inoKey]bool, len(cands))
	for _, e := range cands {
		mask |= 1 << e.rec.Type
		want[inoKey{e.rec.Type, e.rec.Inum}] = true
	}
	r.mu.Unlock()

	held, live, unreadable := r.scan(mask, want, full)
	now := time.Now()

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.holdUnreadableLocked(held, unreadable)
	again, release, need := r.judgeLocked(cands, gen, held, r.referencedLocked(), now)
	if full && r.forgetExitedLocked(gen, live) {
		again = true
	}
	r.mu.Unlock()
	r.releaseWhenDurable(release, need)
	r.deliver()
	return again
}

// sweepCandidatesLocked returns the entries a sweep checks: every live
// namespace but the initial ones with full, else the candidates (from
// which it removes those retired meanwhile).
func (r *Registry) sweepCandidatesLocked(full bool) []*entry {
	var cands []*entry
	if full {
		for _, e := range r.entries {
			if e != nil && !e.rec.IsInit && e.rec.Gone == nil {
				cands = append(cands, e)
			}
		}
		return cands
	}
	for e := range r.candidates {
		if e.rec.IsInit || e.rec.Gone != nil {
			delete(r.candidates, e)
			continue
		}
		cands = append(cands, e)
	}
	return cands
}

// referencedLocked returns the serials a live record names as its owner
// or parent: those namespaces are held by their children.
func (r *Registry) referencedLocked() map[uint64]bool {
	ref := map[uint64]bool{}
	for _, e := range r.entries {
		if e != nil && e.rec.Gone == nil {
			if e.rec.OwnerUser != nil {
				ref[e.rec.OwnerUser.Serial] = true
			}
			if e.rec.Parent != nil {
				ref[e.rec.Parent.Serial] = true
			}
		}
	}
	return ref
}

// holdUnreadableLocked adds to held the namespaces of tracked members whose
// links the scan could not read (EACCES): they still hold them as far as
// the registry knows.
func (r *Registry) holdUnreadableLocked(held map[inoKey]bool, unreadable map[int]bool) {
	for pid := range unreadable {
		if ps, ok := r.pids[pid]; ok {
			for _, e := range ps.ents {
				if e != nil {
					held[inoKey{e.rec.Type, e.rec.Inum}] = true
				}
			}
		}
	}
}

// judgeLocked decides each candidate of the sweep of generation gen: alive
// (observed during the scan, held, or referenced), unheld once (checked
// again), or unheld twice and retired. It returns whether a confirming
// sweep is due, the pinned fds of the retired namespaces and the sequence
// of the last record that retired one.
func (r *Registry) judgeLocked(cands []*entry, gen uint64, held map[inoKey]bool, ref map[uint64]bool, now time.Time) (again bool, release []int, need uint64) {
	for _, e := range cands {
		if e.rec.Gone != nil {
			delete(r.candidates, e)
			continue
		}
		if e.obsGen >= gen {
			// Observed while the scan ran: alive.
			e.unheld = 0
			if e.members == 0 {
				r.candidates[e] = struct{}{}
				again = true
			} else {
				delete(r.candidates, e)
			}
			continue
		}
		if held[inoKey{e.rec.Type, e.rec.Inum}] || ref[e.rec.Serial] {
			e.unheld = 0
			delete(r.candidates, e)
			continue
		}
		e.unheld++
		if e.unheld < 2 {
			r.candidates[e] = struct{}{}
			again = true
			continue
		}
		delete(r.candidates, e)
		fd, seq := r.retireLocked(e, now)
		if fd >= 0 {
			release = append(release, fd)
		}
		need = max(need, seq)
		again = true // owners and parents may follow
	}
	return again, release, need
}

// forgetExitedLocked drops the tracked processes a full sweep of
// generation gen found gone, and reports whether a namespace lost its last
// known member (a candidate for the next sweep).
func (r *Registry) forgetExitedLocked(gen uint64, live map[int]bool) bool {
	again := false
	for pid, ps := range r.pids {
		if ps.gen < gen && !live[pid] {
			delete(r.pids, pid)
			for _, e := range ps.ents {
				if e != nil && r.leaveLocked(e, time.Time{}) {
					again = true
				}
			}
		}
	}
	return again
}

// releaseWhenDurable closes the pins of retired namespaces once the record
// of sequence need, which says they are gone, is on disk: until then a
// restart could not know the inodes are free for reuse. If it cannot be
// made durable the fds are kept, as orphans, until Close.
func (r *Registry) releaseWhenDurable(release []int, need uint64) {
	if len(release) == 0 {
		return
	}
	if err := r.waitDurable(need); err != nil {
		r.mu.Lock()
		r.orphanFDs = append(r.orphanFDs, release...)
		r.mu.Unlock()
		return
	}
	for _, fd := range release {
		unix.Close(fd)
	}
}

// retireLocked marks e gone and returns its pinned fd (to close once the
// record is durable) and the sequence of that record.
func (r *Registry) retireLocked(e *entry, now time.Time) (int, uint64) {
	g := now
	if !e.lastExit.IsZero() && !e.lastExit.After(now) && !e.lastExit.Before(e.rec.LastSeen.Time) {
		g = e.lastExit // the exit of its last known member
	}
	gt := MakeTime(g)
	e.rec.Gone = &gt
	fd := e.fd
	e.fd = -1
	if r.method != IDKernel && e.keyed {
		// Forget the inode: a later namespace with it gets a new serial.
		delete(r.byKey, e.key)
		e.keyed = false
	}
	e.wit = witness{}
	seq := r.writeRecLocked(e, true)
	for _, ref := range []*SerialRef{e.rec.OwnerUser, e.rec.Parent} {
		if ref == nil || ref.Serial >= uint64(len(r.entries)) {
			continue
		}
		if p := r.entries[ref.Serial]; p != nil && !p.rec.IsInit && p.rec.Gone == nil && p.members == 0 {
			r.candidates[p] = struct{}{}
		}
	}
	return fd, seq
}

// scan looks in /proc for the holders of the wanted (type, inode) pairs:
// every process's ns links (and, if still needed, every thread's, and the
// nsfs bind mounts of every live mount namespace). With full it also
// returns the set of live pids.
func (r *Registry) scan(mask TypeMask, want map[inoKey]bool, full bool) (held map[inoKey]bool, live, unreadable map[int]bool) {
	held = map[inoKey]bool{}
	live = map[int]bool{}
	unreadable = map[int]bool{}
	remaining := len(want)
	mark := func(t Type, ino uint64) {
		k := inoKey{t, ino}
		if want[k] && !held[k] {
			held[k] = true
			remaining--
		}
	}
	readLinks := func(pid, pfd int) {
		for _, t := range Types {
			if !mask.Has(t) {
				continue
			}
			if ino, err := readlinkNS(pfd, nsRel[t]); err == nil {
				mark(t, ino)
			} else if !isGoneErrno(err) {
				unreadable[pid] = true
			}
			if rel, ok := nsChildRel[t]; ok {
				if ino, err := readlinkNS(pfd, rel); err == nil {
					mark(t, ino)
				}
			}
		}
	}
	pids := readPids(r.procRoot)
	mntPid := map[uint64]int{}
	for _, pid := range pids {
		live[pid] = true
		if remaining == 0 && !full {
			continue
		}
		pfd, err := openPidDir(r.procRoot, pid)
		if err != nil {
			continue
		}
		readLinks(pid, pfd)
		if ino, err := readlinkNS(pfd, nsRel[Mnt]); err == nil {
			if _, ok := mntPid[ino]; !ok {
				mntPid[ino] = pid
			}
		}
		unix.Close(pfd)
	}
	if remaining == 0 {
		return
	}
	// Threads can be in other namespaces than their process (setns).
	for _, pid := range pids {
		if remaining == 0 {
			break
		}
		taskDir := filepath.Join(r.procRoot, strconv.Itoa(pid), "task")
		for _, tid := range readPids(taskDir) {
			if tid == pid {
				continue
			}
			pfd, err := openPidDir(taskDir, tid)
			if err != nil {
				continue
			}
			readLinks(pid, pfd)
			unix.Close(pfd)
		}
	}
	// nsfs bind mounts, in every mount namespace that has a live process.
	for _, pid := range mntPid {
		if remaining == 0 {
			break
		}
		f, err := os.Open(filepath.Join(r.procRoot, strconv.Itoa(pid), "mountinfo"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if t, ino, ok := parseNsfsMount(sc.Text()); ok {
				mark(t, ino)
			}
		}
		f.Close()
	}
	return
}

// parseNsfsMount recognises a mountinfo line of an nsfs bind mount, whose
// root field is "net:[4026532281]".
func parseNsfsMount(line string) (Type, uint64, bool) {
	i := strings.Index(line, " - ")
	if i < 0 {
		return 0, 0, false
	}
	if post := line[i+3:]; !strings.HasPrefix(post, "nsfs ") {
		return 0, 0, false
	}
	f := strings.Fields(line[:i])
	if len(f) < 4 {
		return 0, 0, false
	}
	root := f[3]
	c := strings.IndexByte(root, ':')
	if c < 0 {
		return 0, 0, false
	}
	t, ok := ParseType(root[:c])
	if !ok {
		return 0, 0, false
	}
	ino, ok := parseNSLink([]byte(root))
	return t, ino, ok
}

// readPids lists the numeric entries of dir.
func readPids(dir string) []int {
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	out := make([]int, 0, len(names))
	for _, n := range names {
		if n == "" || n[0] < '0' || n[0] > '9' {
			continue
		}
		if pid, err := strconv.Atoi(n); err == nil {
			out = append(out, pid)
		}
	}
	return out
}
