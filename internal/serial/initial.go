package serial

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// registerInit registers PID 1's namespaces as serials 1..8.
func (r *Registry) registerInit(st *logState) error {
	now := MakeTime(time.Now())
	var fds [NumTypes]int
	for i := range fds {
		fds[i] = -1
	}
	defer func() {
		for _, fd := range fds {
			closeFD(fd)
		}
	}()
	if _, fallback := r.openInit(&fds); fallback != "" {
		r.log.Warn("cannot read PID 1's namespaces; using kthreadd's (PID 2), which are the initial namespaces", "reason", fallback)
	}
	r.entries = make([]*entry, 9, 256)
	for _, t := range Types {
		fd := fds[t]
		if fd < 0 {
			continue
		}
		var s unix.Stat_t
		if err := fstat(fd, &s); err != nil {
			return fmt.Errorf("serial: fstat initial %s namespace: %w", t, err)
		}
		serial := uint64(t) + 1
		e := &entry{fd: -1, rec: Record{
			Schema: Schema, ID: r.bootID + "/" + strconv.FormatUint(serial, 10), Host: r.host,
			Type: t, Serial: serial, Inum: s.Ino, Dev: devString(s.Dev), IDSrc: r.method, IsInit: true,
			FirstSeen: now, LastSeen: now,
		}}
		e.key = nsKey{t, s.Dev, s.Ino}
		if r.method == IDKernel {
			id, err := nsID(fd)
			if err != nil {
				return fmt.Errorf("serial: NS_GET_ID on the initial %s namespace: %w", t, err)
			}
			e.rec.NsID = &id
			e.key = nsKey{t, id, 0}
		}
		if old := st.recs[serial]; old != nil {
			// Initial namespaces never die, so their inode is theirs for
			// the whole boot: comparing it is exact with either method.
			if old.Inum != e.rec.Inum || old.Dev != e.rec.Dev || old.Type != t {
				return fmt.Errorf("state_dir %s: the registry of boot %s has serial %d = %s inode %d, but PID 1's %s namespace is inode %d (is auditns running in a container without pid: host?); move %s away to start over",
					r.dir, r.bootID, serial, old.Type, old.Inum, t, e.rec.Inum, filepath.Join(r.dir, logName))
			}
			e.rec.FirstSeen, e.rec.FirstEvent = old.FirstSeen, old.FirstEvent
			e.rec.LastSeen = Timestamp{maxTime(old.LastSeen.Time, now.Time)}
		}
		e.lastEmit = e.rec.LastSeen.Time
		e.keyed = true
		r.byKey[e.key] = e
		r.entries[serial] = e
	}
	// Owners and parents of the initial namespaces (normally user=3 for
	// all, none for user and pid themselves).
	for _, t := range Types {
		e := r.entries[uint64(t)+1]
		if e == nil {
			continue
		}
		if o := r.relatedInit(fds[t], nsGetUserns, User); o != nil {
			e.rec.OwnerUser = &SerialRef{o.rec.Serial}
		}
		if t == PID || t == User {
			if p := r.relatedInit(fds[t], nsGetParent, t); p != nil {
				e.rec.Parent = &SerialRef{p.rec.Serial}
			}
		}
	}
	return nil
}

// openInit opens PID 1's namespaces, falling back per type to kthreadd's
// (PID 2) where PID 1's cannot be read (some sandboxes make PID 1
// unreadable even for root). kthreadd is forked from init_task and always
// runs in the initial namespaces.
func (r *Registry) openInit(fds *[NumTypes]int) (int, string) {
	var why string
	pfd, err := openPidDir(r.procRoot, 1)
	if err == nil {
		for _, t := range Types {
			fd, err := openNS(pfd, nsRel[t])
			if err != nil {
				if why == "" {
					why = "/proc/1/ns/" + t.String() + ": " + err.Error()
				}
				continue
			}
			fds[t] = fd
		}
		unix.Close(pfd)
	} else {
		why = "/proc/1: " + err.Error()
	}
	if why == "" {
		return 1, ""
	}
	status, err := os.ReadFile(filepath.Join(r.procRoot, "2", "status"))
	if err != nil || !isKthreadd(string(status)) {
		r.log.Warn("cannot read PID 1's namespaces and PID 2 is not kthreadd: the missing initial namespaces get no fixed serial", "reason", why)
		return 1, ""
	}
	pfd, err = openPidDir(r.procRoot, 2)
	if err != nil {
		return 1, ""
	}
	defer unix.Close(pfd)
	for _, t := range Types {
		if fds[t] >= 0 {
			continue
		}
		if fd, err := openNS(pfd, nsRel[t]); err == nil {
			fds[t] = fd
		}
	}
	return 2, why
}

func isKthreadd(status string) bool {
	hasName, hasPPid := false, false
	for _, line := range splitLines(status) {
		switch line {
		case "Name:\tkthreadd":
			hasName = true
		case "PPid:\t0":
			hasPPid = true
		}
	}
	return hasName && hasPPid
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

// relatedInit finds the init entry of the namespace that req returns for fd.
func (r *Registry) relatedInit(fd int, req uintptr, t Type) *entry {
	if fd < 0 {
		return nil
	}
	rfd, err := nsRelated(fd, req)
	if err != nil {
		return nil
	}
	defer unix.Close(rfd)
	k, _, err := r.keyOf(rfd, t)
	if err != nil {
		return nil
	}
	return r.byKey[k]
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
