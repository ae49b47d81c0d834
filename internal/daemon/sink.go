package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/auditns/auditns/internal/config"
	"github.com/auditns/auditns/internal/publish"
)

// openSink opens the configured output.
func (d *Daemon) openSink(ctx context.Context, cfg *config.Config, log *slog.Logger) (publish.Sink, error) {
	switch cfg.Output.Kind {
	case "stdout":
		return publish.NewStdout(), nil
	case "file":
		f, err := publish.NewFile(cfg.Output.Path, cfg.Output.FlushInterval)
		if err != nil {
			return nil, InputError{fmt.Errorf("output.sink: %w", err)}
		}
		return f, nil
	case "kafka":
		return d.openKafka(ctx, cfg, log)
	}
	return nil, fmt.Errorf("output.sink: unknown output %q", cfg.Output.Kind)
}
