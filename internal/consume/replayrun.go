package consume

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/render"
)

// OpenOutput opens the output spec names: stdout writes JSON lines to w
// (escaped for a terminal when w is one), file a new file, kafka-topic
// another topic (t says how; its Topic is taken from spec).
func (c *Client) OpenOutput(ctx context.Context, spec OutputSpec, w io.Writer, t TopicOutputOptions) (Output, error) {
	switch spec.Kind {
	case "file":
		fh, err := OpenFile(spec.Arg)
		if err != nil {
			return nil, err
		}
		return NewLineOutput(fh, false), nil
	case "kafka-topic":
		t.Topic = spec.Arg
		return c.NewTopicOutput(ctx, t)
	default:
		return NewLineOutput(w, render.IsTerminal(w)), nil
	}
}

// ReplayAnnotated replays o into out, each event's value annotated with
// the ns_info reg has for its namespaces (reg nil: as it is on the topic),
// then closes out. It returns how many events had a namespace reg does not
// know. An end by ctx is an error: the output is incomplete.
func (c *Client) ReplayAnnotated(ctx context.Context, o ReplayOptions, reg *Registry, out Output, stats *ReplayStats) (unknownNS int64, err error) {
	var buf []byte
	err = c.Replay(ctx, o, stats, func(it *Item) error {
		var info *event.NSInfos
		if reg != nil {
			var missing int
			if info, missing = reg.Annotate(it.Event); missing > 0 {
				unknownNS++
			}
		}
		buf = AppendAnnotated(buf[:0], it.Msg.Value, it.Event, info)
		return out.Write(it, buf)
	})
	interrupted := err != nil && ctx.Err() != nil
	cerr := out.Close()
	switch {
	case interrupted:
		return unknownNS, fmt.Errorf("interrupted after %d events: the output is incomplete", stats.Emitted.Load())
	case err != nil:
		return unknownNS, err
	}
	return unknownNS, cerr
}

// ReportProgress writes s's progress through [from, to) to w until the
// returned stop is called (stop returns once the last write is done): on
// a terminal a line rewritten in place every 250 ms, otherwise a line
// every 10 s (the first after 10 s), so that a log is not flooded.
func ReportProgress(w io.Writer, s *ReplayStats, from, to time.Time) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tty := render.IsTerminal(w)
		every := 10 * time.Second
		if tty {
			every = 250 * time.Millisecond
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				if tty {
					fmt.Fprint(w, "\r\x1b[K")
				}
				return
			case <-t.C:
			}
			if tty {
				fmt.Fprintf(w, "\r\x1b[K%s", s.ProgressLine(from, to))
			} else {
				fmt.Fprintln(w, s.ProgressLine(from, to))
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// ProgressLine says how far a replay of [from, to) is.
func (s *ReplayStats) ProgressLine(from, to time.Time) string {
	pos := "-"
	pct := 0.0
	if ns := s.Position.Load(); ns != 0 {
		p := time.Unix(0, ns)
		pos = render.Time(p)
		pct = 100 * float64(p.Sub(from)) / float64(to.Sub(from))
	}
	offs := 0.0
	if total := s.OffsetsTotal.Load(); total > 0 {
		offs = 100 * float64(s.OffsetsDone.Load()) / float64(total)
	}
	return fmt.Sprintf("replay: %d messages read, %d events written, %d duplicates; at %s: %.0f%% of the time range, %.0f%% of the messages",
		s.Messages.Load(), s.Emitted.Load(), s.Duplicates.Load(), pos, pct, offs)
}

// Summary is the line that ends a replay; reg is the registry it
// annotated from (nil: none), unknownNS what ReplayAnnotated returned.
func (s *ReplayStats) Summary(reg *Registry, unknownNS int64) string {
	line := fmt.Sprintf("replay: %d events written from %d partitions; %d messages read, %d duplicates dropped, %d outside the range, %d filtered out, %d not events, %d late",
		s.Emitted.Load(), s.Partitions.Load(), s.Messages.Load(), s.Duplicates.Load(), s.OutOfRange.Load(), s.Filtered.Load(), s.Undecodable.Load(), s.Late.Load())
	if reg != nil {
		line += fmt.Sprintf("; registry: %d namespaces, %d events with a namespace it does not know", reg.Len(), unknownNS)
	}
	return line
}
