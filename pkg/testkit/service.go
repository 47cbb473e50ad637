package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/platform"
)

// Service is a service running inside the test process.
type Service struct {
	URL    string // http://127.0.0.1:port
	cancel context.CancelFunc
	done   chan error
}

// RunFunc is a service's Run: its composition root.
type RunFunc func(ctx context.Context, cfg platform.Config, log *slog.Logger, tel *observability.Telemetry, ln net.Listener) error

// StartService runs the service name with run on 127.0.0.1:0 with the given
// environment (DATABASE_URL, BROKER_URL, OTEL_*, ...) and waits until
// /readyz reports its router and forwarder up. It is stopped when the test
// ends. Logs go nowhere unless TEST_LOG=1. Its telemetry is its own (not
// the process's globals): traces are not exported unless
// OTEL_TRACES_EXPORTER or opts say otherwise, and /metrics serves its own
// registry.
func StartService(tb testing.TB, name string, run RunFunc, env map[string]string, opts ...observability.SetupOption) *Service {
	tb.Helper()
	s := StartServiceNoWait(tb, name, run, env, opts...)
	WaitReady(tb, s.URL, 30*time.Second)
	return s
}

// StartServiceNoWait is StartService without waiting for the broker side:
// for tests that start a service while RabbitMQ is out of reach.
func StartServiceNoWait(tb testing.TB, name string, run RunFunc, env map[string]string, opts ...observability.SetupOption) *Service {
	tb.Helper()
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		if k == "OTEL_TRACES_EXPORTER" {
			return "none"
		}
		return ""
	}
	cfg, err := platform.LoadConfig(name, 0, getenv)
	if err != nil {
		tb.Fatalf("config: %v", err)
	}
	w := io.Discard
	if os.Getenv("TEST_LOG") == "1" {
		w = os.Stderr
	}
	log := observability.NewLogger(w, name, cfg.LogLevel)
	tel, err := observability.New(context.Background(), name, "test", getenv, append(opts, observability.WithLogger(log))...)
	if err != nil {
		tb.Fatalf("telemetry: %v", err)
	}
	tb.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{URL: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, cfg, log, tel, ln) }()
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("%s stopped with: %v", name, err)
		}
	})
	return s
}

// Stop stops the service as SIGTERM would and returns what Run returned.
// Stopping twice is fine.
func (s *Service) Stop() error {
	s.cancel()
	err, ok := <-s.done
	if ok {
		close(s.done)
	}
	return err
}

// Readiness is the body of /readyz.
type Readiness struct {
	Status     string            `json:"status"`
	Components map[string]string `json:"components"`
}

// GetReadiness fetches /readyz.
func GetReadiness(baseURL string) (Readiness, error) {
	var r Readiness
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/readyz", nil)
	if err != nil {
		return r, fmt.Errorf("build readyz request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return r, fmt.Errorf("get readyz: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, fmt.Errorf("decode readyz: %w", err)
	}
	return r, nil
}

// WaitReady polls /readyz until every component is up.
func WaitReady(tb testing.TB, baseURL string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var last Readiness
	var err error
	for time.Now().Before(deadline) {
		last, err = GetReadiness(baseURL)
		if err == nil && last.Status == "up" {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	tb.Fatalf("%s not ready after %s: %+v (last error: %v)", baseURL, timeout, last, err)
}

// Eventually polls cond every interval until it returns nil or timeout
// passes, then fails the test with cond's last error.
func Eventually(tb testing.TB, timeout, interval time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}

// ServiceEnv is the environment of a service under test: a fresh database,
// the given broker, short retry and poll intervals, and small connection
// pools (tests run many services side by side on one PostgreSQL).
func ServiceEnv(tb testing.TB, brokerURL string) map[string]string {
	tb.Helper()
	return map[string]string{
		"DATABASE_URL":                   NewDatabase(tb),
		"BROKER_URL":                     brokerURL,
		"HANDLER_RETRY_INITIAL_INTERVAL": "10ms",
		"HANDLER_RETRY_MAX_INTERVAL":     "200ms",
		"OUTBOX_POLL_INTERVAL":           "1s",
		"SHUTDOWN_TIMEOUT":               "10s",
		"DATABASE_MAX_CONNS":             "6",
		"OUTBOX_WORKERS":                 "2",
	}
}

// StartRuntime runs rt until the test ends (failing it if rt stops with an
// error) and waits until its router and forwarder run.
func StartRuntime(tb testing.TB, rt *platform.Runtime) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("runtime stopped: %v", err)
		}
	})
	select {
	case <-rt.Ready():
	case err := <-done:
		tb.Fatalf("runtime stopped: %v", err)
	case <-time.After(30 * time.Second):
		tb.Fatal("runtime not ready")
	}
}
