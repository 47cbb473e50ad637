// Command loadgen drives POST /orders and measures what users feel: HTTP
// latency of placing an order, and how long until the order is invoiced.
//
// It runs open-loop at a fixed --rate (each request has a scheduled time and
// its latency counts from then, so a slow server cannot hide its queueing:
// no coordinated omission), or closed-loop with --concurrency workers. It
// watches InvoiceIssued on its own temporary queue to time placed → invoiced
// for every order with one clock, and at the end reports a human summary or,
// with --json, one JSON object.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg, requestsCSV, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if requestsCSV != "" {
		f, createErr := os.Create(requestsCSV) //nolint:gosec // the operator's own path
		if createErr != nil {
			return createErr
		}
		defer func() { err = errors.Join(err, f.Close()) }()
		cfg.Requests = f
	}
	res, err := Run(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	res.print(stdout)
	return nil
}

// parseFlags returns the run's configuration and the --requests-csv path.
func parseFlags(args []string, stderr io.Writer) (Config, string, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Config
	var requestsCSV string
	fs.StringVar(&c.OrdersURL, "orders-url", "http://127.0.0.1:3333", "orders service base URL")
	fs.StringVar(&c.InvoicesURL, "invoices-url", "http://127.0.0.1:3334", "invoices service base URL (checked before the run)")
	fs.StringVar(&c.BrokerURL, "broker-url", envOr("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ, to watch InvoiceIssued")
	fs.StringVar(&c.APIKey, "api-key", envOr("ORDERFLOW_API_KEY", ""), "through Kong (--orders-url http://127.0.0.1:8000): the API key, sent in the apikey header, whose customer places every order (default $ORDERFLOW_API_KEY; the flag shows in the process list); the services' /readyz and /metrics are then not read")
	fs.IntVar(&c.Customers, "customers", 1000, "without --api-key: orders go to customers load-0 .. load-<n-1> in turn, each named in X-Consumer-Custom-ID as Kong would")
	fs.Float64Var(&c.Rate, "rate", 0, "open loop: orders per second (0: closed loop at --concurrency)")
	fs.IntVar(&c.Concurrency, "concurrency", 32, "closed loop: workers; open loop: most requests in flight")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "how long to send orders")
	fs.DurationVar(&c.Drain, "drain", 30*time.Second, "how long to wait for outstanding invoices after sending")
	fs.DurationVar(&c.Progress, "progress", 5*time.Second, "progress line interval on stderr (0: none)")
	fs.BoolVar(&c.JSON, "json", false, "print one JSON object")
	fs.StringVar(&c.OTLPSink, "otlp-sink", "", "also serve a discarding OTLP/HTTP receiver on this address (e.g. 127.0.0.1:4318), so the services export their traces during the run without a collector")
	fs.StringVar(&requestsCSV, "requests-csv", "", "also write each request's send time and latency to this CSV file (sent_ms,latency_ms,ok), to see when in the run the slow ones were")
	if err := fs.Parse(args); err != nil {
		return c, "", err
	}
	if c.Concurrency < 1 || c.Duration <= 0 || c.Rate < 0 || c.Customers < 1 {
		return c, "", errors.New("--concurrency and --customers must be at least 1, --duration positive, --rate not negative")
	}
	return c, requestsCSV, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
