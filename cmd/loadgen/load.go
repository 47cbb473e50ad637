package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// Config is a load run.
type Config struct {
	OrdersURL, InvoicesURL, BrokerURL string
	// APIKey, when set, is sent in the apikey header, for a run through
	// Kong: Kong names the customer. Without it each order names its
	// customer in X-Consumer-Custom-ID (and its body), as Kong would to the
	// services, one of Customers in turn.
	APIKey                    string
	Customers                 int
	Rate                      float64
	Concurrency               int
	Duration, Drain, Progress time.Duration
	JSON                      bool
	OTLPSink                  string
	// Requests, when set, receives one CSV line per request (see
	// requestLog), for looking at latency over the run's time.
	Requests io.Writer
}

// Result is what a run measured. The JSON keys are the contract of
// `--json`.
type Result struct {
	Mode          string  `json:"mode"`
	TargetRate    float64 `json:"target_rate,omitempty"`
	Concurrency   int     `json:"concurrency"`
	DurationS     float64 `json:"duration_s"`
	Sent          int64   `json:"sent"`
	Accepted      int64   `json:"accepted"`
	Invoiced      int64   `json:"invoiced"`
	AcceptedPerS  float64 `json:"accepted_per_s"`
	InvoicedPerS  float64 `json:"invoiced_per_s"`
	HTTPP50Ms     float64 `json:"http_p50_ms"`
	HTTPP90Ms     float64 `json:"http_p90_ms"`
	HTTPP99Ms     float64 `json:"http_p99_ms"`
	HTTPMaxMs     float64 `json:"http_max_ms"`
	E2EP50Ms      float64 `json:"e2e_p50_ms"`
	E2EP90Ms      float64 `json:"e2e_p90_ms"`
	E2EP99Ms      float64 `json:"e2e_p99_ms"`
	E2EMaxMs      float64 `json:"e2e_max_ms"`
	Errors        int64   `json:"errors"`
	BacklogAtEnd  int64   `json:"backlog_at_end"`
	DrainSeconds  float64 `json:"drain_s"`
	InvoicedInRun int64   `json:"invoiced_during_run"`
	// OutboxLag is each service's forwarding lag over the run's events
	// (orders, then invoices), from their /metrics; left out if those
	// could not be read.
	OutboxLag []OutboxLag `json:"outbox_lag,omitempty"`
	// PostInHandler is POST /orders as the orders service's handler timed
	// it, over the run (from its /metrics); left out if not measured.
	PostInHandler *InHandler `json:"post_orders_in_handler,omitempty"`
	// HostCPU is the machine's CPU while orders were sent; left out where
	// /proc cannot be read.
	HostCPU *HostCPU `json:"host_cpu,omitempty"`
	Targets Targets  `json:"targets"`
}

// tracker pairs each accepted order with its InvoiceIssued.
type tracker struct {
	mu       sync.Mutex
	placed   map[string]time.Time // order id → when it was sent (scheduled)
	early    map[string]time.Time // InvoiceIssued seen before the POST answered
	e2e      *hdrhistogram.Histogram
	invoiced atomic.Int64
}

func newTracker() *tracker {
	return &tracker{
		placed: map[string]time.Time{}, early: map[string]time.Time{},
		e2e: hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3),
	}
}

func (t *tracker) accepted(id string, sent time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if at, ok := t.early[id]; ok {
		delete(t.early, id)
		t.record(at.Sub(sent))
		return
	}
	t.placed[id] = sent
}

func (t *tracker) invoiceSeen(orderID string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sent, ok := t.placed[orderID]
	if !ok {
		t.early[orderID] = at
		return
	}
	delete(t.placed, orderID)
	t.record(at.Sub(sent))
}

func (t *tracker) record(d time.Duration) {
	_ = t.e2e.RecordValue(max(d.Microseconds(), 1))
	t.invoiced.Add(1)
}

func (t *tracker) outstanding() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return int64(len(t.placed))
}

// watch consumes InvoiceIssued from a temporary queue of its own bound to
// the event's exchange; it does not disturb the services' queues.
func watch(ctx context.Context, brokerURL string, t *tracker) (func(), error) {
	conn, err := amqp091.Dial(brokerURL)
	if err != nil {
		return nil, fmt.Errorf("connect to rabbitmq to watch invoices: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.ExchangeDeclare("events.InvoiceIssued", "fanout", true, false, false, false, nil); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("declare exchange: %w", err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err == nil {
		err = ch.QueueBind(q.Name, "", "events.InvoiceIssued", false, nil)
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("declare watch queue: %w", err)
	}
	deliveries, err := ch.ConsumeWithContext(ctx, q.Name, "loadgen", true, true, false, false, nil)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("consume: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d := range deliveries {
			var ev struct {
				OrderID string `json:"order_id"`
			}
			if json.Unmarshal(d.Body, &ev) == nil && ev.OrderID != "" {
				t.invoiceSeen(ev.OrderID, time.Now())
			}
		}
	}()
	return func() { _ = conn.Close(); <-done }, nil
}

// Run runs the load and returns its figures. Progress goes to progress.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Result, error) {
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency * 2, MaxConnsPerHost: cfg.Concurrency * 2},
	}
	if cfg.APIKey != "" {
		// Through Kong: /readyz is not routed, but a page of the key's
		// orders tells that Kong, the key and the service answer.
		if err := checkKey(ctx, client, cfg.OrdersURL, cfg.APIKey); err != nil {
			return nil, err
		}
	} else {
		if err := checkUp(ctx, client, cfg.OrdersURL); err != nil {
			return nil, err
		}
		if err := checkUp(ctx, client, cfg.InvoicesURL); err != nil {
			return nil, err
		}
	}
	if cfg.OTLPSink != "" {
		stop, err := serveOTLPSink(cfg.OTLPSink)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	tr := newTracker()
	stopWatch, err := watch(ctx, cfg.BrokerURL, tr)
	if err != nil {
		return nil, err
	}
	defer stopWatch()

	httpHist := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	var histMu sync.Mutex // guards httpHist and reqLog
	reqLog := newRequestLog(cfg.Requests)
	var start time.Time // set before the first send
	var sent, accepted, errs atomic.Int64
	send := func(scheduled time.Time, n int64) {
		sent.Add(1)
		id, err := placeOrder(ctx, client, cfg, n)
		lat := time.Since(scheduled)
		histMu.Lock()
		_ = httpHist.RecordValue(max(lat.Microseconds(), 1))
		reqLog.add(scheduled.Sub(start), lat, err)
		histMu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				errs.Add(1)
			}
			return
		}
		accepted.Add(1)
		tr.accepted(id, scheduled)
	}

	services := []service{{"orders", cfg.OrdersURL}, {"invoices", cfg.InvoicesURL}}
	metricsBefore, metricsErr := scrapeAll(ctx, client, services)
	hostBefore, hostErr := sampleHost()

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start = time.Now()
	stopProgress := startProgress(runCtx, progress, cfg.Progress, start, &accepted, &errs, tr)
	if cfg.Rate > 0 {
		openLoop(runCtx, cfg, start, send)
	} else {
		closedLoop(runCtx, cfg, send)
	}
	elapsed := time.Since(start)
	// Both loops have waited for their sends: nothing writes the log now.
	if err := reqLog.flush(); err != nil {
		return nil, fmt.Errorf("write the requests log: %w", err)
	}
	var hostAfter hostSample
	if hostErr == nil {
		hostAfter, hostErr = sampleHost()
	}
	stopProgress()
	invoicedInRun := tr.invoiced.Load()

	drainStart := time.Now()
	for tr.outstanding() > 0 && time.Since(drainStart) < cfg.Drain && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond) // polling the tracker with a deadline
	}
	res := &Result{
		Mode: "closed", Concurrency: cfg.Concurrency, DurationS: elapsed.Seconds(),
		Sent: sent.Load(), Accepted: accepted.Load(), Invoiced: tr.invoiced.Load(),
		AcceptedPerS: float64(accepted.Load()) / elapsed.Seconds(),
		InvoicedPerS: float64(invoicedInRun) / elapsed.Seconds(),
		Errors:       errs.Load(), BacklogAtEnd: tr.outstanding(),
		DrainSeconds: time.Since(drainStart).Seconds(), InvoicedInRun: invoicedInRun,
	}
	if cfg.Rate > 0 {
		res.Mode, res.TargetRate = "open", cfg.Rate
	}
	if hostErr == nil {
		res.HostCPU = hostCPU(hostBefore, hostAfter, res.Accepted)
	}
	if metricsErr == nil {
		var metricsAfter []serviceMetrics
		if metricsAfter, metricsErr = scrapeAll(ctx, client, services); metricsErr == nil {
			for i, s := range services {
				res.OutboxLag = append(res.OutboxLag, lagOver(s.name, metricsBefore[i].lag, metricsAfter[i].lag))
			}
			res.PostInHandler = inHandlerOver(metricsBefore[0].post, metricsAfter[0].post)
		}
	}
	if metricsErr != nil {
		fmt.Fprintf(progress, "loadgen: the services' histograms (forwarding lag, POST /orders in the handler) not read: %v\n", metricsErr)
	}
	ms := func(h *hdrhistogram.Histogram, q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	res.HTTPP50Ms, res.HTTPP90Ms, res.HTTPP99Ms, res.HTTPMaxMs = ms(httpHist, 50), ms(httpHist, 90), ms(httpHist, 99), float64(httpHist.Max())/1000
	tr.mu.Lock()
	res.E2EP50Ms, res.E2EP90Ms, res.E2EP99Ms, res.E2EMaxMs = ms(tr.e2e, 50), ms(tr.e2e, 90), ms(tr.e2e, 99), float64(tr.e2e.Max())/1000
	tr.mu.Unlock()
	res.Targets = targetsOf(res)
	return res, nil
}

// requestLog writes one CSV line per request, with a header:
//
//	sent_ms,latency_ms,ok
//	0.000,3.214,true
//
// sent_ms is when the request was due (open loop) or sent (closed loop),
// from the start of the run; latency_ms counts from then, as the
// histogram does. Each line is written as the request ends, so lines are
// in order of completion, not of sending. A nil log writes nothing.
type requestLog struct {
	w   *bufio.Writer
	err error
}

func newRequestLog(w io.Writer) *requestLog {
	if w == nil {
		return nil
	}
	l := &requestLog{w: bufio.NewWriter(w)}
	_, l.err = l.w.WriteString("sent_ms,latency_ms,ok\n")
	return l
}

func (l *requestLog) add(sent, latency time.Duration, err error) {
	if l == nil || l.err != nil {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	_, l.err = fmt.Fprintf(l.w, "%.3f,%.3f,%t\n", ms(sent), ms(latency), err == nil)
}

// flush writes what is buffered and returns the first error.
func (l *requestLog) flush() error {
	if l == nil {
		return nil
	}
	if l.err == nil {
		l.err = l.w.Flush()
	}
	return l.err
}

// openLoop sends at cfg.Rate: request i is due at start + i/rate, whatever
// happened to the ones before. At most cfg.Concurrency are in flight; a
// request that waits for a slot still counts its latency from its due time.
func openLoop(ctx context.Context, cfg Config, start time.Time, send func(time.Time, int64)) {
	slots := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	for i := int64(0); ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				wg.Wait()
				return
			case <-time.After(d):
			}
		}
		select {
		case <-ctx.Done():
		case slots <- struct{}{}:
		}
		// A select picks at random among ready cases: a loop that fell
		// behind would otherwise still send, now and then, requests due
		// after the run ended.
		if ctx.Err() != nil {
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-slots }()
			send(due, i)
		})
	}
}

func closedLoop(ctx context.Context, cfg Config, send func(time.Time, int64)) {
	var wg sync.WaitGroup
	var n atomic.Int64
	for range cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				send(time.Now(), n.Add(1))
			}
		})
	}
	wg.Wait()
}

var currencies = []string{"EUR", "USD", "GBP", "JPY", "CHF"}

// The headers that say who calls: Kong's key-auth reads the key and names
// the authenticated customer to the services in the consumer header.
const (
	apiKeyHeader   = "apikey"
	consumerHeader = "X-Consumer-Custom-ID"
)

// placeOrder places order n: as customer load-<n mod Customers>, or, with an
// API key, as the key's customer.
func placeOrder(ctx context.Context, c *http.Client, cfg Config, n int64) (string, error) {
	amount, currency := 100+n%100000, currencies[n%int64(len(currencies))]
	body := fmt.Sprintf(`{"amount":%d,"currency":%q}`, amount, currency)
	customer := ""
	if cfg.APIKey == "" {
		customer = fmt.Sprintf("load-%d", n%int64(max(cfg.Customers, 1)))
		body = fmt.Sprintf(`{"customer_id":%q,"amount":%d,"currency":%q}`, customer, amount, currency)
	}
	// OrdersURL is the operator's --orders-url: reaching it is the point.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.OrdersURL+"/orders", strings.NewReader(body)) //nolint:gosec // see above
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if cfg.APIKey != "" {
		req.Header.Set(apiKeyHeader, cfg.APIKey)
	} else {
		req.Header.Set(consumerHeader, customer)
	}
	resp, err := c.Do(req) //nolint:gosec // the operator's --orders-url
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST /orders: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var o struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &o); err != nil || o.ID == "" {
		return "", fmt.Errorf("POST /orders: no id in %q", b)
	}
	return o.ID, nil
}

// checkKey asks base (Kong) for one order with key: 200 says that Kong
// takes the key and the service answers.
func checkKey(ctx context.Context, c *http.Client, base, key string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/orders?limit=1", nil)
	if err != nil {
		return err
	}
	req.Header.Set(apiKeyHeader, key)
	resp, err := c.Do(req) //nolint:gosec // the operator's --orders-url
	if err != nil {
		return fmt.Errorf("%s is not reachable: %w", base, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s/orders with the API key: %s", base, resp.Status)
	}
	return nil
}

func checkUp(ctx context.Context, c *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s is not reachable: %w", base, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/readyz: %s", base, resp.Status)
	}
	return nil
}

func startProgress(ctx context.Context, w io.Writer, every time.Duration, start time.Time, accepted, errs *atomic.Int64, tr *tracker) func() {
	if every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(every)
		defer tick.Stop()
		var lastA, lastI int64
		last := start
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case now := <-tick.C:
				a, i := accepted.Load(), tr.invoiced.Load()
				dt := now.Sub(last).Seconds()
				fmt.Fprintf(w, "%5.0fs  accepted %7d (%6.0f/s)  invoiced %7d (%6.0f/s)  backlog %6d  errors %d\n",
					now.Sub(start).Seconds(), a, float64(a-lastA)/dt, i, float64(i-lastI)/dt, tr.outstanding(), errs.Load())
				lastA, lastI, last = a, i, now
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func (r *Result) print(w io.Writer) {
	fmt.Fprintf(w, "mode %s", r.Mode)
	if r.Mode == "open" {
		fmt.Fprintf(w, " at %.0f orders/s", r.TargetRate)
	}
	fmt.Fprintf(w, ", concurrency %d, %.1fs\n", r.Concurrency, r.DurationS)
	fmt.Fprintf(w, "orders:   sent %d, accepted %d (%.0f/s), errors %d\n", r.Sent, r.Accepted, r.AcceptedPerS, r.Errors)
	fmt.Fprintf(w, "invoices: %d during the run (%.0f/s), %d in all; backlog at end %d (after %.1fs drain)\n",
		r.InvoicedInRun, r.InvoicedPerS, r.Invoiced, r.BacklogAtEnd, r.DrainSeconds)
	fmt.Fprintf(w, "POST /orders latency ms:   p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r.HTTPP50Ms, r.HTTPP90Ms, r.HTTPP99Ms, r.HTTPMaxMs)
	fmt.Fprintf(w, "placed → invoiced ms:      p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r.E2EP50Ms, r.E2EP90Ms, r.E2EP99Ms, r.E2EMaxMs)
	if h := r.PostInHandler; h != nil {
		fmt.Fprintf(w, "POST /orders in the handler: %d requests, %s within 10 ms, p99 ≤ %g ms (the orders service's own histogram)\n",
			h.Requests, pct(h.Within10msPct), h.P99AtMostMs)
	}
	for _, l := range r.OutboxLag {
		fmt.Fprintf(w, "forwarding lag, %-8s  %d events, %s within 20 ms, p99 ≤ %g ms\n", l.Service+":", l.Events, pct(l.Within20msPct), l.P99AtMostMs)
	}
	if h := r.HostCPU; h != nil {
		fmt.Fprintf(w, "host CPU while sending:    %.2f cores busy, %.2f ms and %.0f context switches per order;", h.BusyCores, h.MsPerOrder, h.SwitchesPerOrder)
		for i, p := range h.ByProcess {
			if i == 6 {
				break
			}
			fmt.Fprintf(w, " %s %.2f", p.Name, p.Cores)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "targets: %s\n", r.Targets)
}

// serveOTLPSink accepts OTLP/HTTP exports (POST /v1/traces, /v1/metrics,
// /v1/logs) and discards them, so that a load run pays for exporting traces
// as in production, without a collector.
func serveOTLPSink(addr string) (func(), error) {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("otlp sink: %w", err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(http.StatusOK)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}
