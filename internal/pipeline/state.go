package pipeline

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/auditns/auditns/internal/publish"
)

// runState is what a run leaves in the state directory after every write
// to the sink, so that the next run, after a kill -9, can count what this
// one had read and not written: the sequence numbers it had left open, the
// losses it still owed, and how far it had counted the kernel's lost
// counter. It is written in place without fsync: a killed process's
// writes are in the page cache.
type runState struct {
	Boot  string            `json:"boot"`
	Clean bool              `json:"clean"` // the run stopped cleanly: nothing to resume
	Lost  uint32            `json:"lost"`  // the kernel's counter, counted up to here
	Have  bool              `json:"have"`  // Lost was read
	Top   uint32            `json:"top"`   // one past the highest number seen
	Open  [][2]uint32       `json:"open"`  // runs of numbers below Top not written (inclusive)
	Whole bool              `json:"whole"` // Open is complete
	Owed  map[string]uint64 `json:"owed,omitempty"`
	// Credits are records not to be counted in the kernel's growth that
	// was not settled yet (and is counted again from Lost).
	Credits uint64 `json:"credits,omitempty"`
	// Doubt is the batch being written when the state was: taken for
	// written above, looked for in the output by the next run.
	Doubt *doubt `json:"doubt,omitempty"`
}

// doubt is a batch written to a file sink after the state that takes it
// for written: its events' sequence numbers (runs, inclusive) and the mark
// of the file where its lines go.
type doubt struct {
	Mark publish.Mark `json:"mark"`
	Seqs [][2]uint32  `json:"seqs"`
}

// markedSink is a sink whose writes can be read back (a file).
type markedSink interface {
	Mark() (publish.Mark, bool)
	LinesSince(publish.Mark, func(line []byte)) (bool, error)
}

// doubtOf describes a batch of events with these sequence numbers about to
// be written, when the sink can be read back.
func (p *Pipeline) doubtOf(seqs []uint32) *doubt {
	ms, ok := p.o.Sink.(markedSink)
	if !ok || p.state == nil || len(seqs) == 0 {
		return nil
	}
	m, ok := ms.Mark()
	if !ok {
		return nil
	}
	d := &p.doubtBuf // one per pipeline: the state is written from it at once
	d.Mark, d.Seqs = m, d.Seqs[:0]
	for _, n := range seqs {
		if k := len(d.Seqs); k > 0 && d.Seqs[k-1][1]+1 == n {
			d.Seqs[k-1][1] = n
			continue
		}
		d.Seqs = append(d.Seqs, [2]uint32{n, n})
	}
	return d
}

// unwritten returns the numbers of d's batch that the output does not hold:
// the run was killed before (or in) the batch's write.
func (p *Pipeline) unwritten(d *doubt) []uint32 {
	ms, ok := p.o.Sink.(markedSink)
	if !ok || d == nil {
		return nil
	}
	in := map[uint32]bool{}
	key := []byte(`"sequence":`)
	ok, err := ms.LinesSince(d.Mark, func(line []byte) {
		i := bytes.Index(line, key)
		if i < 0 || !json.Valid(line) {
			return
		}
		j := i + len(key)
		k := j
		for k < len(line) && line[k] >= '0' && line[k] <= '9' {
			k++
		}
		if n, err := strconv.ParseUint(string(line[j:k]), 10, 32); err == nil {
			in[uint32(n)] = true
		}
	})
	if !ok {
		if err != nil {
			p.log.Warn("cannot read back the last run's last write; its events are taken for written", "error", err)
		}
		return nil
	}
	var out []uint32
	for _, r := range d.Seqs {
		for n := r[0]; ; n++ {
			if !in[n] {
				out = append(out, n)
			}
			if n == r[1] {
				break
			}
		}
	}
	return out
}

// maxOpen bounds the open numbers looked at, maxRuns the runs of them kept.
const (
	maxOpen = 1 << 20
	maxRuns = 4096
)

// stateFile is the run state's file: a 4-byte length, then the JSON. It
// is kept open and written in place; after a failed write it is opened
// again by its path, at most once a second, so that a state directory
// that was made writable again, or a file system mounted again in its
// place, is written without a restart.
type stateFile struct {
	path    string
	f       *os.File
	buf     []byte
	err     error     // the last write error, logged once
	retryAt time.Time // no open before this, after a failure
	// failing holds the error while the state cannot be written, for
	// StateHealth on other goroutines.
	failing atomic.Pointer[error]
}

func loadState(path string) (*runState, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 4 || int(binary.LittleEndian.Uint32(b)) > len(b)-4 {
		return nil, errors.New("truncated")
	}
	var st runState
	if err := json.Unmarshal(b[4:4+binary.LittleEndian.Uint32(b)], &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func (s *stateFile) write(st *runState) error {
	j, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if s.f == nil {
		if time.Now().Before(s.retryAt) {
			return s.err
		}
		if s.f, err = os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
			s.f, s.retryAt = nil, time.Now().Add(time.Second)
			return err
		}
	}
	s.buf = binary.LittleEndian.AppendUint32(s.buf[:0], uint32(len(j)))
	s.buf = append(s.buf, j...)
	if _, err = s.f.WriteAt(s.buf, 0); err != nil {
		s.f.Close()
		s.f, s.retryAt = nil, time.Now().Add(time.Second)
	}
	return err
}

// resume picks up a run that did not stop cleanly.
func (p *Pipeline) resume() {
	st, err := loadState(p.o.StateFile)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			p.log.Warn("loss accounting state unreadable; starting afresh", "file", p.o.StateFile, "error", err)
		}
		return
	}
	if st.Clean || st.Boot != p.o.BootID || st.Top == 0 {
		return
	}
	var open []uint32
	if st.Whole {
		for _, r := range st.Open {
			for n := r[0]; ; n++ {
				open = append(open, n)
				if n == r[1] {
					break
				}
			}
		}
	} // else count from top: what was open below it is not known
	missed := p.unwritten(st.Doubt)
	open = append(open, missed...)
	p.asm.ResumeFrom(st.Top, open)
	p.resumed = true
	if st.Have {
		p.lastLost, p.haveLost = st.Lost, true
	}
	if st.Credits > 0 {
		p.ledger.credit(st.Credits)
	}
	var owed uint64
	for reason, n := range st.Owed {
		p.ledger.owe(reason, n, "")
		owed += n
	}
	p.log.Warn("the last run did not stop cleanly: counting what it had read and not written",
		"next_sequence", st.Top, "open", len(st.Open), "open_complete", st.Whole, "kernel_lost_counted", st.Lost, "owed", owed,
		"last_write_missing", len(missed))
}

// persist records the run's state: the events emitted so far are taken
// for written (flush writes it before the batch).
func (p *Pipeline) persist(clean bool) {
	s := p.state
	if s == nil {
		return
	}
	// Once stopped cleanly, the writes of the shutdown keep it so.
	clean = clean || p.stoppedCleanly
	p.stoppedCleanly = clean
	st := &p.stateBuf
	st.Boot, st.Clean = p.o.BootID, clean
	st.Doubt = p.doubt
	st.Lost, st.Have = p.lastLost, p.haveLost
	for _, l := range p.ledger.lost {
		st.Lost -= uint32(l.n) // not settled yet: counted again
	}
	// Records that events which timed out still lack are taken for cut:
	// after a kill -9 the next run cannot learn otherwise.
	st.Credits = uint64(p.asm.PendingCut())
	for _, c := range p.ledger.credits {
		st.Credits += c.n
	}
	var open []uint32
	st.Top, open, st.Whole = p.asm.Checkpoint(p.openBuf, maxOpen)
	p.openBuf = open
	slices.Sort(open)
	st.Open = st.Open[:0]
	for _, n := range open {
		if k := len(st.Open); k > 0 && st.Open[k-1][1]+1 == n {
			st.Open[k-1][1] = n
			continue
		}
		if len(st.Open) == maxRuns {
			st.Whole = false
			break
		}
		st.Open = append(st.Open, [2]uint32{n, n})
	}
	clear(st.Owed)
	if len(p.ledger.order) > 0 || len(p.ledger.gaps) > 0 {
		if st.Owed == nil {
			st.Owed = map[string]uint64{}
		}
		for reason, n := range p.ledger.owed {
			st.Owed[reason] += n
		}
		for _, g := range p.ledger.gaps {
			st.Owed[reasonGap] += g.Count()
		}
	}
	err := s.write(st)
	if err != nil && s.err == nil {
		p.log.Error("cannot write the loss accounting state; a kill -9 now would go uncounted", "file", p.o.StateFile, "error", err)
		s.failing.Store(&err)
	} else if err == nil && s.err != nil {
		p.log.Info("loss accounting state written again", "file", p.o.StateFile)
		s.failing.Store(nil)
	}
	s.err = err
}

// StateHealth reports, while it lasts, that the loss accounting state
// cannot be written: a kill -9 would then go uncounted.
func (p *Pipeline) StateHealth() error {
	if p.state == nil {
		return nil
	}
	if err := p.state.failing.Load(); err != nil {
		return fmt.Errorf("state_dir: the loss accounting state %s cannot be written (a kill -9 now would go uncounted): %v", p.o.StateFile, *err)
	}
	return nil
}
