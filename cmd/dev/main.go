// Command dev runs both services natively, side by side, for `go tool task
// dev` when Docker does not answer: each one's output prefixed with its
// name, both stopped together.
//
//	go tool task build && ./bin/dev
//
// It stops both services (SIGTERM, then waits for them to drain) when
//
//   - either service exits, for whatever reason: dev then exits with status
//     1 and says which one and how, rather than leave the other running;
//   - dev gets SIGINT, SIGTERM or SIGHUP (Ctrl-C reaches dev and not the
//     services, which run in process groups of their own, so each service
//     gets one SIGTERM and drains once): dev then exits with status 0;
//   - dev's parent exits (go-task, killed or forced out by a third Ctrl-C).
//
// The services take their configuration from the environment as usual,
// with these per-service variables for running both from one shell:
// ORDERS_DATABASE_URL and INVOICES_DATABASE_URL (each service's
// DATABASE_URL, as the operator CLI reads them), ORDERS_PORT and
// INVOICES_PORT (each one's PORT). A DATABASE_URL or PORT set alone would
// point both services at one database or one port, so dev refuses it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	ctx = stopWhenOrphaned(ctx, time.Second)
	bin := "bin"
	if len(os.Args) > 1 {
		bin = os.Args[1]
	}
	err := run(ctx, bin, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "dev: %v\n", err)
		os.Exit(1)
	}
}

// service is one service dev runs: its name, the binary's file name in the
// bin directory, and its default port.
type service struct {
	name string
	port int
}

var services = []service{{name: "orders", port: 3333}, {name: "invoices", port: 3334}}

// run checks the environment, then runs every service from dir until ctx
// ends or one of them exits.
func run(ctx context.Context, dir string, getenv func(string) string, out io.Writer) error {
	for _, key := range []string{"DATABASE_URL", "PORT"} {
		if getenv(key) != "" {
			return fmt.Errorf("%s is set, which would point both services at the same one: unset it and set ORDERS_%s and INVOICES_%s instead", key, key, key)
		}
	}
	procs := make([]proc, 0, len(services))
	for _, s := range services {
		path := filepath.Join(dir, s.name)
		if _, err := os.Stat(path); err != nil { //nolint:gosec // the directory dev was told to run from
			return fmt.Errorf("%s: %w (go tool task build builds it)", s.name, err)
		}
		procs = append(procs, proc{name: s.name, path: path, env: serviceEnv(s, getenv)})
	}
	return supervise(ctx, procs, out, 30*time.Second)
}

// serviceEnv is what dev adds to its own environment for s.
func serviceEnv(s service, getenv func(string) string) []string {
	prefix := map[string]string{"orders": "ORDERS_", "invoices": "INVOICES_"}[s.name]
	port := getenv(prefix + "PORT")
	if port == "" {
		port = fmt.Sprint(s.port)
	}
	env := []string{"PORT=" + port}
	if u := getenv(prefix + "DATABASE_URL"); u != "" {
		env = append(env, "DATABASE_URL="+u)
	}
	return env
}
