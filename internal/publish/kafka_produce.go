package publish

import (
	"bytes"
	"context"
	"errors"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
)

// The sink produces with kafka-go's Client.Produce, one request per
// topic-partition, so that a partition without a leader holds back only
// its own messages, and so that the records are encoded straight from the
// spool records they alias. kafka-go's Writer cannot do either: it sends a
// partition's batch only with every other partition's of the same call,
// and it copies each Message and looks up metadata, starts a goroutine and
// a timer per batch. The forwarder keeps one queue per partition (see
// lane).

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

// produce sends msgs, all to l's partition, in one Produce request and
// returns nil when every in-sync replica has them.
func (k *Kafka) produce(l *lane, msgs []*outMsg) error {
	r := k.acquire()
	defer k.release(r)
	// Client.Produce applies WriteTimeout (the client's Timeout) to the
	// request; the context only guards against a hang elsewhere.
	ctx, cancel := context.WithTimeout(k.ctx, k.opts.WriteTimeout+2*time.Second)
	defer cancel()
	k.stats.requests.Add(1)
	res, err := r.client.Produce(ctx, &kafka.ProduceRequest{
		Topic:        l.name,
		Partition:    l.partition,
		RequiredAcks: kafka.RequireAll,
		Compression:  k.cfg.compression,
		Records:      &outRecords{msgs: msgs},
	})
	if err == nil && res != nil {
		err = res.Error
	}
	if err == nil && res == nil {
		err = errors.New("kafka: no produce response")
	}
	return err
}

// outRecords is a kafka.RecordReader over the messages of one request. The
// record, its key and value readers and its headers are reused from one
// record to the next: kafka-go encodes each record before it reads the next.
type outRecords struct {
	msgs       []*outMsg
	n          int
	rec        kafka.Record
	key, value bytesReader
	hdr        [4]kafka.Header
}

func (r *outRecords) ReadRecord() (*kafka.Record, error) {
	if r.n >= len(r.msgs) {
		return nil, io.EOF
	}
	o := r.msgs[r.n]
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
