package daemon

import (
	"context"
	"errors"
	"log/slog"

	"github.com/auditns/auditns/internal/config"
	"github.com/auditns/auditns/internal/publish"
)

func openKafka(ctx context.Context, cfg *config.Config, log *slog.Logger) (publish.Sink, error) {
	return nil, errors.New("output kafka: not built yet")
}
