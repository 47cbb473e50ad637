// Package service is the invoices composition root: it builds the service's
// parts in order and runs them.
package service

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"

	"github.com/orderflow/orderflow/apps/invoices/internal/app"
	"github.com/orderflow/orderflow/apps/invoices/internal/consumers"
	"github.com/orderflow/orderflow/apps/invoices/internal/httpapi"
	"github.com/orderflow/orderflow/apps/invoices/internal/metrics"
	"github.com/orderflow/orderflow/apps/invoices/internal/store"
	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/platform"
)

// Name is the service name: it names the poison queue, logs and traces.
const Name = "invoices"

// DefaultPort is the HTTP port when PORT is unset.
const DefaultPort = 3334

// Migrations are the service's database migrations.
func Migrations() []fs.FS { return []fs.FS{store.Migrations(), outbox.Migrations()} }

// Topology is what the service declares on RabbitMQ (see consumers.Topology).
var Topology = consumers.Topology

// Run runs the invoices service on ln until ctx ends, then drains. tel is the
// process's telemetry (nil: none).
func Run(ctx context.Context, cfg platform.Config, log *slog.Logger, tel *observability.Telemetry, ln net.Listener) error {
	defer ln.Close() // Serve closes it too; this covers the early returns

	db, err := platform.OpenDatabase(ctx, cfg, log, tel, Migrations())
	if err != nil {
		return err
	}
	defer db.Close()
	relay, err := database.OpenRelay(ctx, cfg.DatabaseURL, cfg.Tuning.OutboxWorkers+1)
	if err != nil {
		return err
	}
	defer relay.Close()

	events := outbox.New(observability.WatermillLogger(log), tel.Options()...)
	waker := events.Waker() // each commit on db, and each batch write, wakes the outbox forwarder
	m, err := metrics.New(tel.MeterProvider())
	if err != nil {
		return err
	}
	db = db.WithQueryHook(waker)
	plain := store.New(db, events)
	var st app.Store = plain
	if gc := platform.GroupCommit(cfg, tel); gc != nil { // GROUP_COMMIT: writes that arrive together share one statement
		st = store.NewGroupCommit(plain, *gc)
	}
	invoices := app.New(st, m)

	rt, err := platform.NewRuntime(cfg, log, tel, relay, platform.Messaging{
		Topology: consumers.Topology,
		Waker:    waker,
		Register: func(p *messaging.EventProcessor) error { return consumers.Register(p, invoices) },
	})
	if err != nil {
		return err
	}
	health := httpkit.Health{Ping: db.PingContext, Components: rt.Status}
	if err := tel.RegisterReadiness(health.States); err != nil {
		return fmt.Errorf("register readiness gauge: %w", err)
	}
	h := platform.Handler(log, tel, Name, health, httpapi.Routes(invoices, log))
	return platform.Serve(ctx, cfg, log, ln, h, rt)
}
