package serial

import (
	"errors"
	"fmt"
	"time"
)

// Known is a namespace as the kernel-side source reports it: the kernel's
// 64-bit id and the nsfs inode number.
type Known struct {
	ID   uint64
	Inum uint64
}

// KnownSet is what the kernel-side source reports of one process's
// namespaces, indexed by Type.
type KnownSet struct {
	NS    [NumTypes]Known
	Owner [NumTypes]Known // the owning user namespace of each
	// ParentPID and ParentUser are the parents of the pid and user
	// namespaces; zero for the initial ones.
	ParentPID, ParentUser Known
}

// ErrNoKernelIDs is returned by Identify when the registry is not keyed by
// the kernel's namespace ids (Linux < 6.18): namespaces reported by id
// cannot be matched with pinned ones.
var ErrNoKernelIDs = errors.New("serial: the registry is not keyed by kernel namespace ids")

// Identify is Observe for namespaces the kernel reported itself (by id and
// inode, captured when the event happened): nothing is read from /proc, so
// it works for processes that are long gone. New namespaces get their
// serial, owner and parent (when the kernel reported them) and a record
// that is durable before Identify returns. pid is tracked as a member.
func (r *Registry) Identify(pid int, k *KnownSet, ev Cause) (Set, error) {
	if r.method != IDKernel {
		return Set{}, ErrNoKernelIDs
	}
	now := ev.Time
	if now.IsZero() {
		now = time.Now()
	}
	var ents [NumTypes]*entry
	misses := false
	var firstErr error
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return Set{}, ErrClosed
	}
	// The user namespace first: it owns the others, and registered as
	// their owner it would get no parent.
	for _, t := range identifyOrder {
		if k.NS[t].ID == 0 {
			continue
		}
		e := r.byKey[nsKey{t, k.NS[t].ID, 0}]
		if e != nil {
			r.touchLocked(e, now)
			r.attributeLocked(e, t, &ev, pid)
			ents[t] = e
			continue
		}
		misses = true
		rel := &Cause{EventID: ev.EventID, Time: ev.Time}
		owner := r.knownLocked(User, k.Owner[t], rel, now)
		var parent *entry
		switch t {
		case PID:
			parent = r.knownLocked(PID, k.ParentPID, rel, now)
		case User:
			parent = r.knownLocked(User, k.ParentUser, rel, now)
		}
		e, err := r.createLocked(nsKey{t, k.NS[t].ID, 0}, t, k.NS[t].Inum, devString(r.nsfsDev), owner, parent, &ev, pid, witness{}, now)
		if err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		ents[t] = e
	}
	r.trackLocked(pid, &ents)
	r.mu.Unlock()
	set, err := r.finish(pid, &ents, misses, firstErr)
	if err != nil && firstErr == nil {
		err = fmt.Errorf("serial: identifying the namespaces of pid %d: %w", pid, err)
	}
	return set, err
}

var identifyOrder = [NumTypes]Type{User, IPC, UTS, PID, Cgroup, Time, Net, Mnt}

// knownLocked returns the entry of an owner or parent namespace the kernel
// reported, registering it (without owner or parent of its own, which were
// not reported) if it is new; nil if k is zero or cannot be registered.
func (r *Registry) knownLocked(t Type, k Known, c *Cause, now time.Time) *entry {
	if k.ID == 0 {
		return nil
	}
	key := nsKey{t, k.ID, 0}
	if e := r.byKey[key]; e != nil {
		r.touchLocked(e, now)
		return e
	}
	e, err := r.createLocked(key, t, k.Inum, devString(r.nsfsDev), nil, nil, c, 0, witness{}, now)
	if err != nil {
		return nil
	}
	// Known only as an owner or parent: check soon whether anything
	// holds it (normally the namespaces it owns do).
	r.candidates[e] = struct{}{}
	return e
}

// ref is what an event carries for e.
func (e *entry) ref() Ref {
	r := Ref{Serial: e.rec.Serial, Inum: e.rec.Inum}
	if e.rec.NsID != nil {
		r.ID = *e.rec.NsID
	}
	return r
}
