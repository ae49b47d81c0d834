package consume

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/auditns/auditns/internal/event"
	"github.com/auditns/auditns/internal/serial"
)

// Registry is the namespace registry as read from its compacted topic: the
// latest auditns.namespace/1 record of each "<boot_id>/<serial>", reduced to
// the annotation replay adds to events (event.NSInfo).
type Registry struct {
	recs map[string]*event.NSInfo
	// Messages is how many messages were read; Bad how many of them were
	// not a usable auditns.namespace/1 record (skipped).
	Messages, Bad int
}

// Len returns the number of namespaces known.
func (r *Registry) Len() int { return len(r.recs) }

// Lookup returns what the registry says about namespace serial of boot,
// or nil.
func (r *Registry) Lookup(boot string, serial uint64) *event.NSInfo {
	if r == nil {
		return nil
	}
	return r.recs[boot+"/"+strconv.FormatUint(serial, 10)]
}

// LoadRegistry reads every partition of topic from its first offset to
// its high watermark at the time of the call. Within a partition a later
// record of a key replaces an earlier one and a tombstone (nil value)
// deletes it, which is what compaction would leave. A missing topic is an
// error wrapping ErrNoTopic.
func (c *Client) LoadRegistry(ctx context.Context, topic string) (*Registry, error) {
	parts, err := c.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	bounds, err := c.Bounds(ctx, topic, parts)
	if err != nil {
		return nil, err
	}
	reg := &Registry{recs: make(map[string]*event.NSInfo)}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range parts {
		b := bounds[p]
		if b.First >= b.Last {
			continue
		}
		g.Go(func() error {
			// Per partition first, so that "latest wins" follows offsets.
			local := map[string]*event.NSInfo{}
			msgs, bad := 0, 0
			err := c.readPartition(gctx, topic, p, b.First, b.Last, func(m *Message) error {
				msgs++
				key := string(m.Key)
				if m.Value == nil {
					if key != "" {
						local[key] = nil
					}
					return nil
				}
				var rec serial.Record
				if err := json.Unmarshal(m.Value, &rec); err != nil || rec.Schema != serial.Schema || rec.Host.BootID == "" || rec.Serial == 0 {
					bad++
					return nil
				}
				id := rec.Host.BootID + "/" + strconv.FormatUint(rec.Serial, 10)
				if key == "" {
					key = id
				}
				local[key] = infoOf(&rec, id)
				return nil
			}, nil)
			if err != nil {
				return fmt.Errorf("registry topic %s partition %d: %w", topic, p, err)
			}
			mu.Lock()
			defer mu.Unlock()
			reg.Messages += msgs
			reg.Bad += bad
			for k, v := range local {
				if v == nil {
					delete(reg.recs, k)
				} else {
					reg.recs[k] = v
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return reg, nil
}

func infoOf(r *serial.Record, id string) *event.NSInfo {
	in := &event.NSInfo{
		ID:        id,
		Type:      r.Type.String(),
		IsInit:    r.IsInit,
		FirstSeen: r.FirstSeen.Time,
		LastSeen:  r.LastSeen.Time,
	}
	if cb := r.CreatedBy; cb != nil {
		in.CreatedBy = &event.NSCreator{Event: cb.Event, Op: cb.Op, PID: cb.PID, Exe: cb.Exe}
	}
	if r.Gone != nil {
		in.Gone = r.Gone.Time
	}
	return in
}

// Annotate returns the registry's annotation of e's namespaces, or nil
// when the registry knows none of them. missing counts the namespaces of
// e that the registry does not know (or knows under another type).
func (r *Registry) Annotate(e *event.Event) (info *event.NSInfos, missing int) {
	if r == nil || e.NS == nil {
		return nil, 0
	}
	for i, t := range event.NSTypes {
		ref := e.NS.At(i)
		if ref.Serial == 0 {
			continue
		}
		in := r.Lookup(e.Host.Boot.ID, ref.Serial)
		if in == nil || in.Type != t {
			missing++
			continue
		}
		if info == nil {
			info = &event.NSInfos{}
		}
		*info.At(i) = in
	}
	return info, missing
}

// AppendAnnotated appends the event's JSON value raw with ns_info added as
// the last member of its auditns object (of the value itself for an
// auditns.event/1 value), without re-encoding the rest: fields this build
// does not know survive, and the original bytes are kept. A value that
// already has ns_info, or that is not a JSON object, is appended
// unchanged.
func AppendAnnotated(dst, raw []byte, e *event.Event, info *event.NSInfos) []byte {
	if info == nil || e.NSInfo != nil {
		return append(dst, raw...)
	}
	obj := raw
	if e.Schema != event.SchemaV1 {
		start, end, ok := memberSpan(raw, "auditns")
		if !ok {
			return append(dst, raw...)
		}
		dst = append(dst, raw[:start]...)
		dst = appendInfo(dst, raw[start:end], info)
		return append(dst, raw[end:]...)
	}
	return appendInfo(dst, obj, info)
}

// appendInfo appends the object obj with ns_info as its last member.
func appendInfo(dst, obj []byte, info *event.NSInfos) []byte {
	trimmed := bytes.TrimRight(obj, " \t\r\n")
	if len(trimmed) < 2 || trimmed[len(trimmed)-1] != '}' {
		return append(dst, obj...)
	}
	body := bytes.TrimRight(trimmed[:len(trimmed)-1], " \t\r\n")
	dst = append(dst, body...)
	if body[len(body)-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, `"ns_info":`...)
	dst = info.AppendJSON(dst)
	return append(dst, '}')
}

// memberSpan returns where the value of the top-level member key of the
// JSON object raw is.
func memberSpan(raw []byte, key string) (start, end int, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, 0, false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return 0, 0, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return 0, 0, false
		}
		if k, _ := t.(string); k == key {
			end := int(dec.InputOffset())
			return end - len(v), end, true
		}
	}
	return 0, 0, false
}
