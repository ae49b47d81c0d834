package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/auditns/auditns/internal/buildinfo"
	"github.com/auditns/auditns/internal/convert"
	"github.com/auditns/auditns/internal/event"
)

func convertCmd() *cobra.Command {
	var opts convert.Options
	cmd := &cobra.Command{
		Use:   "convert [FILE|-]",
		Short: "Convert an audit log (audit.log, ausearch --raw) into auditns events on stdout",
		Long: "Reads records in the kernel's and auditd's text format (type=... msg=audit(...): ..., with or without\n" +
			"node=) from FILE or stdin and writes auditns.event/2 JSON, one event per line, assembled and enriched as\n" +
			"`auditns run` does. Namespaces cannot be known after the fact: auditns.ns_src is \"unknown\". Lines that\n" +
			"are not records are reported on stderr with their numbers and counted.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in io.Reader = os.Stdin
			name := "stdin"
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return badInput(fmt.Errorf("convert: FILE: %w", err))
				}
				defer f.Close()
				in, name = f, args[0]
			}
			event.SetAgent(event.Agent{Version: buildinfo.Get().Version})
			st, err := convert.Convert(in, os.Stdout, opts)
			fmt.Fprintf(os.Stderr, "convert: %s: %d lines, %d records, %d events, %d malformed lines\n",
				name, st.Lines, st.Records, st.Events, st.Malformed)
			return err
		},
	}
	cmd.Flags().StringVar(&opts.HostName, "host", "", "host.name of the events (default: the records' node=, else unknown)")
	cmd.Flags().StringVar(&opts.BootID, "boot-id", "", "the boot id that qualifies event ids (default unknown)")
	cmd.Flags().BoolVar(&opts.Raw, "raw", false, "include the records in event.original")
	return cmd
}
