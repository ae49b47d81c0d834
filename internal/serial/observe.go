package serial

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Observe reads /proc/<pid>/ns/* for every type and returns the set,
// allocating serials for namespaces seen for the first time (their records
// are on disk, and OnRecord has returned for them, before Observe returns).
// Types it cannot read are left zero. If no type can be read because the
// process is gone the error matches fs.ErrNotExist. It is safe for
// concurrent use, and the only place that reads /proc/<pid>/ns.
//
// All types are read relative to one open /proc/<pid> directory, so they
// come from the same process even if the pid is reused meanwhile.
func (r *Registry) Observe(pid int, ev Cause) (Set, error) {
	var set Set
	if pid <= 0 {
		return set, fmt.Errorf("serial: invalid pid %d", pid)
	}
	pfd, err := openPidDir(r.procRoot, pid)
	if err != nil {
		if isGoneErrno(err) {
			return set, &ProcessGoneError{PID: pid, Err: err}
		}
		return set, fmt.Errorf("serial: opening /proc/%d: %w", pid, err)
	}
	defer unix.Close(pfd)
	now := ev.Time
	if now.IsZero() {
		now = time.Now()
	}

	// Phase 1, no lock: keys.
	var keys [NumTypes]nsKey
	var fds [NumTypes]int
	var ents [NumTypes]*entry
	have, firstErr := r.readKeys(pfd, &keys, &fds)

	// Phase 2, locked: look up.
	misses := false
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		closeAll(&fds)
		return set, ErrClosed
	}
	for _, t := range Types {
		if !have.Has(t) {
			continue
		}
		if e := r.byKey[keys[t]]; e != nil {
			r.touchLocked(e, now)
			r.attributeLocked(e, t, &ev, pid)
			ents[t] = e
		} else {
			misses = true
		}
	}
	if !misses {
		r.trackLocked(pid, &ents)
	}
	r.mu.Unlock()
	for _, t := range Types {
		if ents[t] != nil {
			closeFD(fds[t])
			fds[t] = -1
		}
	}

	// Phase 3, slow path: register what is new.
	if misses {
		var wit witness
		if st, err := readStartTime(pfd); err == nil {
			wit = witness{pid, st}
		}
		c := &ev
		for _, t := range Types {
			if !have.Has(t) || ents[t] != nil {
				continue
			}
			fd := fds[t]
			fds[t] = -1
			if fd < 0 {
				if fd, err = openNS(pfd, nsRel[t]); err != nil {
					firstErr = cmpErr(firstErr, err)
					continue
				}
			}
			e, err := r.resolve(fd, t, c, pid, wit, now, 0)
			if err != nil {
				firstErr = cmpErr(firstErr, err)
				r.logErrLimited("cannot register a namespace", pid, t, err)
				continue
			}
			ents[t] = e
		}
		r.mu.Lock()
		r.trackLocked(pid, &ents)
		r.mu.Unlock()
	}
	if ev.Op == "unshare" || ev.Op == "clone" {
		// unshare(CLONE_NEWPID|CLONE_NEWTIME) moves only the children:
		// register the new namespaces with their creator now.
		for _, t := range [2]Type{PID, Time} {
			if ev.Types != 0 && !ev.Types.Has(t) {
				continue
			}
			if fd, err := openNS(pfd, nsChildRel[t]); err == nil {
				r.resolve(fd, t, &ev, pid, witness{}, now, 0)
			}
		}
	}

	return r.finish(pid, &ents, misses, firstErr)
}

// readKeys reads the key of each namespace of the process whose /proc
// directory is pfd into keys, and returns the types it could read and the
// first error. With kernel ids the namespace's fd stays open in fds (the
// slow path registers from it); fds is -1 elsewhere.
func (r *Registry) readKeys(pfd int, keys *[NumTypes]nsKey, fds *[NumTypes]int) (have TypeMask, firstErr error) {
	for _, t := range Types {
		fds[t] = -1
		if r.method == IDKernel {
			fd, err := openNS(pfd, nsRel[t])
			if err != nil {
				firstErr = cmpErr(firstErr, err)
				continue
			}
			id, err := nsID(fd)
			if err != nil {
				unix.Close(fd)
				firstErr = cmpErr(firstErr, err)
				continue
			}
			fds[t] = fd
			keys[t] = nsKey{t, id, 0}
		} else {
			// The pin guarantees that a known inode is still the same
			// namespace, so a readlink is enough to recognise it.
			ino, err := readlinkNS(pfd, nsRel[t])
			if err != nil {
				firstErr = cmpErr(firstErr, err)
				continue
			}
			keys[t] = nsKey{t, r.nsfsDev, ino}
		}
		have |= 1 << t
	}
	return have, firstErr
}

// finish waits until the records of ents are durable (and delivered, with
// OnRecord) and returns their references. A namespace whose record could
// not be made durable is left out of the set.
func (r *Registry) finish(pid int, ents *[NumTypes]*entry, misses bool, firstErr error) (Set, error) {
	var set Set
	var need uint64
	synced := r.synced.Load()
	for _, e := range ents {
		if e != nil && e.seq > synced {
			need = max(need, e.seq)
		}
	}
	if need > 0 {
		if err := r.waitDurable(need); err != nil {
			cut := r.synced.Load()
			for t, e := range ents {
				if e != nil && e.seq > cut {
					ents[t] = nil
				}
			}
			firstErr = err
			for t, e := range ents {
				if e != nil {
					set[t] = e.ref()
				}
			}
			return set, err
		}
	}
	if r.opts.OnRecord != nil {
		// Deliver what this call changed, and wait for the records of the
		// serials it returns if another goroutine is still delivering them.
		deliver := misses || r.hasPending.Load()
		for _, e := range ents {
			if e != nil && !e.published.Load() {
				deliver = true
			}
		}
		if deliver {
			r.deliver()
		}
	}
	n := 0
	for t, e := range ents {
		if e != nil {
			set[t] = e.ref()
			n++
		}
	}
	if n == 0 {
		if firstErr == nil || isGoneErrno(firstErr) {
			return set, &ProcessGoneError{PID: pid, Err: firstErr}
		}
		return set, fmt.Errorf("serial: reading /proc/%d/ns: %w", pid, firstErr)
	}
	return set, nil
}

// logErrLimited logs unexpected slow-path failures (EMFILE, a failed write)
// at most once a minute.
func (r *Registry) logErrLimited(msg string, pid int, t Type, err error) {
	if isGoneErrno(err) {
		return
	}
	now := time.Now().UnixNano()
	last := r.lastErrLog.Load()
	if now-last < int64(time.Minute) || !r.lastErrLog.CompareAndSwap(last, now) {
		return
	}
	r.log.Error("namespace registry: "+msg, "pid", pid, "type", t.String(), "error", err)
}

func cmpErr(first, err error) error {
	if first == nil {
		return err
	}
	return first
}

func closeAll(fds *[NumTypes]int) {
	for i, fd := range fds {
		closeFD(fd)
		fds[i] = -1
	}
}

// touchLocked records that e was seen at now.
func (r *Registry) touchLocked(e *entry, now time.Time) {
	e.obsGen = r.gen
	e.unheld = 0
	changed := false
	if e.rec.Gone != nil {
		// Only with kernel ids (pinned entries leave byKey when retired):
		// the namespace was held by something the sweep cannot see.
		e.rec.Gone = nil
		changed = true
		r.log.Info("namespace seen again after it was marked gone", "serial", e.rec.Serial, "type", e.rec.Type.String())
	}
	if now.After(e.rec.LastSeen.Time) {
		e.rec.LastSeen = MakeTime(now)
		if e.rec.LastSeen.Sub(e.lastEmit) >= r.opts.LastSeenEvery {
			changed = true
		}
	}
	if changed {
		r.writeRecLocked(e, false)
	}
}

// attributeLocked names the creator of a namespace first seen before the
// syscall that created it was processed: auditns reads /proc when it
// processes an event, so an event of a process that then called unshare
// (its execve, typically) already shows the new namespace. Only the types
// the syscall says it created (Cause.Types, required here) are attributed,
// and only when no creator is known.
func (r *Registry) attributeLocked(e *entry, t Type, c *Cause, pid int) {
	if e.rec.CreatedBy != nil || e.rec.IsInit || c.Op == "" || c.Op == "setns" || pid <= 0 || c.Types == 0 || !c.Types.Has(t) {
		return
	}
	cpid := c.PID
	if cpid == 0 {
		cpid = pid
	}
	e.rec.CreatedBy = &CreatedBy{Event: c.EventID, Op: c.Op, PID: cpid, Exe: c.Exe}
	r.writeRecLocked(e, true)
}

// trackLocked remembers which namespaces pid is in, for Exited.
func (r *Registry) trackLocked(pid int, ents *[NumTypes]*entry) {
	old, had := r.pids[pid]
	ps := pidState{gen: r.gen}
	for t, e := range ents {
		if e == nil {
			if had {
				ps.ents[t] = old.ents[t]
			}
			continue
		}
		ps.ents[t] = e
		if had && old.ents[t] == e {
			continue
		}
		e.members++
		if had && old.ents[t] != nil {
			r.leaveLocked(old.ents[t], time.Time{})
		}
	}
	r.pids[pid] = ps
}

// leaveLocked drops one member of e; it reports whether e became a
// candidate for retirement.
func (r *Registry) leaveLocked(e *entry, when time.Time) bool {
	if e.members > 0 {
		e.members--
	}
	if e.members > 0 || e.rec.IsInit || e.rec.Gone != nil {
		return false
	}
	if !when.IsZero() {
		e.lastExit = when
	}
	r.candidates[e] = struct{}{}
	return true
}

// resolve returns the entry of the namespace fd refers to (taking ownership
// of fd), registering it, its owning user namespace and its parent if they
// are new.
func (r *Registry) resolve(fd int, t Type, c *Cause, pid int, wit witness, now time.Time, depth int) (*entry, error) {
	key, st, err := r.keyOf(fd, t)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	r.mu.Lock()
	if e := r.byKey[key]; e != nil {
		r.touchLocked(e, now)
		r.attributeLocked(e, t, c, pid)
		r.mu.Unlock()
		unix.Close(fd)
		return e, nil
	}
	r.mu.Unlock()

	var owner, parent *entry
	if depth < 64 {
		rel := &Cause{EventID: c.EventID, Time: c.Time}
		if ufd, err := nsRelated(fd, nsGetUserns); err == nil {
			owner, _ = r.resolve(ufd, User, rel, 0, witness{}, now, depth+1)
		}
		if t == PID || t == User {
			if pfd, err := nsRelated(fd, nsGetParent); err == nil {
				parent, _ = r.resolve(pfd, t, rel, 0, witness{}, now, depth+1)
			}
		}
	}

	r.mu.Lock()
	if e := r.byKey[key]; e != nil { // registered meanwhile
		r.touchLocked(e, now)
		r.mu.Unlock()
		unix.Close(fd)
		return e, nil
	}
	e, err := r.createLocked(key, t, st.Ino, devString(st.Dev), owner, parent, c, pid, wit, now)
	if err != nil {
		r.mu.Unlock()
		unix.Close(fd)
		return nil, err
	}
	if r.method != IDKernel {
		e.fd = fd
		fd = -1
	}
	if pid == 0 {
		// Known only as an owner or parent: check soon whether anything
		// holds it (normally the namespaces it owns do).
		r.candidates[e] = struct{}{}
	}
	r.mu.Unlock()
	closeFD(fd)
	return e, nil
}

// Exited tells the registry that a process it observed has exited. When the
// last known member of a namespace exits, the namespace is checked (batched,
// after Options.SweepDelay) and retired if nothing holds it any more: gone
// is set, the record re-emitted and, with the pinned method, the fd released
// so that a later namespace with the same inode gets a new serial.
func (r *Registry) Exited(pid int, when time.Time) {
	if when.IsZero() {
		when = time.Now()
	}
	r.mu.Lock()
	ps, ok := r.pids[pid]
	if !ok || r.closed {
		r.mu.Unlock()
		return
	}
	delete(r.pids, pid)
	kick := false
	for _, e := range ps.ents {
		if e != nil && r.leaveLocked(e, when) {
			kick = true
		}
	}
	r.mu.Unlock()
	if kick {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// createLocked registers a new namespace under key, with the next serial,
// and writes its record (durable once waitDurable returns for e.seq).
func (r *Registry) createLocked(key nsKey, t Type, inum uint64, dev string, owner, parent *entry, c *Cause, pid int, wit witness, now time.Time) (*entry, error) {
	serial, err := r.allocLocked()
	if err != nil {
		return nil, err
	}
	ts := MakeTime(now)
	e := &entry{key: key, fd: -1, wit: wit, rec: Record{
		Schema: Schema, ID: r.bootID + "/" + strconv.FormatUint(serial, 10), Host: r.host,
		Type: t, Serial: serial, Inum: inum, Dev: dev, IDSrc: r.method,
		FirstSeen: ts, FirstEvent: EventRef(c.EventID), LastSeen: ts,
	}}
	if r.method == IDKernel {
		id := key.a
		e.rec.NsID = &id
	}
	if owner != nil {
		e.rec.OwnerUser = &SerialRef{owner.rec.Serial}
	}
	if parent != nil {
		e.rec.Parent = &SerialRef{parent.rec.Serial}
	}
	if c.Op != "" && c.Op != "setns" && pid > 0 && (c.Types == 0 || c.Types.Has(t)) {
		cpid := c.PID
		if cpid == 0 {
			cpid = pid
		}
		e.rec.CreatedBy = &CreatedBy{Event: c.EventID, Op: c.Op, PID: cpid, Exe: c.Exe}
	}
	e.obsGen = r.gen
	if r.opts.OnRecord == nil {
		e.published.Store(true)
	}
	if e.seq = r.writeRecLocked(e, true); e.seq == 0 {
		werr := r.writeErr
		if werr == nil {
			werr = errors.New("registry log is not open")
		}
		return nil, errNotDurable(r.dir, werr)
	}
	if n := len(r.pending); n > 0 && r.pending[n-1].rec.Serial == serial {
		r.pending[n-1].e = e
	}
	r.insertKey(e)
	r.setEntry(e)
	return e, nil
}
