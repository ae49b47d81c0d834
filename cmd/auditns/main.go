// Command auditns is a Linux audit daemon that tags every event with the
// identity of its subject's namespaces and publishes JSON to stdout, a file
// or Kafka. This file only parses flags and wires packages.
//
// cobra was chosen for the command line because it is the companion of
// viper: pflag flags bind straight to configuration keys, which gives the
// flag > env > file > default precedence without glue code, and each
// subcommand gets its own help and flag set.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/auditns/auditns/internal/daemon"
)

// usageError is bad input: exit status 2, one line.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func badInput(err error) error { return usageError{err} }

// newRootCmd is the whole command tree (main runs it; the man pages and
// shell completions in docs/man and packaging/completion are generated from
// it by TestGeneratedDocs).
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "auditns",
		Short: "Linux audit events with namespace identity, to stdout, a file or Kafka",
		Long: `auditns reads the kernel's audit records over netlink, assembles them into
events, tags each with the identity of its subject's namespaces (a serial
unique for the boot, the nsfs inode and, where the kernel has one, its
namespace id) and publishes one JSON object per event to stdout, a file or
Apache Kafka.

It runs as root. auditns run takes its settings from defaults, a YAML file
(--config; every key is documented in configs/auditns.yaml), AUDITNS_*
environment variables and flags, in increasing precedence; auditns config
show prints the result. Bad input exits with status 2 and one line naming
the key.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionLine(),
	}
	root.SetVersionTemplate("{{.Version}}")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return badInput(err) })
	root.AddCommand(runCmd(), statusCmd(), nsCmd(), versionCmd(), tailCmd(), replayCmd(), configCmd(), healthCmd(), deadLetterCmd(), convertCmd())
	argsAreUsage(root)
	return root
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		msg, _, _ := strings.Cut(err.Error(), "\n")
		fmt.Fprintln(os.Stderr, "auditns:", msg)
		var u usageError
		var in daemon.InputError
		if errors.As(err, &u) || errors.As(err, &in) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// argsAreUsage makes the argument check of c and of every command below it
// return a usageError. A command that only groups subcommands gets a check
// naming an unknown subcommand and prints its help when run bare: cobra's
// own check for that returns a plain error.
func argsAreUsage(c *cobra.Command) {
	for _, sub := range c.Commands() {
		argsAreUsage(sub)
	}
	if !c.Runnable() && c.HasSubCommands() {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return nil
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return badInput(err)
			}
			return nil
		}
	}
}
