package platform

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/groupcommit"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/outbox"
)

// OpenDatabase opens the service's database, creating it if cfg says so, and
// applies migrations.
func OpenDatabase(ctx context.Context, cfg Config, log *slog.Logger, tel *observability.Telemetry, migrations []fs.FS) (*bun.DB, error) {
	db, err := database.Open(ctx, database.Config{
		URL: cfg.DatabaseURL, Name: cfg.Service, MaxOpenConns: cfg.Tuning.DBMaxConns, CreateIfMissing: cfg.CreateDatabase,
		TracerProvider: tel.TracerProvider(), MeterProvider: tel.MeterProvider(), Log: log,
	})
	if err != nil {
		return nil, err
	}
	if err := database.Migrate(ctx, db, migrations, log); err != nil {
		return nil, fmt.Errorf("%w (and close: %w)", err, db.Close())
	}
	if err := tel.RegisterOutboxBacklog(outboxBacklog(db)); err != nil {
		return nil, fmt.Errorf("register outbox gauges: %w (and close: %w)", err, db.Close())
	}
	return db, nil
}

// outboxBacklog measures the outbox: rows waiting and the oldest one's age.
func outboxBacklog(db *bun.DB) observability.BacklogFunc {
	return func(ctx context.Context) (int64, time.Duration, error) {
		var rows int64
		var age float64
		err := db.QueryRowContext(ctx, `SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM `+
			outbox.Table).Scan(&rows, &age)
		if err != nil {
			return 0, 0, fmt.Errorf("measure outbox: %w", err)
		}
		return rows, time.Duration(age * float64(time.Second)), nil
	}
}

// GroupCommit is the group-commit configuration of the stores (nil when
// cfg.Tuning.GroupCommit is off): a span per shared transaction and its
// size, instrumented by tel.
func GroupCommit(cfg Config, tel *observability.Telemetry) *groupcommit.Config {
	if !cfg.Tuning.GroupCommit {
		return nil
	}
	gc := tel.Batching()
	// One transaction of a kind in flight: the calls that arrive meanwhile
	// form the next one, so batches grow with the load.
	gc.Concurrency, gc.MaxBatch = 1, 64
	return &gc
}
