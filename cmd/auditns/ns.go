package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/auditns/auditns/internal/render"
	"github.com/auditns/auditns/internal/serial"
)

func nsCmd() *cobra.Command {
	var asJSON bool
	var file string
	cmd := &cobra.Command{
		Use:   "ns",
		Short: "Show the namespace registry of this boot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd, file, map[string]string{"state-dir": "state_dir"})
			if err != nil {
				return err
			}
			boot, recs, err := serial.Load(c.StateDir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				for i := range recs {
					if err := writeJSON(out, &recs[i]); err != nil {
						return err
					}
				}
				return nil
			}
			fmt.Fprintf(out, "boot %s: %d namespaces\n", escapeTerm(boot), len(recs))
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "SERIAL\tTYPE\tINUM\tNS_ID\tID_SRC\tOWNER\tPARENT\tCREATED BY\tFIRST SEEN\tLAST SEEN\tSTATE")
			for _, r := range recs {
				fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Serial, r.Type, r.Inum, nsID(r.NsID), r.IDSrc,
					ref(r.OwnerUser), ref(r.Parent), creator(r), stamp(r.FirstSeen.Time), stamp(r.LastSeen.Time), state(r))
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one registry record (auditns.namespace/1) per line")
	cmd.Flags().String("state-dir", "", "state directory (state_dir)")
	cmd.Flags().StringVar(&file, "config", "", "configuration file")
	return cmd
}

func nsID(p *uint64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

func ref(r *serial.SerialRef) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprint(r.Serial)
}

func creator(r serial.Record) string {
	if r.IsInit {
		return "(init)"
	}
	if r.CreatedBy == nil {
		return "-"
	}
	return fmt.Sprintf("%s by pid %d %s", r.CreatedBy.Op, r.CreatedBy.PID, escapeTerm(r.CreatedBy.Exe))
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func state(r serial.Record) string {
	if r.Gone != nil {
		return "gone " + stamp(r.Gone.Time)
	}
	return "alive"
}

// escapeTerm keeps control characters, terminal escape sequences and
// bidirectional overrides in untrusted text off the terminal.
func escapeTerm(s string) string { return string(render.Escape(nil, s)) }

// writeJSON writes v as one line of JSON with every character a terminal
// would act on \u-escaped: encoding/json passes C1 controls and bidi
// overrides through, and the line may be read on a terminal. The JSON
// value is the same.
func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(render.TerminalJSON(nil, b))
	return err
}
