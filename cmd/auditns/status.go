package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

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
			dv := daemonView(c.Metrics.Listen)
			if asJSON {
				out := map[string]any{"kernel": ks}
				if dv != nil {
					out["daemon"] = dv
				}
				return json.NewEncoder(os.Stdout).Encode(out)
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
			if dv != nil {
				fmt.Printf("auditns daemon (%s)\n  health:             %s\n", dv.Endpoint, dv.Health)
				for _, k := range sortedKeys(dv.Metrics) {
					fmt.Printf("  %-34s %v\n", k+":", dv.Metrics[k])
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

// daemonStatus is the running daemon's view, from its metrics endpoint.
type daemonStatus struct {
	Endpoint string             `json:"endpoint"`
	Health   string             `json:"health"`
	Metrics  map[string]float64 `json:"metrics,omitempty"`
}

func daemonView(addr string) *daemonStatus {
	if addr == "" {
		return nil
	}
	ds := &daemonStatus{Endpoint: addr}
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/healthz")
	if err != nil {
		ds.Health = "not answering: " + err.Error()
		return ds
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	ds.Health = strings.TrimSpace(string(b))
	resp, err = cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return ds
	}
	defer resp.Body.Close()
	ds.Metrics = map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.HasPrefix(f[0], "auditns_") && !strings.Contains(f[0], "{") && !strings.Contains(f[0], "_bucket") {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				ds.Metrics[strings.TrimPrefix(f[0], "auditns_")] = v
			}
		}
	}
	return ds
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func comm(pid uint32) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "not running"
	}
	return string(b[:len(b)-1])
}
