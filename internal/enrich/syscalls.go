package enrich

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/auditns/auditns/internal/event"
)

var errnoByName = auparse.AuditErrnoToNum

// syscallNrs maps arch → name → number: auparse replaces the number in the
// record with the name, and the event carries both.
var syscallNrs = sync.OnceValue(func() map[string]map[string]int {
	out := make(map[string]map[string]int, len(auparse.AuditSyscalls))
	for arch, table := range auparse.AuditSyscalls {
		m := make(map[string]int, len(table))
		for nr, name := range table {
			m[name] = nr
		}
		out[arch] = m
	}
	return out
})

// syscallNames maps arch → number → name, as slices.
var syscallNames = sync.OnceValue(func() map[string][]string {
	out := make(map[string][]string, len(auparse.AuditSyscalls))
	for arch, table := range auparse.AuditSyscalls {
		n := 0
		for nr := range table {
			if nr >= 0 && nr < 1<<16 {
				n = max(n, nr+1)
			}
		}
		s := make([]string, n)
		for nr, name := range table {
			if nr >= 0 && nr < n {
				s[nr] = name
			}
		}
		out[arch] = s
	}
	return out
})

// syscallName is auparse's translation of a syscall number.
func (e *Enricher) syscallName(arch string, nr int) (string, bool) {
	if arch != e.sysArch || e.sysTable == nil {
		e.sysArch, e.sysTable = arch, syscallNames()[arch]
	}
	if nr >= 0 && nr < len(e.sysTable) && e.sysTable[nr] != "" {
		return e.sysTable[nr], true
	}
	if nr < 0 || nr >= len(e.sysTable) {
		// Outside the slice (negative or huge): the map decides.
		name, ok := auparse.AuditSyscalls[arch][nr]
		return name, ok
	}
	return "", false
}

// archName is auparse's AuditArch.String.
func (e *Enricher) archName(a auparse.AuditArch) string {
	if e.archOK && a == e.arch {
		return e.archStr
	}
	name, ok := auparse.AuditArchNames[a]
	if !ok {
		name = fmt.Sprintf("unknown[%x]", uint32(a))
	}
	e.arch, e.archStr, e.archOK = a, name, true
	return name
}

func syscallNumber(arch, name string) int {
	if n, err := strconv.Atoi(name); err == nil {
		return n
	}
	if nr, ok := syscallNrs()[arch][name]; ok {
		return nr
	}
	return -1
}

// Namespace clone flags (linux/sched.h), in the SPEC's type order.
var cloneFlags = [8]uint64{
	0x08000000, // CLONE_NEWIPC
	0x04000000, // CLONE_NEWUTS
	0x10000000, // CLONE_NEWUSER
	0x20000000, // CLONE_NEWPID
	0x02000000, // CLONE_NEWCGROUP
	0x00000080, // CLONE_NEWTIME
	0x40000000, // CLONE_NEWNET
	0x00020000, // CLONE_NEWNS (mnt)
}

const nsTypePID, nsTypeTime = 3, 5

// decodeNSChange recognises the syscalls that change namespaces. clone3
// passes its flags in a struct the audit record does not show, so it is
// reported with no types when it appears at all.
func decodeNSChange(s *event.Syscall) *event.NSChange {
	if s == nil || s.Exit < 0 {
		return nil
	}
	arg := func(i int) uint64 {
		if i >= len(s.Args) {
			return 0
		}
		v, _ := strconv.ParseUint(strings.TrimPrefix(s.Args[i], "0x"), 16, 64)
		return v
	}
	var flags uint64
	switch s.Name {
	case "unshare":
		flags = arg(0)
	case "setns":
		// nstype 0 means "whatever the fd is": the types are then found by
		// comparing namespaces before and after (procCache does).
		flags = arg(1)
	case "clone":
		// x86_64 and most arches: clone(flags, stack, ...).
		flags = arg(0)
		if flags&nsFlagMask == 0 {
			return nil
		}
	default:
		return nil
	}
	c := &event.NSChange{}
	// The constant, not s.Name: the cause of a namespace outlives the
	// event's strings.
	switch s.Name {
	case "unshare":
		c.Op = "unshare"
	case "setns":
		c.Op = "setns"
	case "clone":
		c.Op = "clone"
	}
	for i, f := range cloneFlags {
		if flags&f == 0 {
			continue
		}
		c.Types = append(c.Types, event.NSTypes[i])
		if s.Name != "clone" && (i == nsTypePID || i == nsTypeTime) {
			// unshare/setns of pid and time namespaces apply to children
			// created afterwards, not to the caller.
			c.ChildrenOnly = append(c.ChildrenOnly, event.NSTypes[i])
		}
	}
	return c
}

var nsFlagMask = func() uint64 {
	var m uint64
	for _, f := range cloneFlags {
		m |= f
	}
	return m
}()
