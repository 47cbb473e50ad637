// Package service is the orders composition root: it builds the service's
// parts in order and runs them.
package service

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/consumers"
	"github.com/orderflow/orderflow/apps/orders/internal/httpapi"
	"github.com/orderflow/orderflow/apps/orders/internal/metrics"
	"github.com/orderflow/orderflow/apps/orders/internal/store"
	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/platform"
)

// Name is the service name: it names the poison queue, logs and traces.
const Name = "orders"

// DefaultPort is the HTTP port when PORT is unset.
const DefaultPort = 3333

// Migrations are the service's database migrations.
func Migrations() []fs.FS { return []fs.FS{store.Migrations(), outbox.Migrations()} }

// Topology is what the service declares on RabbitMQ (see consumers.Topology).
var Topology = consumers.Topology

// Run runs the orders service on ln until ctx ends, then drains. tel is the
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
	orders := app.New(st, m)

	rt, err := platform.NewRuntime(cfg, log, tel, relay, platform.Messaging{
		Topology: consumers.Topology,
		Waker:    waker,
		Register: func(p *messaging.EventProcessor) error { return consumers.Register(p, orders) },
	})
	if err != nil {
		return err
	}
	backlog := outbox.NewBacklog(db, cfg.OutboxMaxBacklog, backlogInterval)
	health := httpkit.Health{Ping: db.PingContext, Components: withBacklog(rt.Status, backlog), Details: backlogDetails(backlog)}
	if err := tel.RegisterReadiness(health.States); err != nil {
		return fmt.Errorf("register readiness gauge: %w", err)
	}
	shed := httpkit.Shed(admit(backlog), func(r *http.Request) { m.OrderShed(r.Context()) })
	h := platform.Handler(log, tel, Name, health, httpapi.Routes(orders, log, shed))
	go backlog.Run(ctx)
	return platform.Serve(ctx, cfg, log, ln, h, rt)
}

// Back-pressure and load shedding (OUTBOX_MAX_BACKLOG): while more events
// wait in the outbox than the bound, POST /orders waits for a count that
// finds room, for up to admitWait, and answers 503 if none does; /readyz
// reports the outbox as shedding, with the reason. At saturation the short
// waits slow the clients to the pace the forwarder publishes at, so the
// outbox stays near the bound instead of growing for as long as the load
// lasts; while RabbitMQ is down the outbox fills to the bound and then every
// POST is refused after admitWait. Orders accepted before go on as usual.
const (
	backlogInterval = 100 * time.Millisecond
	admitWait       = time.Second
)

func admit(b *outbox.Backlog) func(context.Context) (string, bool) {
	reason := shedReason(b)
	return func(ctx context.Context) (string, bool) {
		if b.Wait(ctx, admitWait) {
			return "", true
		}
		why, over := reason()
		if !over { // a count found room as the wait ended
			return "", true
		}
		return why, false
	}
}

func shedReason(b *outbox.Backlog) func() (string, bool) {
	return func() (string, bool) {
		rows, over := b.Over()
		if !over {
			return "", false
		}
		return fmt.Sprintf("more than %d events wait in the outbox (%d counted), over OUTBOX_MAX_BACKLOG", b.Max(), rows), true
	}
}

func withBacklog(status func() map[string]string, b *outbox.Backlog) func() map[string]string {
	if b.Max() <= 0 {
		return status
	}
	return func() map[string]string {
		s := status()
		s["outbox"] = httpkit.StateUp
		if _, over := b.Over(); over {
			s["outbox"] = httpkit.StateShedding
		}
		return s
	}
}

func backlogDetails(b *outbox.Backlog) func() map[string]string {
	reason := shedReason(b)
	return func() map[string]string {
		if why, over := reason(); over {
			return map[string]string{"outbox": why + ": POST /orders waits up to " + admitWait.String() + " for room, then answers 503"}
		}
		return nil
	}
}
