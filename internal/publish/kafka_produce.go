package publish

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
)

// The sink produces with kafka-go's Client.Produce, one request per
// topic-partition per round, instead of through a kafka.Writer. The Writer
// did the same requests (Writer.produce is Client.Produce), but around them,
// per message, a metadata lookup in the transport's cache (which copies the
// cached response), a balancer call, a copy of the Message into a batch whose
// slice of BatchSize Messages was allocated for every round, and a goroutine
// and a timer per batch; and since the forwarder never has more than one round
// in flight, the Writer's BatchTimeout only ever delayed a round that did not
// fill BatchSize, without adding anything to it. The forwarder now gathers a
// round itself (see gather), and the records are encoded straight from the
// spool records they alias.

// Header keys, in the order they are sent.
const (
	headerEventID     = "event_id"
	headerSchema      = "schema"
	headerBootID      = "boot_id"
	headerContentType = "content-type"
)

// headers appends o's headers to dst: event_id, schema and boot_id when not
// empty, then content-type.
func (o *outMsg) headers(dst []kafka.Header) []kafka.Header {
	if len(o.id) > 0 {
		dst = append(dst, kafka.Header{Key: headerEventID, Value: o.id})
	}
	if len(o.schema) > 0 {
		dst = append(dst, kafka.Header{Key: headerSchema, Value: o.schema})
	}
	if len(o.bootID) > 0 {
		dst = append(dst, kafka.Header{Key: headerBootID, Value: o.bootID})
	}
	return append(dst, kafka.Header{Key: headerContentType, Value: contentTypeJSON})
}

// messageSize is kafka-go's size estimate of o (see kafkaMessageSize).
func (o *outMsg) messageSize() int64 {
	var hdr [4]kafka.Header
	m := kafka.Message{Key: o.key, Value: o.value, Headers: o.headers(hdr[:0])}
	return kafkaMessageSize(&m)
}

// fnv1a32 is FNV-1a, 32 bits, of b.
func fnv1a32(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// partitionOf is kafka-go's Hash balancer: FNV-1a of the key, as Sarama's
// hash partitioner computes it (the int32 conversion and the sign included),
// and round robin for a nil key.
func (k *Kafka) partitionOf(key []byte, n int) int {
	if key == nil {
		if cap(k.partList) < n {
			k.partList = make([]int, n)
		}
		ps := k.partList[:n]
		for i := range ps {
			ps[i] = i
		}
		return k.roundRobin.Balance(kafka.Message{}, ps...)
	}
	p := int32(fnv1a32(key)) % int32(n)
	if p < 0 {
		p = -p
	}
	return int(p)
}

// partitionCount is the number of partitions of topic, from the transport's
// metadata cache (refreshed every MetadataTTL), as the Writer looked it up.
func (k *Kafka) partitionCount(ctx context.Context, topic string) (int, error) {
	r, err := k.transport.RoundTrip(ctx, k.addr, &metadataAPI.Request{TopicNames: []string{topic}})
	if err != nil {
		return 0, err
	}
	for _, t := range r.(*metadataAPI.Response).Topics {
		if t.Name == topic {
			if t.ErrorCode != 0 {
				return 0, kafka.Error(t.ErrorCode)
			}
			if len(t.Partitions) == 0 {
				return 0, kafka.UnknownTopicOrPartition
			}
			return len(t.Partitions), nil
		}
	}
	return 0, kafka.UnknownTopicOrPartition
}

// partRequest is the part of a round that goes to one topic-partition.
type partRequest struct {
	topic     string
	partition int
	idx       []int // indexes into the round's sub
	err       error
}

// produce sends batch[i] for every i in sub, one Produce request per
// topic-partition (concurrently when there are several), and returns one
// error per message (nil: acknowledged by all in-sync replicas).
func (k *Kafka) produce(batch []outMsg, sub []int) []error {
	errs := make([]error, len(sub))
	// Client.Produce applies WriteTimeout (the client's Timeout) to the
	// request; the context only guards against a hang elsewhere.
	ctx, cancel := context.WithTimeout(k.ctx, k.opts.WriteTimeout+2*time.Second)
	defer cancel()

	var (
		counts  [2]int
		countOK [2]bool
		reqs    = k.reqs[:0]
	)
	for j, i := range sub {
		o := &batch[i]
		t := 0
		if o.topic == TopicNamespaces {
			t = 1
		}
		topic := k.topicName(o.topic)
		if !countOK[t] {
			n, err := k.partitionCount(ctx, topic)
			if err != nil {
				for jj, ii := range sub {
					if batch[ii].topic == o.topic {
						errs[jj] = err
					}
				}
				counts[t], countOK[t] = -1, true
				continue
			}
			counts[t], countOK[t] = n, true
		}
		if counts[t] < 0 {
			continue // errs[j] is set
		}
		p := k.partitionOf(o.key, counts[t])
		r := -1
		for x := range reqs {
			if reqs[x].partition == p && reqs[x].topic == topic {
				r = x
				break
			}
		}
		if r < 0 {
			r = len(reqs)
			if r < cap(reqs) {
				reqs = reqs[:r+1]
				reqs[r] = partRequest{topic: topic, partition: p, idx: reqs[r].idx[:0]}
			} else {
				reqs = append(reqs, partRequest{topic: topic, partition: p})
			}
		}
		reqs[r].idx = append(reqs[r].idx, j)
	}

	switch len(reqs) {
	case 0:
	case 1:
		k.producePart(ctx, batch, sub, &reqs[0])
	default:
		var wg sync.WaitGroup
		for x := 1; x < len(reqs); x++ {
			wg.Add(1)
			go func(r *partRequest) {
				defer wg.Done()
				k.producePart(ctx, batch, sub, r)
			}(&reqs[x])
		}
		k.producePart(ctx, batch, sub, &reqs[0])
		wg.Wait()
	}
	for x := range reqs {
		r := &reqs[x]
		if r.err != nil {
			for _, j := range r.idx {
				errs[j] = r.err
			}
		}
		r.err = nil
	}
	k.reqs = reqs
	return errs
}

// producePart sends r's messages in one Produce request and sets r.err.
func (k *Kafka) producePart(ctx context.Context, batch []outMsg, sub []int, r *partRequest) {
	res, err := k.admin.Produce(ctx, &kafka.ProduceRequest{
		Topic:        r.topic,
		Partition:    r.partition,
		RequiredAcks: kafka.RequireAll,
		Compression:  k.cfg.compression,
		Records:      &outRecords{batch: batch, sub: sub, idx: r.idx},
	})
	if err == nil && res != nil {
		err = res.Error
	}
	if err == nil && res == nil {
		err = errors.New("kafka: no produce response")
	}
	r.err = err
}

// outRecords is a kafka.RecordReader over the messages of one request. The
// record, its key and value readers and its headers are reused from one
// record to the next: kafka-go encodes each record before it reads the next.
type outRecords struct {
	batch      []outMsg
	sub, idx   []int
	n          int
	rec        kafka.Record
	key, value bytesReader
	hdr        [4]kafka.Header
}

func (r *outRecords) ReadRecord() (*kafka.Record, error) {
	if r.n >= len(r.idx) {
		return nil, io.EOF
	}
	o := &r.batch[r.sub[r.idx[r.n]]]
	r.n++
	r.rec = kafka.Record{Time: o.evTime, Headers: o.headers(r.hdr[:0])}
	if o.key != nil {
		r.key.Reset(o.key)
		r.rec.Key = &r.key
	}
	if o.value != nil {
		r.value.Reset(o.value)
		r.rec.Value = &r.value
	}
	return &r.rec, nil
}

// bytesReader is a kafka.Bytes over a byte slice.
type bytesReader struct{ bytes.Reader }

func (*bytesReader) Close() error { return nil }
