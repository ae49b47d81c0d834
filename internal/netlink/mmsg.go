package netlink

import (
	"unsafe"

	libaudit "github.com/elastic/go-libaudit/v2"
	"golang.org/x/sys/unix"
)

// mmsgBatch is how many datagrams one recvmmsg(2) asks for. The kernel sends
// one record per datagram, so reading them one recvfrom at a time costs a
// syscall per record: under a storm that alone is as much CPU as a plain
// receive loop's whole cost. 32 slots of 9 KiB keep the buffer at 300 KiB.
const mmsgBatch = 32

// slotSize fits the largest audit record (AUDIT_MESSAGE_TEXT_MAX) and its
// netlink header; a longer datagram is truncated by the kernel (MSG_TRUNC).
const slotSize = unix.NLMSG_HDRLEN + libaudit.AuditMessageMaxLength + 64

// mmsghdr is struct mmsghdr: a msghdr and the byte count of that datagram.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// mmsgReader receives up to mmsgBatch datagrams per syscall into fixed
// slots. Its buffers are Go memory that the kernel writes through the
// pointers set once in newMmsgReader; they live as long as the reader.
type mmsgReader struct {
	fd    int
	msgs  [mmsgBatch]mmsghdr
	iovs  [mmsgBatch]unix.Iovec
	names [mmsgBatch]unix.RawSockaddrNetlink
	buf   []byte
}

func newMmsgReader(fd int) *mmsgReader {
	r := &mmsgReader{fd: fd, buf: make([]byte, mmsgBatch*slotSize)}
	for i := range r.msgs {
		r.iovs[i].Base = &r.buf[i*slotSize]
		r.iovs[i].SetLen(slotSize)
		h := &r.msgs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
	}
	return r
}

// recv reads up to max (≤ mmsgBatch) datagrams without blocking and returns
// how many arrived; EAGAIN when there were none.
func (r *mmsgReader) recv(max int) (int, error) {
	if max > mmsgBatch {
		max = mmsgBatch
	}
	for i := range max {
		// The kernel overwrites these on return; they must be reset.
		r.msgs[i].hdr.Namelen = unix.SizeofSockaddrNetlink
		r.msgs[i].hdr.Flags = 0
		r.msgs[i].hdr.Controllen = 0
	}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&r.msgs[0])),
			uintptr(max), unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// datagram returns the i-th datagram of the last recv, or ok=false when it
// must be ignored: not from the kernel (port 0), or shorter than a header.
func (r *mmsgReader) datagram(i int) (typ uint16, data []byte, ok bool) {
	size := int(r.msgs[i].n)
	if size > slotSize {
		size = slotSize
	}
	if size < unix.NLMSG_HDRLEN || r.names[i].Pid != 0 {
		// Only the kernel may speak on this socket; drop anything else
		// rather than trust it.
		return 0, nil, false
	}
	b := r.buf[i*slotSize : i*slotSize+size]
	h := (*unix.NlMsghdr)(unsafe.Pointer(&b[0]))
	return h.Type, b[unix.NLMSG_HDRLEN:], true
}
