package subject

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/auditns/auditns/internal/container"
	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/serial"
)

// SrcKernel is the ns_src of events whose namespaces the kernel-side
// source captured.
const SrcKernel = "kernel"

// Resolver gives kernel-identified namespaces their registry serials: the
// namespace registry (*serial.Registry).
type Resolver interface {
	// Identify returns the serial references of the namespaces in k,
	// registering those it has not seen; pid is tracked as a member.
	Identify(pid int, k *serial.KnownSet, cause serial.Cause) (serial.Set, error)
	// Exited tells the registry that a member process is gone.
	Exited(pid int, when time.Time)
}

// Fallback answers for events the kernel-side source has no join for: the
// /proc reader.
type Fallback interface {
	Annotate(ev *event.Event, pid, ppid int, change *event.NSChange, ended bool)
	Close() error
}

// Options configure the kernel-side source.
type Options struct {
	// Resolver maps namespaces to serials; required.
	Resolver Resolver
	// Fallback answers events without a join; required. Close closes it.
	Fallback Fallback
	// BootID qualifies process.entity_id; required.
	BootID string
	// JoinWait is how long an event without an end-of-event record waits
	// for its join (see the package documentation); default 2ms.
	JoinWait time.Duration
	// RingBytes is the size of the ring buffer between the programs and
	// auditns, a power of two of at least a page; default 4 MiB.
	RingBytes int
	// Logger receives warnings; default slog.Default().
	Logger *slog.Logger
}

// Stats are the source's counters since Load.
type Stats struct {
	Joined    uint64 // events answered from the kernel side
	Fallbacks uint64 // events answered by the fallback
	Dropped   uint64 // events whose join the kernel could not write (ring full)
	// ExitsDropped are process exits not reported (ring full): the
	// registry learns of those members' exit from its sweeps instead.
	ExitsDropped uint64
	States       int // thread states held
}

// silentAfter is how many events without a join, and none with one, make
// Annotate warn that the programs see nothing on this kernel.
const silentAfter = 1000

// joinSlots is how many recent joins are kept, indexed by serial: far more
// than events in flight between the kernel and the enricher.
const joinSlots = 1 << 16

// maxStates bounds the thread states held; the oldest go first.
const maxStates = 1 << 17

type joinSlot struct {
	serial, tgid, ver uint32
}

// state is one reported thread state with what is derived from it once.
type state struct {
	raw      subjectState
	known    serial.KnownSet
	ns       *event.NS // nil until resolved
	ct       *event.Container
	entity   string
	pentity  string
	resolved bool
}

// Kernel is the kernel-side subject-identity source. Annotate is called
// from one goroutine (the enricher's).
type Kernel struct {
	opts  Options
	log   *slog.Logger
	objs  subjectObjects
	links []link.Link
	rd    *ringbuf.Reader
	rec   ringbuf.Record

	joins  []joinSlot
	states map[uint32]*state
	order  []uint32 // state versions, oldest first

	// forChildren holds, per pid, the unshare that gave its future
	// children new pid or time namespaces: the first child is where they
	// appear, and its state names that unshare their creator.
	forChildren map[int]serial.Cause

	joined, fallbacks atomic.Uint64
	nStates           atomic.Int64
	lastJoined        uint32 // kernel's last_serial, as last read
}

// ErrUnavailable wraps every reason the kernel-side source cannot run here
// (no BTF, missing privileges, a kernel that refuses the programs); the
// caller falls back to /proc.
var ErrUnavailable = errors.New("kernel-side namespace source unavailable")

// Load loads and attaches the BPF programs. On any error everything loaded
// so far is released and the error wraps ErrUnavailable.
func Load(opts Options) (k *Kernel, err error) {
	if opts.Resolver == nil || opts.Fallback == nil || opts.BootID == "" {
		return nil, errors.New("subject: Resolver, Fallback and BootID are required")
	}
	if opts.JoinWait <= 0 {
		opts.JoinWait = 2 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, fmt.Errorf("%w: the kernel has no BTF (/sys/kernel/btf/vmlinux: %v)", ErrUnavailable, err)
	}
	k = &Kernel{opts: opts, log: opts.Logger, joins: make([]joinSlot, joinSlots), states: make(map[uint32]*state), forChildren: make(map[int]serial.Cause)}
	defer func() {
		if err != nil {
			k.release()
			k = nil
		}
	}()
	spec, err := loadSubject()
	if err != nil {
		return nil, fmt.Errorf("%w: the embedded object: %v", ErrUnavailable, err)
	}
	if opts.RingBytes > 0 {
		spec.Maps["events"].MaxEntries = uint32(opts.RingBytes)
	}
	if err := spec.LoadAndAssign(&k.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("%w: the kernel refused the programs: %v", ErrUnavailable, ve)
		}
		return nil, fmt.Errorf("%w: loading the programs (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN): %v", ErrUnavailable, err)
	}
	for _, p := range []*ebpf.Program{k.objs.AuditRecordFreed, k.objs.TaskExited} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			return nil, fmt.Errorf("%w: attaching %s: %v", ErrUnavailable, p, err)
		}
		k.links = append(k.links, l)
	}
	if k.rd, err = ringbuf.NewReader(k.objs.Events); err != nil {
		return nil, fmt.Errorf("%w: ring buffer: %v", ErrUnavailable, err)
	}
	return k, nil
}

// release detaches and closes everything the source holds; safe on a
// partly loaded source.
func (k *Kernel) release() error {
	var errs []error
	if k.rd != nil {
		errs = append(errs, k.rd.Close())
		k.rd = nil
	}
	errs = append(errs, k.closeLinks(), k.objs.Close())
	return errors.Join(errs...)
}

// closeLinks detaches the programs from their hooks.
func (k *Kernel) closeLinks() error {
	var errs []error
	for _, l := range k.links {
		errs = append(errs, l.Close())
	}
	k.links = nil
	return errors.Join(errs...)
}

// Detach unloads the programs and waits, at most a second, until the
// kernel has freed them; the maps and the ring stay, so that what the
// programs wrote is still read and joined. The kernel writes an audit
// record for every program it frees (AUDIT_BPF, op=UNLOAD): auditns calls
// Detach while it is still the audit daemon, so that its own records are
// read rather than discarded unseen. Close does the rest; Detach must not
// run concurrently with Close.
func (k *Kernel) Detach() error {
	progs := []*ebpf.Program{k.objs.AuditRecordFreed, k.objs.TaskExited}
	var ids []ebpf.ProgramID
	for _, p := range progs {
		if p == nil {
			continue
		}
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok {
				ids = append(ids, id)
			}
		}
	}
	errs := []error{k.closeLinks()}
	for _, p := range progs {
		errs = append(errs, p.Close())
	}
	// A link's reference to its program may be dropped after an RCU grace
	// period; the id is freed after the audit record is written.
	deadline := time.Now().Add(time.Second)
	for _, id := range ids {
		for {
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				break
			}
			p.Close()
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("subject: program %d still loaded after 1s", id))
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// Close detaches the programs, frees their maps and closes the fallback.
func (k *Kernel) Close() error {
	return errors.Join(k.release(), k.opts.Fallback.Close())
}

// Stats returns the counters; safe from any goroutine.
func (k *Kernel) Stats() Stats {
	s := Stats{Joined: k.joined.Load(), Fallbacks: k.fallbacks.Load(), States: int(k.nStates.Load())}
	sum := func(kind uint32) uint64 {
		var per []uint64
		var n uint64
		if k.objs.Drops != nil && k.objs.Drops.Lookup(kind, &per) == nil {
			for _, v := range per {
				n += v
			}
		}
		return n
	}
	// The kinds are the program's enum drop_kind.
	s.Dropped, s.ExitsDropped = sum(0), sum(2)
	return s
}

// drain reads every record in the ring.
func (k *Kernel) drain() {
	if k.rd.AvailableBytes() == 0 {
		return
	}
	k.rd.SetDeadline(time.Unix(1, 0))
	for {
		if err := k.rd.ReadInto(&k.rec); err != nil {
			return // deadline exceeded: the ring is empty
		}
		k.handle(k.rec.RawSample)
	}
}

func (k *Kernel) handle(b []byte) {
	if len(b) < 4 {
		return
	}
	switch *(*uint32)(unsafe.Pointer(&b[0])) {
	case 2: // REC_JOIN
		if len(b) < int(unsafe.Sizeof(subjectJoin{})) {
			return
		}
		j := (*subjectJoin)(unsafe.Pointer(&b[0]))
		k.joins[j.Serial%joinSlots] = joinSlot{j.Serial, j.Tgid, j.Ver}
	case 1: // REC_STATE
		if len(b) < int(unsafe.Sizeof(subjectState{})) {
			return
		}
		st := &state{raw: *(*subjectState)(unsafe.Pointer(&b[0]))}
		for i := range st.raw.Ns {
			st.known.NS[i] = serial.Known{ID: st.raw.Ns[i].Id, Inum: uint64(st.raw.Ns[i].Inum)}
			st.known.Owner[i] = serial.Known{ID: st.raw.Owner[i].Id, Inum: uint64(st.raw.Owner[i].Inum)}
		}
		st.known.ParentPID = serial.Known{ID: st.raw.ParentPid.Id, Inum: uint64(st.raw.ParentPid.Inum)}
		st.known.ParentUser = serial.Known{ID: st.raw.ParentUser.Id, Inum: uint64(st.raw.ParentUser.Inum)}
		st.entity = EntityID(k.opts.BootID, int(st.raw.Tgid), st.raw.StartNs)
		if st.raw.Ppid > 0 {
			st.pentity = EntityID(k.opts.BootID, int(st.raw.Ppid), st.raw.PstartNs)
		}
		k.states[st.raw.Ver] = st
		k.order = append(k.order, st.raw.Ver)
		for len(k.order) > maxStates {
			delete(k.states, k.order[0])
			k.order = k.order[1:]
		}
		k.nStates.Store(int64(len(k.states)))
	case 3: // REC_EXIT
		if len(b) < int(unsafe.Sizeof(subjectExit{})) {
			return
		}
		e := (*subjectExit)(unsafe.Pointer(&b[0]))
		delete(k.forChildren, int(e.Tgid))
		k.opts.Resolver.Exited(int(e.Tgid), time.Now())
	}
}

// lookup returns the join of serial, draining the ring and, for an event
// that did not end with an EOE record, waiting up to JoinWait while the
// kernel has not joined serial yet.
func (k *Kernel) lookup(serial uint32, ended bool) (joinSlot, bool) {
	k.drain()
	if j := k.joins[serial%joinSlots]; j.serial == serial {
		return j, true
	}
	if ended {
		return joinSlot{}, false
	}
	deadline := time.Now().Add(k.opts.JoinWait)
	for time.Now().Before(deadline) {
		if !serialBefore(k.lastJoined, serial) {
			// The kernel joined later events: this one has no join.
			if err := k.objs.LastSerial.Get(&k.lastJoined); err != nil || !serialBefore(k.lastJoined, serial) {
				break
			}
		}
		time.Sleep(100 * time.Microsecond)
		k.drain()
		if j := k.joins[serial%joinSlots]; j.serial == serial {
			return j, true
		}
		k.objs.LastSerial.Get(&k.lastJoined)
	}
	return joinSlot{}, false
}

// serialBefore reports a < b for audit serials (uint32, wrapping).
func serialBefore(a, b uint32) bool { return int32(a-b) < 0 }

// Annotate sets ev's namespaces, ns_src, process.entity_id, process.vpid
// and process.parent.entity_id for the subject pid, from the kernel's join
// of the event's serial, or asks the fallback. ended reports that the
// event's records ended with an EOE record.
func (k *Kernel) Annotate(ev *event.Event, pid, ppid int, change *event.NSChange, ended bool) {
	j, ok := k.lookup(ev.Event.Sequence, ended)
	var st *state
	if ok && int(j.tgid) == pid {
		st = k.states[j.ver]
	}
	if st == nil {
		if n := k.fallbacks.Add(1); n == silentAfter && k.joined.Load() == 0 {
			k.log.Warn("the kernel-side source has joined no event yet: this kernel may not free audit buffers in the subject's context; every event is answered from /proc",
				"fallback_events", n)
		}
		k.opts.Fallback.Annotate(ev, pid, ppid, change, ended)
		return
	}
	if !st.resolved || change != nil {
		c := serial.Cause{EventID: ev.Event.ID, Time: ev.When(), PID: pid}
		if ev.Process != nil {
			c.Exe = ev.Process.Executable
		}
		if change != nil {
			c.Op, c.Types = change.Op, serial.MaskOfNames(change.Types)
			if len(change.ChildrenOnly) > 0 && change.Op != "clone" {
				pc := c
				pc.Types = serial.MaskOfNames(change.ChildrenOnly)
				k.forChildren[pid] = pc
			}
		} else if pc, ok := k.forChildren[int(st.raw.Ppid)]; ok && !st.resolved {
			c = pc
			delete(k.forChildren, int(st.raw.Ppid))
		}
		set, err := k.opts.Resolver.Identify(pid, &st.known, c)
		if err != nil && !st.resolved {
			k.log.Debug("identify namespaces", "pid", pid, "error", err)
		}
		if ns := set.NS(); ns != nil {
			if !st.resolved {
				st.ct = containerOf(&st.raw)
			}
			st.ns, st.resolved = ns, err == nil
		}
	}
	k.joined.Add(1)
	ev.NS, ev.NSSrc, ev.Container = st.ns, SrcKernel, st.ct
	if ev.NS == nil {
		ev.NSSrc = "unknown"
	}
	if p := ev.Process; p != nil {
		p.EntityID = st.entity
		p.VPID = int(st.raw.Vpid)
		if p.Parent != nil && p.Parent.PID == int(st.raw.Ppid) {
			p.Parent.EntityID = st.pentity
		}
	}
}

// containerOf returns the container of st's process from the cgroup paths
// the kernel reported (the last components of its cgroup v2 path and of
// its memory controller's, a v1 hierarchy on hosts that have them), where
// container runtimes name containers. Nothing is read from /proc: it is
// the process's container when its record was written, even if it is gone.
func containerOf(raw *subjectState) *event.Container {
	line := cgroupLine(nil, "0::", &raw.Cgroup)
	line = cgroupLine(append(line, '\n'), "1:memory:", &raw.CgroupV1)
	return container.FromCgroup(line)
}

// cgroupLine appends a /proc/<pid>/cgroup line, prefix then the path of
// the kernel's path components (leaf first, NUL-terminated).
func cgroupLine(b []byte, prefix string, comps *[4][96]int8) []byte {
	b = append(b, prefix...)
	for i := len(comps) - 1; i >= 0; i-- {
		src := &comps[i]
		c := unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), len(src))
		if n := bytes.IndexByte(c, 0); n >= 0 {
			c = c[:n]
		}
		if len(c) > 0 && c[0] != '/' {
			b = append(b, '/')
			b = append(b, c...)
		}
	}
	return b
}

// Loaded returns "name (id N)" for every program of this package loaded in
// the kernel, by any process: after auditns stops there is none, since it
// pins nothing.
func Loaded() ([]string, error) {
	var out []string
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		info, err := p.Info()
		p.Close()
		// The kernel keeps the first 15 bytes of a program's name.
		if err == nil && (strings.HasPrefix(info.Name, "audit_record_fr") || info.Name == "task_exited") {
			out = append(out, fmt.Sprintf("%s (id %d)", info.Name, id))
		}
	}
}

// EntityID is process.entity_id: an opaque id of one process instance,
// stable across pid reuse, from the boot, the pid and the process's start
// time (ns since boot).
func EntityID(bootID string, pid int, startNs uint64) string {
	var b [96]byte
	s := append(b[:0], bootID...)
	s = append(s, '/')
	s = strconv.AppendInt(s, int64(pid), 10)
	s = append(s, '/')
	s = strconv.AppendUint(s, startNs, 10)
	sum := sha256.Sum256(s)
	return hex.EncodeToString(sum[:16])
}
