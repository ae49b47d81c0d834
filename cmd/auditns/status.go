package main

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/auditns/auditns/internal/metrics"
	"github.com/auditns/auditns/internal/netlink"
)

func statusCmd() *cobra.Command {
	var asJSON bool
	var file string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the kernel's audit status and, when metrics.listen is set, the daemon's health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd, file, map[string]string{"metrics": "metrics.listen"})
			if err != nil {
				return err
			}
			ks, err := netlink.ReadKernelStatus()
			if err != nil {
				return err
			}
			var dv *metrics.Status
			if c.Metrics.Listen != "" {
				dv = metrics.Scrape(c.Metrics.Listen, 2*time.Second)
			}
			if asJSON {
				out := map[string]any{"kernel": ks}
				if dv != nil {
					out["daemon"] = dv
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			enabled := map[uint32]string{0: "no", 1: "yes", 2: "yes (immutable until reboot)"}[ks.Enabled]
			daemon := "none"
			if ks.PID != 0 {
				daemon = fmt.Sprintf("pid %d (%s)", ks.PID, comm(ks.PID))
			}
			failure := map[uint32]string{0: "silent", 1: "printk", 2: "panic"}[ks.Failure]
			rules := fmt.Sprint(ks.Rules)
			if ks.Rules < 0 {
				rules = "unknown (needs CAP_AUDIT_CONTROL)"
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "kernel audit\n  enabled:            %s\n  audit daemon:       %s\n  rules loaded:       %s\n  lost:               %d\n  backlog:            %d of %d\n  rate limit:         %d/s\n  backlog wait time:  %d\n  failure mode:       %s\n",
				enabled, daemon, rules, ks.Lost, ks.Backlog, ks.BacklogLimit, ks.RateLimit, ks.BacklogWaitTime, failure)
			if dv != nil {
				fmt.Fprintf(w, "auditns daemon (%s)\n  health:             %s\n", escapeTerm(dv.Endpoint), escapeTerm(dv.Health))
				for _, k := range slices.Sorted(maps.Keys(dv.Metrics)) {
					fmt.Fprintf(w, "  %-34s %v\n", escapeTerm(k)+":", dv.Metrics[k])
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&file, "config", "", "configuration file (for metrics.listen)")
	cmd.Flags().String("metrics", "", "the running daemon's metrics address (metrics.listen)")
	return cmd
}

// comm is the name of pid's program, escaped: the program chose it.
func comm(pid uint32) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "not running"
	}
	return escapeTerm(strings.TrimSuffix(string(b), "\n"))
}
