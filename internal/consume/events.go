package consume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/filter"
)

// Item is one event read from the events topic: the message as it is on
// the topic and its decoded auditns event (version 2 or 1).
type Item struct {
	Msg   *Message
	Event *event.Event
	// Created is when the event happened: @timestamp (version 1:
	// event.created), the message time when the event has none.
	Created time.Time
	boot    string
	seq     uint64
	numeric bool // seq parsed from the id
}

// ID returns event.id.
func (it *Item) ID() string { return it.Event.Event.ID }

// errNotEvent marks a value that is not an auditns event.
var errNotEvent = errors.New("not an auditns event")

// decode parses m's value.
func decode(m *Message) (*Item, error) {
	if len(m.Value) == 0 {
		return nil, errNotEvent
	}
	var e event.Event
	if err := json.Unmarshal(m.Value, &e); errors.Is(err, event.ErrNotEvent) {
		return nil, fmt.Errorf("%w: schema %q", errNotEvent, e.Schema)
	} else if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotEvent, err)
	}
	if e.Event.ID == "" {
		e.Event.ID = m.Header("event_id")
	}
	it := &Item{Msg: m, Event: &e, Created: e.When()}
	if it.Created.IsZero() {
		it.Created = m.Time
	}
	id := e.Event.ID
	if i := strings.LastIndexByte(id, ':'); i >= 0 {
		if n, err := strconv.ParseUint(id[i+1:], 10, 64); err == nil {
			it.boot, it.seq, it.numeric = id[:i], n, true
		}
	}
	return it, nil
}

// less orders items by event.created, then by event.id, with the audit
// sequence number after the boot id compared as a number.
func less(a, b *Item) bool {
	if !a.Created.Equal(b.Created) {
		return a.Created.Before(b.Created)
	}
	if a.numeric && b.numeric {
		if a.boot != b.boot {
			return a.boot < b.boot
		}
		return a.seq < b.seq
	}
	return a.ID() < b.ID()
}

// FollowOptions configures Follow.
type FollowOptions struct {
	Topic string
	// Since is where to start: each partition's first message at or after
	// it. Zero: only messages produced from now on.
	Since time.Time
	// Filter selects events; nil passes all.
	Filter *filter.Filter
	// Dedup drops events whose event.id was already delivered; nil:
	// NewDedup(0, 0).
	Dedup *Dedup
	// Started, if set, is called once the start offsets are known, with
	// the number of partitions: from then on every message produced is
	// read.
	Started func(partitions int)
	// WatchInterval is how often the topic's partitions are listed again,
	// so that partitions added while following are read (from their
	// first offset). Default 30s.
	WatchInterval time.Duration
}

// FollowStats counts what Follow did.
type FollowStats struct {
	Messages, Duplicates, Undecodable, Filtered, Delivered atomic.Int64
}

// followFrom returns the offset of each partition to follow from: the
// first message stamped at or after since, or, since zero, the end.
func (c *Client) followFrom(ctx context.Context, topic string, parts []int, since time.Time) (map[int]int64, error) {
	if !since.IsZero() {
		return c.OffsetsAt(ctx, topic, parts, since)
	}
	b, err := c.Bounds(ctx, topic, parts)
	if err != nil {
		return nil, err
	}
	start := make(map[int]int64, len(b))
	for p, x := range b {
		start[p] = x.Last
	}
	return start, nil
}

// Follow reads every partition of the topic live and calls fn, from one
// goroutine, for each event that passes the filter and was not seen
// before, in arrival order (per partition: offset order). It returns when
// ctx ends (ctx.Err()) or fn fails. Broker failures while following are
// retried and reported through Options.Warn.
func (c *Client) Follow(ctx context.Context, o FollowOptions, stats *FollowStats, fn func(*Item) error) error {
	if stats == nil {
		stats = &FollowStats{}
	}
	if o.Dedup == nil {
		o.Dedup = NewDedup(0, 0)
	}
	if o.WatchInterval <= 0 {
		o.WatchInterval = 30 * time.Second
	}
	parts, err := c.Partitions(ctx, o.Topic)
	if err != nil {
		return err
	}
	start, err := c.followFrom(ctx, o.Topic, parts, o.Since)
	if err != nil {
		return err
	}

	if o.Started != nil {
		o.Started(len(parts))
	}
	// cancel ends the readers when fn stops the loop; g cancels gctx on the
	// first reader error.
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(gctx)
	items := make(chan *Item, 1024)
	undecodable := atomic.Bool{}
	reader := func(p int, from int64) func() error {
		return func() error {
			err := c.readPartition(gctx, o.Topic, p, from, -1, func(m *Message) error {
				stats.Messages.Add(1)
				it, err := decode(m)
				if err != nil {
					stats.Undecodable.Add(1)
					if !undecodable.Swap(true) {
						c.opts.Warn(fmt.Sprintf("%s partition %d offset %d: skipped: %v (further ones are only counted)", o.Topic, p, m.Offset, err))
					}
					return nil
				}
				if !o.Filter.Match(it.Event) {
					stats.Filtered.Add(1)
					return nil
				}
				select {
				case items <- it:
					return nil
				case <-gctx.Done():
					return gctx.Err()
				}
			}, nil)
			if gctx.Err() != nil {
				return nil // ended by ctx or by another goroutine's error
			}
			return err
		}
	}
	known := map[int]bool{}
	for _, p := range parts {
		known[p] = true
		g.Go(reader(p, start[p]))
	}
	g.Go(func() error {
		t := time.NewTicker(o.WatchInterval)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
			}
			now, err := c.Partitions(gctx, o.Topic)
			if err != nil {
				continue // reported by the readers if it lasts
			}
			for _, p := range now {
				if !known[p] {
					known[p] = true
					c.opts.Warn(fmt.Sprintf("%s: new partition %d, reading it from its start", o.Topic, p))
					g.Go(reader(p, kafka.FirstOffset))
				}
			}
		}
	})

	var fnErr error
loop:
	for {
		select {
		case it := <-items:
			if id := it.ID(); id != "" && o.Dedup.Seen(id, it.Created) {
				stats.Duplicates.Add(1)
				continue
			}
			stats.Delivered.Add(1)
			if fnErr = fn(it); fnErr != nil {
				break loop
			}
		case <-gctx.Done():
			break loop
		}
	}
	cancel()
	werr := g.Wait()
	switch {
	case fnErr != nil:
		return fnErr
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return werr
}
