package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/auditns/auditns/internal/consume"
	"github.com/auditns/auditns/internal/filter"
	"github.com/auditns/auditns/internal/render"
)

func replayCmd() *cobra.Command {
	var file, from, to, output string
	var window, readPast time.Duration
	var noRegistry, quiet bool
	cmd := &cobra.Command{
		Use:   "replay --from TIME [--to TIME] [--output stdout|file:PATH|kafka-topic:NAME] [filters]",
		Short: "Read the events of a time range, de-duplicated, in time order, annotated from the namespace registry",
		Long: `Read every partition of the events topic (kafka.topic) between two times
(offsets looked up per partition by time), drop repeated event ids, merge the
partitions into time order (event.created, then event.id), apply the
filters, and write JSON lines to stdout or a file, or produce them to
another topic (created with one partition if missing, when
kafka.create_topics is true). Each event gets ns_info: the latest record
of each of its namespaces in the registry topic (kafka.namespaces_topic),
read whole first, so that namespaces long gone are still explained.

Memory stays bounded whatever the range: each partition is read into a
reorder buffer that holds --window of event time (at most 16384 events),
the partitions are merged by a k-way merge, and de-duplication remembers
event ids for an hour of event time (at most 1M ids, ~40 MiB).

Progress goes to stderr: a line updated in place 4 times a second when
stderr is a terminal, otherwise one line every 10 seconds once the replay
has run that long; a summary line at the end (-q: neither).`,
		Args: cobra.NoArgs,
	}
	addKafkaReadFlags(cmd, &file)
	f := cmd.Flags()
	f.String("namespaces-topic", "", "namespace registry topic (kafka.namespaces_topic)")
	f.StringVar(&from, "from", "", "start of the range: a time (RFC 3339, or local 2026-11-28 12:00) or a duration ago (2h); required")
	f.StringVar(&to, "to", "", "end of the range (exclusive), same forms; default: now")
	f.StringVar(&output, "output", "stdout", "stdout | file:PATH (created, never overwritten) | kafka-topic:NAME")
	f.DurationVar(&window, "window", consume.DefaultWindow, "reorder window: how far a partition may be out of time order")
	f.DurationVar(&readPast, "read-past", 0, "read each partition this far past --to for events delivered late (default: --window)")
	f.BoolVar(&noRegistry, "no-registry", false, "do not read the registry topic; no ns_info")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress and no summary on stderr")
	spec := filter.AddFlags(f)

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		now := time.Now()
		if from == "" {
			return badInput(errors.New("--from: required: a time such as 2026-11-28T12:00:00Z, or a duration ago such as 2h"))
		}
		fromT, err := consume.ParseTime(from, now)
		if err != nil {
			return badInput(fmt.Errorf("--from: %v", err))
		}
		toT := now
		if to != "" {
			if toT, err = consume.ParseTime(to, now); err != nil {
				return badInput(fmt.Errorf("--to: %v", err))
			}
		}
		if !toT.After(fromT) {
			return badInput(fmt.Errorf("--to: expected a time after --from (%s), got %s", render.Time(fromT), render.Time(toT)))
		}
		if window <= 0 || readPast < 0 {
			return badInput(errors.New("--window, --read-past: expected positive durations such as 5s"))
		}
		outSpec, err := consume.ParseOutput(output)
		if err != nil {
			return badInput(err)
		}

		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		stderr := cmd.ErrOrStderr()
		warn := func(s string) { fmt.Fprintln(stderr, "auditns replay:", escapeTerm(s)) }
		var extra []string
		if outSpec.Kind == "kafka-topic" {
			extra = append(extra, outSpec.Arg)
		}
		c, flt, cl, err := dialKafka(ctx, cmd, file, spec, warn, extra...)
		if err != nil {
			return err
		}
		defer cl.Close()

		var reg *consume.Registry
		if !noRegistry {
			if reg, err = loadRegistry(ctx, cl, c.Kafka.NamespacesTopic, warn); err != nil {
				return err
			}
		}
		out, err := cl.OpenOutput(ctx, outSpec, cmd.OutOrStdout(), consume.TopicOutputOptions{
			SourceTopic: c.Kafka.Topic, Create: c.Kafka.CreateTopics,
			ReplicationFactor: c.Kafka.ReplicationFactor, Compression: c.Kafka.Compression,
		})
		if err != nil {
			if outSpec.Kind == "file" {
				return badInput(err)
			}
			return err
		}

		stats := &consume.ReplayStats{}
		stopProgress := func() {}
		if !quiet {
			stopProgress = consume.ReportProgress(stderr, stats, fromT, toT)
		}
		unknownNS, err := cl.ReplayAnnotated(ctx, consume.ReplayOptions{
			Topic: c.Kafka.Topic, From: fromT, To: toT, Window: window, ReadPast: readPast, Filter: flt,
		}, reg, out, stats)
		stopProgress()
		if !quiet {
			fmt.Fprintln(stderr, stats.Summary(reg, unknownNS))
		}
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			return topicErr("kafka.topic", err)
		}
		if l := stats.Late.Load(); l > 0 {
			warn(fmt.Sprintf("%d events were out of time order by more than --window %v and were written late", l, window))
		}
		return nil
	}
	return cmd
}

// loadRegistry reads the registry topic whole; a missing topic or records
// that are not registry records are warnings, not errors.
func loadRegistry(ctx context.Context, cl *consume.Client, topic string, warn func(string)) (*consume.Registry, error) {
	reg, err := cl.LoadRegistry(ctx, topic)
	switch {
	case errors.Is(err, consume.ErrNoTopic):
		warn(fmt.Sprintf("registry topic %s not found (kafka.namespaces_topic): events are not annotated", topic))
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("kafka.namespaces_topic: %w", err)
	case reg.Bad > 0:
		warn(fmt.Sprintf("registry topic %s: %d messages are not auditns.namespace/1 records (skipped)", topic, reg.Bad))
	}
	return reg, nil
}
