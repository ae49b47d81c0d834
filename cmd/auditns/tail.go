package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/auditns/auditns/internal/config"
	"github.com/auditns/auditns/internal/consume"
	"github.com/auditns/auditns/internal/filter"
	"github.com/auditns/auditns/internal/render"
)

// kafkaReadFlags are the flags tail and replay bind to config keys.
var kafkaReadFlags = map[string]string{
	"kafka-brokers":    "kafka.brokers",
	"topic":            "kafka.topic",
	"namespaces-topic": "kafka.namespaces_topic",
}

func addKafkaReadFlags(cmd *cobra.Command, file *string) {
	f := cmd.Flags()
	f.StringVar(file, "config", "", "configuration file (YAML); see configs/auditns.yaml")
	f.String("kafka-brokers", "", "Kafka bootstrap brokers H:P,... (kafka.brokers)")
	f.String("topic", "", "events topic (kafka.topic)")
}

// dialKafka loads the configuration, builds the filter and connects.
// warn receives the client's one-line warnings; extraTopics are topics
// the client will use besides kafka.topic and kafka.namespaces_topic.
func dialKafka(ctx context.Context, cmd *cobra.Command, file string, spec *filter.Spec, warn func(string), extraTopics ...string) (*config.Config, *filter.Filter, *consume.Client, error) {
	c, err := loadConfig(cmd, file, kafkaReadFlags)
	if err != nil {
		return nil, nil, nil, err
	}
	f, err := spec.Build()
	if err != nil {
		return nil, nil, nil, badInput(err)
	}
	opts, err := consume.FromConfig(c.Kafka)
	if err != nil {
		return nil, nil, nil, badInput(err)
	}
	opts.Topics = append([]string{c.Kafka.Topic, c.Kafka.NamespacesTopic}, extraTopics...)
	opts.Warn = warn
	cl, err := consume.Dial(ctx, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	return c, f, cl, nil
}

// topicErr names the config key of a missing topic.
func topicErr(key string, err error) error {
	if errors.Is(err, consume.ErrNoTopic) {
		return fmt.Errorf("%s: %w", key, err)
	}
	return err
}

func tailCmd() *cobra.Command {
	var file, since string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "tail [--kafka-brokers H:P,...] [--since 10m|TIME] [--json] [filters]",
		Short: "Follow the events topic live, one readable line per event",
		Long: `Follow every partition of the events topic (kafka.topic) live and print one
line per event: time, host, namespaces (or container), user, pid, what
happened, outcome and rule keys. Untrusted text is escaped; colour only on a
terminal (NO_COLOR turns it off). --json prints each event's value as it is
on the topic (on a terminal, characters a terminal would act on are
\u-escaped inside strings: the same JSON value). Events are de-duplicated on
event.id. Filters: values of one flag are alternatives, different flags must
all match; loss events always pass. Ctrl-C or SIGTERM ends with status 0.`,
		Args: cobra.NoArgs,
	}
	addKafkaReadFlags(cmd, &file)
	cmd.Flags().StringVar(&since, "since", "", "start this long ago (10m) or at this time (RFC 3339); default: now")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each event's JSON value as published")
	spec := filter.AddFlags(cmd.Flags())

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var sinceT time.Time
		if since != "" {
			t, err := consume.ParseTime(since, time.Now())
			if err != nil {
				return badInput(fmt.Errorf("--since: %v", err))
			}
			sinceT = t
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		stderr := cmd.ErrOrStderr()
		warn := func(s string) { fmt.Fprintln(stderr, "auditns tail:", escapeTerm(s)) }
		c, f, cl, err := dialKafka(ctx, cmd, file, spec, warn)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		defer cl.Close()

		out := cmd.OutOrStdout()
		tty := render.IsTerminal(out)
		color := render.UseColor(out)
		w := bufio.NewWriterSize(out, 64<<10)
		from := "now"
		if !sinceT.IsZero() {
			from = render.Time(sinceT)
		}
		var buf []byte
		err = cl.Follow(ctx, consume.FollowOptions{
			Topic:  c.Kafka.Topic,
			Since:  sinceT,
			Filter: f,
			Started: func(n int) {
				fmt.Fprintf(stderr, "auditns tail: following %s (%d partitions) on %s from %s\n",
					c.Kafka.Topic, n, strings.Join(cl.Brokers(), ","), from)
			},
		}, nil, func(it *consume.Item) error {
			switch {
			case !asJSON:
				buf = render.Line(buf[:0], it.Event, color)
			case tty:
				buf = render.TerminalJSON(buf[:0], it.Msg.Value)
			default:
				buf = append(append(buf[:0], it.Msg.Value...), '\n')
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
			return w.Flush()
		})
		w.Flush()
		if ctx.Err() != nil {
			return nil // Ctrl-C or SIGTERM: a normal end
		}
		return topicErr("kafka.topic", err)
	}
	return cmd
}
