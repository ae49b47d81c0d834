package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/auditns/auditns/internal/buildinfo"
)

// versionLine is what `auditns version` and `auditns --version` print.
func versionLine() string { return buildinfo.Get().String() + "\n" }

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit and the Go release of this build",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprint(cmd.OutOrStdout(), versionLine())
		},
	}
}
