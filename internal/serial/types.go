package serial

import (
	"fmt"
	"strconv"
	"time"

	"github.com/auditns/auditns/internal/event"
)

// Type is a namespace type. The order (and so the numeric value) is the
// project-wide order ipc uts user pid cgroup time net mnt; it is also the
// order of the initial namespaces' fixed serials (Type+1).
type Type uint8

// The namespace types, in the project-wide order.
const (
	IPC Type = iota
	UTS
	User
	PID
	Cgroup
	Time
	Net
	Mnt
)

// NumTypes is the number of namespace types.
const NumTypes = 8

var typeNames = event.NSTypes

// Types lists every namespace type in order, for range loops.
var Types = [NumTypes]Type{IPC, UTS, User, PID, Cgroup, Time, Net, Mnt}

// String returns the name used in /proc/<pid>/ns and in the JSON schemas.
func (t Type) String() string {
	if t < NumTypes {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// ParseType is the inverse of String.
func ParseType(s string) (Type, bool) {
	for i, n := range typeNames {
		if n == s {
			return Type(i), true
		}
	}
	return 0, false
}

// CloneFlag returns the CLONE_NEW* flag that creates a namespace of type t
// (0 for an invalid type), for decoding unshare/setns/clone arguments.
func (t Type) CloneFlag() uint64 {
	switch t {
	case IPC:
		return 0x08000000
	case UTS:
		return 0x04000000
	case User:
		return 0x10000000
	case PID:
		return 0x20000000
	case Cgroup:
		return 0x02000000
	case Time:
		return 0x00000080
	case Net:
		return 0x40000000
	case Mnt:
		return 0x00020000
	}
	return 0
}

// MarshalText encodes t by name.
func (t Type) MarshalText() ([]byte, error) {
	if t >= NumTypes {
		return nil, fmt.Errorf("serial: invalid namespace type %d", t)
	}
	return []byte(typeNames[t]), nil
}

// UnmarshalText decodes a type name.
func (t *Type) UnmarshalText(b []byte) error {
	v, ok := ParseType(string(b))
	if !ok {
		return fmt.Errorf("serial: unknown namespace type %q", b)
	}
	*t = v
	return nil
}

// MaskOfNames is the mask of the named types (event.NSTypes' names);
// unknown names are ignored, and no name is the empty mask ("any").
func MaskOfNames(names []string) TypeMask {
	var m TypeMask
	for _, name := range names {
		if t, ok := ParseType(name); ok {
			m |= MaskOf(t)
		}
	}
	return m
}

// TypeMask is a set of namespace types, bit 1<<Type.
type TypeMask uint8

// MaskOf returns the mask holding ts.
func MaskOf(ts ...Type) TypeMask {
	var m TypeMask
	for _, t := range ts {
		m |= 1 << t
	}
	return m
}

// Has reports whether t is in m.
func (m TypeMask) Has(t Type) bool { return m&(1<<t) != 0 }

// MaskFromCloneFlags returns the types whose CLONE_NEW* flag is set in flags.
func MaskFromCloneFlags(flags uint64) TypeMask {
	var m TypeMask
	for _, t := range Types {
		if flags&t.CloneFlag() != 0 {
			m |= 1 << t
		}
	}
	return m
}

// IDSource says how a serial is bound to its namespace (SPEC 2.2, `id_src`).
type IDSource string

const (
	// IDKernel: keyed by the kernel's 64-bit namespace id (NS_GET_ID), which
	// is never reused within a boot. Exact.
	IDKernel IDSource = "kernel"
	// IDPinned: keyed by the nsfs (st_dev, st_ino) while auditns holds an fd
	// on the namespace, so the inode cannot be reused. Exact.
	IDPinned IDSource = "pinned"
	// IDHeuristic: a pinned entry re-attached after a daemon restart, when
	// the pin had been released; see the package documentation.
	IDHeuristic IDSource = "heuristic"
)

// Ref is what an event carries for one namespace type: the event schema's
// own type (a zero Serial is unknown).
type Ref = event.NSRef

// Set is the namespaces of one process, indexed by Type.
type Set [NumTypes]Ref

// NS is s as an event carries it; nil when no namespace is known.
func (s *Set) NS() *event.NS {
	var ns event.NS
	any := false
	for i, r := range s {
		*ns.At(i) = r
		any = any || r.Serial != 0
	}
	if !any {
		return nil
	}
	return &ns
}

// Cause is the event that made the enricher observe a process.
type Cause struct {
	// EventID fills first_event of namespaces seen for the first time.
	EventID string
	// Time fills first_seen/last_seen; zero means time.Now().
	Time time.Time
	// Op is "unshare", "clone" or "setns" when the event is a syscall that
	// changes namespaces, else "". For "unshare" and "clone" it fills
	// created_by of the namespaces that get a NEW serial in this call.
	// "setns" never fills created_by: it joins a namespace that someone
	// else created.
	Op string
	// PID and Exe of the process that made the syscall (created_by.pid,
	// created_by.exe). PID 0 means the observed pid.
	PID int
	Exe string
	// Types optionally narrows created_by to the types the syscall created
	// (from its CLONE_NEW* flags, see MaskFromCloneFlags); 0 = any type
	// that is new in this call.
	Types TypeMask
}
