package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/go-chi/chi/v5"
	"github.com/uptrace/bun"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/groupcommit"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/observability"
)

// App is what a service plugs into the platform.
type App struct {
	// Migrations holds the service's *.up.sql files.
	Migrations fs.FS
	// Build wires the service on its dependencies: it returns the HTTP
	// routes (mounted beside /healthz, /readyz and /metrics) and registers
	// the event handlers.
	Build func(Deps) (routes func(chi.Router), register func(*messaging.EventProcessor) error, err error)
}

// Deps are what the platform gives a service.
type Deps struct {
	DB  *bun.DB
	Log *slog.Logger
	// WatermillLog is Log for Watermill (observability.WatermillLogger),
	// shared by the messaging runtime and the stores' outboxes.
	WatermillLog watermill.LoggerAdapter
	Telemetry    *observability.Telemetry
	// OutboxWaker is to be signalled after every commit that appended
	// events (messaging.Outbox.Committed): it wakes a forwarder at once.
	OutboxWaker *messaging.OutboxWaker
	// Batching configures and instruments the stores' group commits.
	Batching groupcommit.Config
}

// Run opens and migrates the database, then serves HTTP on ln and runs the
// messaging runtime until ctx ends, and then drains: the server stops
// accepting and finishes in-flight requests, the router finishes in-flight
// handlers, each bounded by cfg.ShutdownTimeout.
//
// HTTP is served as soon as the database is ready, not when RabbitMQ is:
// orders go into the outbox whatever the broker does.
//
// tel is the process's telemetry (nil: none); /metrics serves its registry.
func Run(ctx context.Context, cfg Config, log *slog.Logger, tel *observability.Telemetry, ln net.Listener, app App) error {
	defer ln.Close() // Serve closes it too; this covers the early returns
	db, err := database.Open(ctx, database.Config{
		URL: cfg.DatabaseURL, Name: cfg.Service, MaxOpenConns: cfg.DBMaxConns, CreateIfMissing: cfg.CreateDatabase,
		TracerProvider: tel.TracerProvider(), MeterProvider: tel.MeterProvider(),
	})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := database.Migrate(ctx, db, app.Migrations); err != nil {
		return err
	}
	waker := messaging.NewOutboxWaker()
	wlog := observability.WatermillLogger(log)
	routes, register, err := app.Build(Deps{DB: db, Log: log, WatermillLog: wlog, Telemetry: tel, OutboxWaker: waker, Batching: batching(cfg, tel)})
	if err != nil {
		return err
	}

	relayDB, err := database.OpenRelay(ctx, cfg.DatabaseURL, max(cfg.OutboxWorkers+1, 2))
	if err != nil {
		return err
	}
	defer relayDB.Close()

	rt := &messaging.Runtime{
		// PublisherChannels is left to the runtime: one per publish the
		// forwarders may have in flight (workers × batch size), at most 32.
		Broker: messaging.BrokerConfig{URL: cfg.BrokerURL, Prefetch: cfg.Prefetch, Consumers: cfg.Concurrency},
		Router: messaging.RouterConfig{
			Service: cfg.Service, Version: cfg.Version,
			MaxRetries: cfg.MaxRetries, RetryInitial: cfg.RetryInitial, RetryMax: cfg.RetryMax,
			HandlerTimeout: cfg.HandlerTimeout, CloseTimeout: cfg.ShutdownTimeout,
			Otel: tel.Options(),
		},
		Forwarder: messaging.ForwarderConfig{
			Workers: cfg.OutboxWorkers, BatchSize: cfg.OutboxBatchSize, PollInterval: cfg.OutboxPollInterval,
			Waker: waker, Linger: cfg.OutboxLinger, CloseTimeout: cfg.ShutdownTimeout,
		},
		Outbox:   relayDB,
		Register: register,
		Log:      wlog,
	}

	if tel != nil {
		if err := tel.RegisterOutboxBacklog(outboxBacklog(db)); err != nil {
			return fmt.Errorf("register outbox gauges: %w", err)
		}
		if err := tel.RegisterPoisonDepth(rt.PoisonDepth); err != nil {
			return fmt.Errorf("register poison gauge: %w", err)
		}
	}

	health := httpkit.Health{Ping: db.PingContext, Components: rt.Status}
	if err := tel.RegisterReadiness(health.States); err != nil {
		return fmt.Errorf("register readiness gauge: %w", err)
	}
	srv := &http.Server{
		Handler:           handler(log, tel, cfg.Service, health, routes),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return rt.Run(gctx) })
	g.Go(func() error {
		log.InfoContext(ctx, "serving http", "addr", ln.Addr().String(), "version", cfg.Version)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.InfoContext(ctx, "shutting down")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			return fmt.Errorf("shut down http: %w", err)
		}
		return nil
	})
	return g.Wait()
}

// Handler is the service's root HTTP handler: panics become 500 problems,
// every request has a correlation id, unknown routes get 404 problems, and
// /healthz and /readyz sit beside the service's routes.
func Handler(log *slog.Logger, health httpkit.Health, routes func(chi.Router)) http.Handler {
	return handler(log, nil, "", health, routes)
}

// handler is Handler with telemetry: a server span and duration metric per
// request named by its route template, and /metrics.
func handler(log *slog.Logger, tel *observability.Telemetry, service string, health httpkit.Health, routes func(chi.Router)) http.Handler {
	r := chi.NewRouter()
	if tel != nil {
		// Inside chi, not around it: the route template is known only
		// while chi's routing context is alive.
		r.Use(observability.HTTPMiddleware(service, tel.Options()...))
	}
	r.Use(httpkit.Recoverer(log), httpkit.CorrelationID)
	r.NotFound(httpkit.NotFound)
	r.MethodNotAllowed(httpkit.MethodNotAllowed)
	r.Get("/healthz", health.Live)
	r.Get("/readyz", health.Ready)
	if tel != nil {
		r.Method(http.MethodGet, "/metrics", tel.MetricsHandler())
	}
	routes(r)
	return r
}

// outboxBacklog measures the outbox: rows waiting and the oldest one's age.
func outboxBacklog(db *bun.DB) observability.BacklogFunc {
	return func(ctx context.Context) (int64, time.Duration, error) {
		var rows int64
		var age float64
		err := db.QueryRowContext(ctx, `SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM `+
			messaging.OutboxTable).Scan(&rows, &age)
		if err != nil {
			return 0, 0, fmt.Errorf("measure outbox: %w", err)
		}
		return rows, time.Duration(age * float64(time.Second)), nil
	}
}

// Healthcheck asks the service on port for /healthz: the container
// HEALTHCHECK runs it as the binary's "healthcheck" subcommand, so the image
// needs no shell or curl.
func Healthcheck(ctx context.Context, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/healthz", port), nil)
	if err != nil {
		return fmt.Errorf("build health request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health request: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s", resp.Status)
	}
	return nil
}

// Main is both services' main function, given the process's arguments,
// environment and standard output. It loads the configuration, builds the
// logger, listens on PORT and runs until ctx ends. With the argument
// "healthcheck" it checks a running instance instead. It returns the exit
// code.
func Main(ctx context.Context, service string, defaultPort int, args []string, getenv func(string) string, stdout io.Writer, app App) int {
	cfg, err := LoadConfig(service, defaultPort, getenv)
	log := observability.NewLogger(stdout, service, cfg.LogLevel)
	if err != nil {
		log.Error("invalid configuration", "error", err)
		return 2
	}
	if len(args) > 1 && args[1] == "healthcheck" {
		if err := Healthcheck(ctx, cfg.Port); err != nil {
			log.Error("unhealthy", "error", err)
			return 1
		}
		return 0
	}
	if len(args) > 1 && args[1] == "migrate" {
		return exitCode(log, MigrateCommand(ctx, cfg, getenv, log, app))
	}
	tel, err := observability.Setup(ctx, service, cfg.Version, getenv, observability.WithLogger(log))
	if err != nil {
		log.Error("set up telemetry", "error", err)
		return 2
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("flush telemetry", "error", err)
		}
	}()
	if addr := getenv("PPROF_ADDR"); addr != "" {
		go servePprof(ctx, addr, log)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", fmt.Sprintf(":%d", cfg.Port))
	if err != nil {
		log.Error("listen", "error", err, "port", cfg.Port)
		return 1
	}
	if err := Run(ctx, cfg, log, tel, ln, app); err != nil {
		log.Error(service+" stopped", "error", err)
		return 1
	}
	log.Info(service + " stopped")
	return 0
}

// servePprof serves net/http/pprof on addr (PPROF_ADDR, e.g.
// 127.0.0.1:6060), apart from the service's own port, for profiling under
// load; off unless set.
func servePprof(ctx context.Context, addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Warn("pprof server", "error", err)
	}
}

// batching is the group-commit configuration of the stores.
func batching(cfg Config, tel *observability.Telemetry) groupcommit.Config {
	b := tel.Batching()
	b.Concurrency, b.MaxBatch = cfg.GroupCommits, cfg.GroupCommitMax
	return b
}
