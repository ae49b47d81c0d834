package serial

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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

// errNotDurable wraps a failure to make a new serial durable.
func errNotDurable(dir string, err error) error {
	return fmt.Errorf("serial: cannot make a new serial durable in state_dir %s (no new serials until it can write again): %w", dir, err)
}
