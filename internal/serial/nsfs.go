package serial

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Low-level nsfs access. The hot path (Observe of known namespaces) builds
// NUL-terminated paths in stack buffers and calls the syscalls directly so
// that it does not allocate.

const (
	nsGetUserns = 0xb701     // _IO(0xb7, 1)
	nsGetParent = 0xb702     // _IO(0xb7, 2)
	nsGetID     = 0x8008b70d // _IOR(0xb7, 13, __u64)
)

// Paths relative to /proc/<pid>, NUL-terminated.
var (
	nsRel      [NumTypes][]byte
	nsChildRel = map[Type][]byte{PID: []byte("ns/pid_for_children\x00"), Time: []byte("ns/time_for_children\x00")}
	statRel    = []byte("stat\x00")
)

func init() {
	for _, t := range Types {
		nsRel[t] = []byte("ns/" + t.String() + "\x00")
	}
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// openPidDir opens <procRoot>/<pid> as a directory. Every later read for
// this observation is relative to it, so all types come from the same
// process even if the pid is reused meanwhile.
func openPidDir(procRoot string, pid int) (int, error) {
	var buf [256]byte
	if len(procRoot)+24 > len(buf) {
		return unix.Open(procRoot+"/"+strconv.Itoa(pid), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	b := append(buf[:0], procRoot...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, 0)
	return openat(unix.AT_FDCWD, &b[0], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
}

func openat(dirfd int, path *byte, flags int) (int, error) {
	for {
		r, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(path)), uintptr(flags), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(r), nil
	}
}

// openNS opens /proc/<pid>/ns/<t> relative to pfd.
func openNS(pfd int, rel []byte) (int, error) {
	return openat(pfd, &rel[0], unix.O_RDONLY|unix.O_CLOEXEC)
}

// readlinkNS returns the inode number in the "type:[inode]" link of rel.
func readlinkNS(pfd int, rel []byte) (uint64, error) {
	var buf [64]byte
	r, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(pfd), uintptr(unsafe.Pointer(&rel[0])),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if e != 0 {
		return 0, e
	}
	ino, ok := parseNSLink(buf[:r])
	if !ok {
		return 0, unix.EINVAL
	}
	return ino, nil
}

// parseNSLink parses "net:[4026531840]" and returns the inode.
func parseNSLink(b []byte) (uint64, bool) {
	i := 0
	for i < len(b) && b[i] != '[' {
		i++
	}
	if i == len(b) || len(b) < i+3 || b[len(b)-1] != ']' {
		return 0, false
	}
	var v uint64
	for _, c := range b[i+1 : len(b)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// nsID asks the kernel for the namespace's 64-bit id (Linux >= 6.18).
func nsID(fd int) (uint64, error) {
	var id uint64
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), nsGetID, uintptr(unsafe.Pointer(&id)))
	return id, errnoErr(e)
}

// nsRelated returns a new fd for the owning user namespace (nsGetUserns) or
// the parent namespace (nsGetParent).
func nsRelated(fd int, req uintptr) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func fstat(fd int, st *unix.Stat_t) error {
	_, _, e := unix.Syscall(unix.SYS_FSTAT, uintptr(fd), uintptr(unsafe.Pointer(st)), 0)
	return errnoErr(e)
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// readStartTime returns field 22 (starttime, clock ticks since boot) of
// /proc/<pid>/stat, relative to the pid directory pfd.
func readStartTime(pfd int) (uint64, error) {
	fd, err := openat(pfd, &statRel[0], unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var buf [1024]byte
	n, err := unix.Read(fd, buf[:])
	if err != nil {
		return 0, err
	}
	return parseStartTime(buf[:n])
}

func parseStartTime(b []byte) (uint64, error) {
	// comm may contain spaces and parentheses: fields start after the last ')'.
	i := len(b) - 1
	for i >= 0 && b[i] != ')' {
		i--
	}
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	field := 2 // the ')' ends field 2
	start := -1
	for j := i + 1; j < len(b); j++ {
		if b[j] == ' ' {
			field++
			if field == 22 {
				start = j + 1
			} else if field == 23 {
				return strconv.ParseUint(string(b[start:j]), 10, 64)
			}
		}
	}
	return 0, errors.New("malformed stat")
}

// devString renders st_dev as "major:minor".
func devString(dev uint64) string {
	return strconv.FormatUint(uint64(unix.Major(dev)), 10) + ":" + strconv.FormatUint(uint64(unix.Minor(dev)), 10)
}

// ProcessGoneError is returned by Observe when the process no longer exists.
// It matches fs.ErrNotExist with errors.Is.
type ProcessGoneError struct {
	PID int
	Err error
}

func (e *ProcessGoneError) Error() string {
	return fmt.Sprintf("serial: process %d is gone: %v", e.PID, e.Err)
}

// Is makes errors.Is(err, fs.ErrNotExist) true.
func (e *ProcessGoneError) Is(target error) bool { return target == fs.ErrNotExist }

func (e *ProcessGoneError) Unwrap() error { return e.Err }

func isGoneErrno(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}
