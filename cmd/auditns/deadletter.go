package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/auditns/auditns/internal/daemon"
	"github.com/auditns/auditns/internal/publish"
)

func deadLetterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deadletter",
		Short: "Work with the Kafka sink's dead-letter file",
		Args:  cobra.NoArgs,
	}
	var file string
	resend := &cobra.Command{
		Use:   "resend",
		Short: "Send the messages of the dead-letter file to Kafka again, once the cause is fixed; what is refused again stays in the file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd, file, map[string]string{
				"kafka-brokers": "kafka.brokers",
				"dead-letter":   "kafka.dead_letter",
			})
			if err != nil {
				return err
			}
			if len(c.Kafka.Brokers) == 0 {
				return badInput(fmt.Errorf("kafka.brokers: required (flag --kafka-brokers, env AUDITNS_KAFKA_BROKERS)"))
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o := daemon.KafkaOptions(c, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
			res, err := publish.ResendDeadLetters(ctx, o)
			fmt.Printf("%s: %d sent, %d kept\n", res.Path, res.Sent, res.Kept)
			if err != nil {
				return err
			}
			if res.Kept > 0 {
				return fmt.Errorf("%d messages could not be sent again and stay in %s", res.Kept, res.Path)
			}
			return nil
		},
	}
	resend.Flags().StringVar(&file, "config", "", "configuration file (YAML); see configs/auditns.yaml")
	resend.Flags().String("kafka-brokers", "", "Kafka brokers, host:port,...")
	resend.Flags().String("dead-letter", "", "the dead-letter file (default <spool dir>/deadletter.jsonl)")
	cmd.AddCommand(resend)
	return cmd
}
