package publish

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// topicSetting is one topic-level config auditns sets on the topics it
// creates, and compares with what existing topics have.
type topicSetting struct{ name, value string }

// topicSettings is what topic (events or namespaces) gets: a forensic
// stream keeps its events for the replay window (retention), survives a
// broker (min.insync.replicas with acks=all) and never elects a replica that
// missed writes (unclean.leader.election.enable=false). The registry is
// compacted and never deleted.
func (k *Kafka) topicSettings(t Topic, rf int) []topicSetting {
	o := k.opts
	isr := o.MinInsyncReplicas
	if isr == 0 {
		isr = 1
		if rf >= 3 {
			isr = 2
		}
	}
	s := []topicSetting{
		{"min.insync.replicas", strconv.Itoa(isr)},
		{"unclean.leader.election.enable", "false"},
	}
	if t == TopicNamespaces {
		return append(s, topicSetting{"cleanup.policy", "compact"})
	}
	retention := "-1"
	if o.Retention > 0 {
		retention = strconv.FormatInt(o.Retention.Milliseconds(), 10)
	}
	return append(s, topicSetting{"cleanup.policy", "delete"}, topicSetting{"retention.ms", retention})
}

// ensureTopics checks that both topics exist and creates the missing ones
// if allowed, with the replication factor and settings configured; existing
// topics are compared with them (a warning per difference; they are never
// changed). The topics' settings are logged. It sets topicsReady on
// success.
func (k *Kafka) ensureTopics(ctx context.Context) error {
	o := k.opts
	topics := []string{o.EventsTopic, o.NamespacesTopic}
	r := k.acquire()
	defer k.release(r)
	md, err := r.client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	rf := o.ReplicationFactor
	if rf == 0 {
		rf = min(3, len(md.Brokers))
	}
	exists := map[string]bool{}
	replicas := map[string]int{}
	for _, t := range md.Topics {
		if t.Error == nil {
			exists[t.Name] = true
			if len(t.Partitions) > 0 {
				replicas[t.Name] = len(t.Partitions[0].Replicas)
			}
		} else if !errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
	}
	var create []kafka.TopicConfig
	for i, t := range topics {
		if exists[t] {
			continue
		}
		if !o.CreateTopics {
			return fmt.Errorf("topic %s does not exist and kafka.create_topics is false", t)
		}
		tc := kafka.TopicConfig{Topic: t, NumPartitions: o.Partitions, ReplicationFactor: rf}
		for _, s := range k.topicSettings(Topic(i), rf) {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: s.name, ConfigValue: s.value})
		}
		create = append(create, tc)
	}
	if len(create) > 0 {
		res, err := r.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: create})
		if err != nil {
			return fmt.Errorf("create topics: %w", err)
		}
		for _, tc := range create {
			err := res.Errors[tc.Topic]
			switch {
			case err == nil:
				k.log.Info("kafka: created topic", "topic", tc.Topic, "partitions", tc.NumPartitions,
					"replication_factor", tc.ReplicationFactor)
				replicas[tc.Topic] = tc.ReplicationFactor
			case errors.Is(err, kafka.TopicAlreadyExists):
			case errors.Is(err, kafka.InvalidReplicationFactor):
				return configErr("kafka.replication_factor", "create topic %s with replication factor %d (%d brokers): %v",
					tc.Topic, tc.ReplicationFactor, len(md.Brokers), err)
			case errors.Is(err, kafka.InvalidPartitionNumber):
				return configErr("kafka.partitions", "create topic %s: %v", tc.Topic, err)
			case errors.Is(err, kafka.InvalidConfiguration), errors.Is(err, kafka.InvalidReplicaAssignment):
				return configErr("kafka.topic_config", "create topic %s: %v", tc.Topic, err)
			default:
				return fmt.Errorf("create topic %s: %w", tc.Topic, err)
			}
		}
	}
	k.checkTopics(ctx, r.client, rf, replicas)
	k.topicsReady.Store(true)
	return nil
}

// checkTopics reads both topics' settings back, logs them, and warns about
// every one that differs from what the sink would have created.
func (k *Kafka) checkTopics(ctx context.Context, c *kafka.Client, rf int, replicas map[string]int) {
	topics := []string{k.opts.EventsTopic, k.opts.NamespacesTopic}
	req := &kafka.DescribeConfigsRequest{}
	for i, t := range topics {
		var names []string
		for _, s := range k.topicSettings(Topic(i), rf) {
			names = append(names, s.name)
		}
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: t, ConfigNames: names})
	}
	res, err := c.DescribeConfigs(ctx, req)
	if err != nil {
		k.log.Warn("kafka: could not read the topics' settings back", "err", err)
		return
	}
	for i, t := range topics {
		have := map[string]string{}
		for _, r := range res.Resources {
			if r.ResourceName == t && r.Error == nil {
				for _, e := range r.ConfigEntries {
					have[e.ConfigName] = e.ConfigValue
				}
			}
		}
		attrs := []any{"topic", t, "replication_factor", replicas[t]}
		if replicas[t] != 0 && replicas[t] < rf {
			k.log.Warn("kafka: existing topic has fewer replicas than configured; not changed",
				"topic", t, "replication_factor", replicas[t], "want", rf)
		}
		for _, s := range k.topicSettings(Topic(i), rf) {
			v, ok := have[s.name]
			attrs = append(attrs, s.name, v)
			if ok && !sameSetting(s.name, v, s.value) {
				k.log.Warn("kafka: existing topic's setting differs from kafka.topic_config; not changed",
					"topic", t, "setting", s.name, "have", v, "want", s.value)
			}
		}
		if ms, err := strconv.ParseInt(have["retention.ms"], 10, 64); err == nil && ms > 0 {
			attrs = append(attrs, "retention", (time.Duration(ms) * time.Millisecond).String())
		}
		k.log.Info("kafka: topic settings", attrs...)
	}
}

// sameSetting compares a setting's values; cleanup.policy is a list.
func sameSetting(name, have, want string) bool {
	if name == "cleanup.policy" {
		return strings.Contains(have, want)
	}
	return have == want
}
