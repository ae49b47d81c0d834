package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/auditns/auditns/internal/config"
	"github.com/auditns/auditns/internal/daemon"
)

// loadConfig binds the given flags to their keys and loads the
// configuration; errors are bad input.
func loadConfig(cmd *cobra.Command, file string, flagKeys map[string]string) (*config.Config, error) {
	c, _, err := loadWithLoader(cmd, file, flagKeys)
	return c, err
}

// loadWithLoader is loadConfig that also returns the Loader, which knows
// where each value came from.
func loadWithLoader(cmd *cobra.Command, file string, flagKeys map[string]string) (*config.Config, *config.Loader, error) {
	l := config.NewLoader()
	for flag, key := range flagKeys {
		if f := cmd.Flags().Lookup(flag); f != nil {
			l.BindFlag(key, f)
		}
	}
	c, err := l.Load(file)
	if err != nil {
		return nil, l, badInput(err)
	}
	return c, l, nil
}

func newLogger(c *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Log.Level))
	o := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, o))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, o))
}

func runCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Read kernel audit events and publish them (stdout by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd, file, runFlagKeys)
			if err != nil {
				return err
			}
			log := newLogger(c)
			slog.SetDefault(log)
			if os.Getenv("GOMEMLIMIT") == "" {
				// An audit daemon shares the host it watches: a soft limit
				// makes the collector work harder before the heap grows past
				// what a steady pipeline needs. GOMEMLIMIT overrides it.
				debug.SetMemoryLimit(48 << 20)
			}
			if os.Getenv("GOMAXPROCS") == "" && c.MaxProcs > 0 {
				runtime.GOMAXPROCS(c.MaxProcs)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			d, err := daemon.Start(ctx, c, log)
			if err != nil {
				return err
			}
			return d.Run(ctx, 10*time.Second)
		},
	}
	addRunFlags(cmd.Flags(), &file)
	return cmd
}

// runFlagKeys maps run's flags to the configuration keys they set.
var runFlagKeys = map[string]string{
	"output":        "output.sink",
	"rules":         "audit.rules_file",
	"mode":          "mode",
	"state-dir":     "state_dir",
	"kafka-brokers": "kafka.brokers",
	"raw":           "output.raw",
	"metrics":       "metrics.listen",
}

// addRunFlags defines run's flags (config check and show take them too, so
// that they judge the configuration run would get).
func addRunFlags(f *pflag.FlagSet, file *string) {
	f.StringVar(file, "config", "", "configuration file (YAML); see configs/auditns.yaml")
	f.String("output", "", "stdout | file:PATH | kafka (output.sink)")
	f.String("rules", "", "audit rules file in auditctl syntax (audit.rules_file)")
	f.String("mode", "", "unicast | multicast (mode)")
	f.String("state-dir", "", "state directory (state_dir)")
	f.String("kafka-brokers", "", "Kafka bootstrap brokers H:P,... (kafka.brokers)")
	f.Bool("raw", false, "include the kernel's records in event.original (output.raw)")
	f.String("metrics", "", "serve /metrics and /healthz on this address (metrics.listen)")
}
