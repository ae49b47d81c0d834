package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/auditns/auditns/internal/netlink"
)

func statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the kernel's audit status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ks, err := netlink.ReadKernelStatus()
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"kernel": ks})
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
			fmt.Printf("kernel audit\n  enabled:            %s\n  audit daemon:       %s\n  rules loaded:       %s\n  lost:               %d\n  backlog:            %d of %d\n  rate limit:         %d/s\n  backlog wait time:  %d\n  failure mode:       %s\n",
				enabled, daemon, rules, ks.Lost, ks.Backlog, ks.BacklogLimit, ks.RateLimit, ks.BacklogWaitTime, failure)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func comm(pid uint32) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "not running"
	}
	return string(b[:len(b)-1])
}
