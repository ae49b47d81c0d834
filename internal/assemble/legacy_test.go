package assemble

import (
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/auparse"
)

// legacy is the Assembler as it was on go-libaudit's Reassembler, kept for
// the benchmarks' baseline and as the reference of the differential tests.
type legacy struct {
	r     *libaudit.Reassembler
	emit  func(msgs []*auparse.AuditMessage)
	gap   func(Gap)
	next  uint32
	stats Stats
}

func newLegacy(maxInFlight int, timeout time.Duration, emit func(msgs []*auparse.AuditMessage), gap func(Gap)) *legacy {
	a := &legacy{emit: emit, gap: gap}
	a.r, _ = libaudit.NewReassembler(maxInFlight, timeout, (*legacyStream)(a))
	return a
}

func (a *legacy) Push(typ uint16, data []byte) {
	a.stats.Records.Add(1)
	msg, err := auparse.Parse(auparse.AuditMessageType(typ), string(data))
	if err != nil {
		a.stats.Malformed.Add(1)
		return
	}
	a.r.PushMessage(msg)
}

func (a *legacy) Close() { _ = a.r.Close() }

type legacyStream legacy

func (s *legacyStream) ReassemblyComplete(msgs []*auparse.AuditMessage) {
	a := (*legacy)(s)
	if len(msgs) == 0 {
		return
	}
	seq := msgs[0].Sequence
	if seq != 0 {
		switch {
		case a.next == 0:
		case seq > a.next && seq-a.next < 1<<31:
			g := Gap{From: a.next, To: seq - 1}
			a.stats.Missing.Add(g.Count())
			if a.gap != nil {
				a.gap(g)
			}
		}
		if a.next == 0 || seq >= a.next || a.next-seq > 1<<31 {
			a.next = seq + 1
		}
	}
	a.stats.Events.Add(1)
	a.emit(msgs)
}

func (s *legacyStream) EventsLost(int) {}
