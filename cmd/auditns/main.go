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
	return root
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "auditns:", oneLine(err.Error()))
		var u usageError
		var in daemon.InputError
		if errors.As(err, &u) || errors.As(err, &in) || isCobraUsage(err) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func oneLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// isCobraUsage recognises cobra's own errors for unknown commands and
// wrong argument counts.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "accepts ", "requires ", "invalid argument"} {
		if len(s) >= len(p) && contains(s, p) {
			return true
		}
	}
	return false
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
