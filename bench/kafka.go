package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

func kafkaReachable(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func kafkaClient(addr string) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(addr), Timeout: 30 * time.Second}
}

// createTopic creates a fresh topic with auditns's default layout (3
// partitions, replication factor 1).
func createTopic(ctx context.Context, addr, topic string) error {
	res, err := kafkaClient(addr).CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: 3, ReplicationFactor: 1,
	}}})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if err := res.Errors[topic]; err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

func deleteTopics(addr string, topics ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := kafkaClient(addr).DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		logf("delete topics %v: %v", topics, err)
		return
	}
	for t, err := range res.Errors {
		if err != nil && !errors.Is(err, kafka.UnknownTopicOrPartition) {
			logf("delete topic %s: %v", t, err)
		}
	}
}

// partitionRange is what a partition holds: [first, last).
type partitionRange struct {
	id          int
	first, last int64
}

func topicRanges(ctx context.Context, addr, topic string) ([]partitionRange, error) {
	cl := kafkaClient(addr)
	meta, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return nil, fmt.Errorf("topic %s: no metadata", topic)
	}
	var req []kafka.OffsetRequest
	for _, p := range meta.Topics[0].Partitions {
		req = append(req, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: req}})
	if err != nil {
		return nil, err
	}
	var out []partitionRange
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		out = append(out, partitionRange{po.Partition, po.FirstOffset, po.LastOffset})
	}
	return out, nil
}

// readTopic calls fn for every message the topic holds now, partition by
// partition.
func readTopic(ctx context.Context, addr, topic string, fn func(m *kafka.Message)) error {
	ranges, err := topicRanges(ctx, addr, topic)
	if err != nil {
		return err
	}
	for _, pr := range ranges {
		if pr.last <= pr.first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: pr.id,
			MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 500 * time.Millisecond, ReadLagInterval: -1})
		if err := r.SetOffset(pr.first); err != nil {
			r.Close()
			return err
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return fmt.Errorf("read %s/%d: %w", topic, pr.id, err)
			}
			fn(&m)
			if m.Offset+1 >= pr.last {
				break
			}
		}
		r.Close()
	}
	return nil
}

// liveConsumer reads every partition of a topic as messages arrive and
// calls fn with the time each message was returned to it.
type liveConsumer struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startLiveConsumer(addr, topic string, fn func(at time.Time, m *kafka.Message)) (*liveConsumer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	ranges, err := topicRanges(ctx, addr, topic)
	if err != nil {
		cancel()
		return nil, err
	}
	lc := &liveConsumer{cancel: cancel}
	var mu sync.Mutex
	for _, pr := range ranges {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: pr.id,
			MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 50 * time.Millisecond, ReadLagInterval: -1})
		if err := r.SetOffset(pr.last); err != nil {
			r.Close()
			cancel()
			return nil, err
		}
		lc.wg.Add(1)
		go func() {
			defer lc.wg.Done()
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				at := time.Now()
				mu.Lock()
				fn(at, &m)
				mu.Unlock()
			}
		}()
	}
	return lc, nil
}

func (lc *liveConsumer) stop() {
	lc.cancel()
	lc.wg.Wait()
}
