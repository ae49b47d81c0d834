package serial

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// loadState reads registry.log; another boot's file is kept as history.
func (r *Registry) loadState() (*logState, error) {
	path := filepath.Join(r.dir, logName)
	st, err := readLog(path)
	if err != nil {
		return nil, fmt.Errorf("state_dir %s: reading %s: %w", r.dir, logName, err)
	}
	if !st.exists {
		return st, nil
	}
	if st.version > formatVersion {
		return nil, fmt.Errorf("state_dir %s: %s has format version %d, newer than this auditns (%d)", r.dir, logName, st.version, formatVersion)
	}
	if st.bootID != r.bootID {
		target := "registry-unknown-boot-" + nowStamp() + ".log"
		if validBootID(st.bootID) {
			target = historyName(st.bootID)
		}
		name, err := keepAside(r.dir, logName, target)
		if err != nil {
			return nil, fmt.Errorf("state_dir %s: keeping the previous boot's registry: %w", r.dir, err)
		}
		r.log.Info("new boot: previous boot's namespace registry kept as history", "file", filepath.Join(r.dir, name), "previous_boot_id", st.bootID)
		return &logState{recs: map[uint64]*Record{}, wit: map[uint64]witness{}}, nil
	}
	if st.tornLines > 0 {
		r.log.Warn("namespace registry: dropped a torn tail (daemon stopped mid-write)", "file", path, "lines", st.tornLines, "bytes", st.tornBytes)
	}
	if st.corrupt > 0 {
		data, _ := os.ReadFile(path)
		copyName := logName + ".corrupt-" + nowStamp()
		werr := os.WriteFile(filepath.Join(r.dir, copyName), data, 0o400)
		r.log.Error("namespace registry: corrupt lines skipped; serials resume with a safety margin; a copy was kept", "file", path, "lines", st.corrupt, "copy", copyName, "copy_error", werr)
		st.reserved += 2 * r.opts.ReserveBlock
	}
	return st, nil
}

// reload applies the restart rule to the records of the same boot.
func (r *Registry) reload(st *logState) {
	now := MakeTime(time.Now())
	var top uint64
	retired, reattached := 0, 0
	for _, rec := range st.sortedRecords() {
		top = max(top, rec.Serial)
		if rec.Serial <= NumTypes {
			continue // the initial namespaces were re-registered
		}
		e := &entry{fd: -1, rec: rec.clone()}
		e.rec.Host = r.host
		e.lastEmit = e.rec.LastSeen.Time
		if w, ok := st.wit[rec.Serial]; ok {
			e.wit = w
		}
		r.setEntry(e)
		if e.rec.Gone != nil {
			if r.method == IDKernel && e.rec.NsID != nil {
				// Kernel ids are never reused: if it shows up again it is
				// the same namespace (gone was a wrong guess).
				e.key = nsKey{e.rec.Type, *e.rec.NsID, 0}
				r.insertKey(e)
			}
			continue
		}
		if r.method == IDKernel && e.rec.NsID != nil && e.rec.IDSrc != IDHeuristic {
			e.key = nsKey{e.rec.Type, *e.rec.NsID, 0}
			r.insertKey(e)
			r.candidates[e] = struct{}{} // did it die while we were down?
			continue
		}
		// A pinned (or heuristic) entry: the pin was released while auditns
		// was down, so its inode may belong to another namespace by now.
		if r.reattach(e) {
			reattached++
			continue
		}
		g := now
		e.rec.Gone = &g
		retired++
	}
	switch {
	case st.closedNext > 0:
		r.next = max(st.closedNext, top+1, 9)
	default:
		r.next = max(st.reserved+1, top+1, 9)
	}
	r.reserved = r.next - 1
	if st.exists {
		r.log.Info("namespace registry reloaded", "records", len(st.recs), "clean_shutdown", st.closedNext > 0,
			"next_serial", r.next, "pinned_reattached_heuristic", reattached, "pinned_retired", retired)
	}
}

// reattach implements the pinned restart rule: the entry is re-attached only
// if its witness process (same pid and start time, so the same process) is
// still alive and still in a namespace with the recorded inode; it is then
// pinned again and marked heuristic.
func (r *Registry) reattach(e *entry) bool {
	if e.wit.PID <= 0 {
		return false
	}
	pfd, err := openPidDir(r.procRoot, e.wit.PID)
	if err != nil {
		return false
	}
	defer unix.Close(pfd)
	if s, err := readStartTime(pfd); err != nil || s != e.wit.Start {
		return false
	}
	fd, err := openNS(pfd, nsRel[e.rec.Type])
	if err != nil {
		return false
	}
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil || st.Ino != e.rec.Inum || devString(st.Dev) != e.rec.Dev {
		unix.Close(fd)
		return false
	}
	if s, err := readStartTime(pfd); err != nil || s != e.wit.Start {
		unix.Close(fd)
		return false
	}
	if r.method == IDKernel {
		id, err := nsID(fd)
		unix.Close(fd)
		if err != nil {
			return false
		}
		e.rec.NsID = &id
		e.key = nsKey{e.rec.Type, id, 0}
	} else {
		e.fd = fd
		e.rec.NsID = nil
		e.key = nsKey{e.rec.Type, st.Dev, st.Ino}
	}
	if _, dup := r.byKey[e.key]; dup {
		closeFD(e.fd)
		e.fd = -1
		return false
	}
	e.rec.IDSrc = IDHeuristic
	r.insertKey(e)
	r.candidates[e] = struct{}{}
	return true
}

// refreshWitnesses (pinned method) makes sure every live pinned entry names
// a live process in it, for the restart rule.
func (r *Registry) refreshWitnesses() {
	if r.method != IDPinned {
		return
	}
	type cand struct {
		e   *entry
		pid int
	}
	r.mu.Lock()
	need := map[*entry]bool{}
	for _, e := range r.entries {
		if e != nil && e.fd >= 0 && e.rec.Gone == nil {
			need[e] = true
		}
	}
	var cands []cand
	for pid, ps := range r.pids {
		for _, e := range ps.ents {
			if e != nil && need[e] {
				cands = append(cands, cand{e, pid})
			}
		}
	}
	wits := map[*entry]witness{}
	for e := range need {
		wits[e] = e.wit
	}
	r.mu.Unlock()
	sort.Slice(cands, func(i, j int) bool { return cands[i].pid < cands[j].pid })
	ok := map[*entry]bool{}
	check := func(e *entry, w witness) bool {
		if w.PID <= 0 {
			return false
		}
		pfd, err := openPidDir(r.procRoot, w.PID)
		if err != nil {
			return false
		}
		defer unix.Close(pfd)
		s, err := readStartTime(pfd)
		if err != nil || (w.Start != 0 && s != w.Start) {
			return false
		}
		ino, err := readlinkNS(pfd, nsRel[e.rec.Type])
		if err != nil || ino != e.rec.Inum {
			return false
		}
		wits[e] = witness{w.PID, s}
		return true
	}
	for e := range need {
		ok[e] = check(e, wits[e])
	}
	for _, c := range cands {
		if !ok[c.e] {
			ok[c.e] = check(c.e, witness{PID: c.pid})
		}
	}
	r.mu.Lock()
	for e := range need {
		if ok[e] {
			e.wit = wits[e]
		} else {
			e.wit = witness{}
		}
	}
	r.mu.Unlock()
}
