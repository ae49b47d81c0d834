package netlink

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"sync/atomic"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"
	"golang.org/x/sys/unix"

	"github.com/auditns/auditns/internal/record"
)

// The record types below 1100 that are records, not control replies.
const (
	typeUser    = uint16(auparse.AUDIT_USER)  // AUDIT_USER
	typeLogin   = uint16(auparse.AUDIT_LOGIN) // AUDIT_LOGIN
	typeSyscall = uint16(auparse.AUDIT_SYSCALL)
)

// Record is one audit record as the kernel sent it: its type (1100 and up,
// USER and LOGIN) and its text, without the netlink header.
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

// TypeDropped is the type of a marker record Run puts first in a batch
// after it had to drop records: its Data holds, for each record dropped
// since the last batch that got through, its audit sequence number
// (little-endian uint32), type (uint16) and, for a SYSCALL record, its
// items= plus one (uint16; 0 for other records and when it has none), 8
// bytes in all: what the pipeline needs to tell the records the kernel
// cut from a dropped event. Real records are 1100 and up, and control
// messages never reach out.
const TypeDropped uint16 = 1

// maxDropRecords bounds the records a marker names (4 MiB); past it they
// are counted in ReaderStats.Dropped only.
const maxDropRecords = 1 << 19

// Dropped is a record named in a TypeDropped marker.
type Dropped struct {
	Seq  uint32
	Type uint16
	// Items is a SYSCALL record's items= (the PATH records of its event),
	// or -1.
	Items int32
}

// DroppedRecords decodes a TypeDropped record's Data.
func DroppedRecords(data []byte, into []Dropped) []Dropped {
	for len(data) >= 8 {
		d := Dropped{Seq: binary.LittleEndian.Uint32(data), Type: binary.LittleEndian.Uint16(data[4:])}
		d.Items = int32(binary.LittleEndian.Uint16(data[6:])) - 1
		into = append(into, d)
		data = data[8:]
	}
	return into
}

// maxBatch bounds how many records are handed over at once, so a burst
// reaches the pipeline in pieces it can start on.
const maxBatch = 128

// Run reads records until ctx is done or the socket fails, handing them to
// out in batches. Each batch's records share one backing array, allocated
// once per batch.
//
// What happens when out is full follows the kernel's own policy, so that
// the host's operator makes one choice, not two. With backlog_wait_time 0
// (the default) the kernel drops rather than stall audited processes, and
// so does Run: the batch is dropped and counted in stats.Dropped, and the
// socket keeps being drained. With backlog_wait_time > 0 in unicast mode the
// operator chose to stall audited processes rather than lose records: Run
// waits for room, the socket and then the kernel's backlog fill, and the
// kernel holds audited processes until auditns catches up.
func (c *Conn) Run(ctx context.Context, out chan<- []Record, stats *ReaderStats) error {
	rc, err := c.sock.pollable()
	if err != nil {
		return err
	}
	// A past deadline wakes a reader parked on the netpoller.
	stop := context.AfterFunc(ctx, func() { c.sock.file.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	// The sequence numbers of records dropped, for the next batch sent:
	// the pipeline then knows which events are gone, not only how many
	// records.
	var drops []byte
	defer func() {
		// The pipeline reads until out is closed, after Run returns; a
		// reader of out that has stopped reading is not waited for long.
		if len(drops) > 0 {
			select {
			case out <- []Record{{Type: TypeDropped, Data: drops}}:
			case <-time.After(time.Second):
			}
		}
	}()
	dropped := func(batch []Record) {
		for _, r := range batch {
			if r.Type == TypeDropped {
				continue // a marker that did not get through: drops still holds it
			}
			stats.Dropped.Add(1)
			h, err := record.ParseHeader(r.Data)
			if err != nil || len(drops) >= 8*maxDropRecords {
				continue
			}
			items := int32(-1)
			if r.Type == typeSyscall {
				items = record.Items(r.Data)
			}
			drops = binary.LittleEndian.AppendUint32(drops, h.Seq)
			drops = binary.LittleEndian.AppendUint16(drops, r.Type)
			drops = binary.LittleEndian.AppendUint16(drops, uint16(items+1))
		}
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		var batch []Record
		var derr error
		err := rc.Read(func(uintptr) bool {
			batch, derr = c.drain(stats)
			// Nothing read: the socket is empty (drain read until a
			// short recvmmsg), so park until it is readable again.
			return len(batch) > 0 || derr != nil
		})
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
		if len(batch) > 0 {
			if len(drops) > 0 {
				batch = append([]Record{{Type: TypeDropped, Data: drops}}, batch...)
			}
			sent := false
			if c.lossless() {
				select {
				case out <- batch:
					sent = true
				case <-ctx.Done():
				}
			} else {
				select {
				case out <- batch:
					sent = true
				default:
				}
			}
			if sent {
				drops = nil
			} else {
				dropped(batch)
			}
		}
		if derr != nil {
			return derr
		}
	}
}

// lossless reports whether Run waits for the pipeline instead of dropping:
// when the kernel waits too (backlog_wait_time), and in the drain of a clean
// stop, where no rule makes new events and what is left is read whole.
func (c *Conn) lossless() bool {
	return c.opts.Mode == Unicast && c.opts.BacklogWaitTime > 0 || c.draining.Load()
}

// drain reads what the socket holds, up to maxBatch records, a recvmmsg(2)
// of up to mmsgBatch datagrams at a time. Records are gathered in a reused
// scratch buffer and copied once into an arena of the exact size, so a
// queued batch holds no slack: the queue's memory is what it carries.
func (c *Conn) drain(stats *ReaderStats) ([]Record, error) {
	if c.mm == nil {
		c.mm = newMmsgReader(c.sock.fd)
	}
	mm := c.mm
	type span struct {
		typ        uint16
		start, end int
	}
	var spans [maxBatch]span
	scratch := c.scratch[:0]
	n := 0
	var rerr error
	for n < maxBatch {
		asked := min(maxBatch-n, mmsgBatch)
		got, err := mm.recv(asked)
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
		for i := range got {
			typ, data, ok := mm.datagram(i)
			if !ok || typ < 1100 && typ != typeUser && typ != typeLogin {
				// Netlink control (NOOP, ERROR, DONE) and audit control
				// replies (1000-1099) are not records; but for USER
				// (auditctl -m and older user space) and LOGIN (a
				// login uid set), which are.
				continue
			}
			// The audit payload runs to the end of the datagram: the
			// kernel's nlmsg_len is not reliable for audit messages.
			for len(data) > 0 && (data[len(data)-1] == 0 || data[len(data)-1] == '\n') {
				data = data[:len(data)-1]
			}
			start := len(scratch)
			scratch = append(scratch, data...)
			spans[n] = span{typ, start, len(scratch)}
			n++
		}
		if got < asked {
			// A short read means the socket is empty: save the EAGAIN call.
			break
		}
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
