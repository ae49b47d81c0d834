package netlink

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	libaudit "github.com/elastic/go-libaudit/v2"
	"golang.org/x/sys/unix"
)

// socket is an audit netlink socket. It implements go-libaudit's
// NetlinkSendReceiver so that libaudit.AuditClient drives the control
// protocol, while the event reader uses the file descriptor directly: it needs
// poll(2) to stop on shutdown, a large receive buffer, and reads that do not
// go through an allocating parser.
type socket struct {
	fd  int
	pid uint32
	seq uint32
	buf []byte

	// file and rc exist once the reader has made the socket non-blocking
	// and handed it to Go's netpoller (see pollable); file then owns fd.
	file *os.File
	rc   syscall.RawConn
}

var _ libaudit.NetlinkSendReceiver = (*socket)(nil)

// newSocket opens a NETLINK_AUDIT socket, bound to groups (0 for the unicast
// daemon socket, 1 for the read-only multicast group), with a receive buffer
// of rcvbuf bytes (forced past rmem_max when we have CAP_NET_ADMIN).
func newSocket(groups uint32, rcvbuf int) (*socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		switch {
		case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT), errors.Is(err, unix.EINVAL):
			return nil, fmt.Errorf("kernel has no audit support (CONFIG_AUDIT): %w", err)
		}
		return nil, fmt.Errorf("open audit netlink socket: %w", err)
	}
	if rcvbuf > 0 {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		if groups != 0 && errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("join the audit multicast group: %w (multicast mode needs CAP_AUDIT_READ and the initial network namespace)", err)
		}
		return nil, fmt.Errorf("bind audit netlink socket: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	nl, _ := sa.(*unix.SockaddrNetlink)
	s := &socket{fd: fd, buf: make([]byte, unix.NLMSG_HDRLEN+libaudit.AuditMessageMaxLength+64)}
	if nl != nil {
		s.pid = nl.Pid
	}
	return s, nil
}

func (s *socket) Send(msg syscall.NetlinkMessage) (uint32, error) { return s.send(msg, 0) }
func (s *socket) SendNoWait(msg syscall.NetlinkMessage) (uint32, error) {
	return s.send(msg, unix.MSG_DONTWAIT)
}

func (s *socket) send(msg syscall.NetlinkMessage, flags int) (uint32, error) {
	if msg.Header.Pid == 0 {
		msg.Header.Pid = s.pid
	}
	s.seq++
	msg.Header.Seq = s.seq
	msg.Header.Len = uint32(syscall.SizeofNlMsghdr + len(msg.Data))
	b := make([]byte, msg.Header.Len)
	*(*syscall.NlMsghdr)(unsafe.Pointer(&b[0])) = msg.Header
	copy(b[syscall.SizeofNlMsghdr:], msg.Data)
	return msg.Header.Seq, unix.Sendto(s.fd, b, flags, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// Receive is used by libaudit.AuditClient for control replies.
func (s *socket) Receive(nonBlocking bool, p libaudit.NetlinkParser) ([]syscall.NetlinkMessage, error) {
	n, err := s.recv(nonBlocking)
	if err != nil {
		return nil, err
	}
	return p(s.buf[:n])
}

// recv reads one datagram into s.buf and checks it came from the kernel.
func (s *socket) recv(nonBlocking bool) (int, error) {
	flags := 0
	if nonBlocking {
		flags = unix.MSG_DONTWAIT
	}
	for {
		n, from, err := unix.Recvfrom(s.fd, s.buf, flags)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN && !nonBlocking {
			// The reader made the socket non-blocking; a control reply
			// (at shutdown) is waited for here.
			if _, err := s.wait(-1); err != nil {
				return 0, err
			}
			continue
		}
		if err != nil {
			return 0, err
		}
		if n < unix.NLMSG_HDRLEN {
			return 0, fmt.Errorf("short netlink message (%d bytes)", n)
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			// Only the kernel (port 0) may speak on this socket; drop
			// anything else rather than trust it.
			continue
		}
		return n, nil
	}
}

// wait blocks until the socket is readable or timeoutMs passes.
func (s *socket) wait(timeoutMs int) (bool, error) {
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, timeoutMs)
		if err == unix.EINTR {
			continue
		}
		return n > 0, err
	}
}

// pollable makes the socket non-blocking and registers it with Go's
// netpoller, for the reader. A reader blocked in poll(2) holds an OS thread
// in a syscall, and the runtime hands its P to another thread each time (the
// sysmon retake), which under a trickle of records costs more than reading
// them; a goroutine parked on the netpoller costs nothing until data comes.
func (s *socket) pollable() (syscall.RawConn, error) {
	if s.rc != nil {
		return s.rc, nil
	}
	if err := unix.SetNonblock(s.fd, true); err != nil {
		return nil, fmt.Errorf("audit netlink socket: set non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(s.fd), "audit-netlink")
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("audit netlink socket: %w", err)
	}
	s.file, s.rc = f, rc
	return rc, nil
}

func (s *socket) Close() error {
	if s.file != nil {
		return s.file.Close()
	}
	return unix.Close(s.fd)
}
