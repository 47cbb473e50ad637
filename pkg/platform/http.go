package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/observability"
)

// Handler is a service's root HTTP handler: a server span and duration
// metric per request named by its route template (tel nil: none), panics
// become 500 problems, every request has a correlation id, unknown routes
// get 404 problems, and /healthz, /readyz and /metrics sit beside the
// service's routes.
func Handler(log *slog.Logger, tel *observability.Telemetry, service string, health httpkit.Health, routes func(chi.Router)) http.Handler {
	r := chi.NewRouter()
	if tel != nil {
		// Inside chi, not around it: the route template is known only
		// while chi's routing context is alive.
		r.Use(tel.HTTPMiddleware(service))
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

// Serve serves h on ln and runs rt until ctx ends, and then drains: the
// server stops accepting and finishes in-flight requests, the router
// finishes in-flight handlers, each bounded by cfg.ShutdownTimeout.
//
// HTTP is served at once, not when RabbitMQ answers: orders go into the
// outbox whatever the broker does.
func Serve(ctx context.Context, cfg Config, log *slog.Logger, ln net.Listener, h http.Handler, rt *Runtime) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return rt.Run(gctx) })
	g.Go(func() error {
		log.InfoContext(ctx, "ready", readyAttrs(ln.Addr(), cfg.Version)...)
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

// readyAttrs are the ready line's attributes: where the service answers.
func readyAttrs(addr net.Addr, version string) []any {
	url := addr.String()
	if tcp, ok := addr.(*net.TCPAddr); ok {
		url = baseURL(tcp.IP.String(), tcp.Port)
	}
	return []any{
		"url", url, "readyz", url + "/readyz", "openapi", url + "/openapi.yaml", "metrics", url + "/metrics",
		"version", version,
	}
}

// Listen listens on host:port (cfg.Host, cfg.Port).
func Listen(ctx context.Context, host string, port int) (net.Listener, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Healthcheck asks the service on host:port for /healthz (an unspecified
// host, 0.0.0.0 or ::, is asked on 127.0.0.1): the container HEALTHCHECK
// runs it as the binary's "healthcheck" subcommand, so the image needs no
// shell or curl.
func Healthcheck(ctx context.Context, host string, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL(host, port)+"/healthz", nil)
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

// baseURL is the URL a local client reaches a listener on host:port at.
func baseURL(host string, port int) string {
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// ServePprof serves net/http/pprof on addr (PPROF_ADDR, e.g.
// 127.0.0.1:6060), apart from the service's own port, until ctx ends.
func ServePprof(ctx context.Context, addr string, log *slog.Logger) {
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
