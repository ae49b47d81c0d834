package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/auditns/auditns/internal/metrics"
)

// healthCmd is the container health check: the image has no shell or
// curl, and `auditns status` always exits 0.
func healthCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 when the running daemon's /healthz answers ok, 1 otherwise (for container health checks)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd, file, map[string]string{"metrics": "metrics.listen"})
			if err != nil {
				return err
			}
			if c.Metrics.Listen == "" {
				return badInput(errors.New("metrics.listen: expected the running daemon's metrics address (--metrics, AUDITNS_METRICS_LISTEN)"))
			}
			body, err := metrics.Health(c.Metrics.Listen, 3*time.Second)
			if err != nil {
				return fmt.Errorf("unhealthy: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), escapeTerm(body))
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "configuration file (for metrics.listen)")
	cmd.Flags().String("metrics", "", "the running daemon's metrics address (metrics.listen)")
	return cmd
}
