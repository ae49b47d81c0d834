package serial

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Options configures Open.
type Options struct {
	// Dir is the state directory (config key state_dir), default
	// /var/lib/auditns. Created 0700; files are 0600.
	Dir string
	// Method forces how serials are keyed: "kernel" (fail if NS_GET_ID does
	// not answer) or "pinned". "" probes: kernel if NS_GET_ID answers, else
	// pinned, with a log line.
	Method IDSource
	// ProcRoot is where procfs is mounted, default "/proc".
	ProcRoot string
	// ReserveBlock is the number of serials reserved per durable write,
	// default 64.
	ReserveBlock uint64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// OnRecord is called whenever a registry record is created or changes,
	// after the change is durable, synchronously from a goroutine that made
	// or flushed the change (an Observe, Exited or Open caller, or the
	// registry's sweeper), in the order the changes were made; before an
	// Observe returns a new serial, the callback for its record has returned.
	// Open calls it for every record (init and reloaded ones) so that a
	// publisher that lost records in a crash catches up; consumers key by
	// Record.ID. It must not call Observe, Exited or Close. May be nil.
	OnRecord func(rec *Record)
	// HostName is Record.Host.Name, default os.Hostname().
	HostName string
	// BootIDPath defaults to /proc/sys/kernel/random/boot_id (tests).
	BootIDPath string
	// SweepDelay batches the checks triggered by Exited: a namespace whose
	// known members have all exited is checked this long after (default
	// 250ms), and must be found unheld by two consecutive checks to retire.
	SweepDelay time.Duration
	// FullSweepEvery is the period of the check of every live namespace,
	// which also catches exits the registry was not told about (default 1m).
	FullSweepEvery time.Duration
	// LastSeenEvery throttles last_seen updates: a record whose last_seen
	// advanced by at least this much since it was last emitted is written
	// and re-emitted (default 1m).
	LastSeenEvery time.Duration
}

// DefaultDir is the default state directory.
const DefaultDir = "/var/lib/auditns"

// ErrClosed is returned by Observe after Close.
var ErrClosed = errors.New("serial: registry is closed")

// nsKey identifies a live namespace: (type, kernel id, 0) with the kernel
// method, (type, st_dev, st_ino) with the pinned method.
type nsKey struct {
	t    Type
	a, b uint64
}

type entry struct {
	rec      Record
	key      nsKey
	keyed    bool // key is in byKey
	fd       int  // pinned fd, -1 if none
	seq      uint64
	members  int
	obsGen   uint64
	unheld   int
	lastExit time.Time
	lastEmit time.Time // last_seen as last written
	wit      witness
	// published is set once OnRecord has returned for the creation record;
	// until then an Observe returning this entry waits for the delivery.
	published atomic.Bool
}

type pidState struct {
	ents [NumTypes]*entry
	gen  uint64
}

type emitItem struct {
	rec  Record
	seq  uint64
	sync bool
	e    *entry // set for the record that creates e
}

// Registry is the per-boot namespace registry. It is safe for concurrent use.
type Registry struct {
	opts     Options
	log      *slog.Logger
	dir      string
	procRoot string
	bootID   string
	host     Host
	method   IDSource
	nsfsDev  uint64
	lockFile *os.File

	mu         sync.Mutex
	closed     bool
	next       uint64   // next serial to issue
	reserved   uint64   // serials <= reserved are covered by a reserve line
	entries    []*entry // by serial; nil for holes
	byKey      map[nsKey]*entry
	pids       map[int]pidState
	candidates map[*entry]struct{}
	gen        uint64
	pending    []emitItem
	f          *os.File
	written    uint64 // sequence number of the last line written to f
	appended   int    // lines appended since the last compaction
	writeErr   error  // sticky: after a failed write or fsync no new serial is issued
	orphanFDs  []int  // pins of retired entries whose "gone" could not be made durable

	syncMu sync.Mutex
	synced atomic.Uint64

	emitMu sync.Mutex

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup

	lastErrLog atomic.Int64 // unix nanos of the last rate-limited error log
	hasPending atomic.Bool  // r.pending is not empty
}

// Open opens (or creates) the registry of the current boot in opts.Dir. See
// the package documentation for what it reloads.
func Open(opts Options) (*Registry, error) {
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.ReserveBlock == 0 {
		opts.ReserveBlock = 64
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BootIDPath == "" {
		opts.BootIDPath = DefaultBootIDPath
	}
	if opts.SweepDelay <= 0 {
		opts.SweepDelay = 250 * time.Millisecond
	}
	if opts.FullSweepEvery <= 0 {
		opts.FullSweepEvery = time.Minute
	}
	if opts.LastSeenEvery <= 0 {
		opts.LastSeenEvery = time.Minute
	}
	if opts.HostName == "" {
		opts.HostName, _ = os.Hostname()
	}
	bootID, err := readBootID(opts.BootIDPath)
	if err != nil {
		return nil, err
	}
	r := &Registry{
		opts:       opts,
		log:        opts.Logger.With("component", "serial"),
		dir:        filepath.Clean(opts.Dir),
		procRoot:   opts.ProcRoot,
		bootID:     bootID,
		host:       Host{Name: opts.HostName, BootID: bootID},
		next:       9,
		byKey:      map[nsKey]*entry{},
		pids:       map[int]pidState{},
		candidates: map[*entry]struct{}{},
		kick:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	if err := r.prepareDir(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			r.releaseAll()
		}
	}()
	if err := r.probeMethod(); err != nil {
		return nil, err
	}
	st, err := r.loadState()
	if err != nil {
		return nil, err
	}
	if err := r.registerInit(st); err != nil {
		return nil, err
	}
	r.reload(st)
	r.mu.Lock()
	err = r.compactLocked(false)
	r.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("serial: writing registry in state_dir %s: %w", r.dir, err)
	}
	// Publish everything: init records, and what a crash may have kept
	// from the pipeline.
	r.mu.Lock()
	for _, e := range r.entries {
		if e != nil {
			r.queueLocked(e, false)
		}
	}
	r.mu.Unlock()
	r.deliver()
	for _, e := range r.entries {
		if e != nil {
			e.published.Store(true)
		}
	}
	r.wg.Add(1)
	go r.sweeper()
	if len(r.candidates) > 0 {
		r.kickSweep() // namespaces that may have died while auditns was down
	}
	ok = true
	r.log.Info("namespace registry open", "dir", r.dir, "boot_id", r.bootID, "method", string(r.method),
		"records", r.countRecords(), "next_serial", r.next)
	return r, nil
}

// prepareDir creates or validates the state directory and takes its lock.
func (r *Registry) prepareDir() error {
	dir := r.dir
	notWritable := func(err error) error {
		return fmt.Errorf("state_dir %s is not usable: %v (set state_dir / --state-dir to a writable directory)", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return notWritable(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return notWritable(err)
	}
	if !fi.IsDir() {
		return notWritable(errors.New("not a directory"))
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return notWritable(err)
		}
		r.log.Warn("state_dir permissions tightened", "dir", dir, "was", fi.Mode().Perm().String(), "now", "drwx------")
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return notWritable(err)
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		lf.Close()
		return notWritable(err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("state_dir %s is in use by another auditns process (lock %s held)", dir, filepath.Join(dir, lockName))
		}
		return notWritable(err)
	}
	r.lockFile = lf
	os.Remove(filepath.Join(dir, logName+".tmp"))
	return nil
}

// probeMethod decides between the kernel and pinned methods.
func (r *Registry) probeMethod() error {
	fd, err := unix.Open(filepath.Join(r.procRoot, strconv.Itoa(os.Getpid()), "ns", "net"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("serial: cannot open own network namespace under %s: %w", r.procRoot, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return fmt.Errorf("serial: fstat nsfs: %w", err)
	}
	r.nsfsDev = st.Dev
	_, idErr := nsID(fd)
	switch r.opts.Method {
	case "":
		if idErr == nil {
			r.method = IDKernel
		} else {
			r.method = IDPinned
			r.log.Warn("NS_GET_ID is not supported by this kernel (needs Linux >= 6.18): namespaces are keyed by pinned (dev, inode)", "error", idErr)
		}
	case IDKernel:
		if idErr != nil {
			return fmt.Errorf("serial: id method kernel: NS_GET_ID does not answer on this kernel (needs Linux >= 6.18): %v", idErr)
		}
		r.method = IDKernel
	case IDPinned:
		r.method = IDPinned
	default:
		return fmt.Errorf("serial: unknown id method %q (expected kernel, pinned or empty to probe)", r.opts.Method)
	}
	return nil
}

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

// keyOf returns the registry key of the namespace fd refers to.
func (r *Registry) keyOf(fd int, t Type) (nsKey, *unix.Stat_t, error) {
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return nsKey{}, nil, err
	}
	if r.method == IDKernel {
		id, err := nsID(fd)
		if err != nil {
			return nsKey{}, nil, err
		}
		return nsKey{t, id, 0}, &st, nil
	}
	return nsKey{t, st.Dev, st.Ino}, &st, nil
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

func (r *Registry) setEntry(e *entry) {
	s := e.rec.Serial
	for uint64(len(r.entries)) <= s {
		r.entries = append(r.entries, nil)
	}
	r.entries[s] = e
}

func (r *Registry) insertKey(e *entry) {
	r.byKey[e.key] = e
	e.keyed = true
}

func (r *Registry) countRecords() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.entries {
		if e != nil {
			n++
		}
	}
	return n
}

// BootID returns the boot id the serials belong to.
func (r *Registry) BootID() string { return r.bootID }

// Method returns how namespaces are keyed: IDKernel or IDPinned.
func (r *Registry) Method() IDSource { return r.method }

// Dir returns the state directory.
func (r *Registry) Dir() string { return r.dir }

// Records returns a snapshot of every record, ordered by serial.
func (r *Registry) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Record, 0, len(r.entries))
	for _, e := range r.entries {
		if e != nil {
			out = append(out, e.rec.clone())
		}
	}
	return out
}

// Record returns the record of one serial.
func (r *Registry) Record(serial uint64) (Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if serial >= uint64(len(r.entries)) || r.entries[serial] == nil {
		return Record{}, false
	}
	return r.entries[serial].rec.clone(), true
}

// Close stops the sweeper, flushes the registry (with a clean-shutdown
// marker, so the next Open resumes the counter without a gap) and releases
// the pinned fds and the state directory lock.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	close(r.done)
	r.wg.Wait()
	r.deliver()
	r.refreshWitnesses()
	r.syncMu.Lock()
	r.mu.Lock()
	err := r.writeErr
	if err == nil {
		err = r.compactLocked(true)
	}
	r.mu.Unlock()
	r.syncMu.Unlock()
	r.releaseAll()
	if err != nil {
		return fmt.Errorf("serial: closing registry in state_dir %s: %w", r.dir, err)
	}
	return nil
}

func (r *Registry) releaseAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.entries {
		if e != nil && e.fd >= 0 {
			unix.Close(e.fd)
			e.fd = -1
		}
	}
	for _, fd := range r.orphanFDs {
		unix.Close(fd)
	}
	r.orphanFDs = nil
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	if r.lockFile != nil {
		unix.Flock(int(r.lockFile.Fd()), unix.LOCK_UN)
		r.lockFile.Close()
		r.lockFile = nil
	}
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

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// errNotDurable wraps a failure to make a new serial durable.
func errNotDurable(dir string, err error) error {
	return fmt.Errorf("serial: cannot make a new serial durable in state_dir %s (no new serials until it can write again): %w", dir, err)
}
