package consume

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/auditns/auditns/internal/filter"
)

// ReplayOptions configures Replay.
type ReplayOptions struct {
	Topic string
	// From and To bound event.created: From <= created < To. To must be
	// after From.
	From, To time.Time
	// Window is the skew allowed between a partition's order and time
	// order (default 5s): the span of event time the per-partition reorder
	// buffer holds.
	Window time.Duration
	// ReadPast is how far past To each partition is read: a partition
	// stops at its first message stamped at or after To+ReadPast (default
	// Window). An event delivered later than that behind newer ones (a
	// host that spooled during a long Kafka outage, on a partition other
	// hosts kept writing to) is not found unless ReadPast covers the
	// delay.
	ReadPast time.Duration
	// MaxBuffer caps each partition's reorder buffer (default 16384
	// events); when it is full the oldest buffered event is released even
	// if it is within Window of the newest.
	MaxBuffer int
	// Filter selects events; nil passes all.
	Filter *filter.Filter
	// Dedup drops repeated event ids; nil: NewDedup(0, 0).
	Dedup *Dedup
}

// Default values of ReplayOptions.
const (
	DefaultWindow    = 5 * time.Second
	DefaultMaxBuffer = 1 << 14
)

// ReplayStats counts what Replay does. It is updated while Replay runs and
// may be read concurrently (progress).
type ReplayStats struct {
	// Partitions is the number of partitions with messages to read.
	Partitions atomic.Int64
	// OffsetsTotal is how many messages lie between the start and end
	// offsets of every partition; OffsetsDone how many were fetched.
	OffsetsTotal, OffsetsDone atomic.Int64
	// Messages read; Undecodable ones skipped; OutOfRange ones outside
	// [From, To); Filtered ones rejected by the filter.
	Messages, Undecodable, OutOfRange, Filtered atomic.Int64
	// Duplicates dropped (repeated event.id); Emitted delivered to fn.
	Duplicates, Emitted atomic.Int64
	// Late counts events delivered after a later one (a partition was
	// out of time order by more than the window, or a buffer was full).
	Late atomic.Int64
	// Position is event.created of the last delivered event (Unix ns).
	Position atomic.Int64
}

// ErrEmptyRange is returned when To is not after From.
var ErrEmptyRange = errors.New("the time range is empty: --to must be after --from")

// Replay reads the events whose event.created lies in [From, To) from every
// partition of the topic and calls fn for each (from one goroutine) that
// passes the filter, once per event.id, in time order (event.created, then
// event.id).
//
// Each partition is read from the first offset stamped at or after From
// (Kafka's ListOffsets by timestamp) to the first stamped at or after
// To+ReadPast, or its high watermark at the start. Partitions are read
// concurrently into bounded channels; each partition's stream is put in
// time order by a reorder buffer (an event is released once the partition
// has shown an event more than Window newer, or the buffer holds
// MaxBuffer events), and the streams are merged by a k-way merge on a heap
// of one head per partition. De-duplication runs on the merged stream.
// Memory is bounded by the channels, the reorder buffers and Dedup, not by
// the size of the range.
func (c *Client) Replay(ctx context.Context, o ReplayOptions, stats *ReplayStats, fn func(*Item) error) error {
	if stats == nil {
		stats = &ReplayStats{}
	}
	if !o.To.After(o.From) {
		return ErrEmptyRange
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.ReadPast <= 0 {
		o.ReadPast = o.Window
	}
	if o.MaxBuffer <= 0 {
		o.MaxBuffer = DefaultMaxBuffer
	}
	if o.Dedup == nil {
		o.Dedup = NewDedup(0, 0)
	}
	parts, err := c.Partitions(ctx, o.Topic)
	if err != nil {
		return err
	}
	starts, err := c.OffsetsAt(ctx, o.Topic, parts, o.From)
	if err != nil {
		return err
	}
	ends, err := c.OffsetsAt(ctx, o.Topic, parts, o.To.Add(o.ReadPast))
	if err != nil {
		return err
	}

	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(gctx)
	var streams []*partStream
	for _, p := range parts {
		start, end := starts[p], ends[p]
		if start >= end {
			continue
		}
		stats.Partitions.Add(1)
		stats.OffsetsTotal.Add(end - start)
		s := &partStream{partition: p, ch: make(chan *Item, 256)}
		streams = append(streams, s)
		g.Go(func() error {
			defer close(s.ch)
			done := start
			err := c.readPartition(gctx, o.Topic, p, start, end, func(m *Message) error {
				stats.Messages.Add(1)
				it, err := decode(m)
				switch {
				case err != nil:
					stats.Undecodable.Add(1)
					return nil
				case it.Created.Before(o.From) || !it.Created.Before(o.To):
					stats.OutOfRange.Add(1)
					return nil
				case !o.Filter.Match(it.Event):
					stats.Filtered.Add(1)
					return nil
				}
				select {
				case s.ch <- it:
					return nil
				case <-gctx.Done():
					return gctx.Err()
				}
			}, func(next int64) {
				stats.OffsetsDone.Add(min(next, end) - done)
				done = min(next, end)
			})
			if err != nil && gctx.Err() == nil {
				return fmt.Errorf("%s partition %d: %w", o.Topic, p, err)
			}
			return nil
		})
	}

	err = merge(gctx, streams, o, stats, fn)
	if err != nil {
		cancel()
	}
	werr := g.Wait()
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	case werr != nil:
		return werr
	}
	return err
}

// merge runs the k-way merge of the partition streams.
func merge(ctx context.Context, streams []*partStream, o ReplayOptions, stats *ReplayStats, fn func(*Item) error) error {
	h := &headHeap{}
	for _, s := range streams {
		it, err := s.next(ctx, o.Window, o.MaxBuffer)
		if err != nil {
			return err
		}
		if it != nil {
			heap.Push(h, head{it, s})
		}
	}
	var last *Item
	for h.Len() > 0 {
		hd := heap.Pop(h).(head)
		it := hd.item
		if next, err := hd.s.next(ctx, o.Window, o.MaxBuffer); err != nil {
			return err
		} else if next != nil {
			heap.Push(h, head{next, hd.s})
		}
		if id := it.ID(); id != "" && o.Dedup.Seen(id, it.Created) {
			stats.Duplicates.Add(1)
			continue
		}
		if last != nil && less(it, last) {
			stats.Late.Add(1)
		} else {
			last = it
		}
		stats.Emitted.Add(1)
		stats.Position.Store(it.Created.UnixNano())
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

// partStream is one partition's events, put in time order by a bounded
// reorder buffer.
type partStream struct {
	partition int
	ch        chan *Item
	buf       itemHeap
	newest    time.Time
	done      bool
}

// next returns the partition's next event in time order, or nil at its
// end.
func (s *partStream) next(ctx context.Context, window time.Duration, maxBuf int) (*Item, error) {
	for {
		if len(s.buf) > 0 {
			top := s.buf[0]
			if s.done || len(s.buf) >= maxBuf || !top.Created.After(s.newest.Add(-window)) {
				return heap.Pop(&s.buf).(*Item), nil
			}
		} else if s.done {
			return nil, nil
		}
		select {
		case it, ok := <-s.ch:
			if !ok {
				s.done = true
				continue
			}
			heap.Push(&s.buf, it)
			if it.Created.After(s.newest) {
				s.newest = it.Created
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

type itemHeap []*Item

func (h itemHeap) Len() int           { return len(h) }
func (h itemHeap) Less(i, j int) bool { return less(h[i], h[j]) }
func (h itemHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)        { *h = append(*h, x.(*Item)) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

type head struct {
	item *Item
	s    *partStream
}

type headHeap []head

func (h headHeap) Len() int           { return len(h) }
func (h headHeap) Less(i, j int) bool { return less(h[i].item, h[j].item) }
func (h headHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *headHeap) Push(x any)        { *h = append(*h, x.(head)) }
func (h *headHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
