package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/auditns/auditns/internal/config"
	"github.com/auditns/auditns/internal/netlink"
)

func configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check or show the configuration auditns run would use",
		Args:  cobra.NoArgs,
	}
	var checkFile, showFile string
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration: exit 0 when good, 2 with a one-line error naming the key",
		Long: `Loads the configuration as auditns run would (defaults, --config FILE,
AUDITNS_* environment variables, flags) and validates every value. Exit
status 0 when it is good; 2 and one line on stderr naming the key, what was
expected and where the bad value came from when it is not. The rules file
(audit.rules_file) is parsed too. Nothing else is opened: the kernel, the
state directory and Kafka are not touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd, checkFile, runFlagKeys)
			if err != nil {
				return err
			}
			if c.Audit.RulesFile != "" {
				if _, _, err := netlink.ParseRulesFile(c.Audit.RulesFile); err != nil {
					return badInput(fmt.Errorf("audit.rules_file: %w", err))
				}
			}
			what := "defaults and environment"
			if checkFile != "" {
				what = checkFile
			}
			fmt.Fprintf(cmd.OutOrStdout(), "configuration ok (%s)\n", what)
			return nil
		},
	}
	addRunFlags(check.Flags(), &checkFile)
	show := &cobra.Command{
		Use:   "show",
		Short: "Print every key, its effective value and where it came from",
		Long: `Prints every configuration key with the value auditns run would use and
where it came from: "flag --NAME", "env AUDITNS_...", "file PATH" or
"default". Secrets (kafka.sasl.password) are printed as ********. A bad
configuration is reported as by auditns config check (exit status 2).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, l, err := loadWithLoader(cmd, showFile, runFlagKeys)
			if err != nil {
				return err
			}
			return config.WriteSettings(cmd.OutOrStdout(), l.Settings())
		},
	}
	addRunFlags(show.Flags(), &showFile)
	cmd.AddCommand(check, show)
	return cmd
}
