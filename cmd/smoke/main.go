// Command smoke checks that a running orderflow works end to end: it places
// one order, waits for its invoice, then waits for the order to be marked
// invoiced, and prints each step.
//
// It goes through Kong (http://127.0.0.1:8000) when Kong answers there, and
// to the services directly (orders on :3333, invoices on :3334) otherwise,
// so it checks both `go tool task dev` modes. Through Kong it sends an API
// key (ORDERFLOW_API_KEY, or --api-key; `go tool task smoke` takes the
// development key of customer c-1 from .env); directly it names its customer
// in X-Consumer-Custom-ID, as Kong would (--customer, default c-1):
//
//	go tool task smoke
//	go run ./cmd/smoke --orders-url http://127.0.0.1:3333 --invoices-url http://127.0.0.1:3334 --timeout 1m
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// Defaults: the local stack's Kong, and the services' own ports.
const (
	defaultKongURL     = "http://127.0.0.1:8000"
	defaultOrdersURL   = "http://127.0.0.1:3333"
	defaultInvoicesURL = "http://127.0.0.1:3334"
)

// pollInterval is how often the invoice and the order are asked for.
const pollInterval = 200 * time.Millisecond

// The headers that say who calls: Kong's key-auth reads the key, and names
// the authenticated customer to the services in the consumer header.
const (
	apiKeyHeader   = "apikey"
	consumerHeader = "X-Consumer-Custom-ID"
)

// apiKeyEnv holds the API key Kong wants, so that it stays off the command
// line (and the process list).
const apiKeyEnv = "ORDERFLOW_API_KEY" //nolint:gosec // the variable's name, not a credential

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "smoke: FAILED:", err)
		os.Exit(1)
	}
}

type config struct {
	kongURL, ordersURL, invoicesURL string
	apiKey, customer                string
	timeout                         time.Duration
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("smoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.apiKey, "api-key", getenv(apiKeyEnv), "the API key Kong wants, in the apikey header (default $"+apiKeyEnv+"; the flag shows in the process list)")
	fs.StringVar(&c.customer, "customer", "c-1", "without an API key: the customer named in "+consumerHeader+", as Kong names it, to the services directly")
	fs.StringVar(&c.kongURL, "kong-url", defaultKongURL, "Kong's proxy; used when it answers and a service URL is not given")
	fs.StringVar(&c.ordersURL, "orders-url", "", "base URL for /orders (default: Kong if it answers, else "+defaultOrdersURL+")")
	fs.StringVar(&c.invoicesURL, "invoices-url", "", "base URL for /invoices (default: Kong if it answers, else "+defaultInvoicesURL+")")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "deadline for the whole check")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.timeout <= 0 {
		return c, fmt.Errorf("--timeout must be positive, got %s", c.timeout)
	}
	if c.apiKey == "" && strings.TrimSpace(c.customer) == "" {
		return c, errors.New("--customer must name a customer")
	}
	c.kongURL = strings.TrimRight(c.kongURL, "/")
	c.ordersURL = strings.TrimRight(c.ordersURL, "/")
	c.invoicesURL = strings.TrimRight(c.invoicesURL, "/")
	return c, nil
}

// run is the command, given its arguments, environment and outputs.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	s := smoker{client: &http.Client{Timeout: 5 * time.Second}, out: stdout}

	var via route
	s.ordersURL, s.invoicesURL, via = s.targets(ctx, cfg)
	// Through Kong, or to URLs given, the API key when there is one; to the
	// services' own ports, the customer, as Kong would name it.
	switch {
	case via != direct && cfg.apiKey != "":
		s.identify = func(h http.Header) { h.Set(apiKeyHeader, cfg.apiKey) }
		fmt.Fprintf(stdout, "calling with an API key (%s header)\n", apiKeyHeader)
	case via == throughKong:
		return fmt.Errorf("an API key is needed: Kong answers at %s; set %s (go tool task smoke takes .env's ORDERFLOW_APIKEY_C_1) or --api-key", cfg.kongURL, apiKeyEnv)
	default:
		s.identify = func(h http.Header) { h.Set(consumerHeader, cfg.customer) }
		fmt.Fprintf(stdout, "calling as customer %s (%s, as Kong would name it)\n", cfg.customer, consumerHeader)
	}
	fmt.Fprintf(stdout, "orders at %s, invoices at %s, deadline %s\n", s.ordersURL, s.invoicesURL, cfg.timeout)

	o, err := s.placeOrder(ctx)
	if err != nil {
		return err
	}
	inv, err := s.waitForInvoice(ctx, o.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "invoice %s issued for order %s (%d %s) after %s\n",
		inv.ID, inv.OrderID, inv.Amount, inv.Currency, time.Since(start).Round(time.Millisecond))
	if err := s.waitForInvoiced(ctx, o.ID, inv.ID); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "order %s is invoiced after %s\nsmoke: OK\n", o.ID, time.Since(start).Round(time.Millisecond))
	return nil
}

type smoker struct {
	client                 *http.Client
	out                    io.Writer
	ordersURL, invoicesURL string
	// identify adds who calls to a request: the API key, or the customer.
	identify func(http.Header)
}

// route is where targets sends the requests.
type route int

const (
	given       route = iota // to the URLs given
	throughKong              // through Kong, for one of the URLs at least
	direct                   // to the services' own ports
)

// targets picks the base URLs: the given ones, else Kong's when Kong
// answers, else the services' own ports.
func (s smoker) targets(ctx context.Context, cfg config) (ordersURL, invoicesURL string, via route) {
	ordersURL, invoicesURL = cfg.ordersURL, cfg.invoicesURL
	if ordersURL != "" && invoicesURL != "" {
		return ordersURL, invoicesURL, given
	}
	fallbackOrders, fallbackInvoices := defaultOrdersURL, defaultInvoicesURL
	if err := s.probeKong(ctx, cfg.kongURL); err != nil {
		fmt.Fprintf(s.out, "no Kong at %s (%v): going to the services directly\n", cfg.kongURL, err)
	} else {
		fmt.Fprintf(s.out, "Kong answers at %s: going through it\n", cfg.kongURL)
		fallbackOrders, fallbackInvoices = cfg.kongURL, cfg.kongURL
	}
	via = direct
	if fallbackOrders == cfg.kongURL {
		via = throughKong
	}
	if ordersURL == "" {
		ordersURL = fallbackOrders
	}
	if invoicesURL == "" {
		invoicesURL = fallbackInvoices
	}
	return ordersURL, invoicesURL, via
}

// probeKong asks kongURL for a page of orders, without a key, and tells
// Kong from another server on that port by the headers Kong adds (Via or
// Server: kong/3.9, X-Kong-*), which its 401 carries too.
func (s smoker) probeKong(ctx context.Context, kongURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, kongURL+"/orders?limit=1", nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	for k, vs := range resp.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-kong-") {
			return nil
		}
		if k == "Via" || k == "Server" {
			for _, v := range vs {
				if strings.Contains(strings.ToLower(v), "kong") {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("something answers (%s), but not Kong", resp.Status)
}

type order struct {
	ID         string `json:"id"`
	CustomerID string `json:"customer_id"`
	Status     string `json:"status"`
	InvoiceID  string `json:"invoice_id"`
}

type invoice struct {
	ID       string `json:"id"`
	OrderID  string `json:"order_id"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// placeOrder places one order with an Idempotency-Key. The body names no
// customer: the order is the caller's.
func (s smoker) placeOrder(ctx context.Context) (order, error) {
	var o order
	body := `{"amount":1999,"currency":"EUR"}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ordersURL+"/orders", strings.NewReader(body))
	if err != nil {
		return o, fmt.Errorf("build order request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "smoke-"+uuid.NewString())
	status, header, raw, err := s.do(req)
	if err != nil {
		return o, fmt.Errorf("place order: %w", err)
	}
	if status != http.StatusCreated {
		return o, fmt.Errorf("place order: POST %s/orders answered %d: %s", s.ordersURL, status, raw)
	}
	if err := json.Unmarshal(raw, &o); err != nil || o.ID == "" {
		return o, fmt.Errorf("place order: unexpected body %s", raw)
	}
	fmt.Fprintf(s.out, "placed order %s for customer %s: %d, %s, status %s, correlation id %s\n",
		o.ID, o.CustomerID, status, header.Get("Location"), o.Status, header.Get("X-Correlation-ID"))
	return o, nil
}

// waitForInvoice polls GET /invoices?order_id= until the order's invoice
// exists or ctx ends.
func (s smoker) waitForInvoice(ctx context.Context, orderID string) (invoice, error) {
	var found invoice
	err := s.poll(ctx, s.invoicesURL+"/invoices?order_id="+orderID, func(raw []byte) (bool, error) {
		var list struct{ Items []invoice }
		if err := json.Unmarshal(raw, &list); err != nil {
			return false, fmt.Errorf("unexpected body %s", raw)
		}
		if len(list.Items) > 1 {
			return false, fmt.Errorf("order %s has %d invoices, want one", orderID, len(list.Items))
		}
		if len(list.Items) == 1 {
			found = list.Items[0]
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return found, fmt.Errorf("wait for the invoice of order %s: %w", orderID, err)
	}
	return found, nil
}

// waitForInvoiced polls GET /orders/{id} until the order is invoiced by
// invoiceID or ctx ends.
func (s smoker) waitForInvoiced(ctx context.Context, orderID, invoiceID string) error {
	err := s.poll(ctx, s.ordersURL+"/orders/"+orderID, func(raw []byte) (bool, error) {
		var o order
		if err := json.Unmarshal(raw, &o); err != nil {
			return false, fmt.Errorf("unexpected body %s", raw)
		}
		if o.Status == "invoiced" && o.InvoiceID != invoiceID {
			return false, fmt.Errorf("order %s is invoiced by %s, not %s", orderID, o.InvoiceID, invoiceID)
		}
		return o.Status == "invoiced", nil
	})
	if err != nil {
		return fmt.Errorf("wait for order %s to be invoiced: %w", orderID, err)
	}
	return nil
}

// poll GETs url every pollInterval until done reports true for a 200 body,
// done fails (waiting longer cannot help), or ctx ends. Other statuses and transport errors are retried:
// a service may still be starting.
func (s smoker) poll(ctx context.Context, url string, done func(body []byte) (bool, error)) error {
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("build request: %w", err)
		}
		status, _, raw, err := s.do(req)
		switch {
		case err != nil:
			last = err.Error()
		case status != http.StatusOK:
			last = fmt.Sprintf("GET %s answered %d: %s", url, status, raw)
		default:
			ok, err := done(raw)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
			last = "not yet"
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %s)", ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// do sends req, as the caller, and reads the whole response.
func (s smoker) do(req *http.Request) (int, http.Header, []byte, error) {
	if s.identify != nil {
		s.identify(req.Header)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, resp.Header, nil, fmt.Errorf("read response: %w", err)
	}
	return resp.StatusCode, resp.Header, bytes.TrimSpace(raw), nil
}
