package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/auditns/auditns/internal/config"
	"github.com/auditns/auditns/internal/publish"
)

// OpenSink opens the configured output.
func OpenSink(ctx context.Context, cfg *config.Config, log *slog.Logger) (publish.Sink, error) {
	switch cfg.Output.Kind {
	case "stdout":
		return publish.NewStdout(), nil
	case "file":
		return publish.NewFile(cfg.Output.Path, cfg.Output.FlushInterval)
	case "kafka":
		return openKafka(ctx, cfg, log)
	}
	return nil, fmt.Errorf("output.sink: unknown output %q", cfg.Output.Kind)
}
