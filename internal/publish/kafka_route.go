package publish

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
)

// A route is one kafka-go Transport and the Client over it. The Transport
// routes every produce request to the partition's leader from its cached
// cluster metadata, which it refreshes only on a timer (MetadataTTL): it has
// no way to be told that a leader moved. So when a broker answers
// NOT_LEADER_OR_FOLLOWER or LEADER_NOT_AVAILABLE, or cannot be reached, the
// sink replaces the route with a fresh one, whose first request fetches the
// metadata anew, at once. Requests in flight finish on the route they
// started on; a replaced route closes its connections when its last request
// has returned.
type route struct {
	transport *kafka.Transport
	client    *kafka.Client
	users     int  // requests using it (under Kafka.routeMu)
	retired   bool // replaced; close when users drops to 0
}

// refreshMin is the shortest time between two metadata refreshes: a leader
// election takes longer than that, and every partition of a dead broker
// asks for one at the same moment.
const refreshMin = 100 * time.Millisecond

// metadataTTL is how often a route refreshes the metadata on its own, to
// notice partitions added to a topic; leader changes do not wait for it.
const metadataTTL = 30 * time.Second

func (k *Kafka) newRoute() *route {
	o := k.opts
	t := &kafka.Transport{
		Dial:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		DialTimeout:    10 * time.Second,
		MetadataTTL:    metadataTTL,
		MetadataTopics: []string{o.EventsTopic, o.NamespacesTopic},
		ClientID:       "auditns",
		TLS:            k.cfg.tls,
		SASL:           k.cfg.sasl,
	}
	// WriteTimeout bounds one request, acknowledgement by all in-sync
	// replicas included.
	return &route{transport: t, client: &kafka.Client{Addr: k.addr, Transport: t, Timeout: o.WriteTimeout}}
}

// acquire returns the current route for one request; release it after.
func (k *Kafka) acquire() *route {
	k.routeMu.Lock()
	defer k.routeMu.Unlock()
	r := k.route
	r.users++
	return r
}

func (k *Kafka) release(r *route) {
	k.routeMu.Lock()
	defer k.routeMu.Unlock()
	r.users--
	if r.retired && r.users == 0 {
		r.transport.CloseIdleConnections()
	}
}

// refreshMetadata replaces the route (at most once per refreshMin), so that
// the next request finds the current leaders.
func (k *Kafka) refreshMetadata() {
	k.routeMu.Lock()
	defer k.routeMu.Unlock()
	now := time.Now()
	if now.Sub(k.refreshedAt) < refreshMin {
		return
	}
	k.refreshedAt = now
	old := k.route
	k.route = k.newRoute()
	old.retired = true
	if old.users == 0 {
		old.transport.CloseIdleConnections()
	}
	k.stats.refreshes.Add(1)
}

// closeRoute closes the current route's connections (Close).
func (k *Kafka) closeRoute() {
	k.routeMu.Lock()
	defer k.routeMu.Unlock()
	k.route.retired = true
	if k.route.users == 0 {
		k.route.transport.CloseIdleConnections()
	}
}

// metadata is the current route's cached metadata for topic.
func (k *Kafka) metadata(ctx context.Context, topic string) (*metadataAPI.Response, error) {
	r := k.acquire()
	defer k.release(r)
	res, err := r.transport.RoundTrip(ctx, k.addr, &metadataAPI.Request{TopicNames: []string{topic}})
	if err != nil {
		return nil, err
	}
	return res.(*metadataAPI.Response), nil
}

// partitionCount is the number of partitions of topic, from the route's
// metadata cache.
func (k *Kafka) partitionCount(ctx context.Context, topic string) (int, error) {
	md, err := k.metadata(ctx, topic)
	if err != nil {
		return 0, err
	}
	for _, t := range md.Topics {
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

// leaderOf names the broker the cached metadata gives as the leader of
// topic's partition ("id@host:port", "none" while there is none), for logs.
func (k *Kafka) leaderOf(topic string, partition int) string {
	ctx, cancel := context.WithTimeout(k.ctx, 200*time.Millisecond)
	defer cancel()
	md, err := k.metadata(ctx, topic)
	if err != nil {
		return "unknown"
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		for _, p := range t.Partitions {
			if int(p.PartitionIndex) != partition {
				continue
			}
			if p.LeaderID < 0 {
				return "none"
			}
			for _, b := range md.Brokers {
				if b.NodeID == p.LeaderID {
					return fmt.Sprintf("%d@%s", b.NodeID, net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))))
				}
			}
			return strconv.Itoa(int(p.LeaderID))
		}
	}
	return "unknown"
}
