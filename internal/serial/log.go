package serial

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// On-disk format (see the package documentation): registry.log in the state
// directory, one line per entry, "<crc32c of the JSON, 8 hex digits> <JSON>\n".

const (
	logName       = "registry.log"
	lockName      = "lock"
	formatVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// historyName is the file a previous boot's registry is kept under.
func historyName(bootID string) string { return "registry-" + bootID + ".log" }

// logLine is one line of the registry log.
type logLine struct {
	T      string     `json:"t"` // "boot" | "reserve" | "ns" | "close"
	V      int        `json:"v,omitempty"`
	BootID string     `json:"boot_id,omitempty"`
	Host   string     `json:"host,omitempty"`
	Method IDSource   `json:"method,omitempty"`
	At     *Timestamp `json:"at,omitempty"`
	Upto   uint64     `json:"upto,omitempty"` // reserve: serials <= upto may have been handed out
	Next   uint64     `json:"next,omitempty"` // close: the next serial to issue
	Rec    *Record    `json:"rec,omitempty"`
	W      *witness   `json:"w,omitempty"`
}

// witness is a process seen in a pinned namespace: (pid, starttime) names one
// process instance within a boot. Used only by the pinned restart rule.
type witness struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

func appendLine(b []byte, l *logLine) []byte {
	js, err := json.Marshal(l)
	if err != nil {
		// Only a programming error can get here (all fields marshal).
		panic("serial: encoding registry line: " + err.Error())
	}
	var h [8]byte
	c := crc32.Checksum(js, castagnoli)
	const hexd = "0123456789abcdef"
	for i := 7; i >= 0; i-- {
		h[i] = hexd[c&0xf]
		c >>= 4
	}
	b = append(b, h[:]...)
	b = append(b, ' ')
	b = append(b, js...)
	return append(b, '\n')
}

// parseLine checks the CRC and decodes one line (without its '\n').
func parseLine(line []byte) (*logLine, bool) {
	if len(line) < 10 || line[8] != ' ' {
		return nil, false
	}
	want, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil {
		return nil, false
	}
	js := line[9:]
	if crc32.Checksum(js, castagnoli) != uint32(want) {
		return nil, false
	}
	var l logLine
	if err := json.Unmarshal(js, &l); err != nil {
		return nil, false
	}
	return &l, true
}

// logState is what a registry log holds.
type logState struct {
	exists     bool
	bootID     string
	host       string
	method     IDSource
	version    int
	recs       map[uint64]*Record
	wit        map[uint64]witness
	reserved   uint64 // highest reserve line
	maxSerial  uint64
	closedNext uint64 // next from a final "close" line (clean shutdown), else 0
	lines      int    // valid lines
	tornBytes  int    // bytes of the invalid tail (crash during an append)
	tornLines  int
	corrupt    int // invalid lines followed by valid ones
	validEnd   int // offset just after the last valid line
}

// readLog parses path. A missing file gives exists=false and no error.
func readLog(path string) (*logState, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &logState{recs: map[uint64]*Record{}, wit: map[uint64]witness{}}, nil
	}
	if err != nil {
		return nil, err
	}
	st := parseLog(data)
	st.exists = true
	return st, nil
}

func parseLog(data []byte) *logState {
	st := &logState{recs: map[uint64]*Record{}, wit: map[uint64]witness{}}
	off := 0
	bad := 0 // invalid lines since the last valid one
	badBytes := 0
	for off < len(data) {
		nl := bytes.IndexByte(data[off:], '\n')
		var line []byte
		next := len(data)
		complete := nl >= 0
		if complete {
			line = data[off : off+nl]
			next = off + nl + 1
		} else {
			line = data[off:]
		}
		var l *logLine
		ok := false
		if complete {
			l, ok = parseLine(line)
		}
		if !ok {
			bad++
			badBytes += next - off
			off = next
			continue
		}
		st.corrupt += bad
		bad, badBytes = 0, 0
		st.lines++
		st.validEnd = next
		st.apply(l)
		off = next
	}
	st.tornLines, st.tornBytes = bad, badBytes
	if st.bootID == "" {
		// Header lost: every record names its boot.
		for _, r := range st.recs {
			st.bootID = r.Host.BootID
			break
		}
	}
	return st
}

func (st *logState) apply(l *logLine) {
	if l.T != "close" {
		st.closedNext = 0
	}
	switch l.T {
	case "boot":
		if st.bootID == "" {
			st.bootID, st.host, st.method, st.version = l.BootID, l.Host, l.Method, l.V
		}
	case "reserve":
		st.reserved = max(st.reserved, l.Upto)
	case "ns":
		if l.Rec == nil || l.Rec.Serial == 0 {
			return
		}
		st.recs[l.Rec.Serial] = l.Rec
		st.maxSerial = max(st.maxSerial, l.Rec.Serial)
		if l.W != nil {
			st.wit[l.Rec.Serial] = *l.W
		}
	case "close":
		st.closedNext = l.Next
	}
}

// sortedRecords returns the records ordered by serial.
func (st *logState) sortedRecords() []Record {
	out := make([]Record, 0, len(st.recs))
	for _, r := range st.recs {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Serial < out[j].Serial })
	return out
}

// validBootID accepts what the kernel writes to boot_id (a UUID); it is also
// used in a file name.
func validBootID(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-') {
			return false
		}
	}
	return true
}

// DefaultBootIDPath is where the kernel publishes the boot id.
const DefaultBootIDPath = "/proc/sys/kernel/random/boot_id"

func readBootID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("serial: reading boot id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if !validBootID(id) {
		return "", fmt.Errorf("serial: boot id in %s is not a UUID: %q", path, id)
	}
	return id, nil
}

// Load reads the current boot's registry from dir without taking it over: no
// lock, no fds, no writes, so it works beside a running daemon (for
// `auditns ns`). It returns the boot id it looked for. If auditns has not run
// since this boot the error matches fs.ErrNotExist. A torn tail (a daemon
// mid-append) is ignored.
func Load(dir string) (bootID string, recs []Record, err error) {
	bootID, err = readBootID(DefaultBootIDPath)
	if err != nil {
		return "", nil, err
	}
	recs, err = LoadBoot(dir, bootID)
	return bootID, recs, err
}

// LoadBoot is Load for a given boot id: the current registry if it belongs
// to bootID, else the history file that a later boot kept.
func LoadBoot(dir, bootID string) ([]Record, error) {
	if !validBootID(bootID) {
		return nil, fmt.Errorf("serial: invalid boot id %q", bootID)
	}
	for _, name := range []string{logName, historyName(bootID)} {
		st, err := readLog(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("serial: reading namespace registry: %w", err)
		}
		if st.exists && st.bootID == bootID {
			return st.sortedRecords(), nil
		}
	}
	return nil, fmt.Errorf("serial: no namespace registry for boot %s in %s (auditns has not run in that boot): %w", bootID, dir, fs.ErrNotExist)
}

// writeFileSync writes data to dir/name through a temporary file, fsyncs it,
// renames it into place and fsyncs the directory.
func writeFileSync(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// keepAside renames dir/name to a read-only file whose name does not exist
// yet and returns the new name.
func keepAside(dir, name, target string) (string, error) {
	cand := target
	for i := 1; ; i++ {
		if _, err := os.Lstat(filepath.Join(dir, cand)); errors.Is(err, fs.ErrNotExist) {
			break
		}
		cand = target + "." + strconv.Itoa(i)
	}
	if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, cand)); err != nil {
		return "", err
	}
	os.Chmod(filepath.Join(dir, cand), 0o400)
	return cand, syncDir(dir)
}

func nowStamp() string { return strconv.FormatInt(time.Now().UnixNano(), 10) }
