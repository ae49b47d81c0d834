package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
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
			cl := http.Client{Timeout: 3 * time.Second}
			resp, err := cl.Get("http://" + c.Metrics.Listen + "/healthz")
			if err != nil {
				return fmt.Errorf("unhealthy: %w", err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			body := strings.TrimSpace(string(b))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("unhealthy: /healthz %d: %s", resp.StatusCode, body)
			}
			fmt.Fprintln(cmd.OutOrStdout(), body)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "configuration file (for metrics.listen)")
	cmd.Flags().String("metrics", "", "the running daemon's metrics address (metrics.listen)")
	return cmd
}
