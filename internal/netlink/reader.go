package netlink

import (
	"context"
	"errors"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Record is one audit record as the kernel sent it: its type (1100 and up
// for events) and its text, without the netlink header.
type Record struct {
	Type uint16
	Data []byte
}

// ReaderStats are the reader's counters; safe to read from any goroutine.
type ReaderStats struct {
	// Records is how many records were read from the socket.
	Records atomic.Uint64
	// Dropped is how many records were discarded because the pipeline's
	// queue was full: the reader never waits on the pipeline.
	Dropped atomic.Uint64
	// Overruns counts ENOBUFS from the socket: the kernel could not queue
	// to us and discarded records (multicast) or kept them for a retry.
	Overruns atomic.Uint64
}

// maxBatch bounds how many records are handed over at once, so a burst
// reaches the pipeline in pieces it can start on.
const maxBatch = 128

// Run reads records until ctx is done or the socket fails, handing them to
// out in batches. A batch that does not fit in out is dropped and counted in
// stats.Dropped: the kernel's socket must be drained at all times, or the
// kernel's backlog fills and audited processes pay for it. Each batch's
// records share one backing array, allocated once per batch.
func (c *Conn) Run(ctx context.Context, out chan<- []Record, stats *ReaderStats) error {
	s := c.sock
	for {
		if ctx.Err() != nil {
			return nil
		}
		ready, err := s.wait(200)
		if err != nil {
			return err
		}
		if !ready {
			continue
		}
		batch, err := c.drain(stats)
		if len(batch) > 0 {
			select {
			case out <- batch:
			default:
				stats.Dropped.Add(uint64(len(batch)))
			}
		}
		if err != nil {
			return err
		}
	}
}

// drain reads what the socket holds, up to maxBatch records. Records are
// gathered in a reused scratch buffer and copied once into an arena of the
// exact size, so a queued batch holds no slack: the queue's memory is what
// it carries.
func (c *Conn) drain(stats *ReaderStats) ([]Record, error) {
	s := c.sock
	type span struct {
		typ        uint16
		start, end int
	}
	var spans [maxBatch]span
	scratch := c.scratch[:0]
	n := 0
	var rerr error
	for n < maxBatch {
		size, err := s.recv(true)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			if errors.Is(err, unix.ENOBUFS) {
				stats.Overruns.Add(1)
				continue
			}
			rerr = err
			break
		}
		h := (*unix.NlMsghdr)(unsafe.Pointer(&s.buf[0]))
		if h.Type < 1100 {
			// Netlink control (NOOP, ERROR, DONE) and audit control
			// replies (1000-1099) are not records.
			continue
		}
		// The audit payload runs to the end of the datagram: the kernel's
		// nlmsg_len is not reliable for audit messages.
		data := s.buf[unix.NLMSG_HDRLEN:size]
		for len(data) > 0 && (data[len(data)-1] == 0 || data[len(data)-1] == '\n') {
			data = data[:len(data)-1]
		}
		start := len(scratch)
		scratch = append(scratch, data...)
		spans[n] = span{h.Type, start, len(scratch)}
		n++
	}
	c.scratch = scratch
	stats.Records.Add(uint64(n))
	if n == 0 {
		return nil, rerr
	}
	arena := make([]byte, len(scratch))
	copy(arena, scratch)
	out := make([]Record, n)
	for i, sp := range spans[:n] {
		out[i] = Record{Type: sp.typ, Data: arena[sp.start:sp.end:sp.end]}
	}
	return out, rerr
}
