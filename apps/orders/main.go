// Command orders runs the orders service: the REST API that accepts orders
// into PostgreSQL with their OrderPlaced events in the outbox, the forwarder
// that relays them to RabbitMQ, and the InvoiceIssued handler.
//
// "orders healthcheck" checks a running instance instead (the container's
// HEALTHCHECK); "orders migrate" sets up the database's roles and schema and
// exits (the init container on ECS, docs/deploy.md).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/platform"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	os.Exit(code)
}

// run returns the exit code: 0, 1 when the service failed, 2 for a
// configuration it cannot start with.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) int {
	cfg, err := platform.LoadConfig(service.Name, service.DefaultPort, getenv)
	log := observability.NewLogger(stdout, service.Name, cfg.LogLevel)
	if err != nil {
		log.Error("invalid configuration", "error", err)
		return 2
	}
	if len(args) > 0 && args[0] == "healthcheck" {
		if err := platform.Healthcheck(ctx, cfg.Host, cfg.Port); err != nil {
			log.Error("unhealthy", "error", err)
			return 1
		}
		return 0
	}
	if len(args) > 0 && args[0] == "migrate" {
		if err := platform.MigrateCommand(ctx, cfg, getenv, log, service.Migrations()); err != nil {
			log.Error("migrate", "error", err)
			return 1
		}
		return 0
	}
	platform.SetGCPercent(getenv)
	tel, err := observability.Setup(ctx, service.Name, cfg.Version, getenv, observability.WithLogger(log))
	if err != nil {
		log.Error("set up telemetry", "error", err)
		return 2
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("flush telemetry", "error", err)
		}
	}()
	if addr := getenv("PPROF_ADDR"); addr != "" {
		go platform.ServePprof(ctx, addr, log)
	}
	ln, err := platform.Listen(ctx, cfg.Host, cfg.Port)
	if err != nil {
		log.Error("listen", "error", err)
		return 1
	}
	if err := service.Run(ctx, cfg, log, tel, ln); err != nil {
		log.Error(fmt.Sprintf("%s stopped", service.Name), "error", err)
		return 1
	}
	log.Info(service.Name + " stopped")
	return 0
}
