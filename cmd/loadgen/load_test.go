package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	invoices "github.com/orderflow/orderflow/apps/invoices/service"
	orders "github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/pkg/testkit"
)

func TestTracker_pairs_an_invoice_seen_before_or_after_the_answer(t *testing.T) {
	t.Parallel()
	tr := newTracker()
	t0 := time.Now()
	tr.accepted("a", t0)
	tr.invoiceSeen("a", t0.Add(30*time.Millisecond))
	tr.invoiceSeen("b", t0.Add(20*time.Millisecond)) // before POST /orders answered
	assert.Zero(t, tr.outstanding(), "a is invoiced, b not accepted yet")
	tr.accepted("b", t0)
	tr.accepted("c", t0)

	assert.Equal(t, int64(2), tr.invoiced.Load())
	assert.Equal(t, int64(1), tr.outstanding(), "c is waiting for its invoice")
	assert.InDelta(t, 20_000, tr.e2e.Min(), 50, "µs, to the histogram's 3 digits")
	assert.InDelta(t, 30_000, tr.e2e.Max(), 50)
}

func TestRequestLog_writes_a_header_and_a_line_per_request(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	l := newRequestLog(&b)
	l.add(0, 3214*time.Microsecond, nil)
	l.add(1500*time.Microsecond, 12*time.Millisecond, errors.New("503"))
	assert.Empty(t, b.String(), "buffered until the run ends")
	require.NoError(t, l.flush())
	assert.Equal(t, "sent_ms,latency_ms,ok\n0.000,3.214,true\n1.500,12.000,false\n", b.String())

	var none *requestLog // no --requests-csv
	none.add(0, time.Millisecond, nil)
	assert.NoError(t, none.flush())
}

func TestRequestLog_reports_a_failed_write(t *testing.T) {
	t.Parallel()
	l := newRequestLog(failingWriter{})
	l.add(0, time.Millisecond, nil)
	assert.Error(t, l.flush())
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestRun_against_the_services runs a short open-loop load against both
// services, in this process, on a fresh vhost and databases, and checks the
// whole --json report: every order invoiced, and the lag read from the
// services' /metrics counting exactly the run's events.
func TestRun_against_the_services(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	o := testkit.StartService(t, orders.Name, orders.Run, testkit.ServiceEnv(t, broker))
	inv := testkit.StartService(t, invoices.Name, invoices.Run, testkit.ServiceEnv(t, broker))

	var stdout, stderr bytes.Buffer
	csvPath := filepath.Join(t.TempDir(), "requests.csv")
	err := run(t.Context(), []string{
		"--orders-url", o.URL, "--invoices-url", inv.URL, "--broker-url", broker,
		"--rate", "100", "--duration", "1s", "--drain", "30s", "--progress", "0", "--json",
		"--requests-csv", csvPath,
	}, &stdout, &stderr)
	require.NoError(t, err, stderr.String())
	assert.Empty(t, stderr.String())

	var keys map[string]any // the contract of --json
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &keys))
	for _, k := range []string{
		"accepted_per_s", "invoiced_per_s", "http_p50_ms", "http_p99_ms",
		"e2e_p50_ms", "e2e_p99_ms", "errors", "backlog_at_end", "outbox_lag", "targets",
	} {
		assert.Contains(t, keys, k)
	}
	var res Result
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res))
	assert.Equal(t, "open", res.Mode)
	// 1 s at 100/s: about 100, fewer if the machine is busy with other
	// tests (a request waiting for its slot when the second ends is not
	// sent).
	assert.Positive(t, res.Accepted)
	assert.LessOrEqual(t, res.Accepted, int64(101))
	assert.Equal(t, res.Sent, res.Accepted)
	assert.Equal(t, res.Accepted, res.Invoiced)
	assert.Zero(t, res.Errors)
	assert.Zero(t, res.BacklogAtEnd)
	assert.Positive(t, res.HTTPP99Ms)
	assert.GreaterOrEqual(t, res.E2EP99Ms, res.E2EP50Ms)
	assertRequestsCSV(t, csvPath, res)

	// Each service forwarded one event per order. loadgen can see an
	// InvoiceIssued before the invoices service has recorded its confirm,
	// so the last events may not be counted yet when it reads /metrics.
	require.Len(t, res.OutboxLag, 2)
	for i, name := range []string{"orders", "invoices"} {
		l := res.OutboxLag[i]
		assert.Equal(t, name, l.Service)
		assert.LessOrEqual(t, l.Events, uint64(res.Accepted)) //nolint:gosec // a count
		assert.Positive(t, l.Events)
		assert.Positive(t, l.P99AtMostMs)
		assert.InDelta(t, 50, l.Within20msPct, 50)
	}
	for _, url := range []string{o.URL, inv.URL} {
		testkit.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
			m, err := scrapeMetrics(t.Context(), http.DefaultClient, url)
			if err != nil {
				return err
			}
			return assertCount(m.lag, uint64(res.Accepted)) //nolint:gosec // a count
		})
	}
	require.NotNil(t, res.Targets.OutboxLagP99)
	// The orders service's handler timed every POST of the run, and no
	// other request to that route.
	require.NotNil(t, res.PostInHandler)
	assert.Equal(t, uint64(res.Sent), res.PostInHandler.Requests) //nolint:gosec // a count
	assert.Positive(t, res.PostInHandler.P99AtMostMs)
	if res.HostCPU != nil { // Linux
		assert.Positive(t, res.HostCPU.BusyCores)
		assert.Positive(t, res.HostCPU.MsPerOrder)
		assert.Positive(t, res.HostCPU.SwitchesPerOrder)
		assert.NotEmpty(t, res.HostCPU.ByProcess)
	}
}

// assertRequestsCSV checks --requests-csv: a line per request sent, each
// due within the run (100/s: 10 ms apart) and as slow as the histogram
// says at most.
func assertRequestsCSV(t *testing.T, path string, res Result) {
	t.Helper()
	f, err := os.Open(path) //nolint:gosec // the test's own temp file
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"sent_ms", "latency_ms", "ok"}, rows[0])
	require.Len(t, rows[1:], int(res.Sent))
	var sent []float64
	for _, r := range rows[1:] {
		due, err := strconv.ParseFloat(r[0], 64)
		require.NoError(t, err)
		lat, err := strconv.ParseFloat(r[1], 64)
		require.NoError(t, err)
		assert.Equal(t, "true", r[2])
		assert.Positive(t, lat)
		assert.LessOrEqual(t, lat, res.HTTPMaxMs+0.001)
		sent = append(sent, due)
	}
	slices.Sort(sent)
	for i, due := range sent {
		assert.InDelta(t, float64(i)*10, due, 0.001, "request %d is due at start + i/rate", i)
	}
}

func assertCount(b buckets, want uint64) error {
	if got := b[math.Inf(1)]; got != want {
		return fmt.Errorf("the lag histogram counts %d events, want %d", got, want)
	}
	return nil
}

// TestOpenLoop_sends_nothing_once_the_run_has_ended hands the loop a run
// that has ended while it is a second behind: every request is overdue and
// a slot free, and none may be sent.
func TestOpenLoop_sends_nothing_once_the_run_has_ended(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var sent atomic.Int64
	for range 50 {
		openLoop(ctx, Config{Rate: 100, Concurrency: 4}, time.Now().Add(-time.Second), func(time.Time, int64) { sent.Add(1) })
	}
	assert.Zero(t, sent.Load())
}

// TestPlaceOrder_names_its_caller: without a key each order names its
// customer in X-Consumer-Custom-ID and its body, one of --customers in
// turn; with a key it sends the key only, and Kong names the customer.
func TestPlaceOrder_names_its_caller(t *testing.T) {
	t.Parallel()
	type seen struct {
		key, consumer string
		body          map[string]any
	}
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, seen{key: r.Header.Get(apiKeyHeader), consumer: r.Header.Get(consumerHeader), body: body})
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"o-1"}`))
	}))
	t.Cleanup(srv.Close)

	direct := Config{OrdersURL: srv.URL, Customers: 3}
	for n := range int64(4) {
		id, err := placeOrder(t.Context(), srv.Client(), direct, n)
		require.NoError(t, err)
		assert.Equal(t, "o-1", id)
	}
	viaKong := Config{OrdersURL: srv.URL, APIKey: "load-key-0123456789abcdefghij", Customers: 3}
	_, err := placeOrder(t.Context(), srv.Client(), viaKong, 5)
	require.NoError(t, err)

	require.Len(t, got, 5)
	for i, want := range []string{"load-0", "load-1", "load-2", "load-0"} {
		assert.Equal(t, want, got[i].consumer)
		assert.Equal(t, want, got[i].body["customer_id"], "the body names the same customer")
		assert.Empty(t, got[i].key)
	}
	assert.Equal(t, "load-key-0123456789abcdefghij", got[4].key)
	assert.Empty(t, got[4].consumer, "through Kong, Kong names the customer")
	assert.NotContains(t, got[4].body, "customer_id")
}

func TestCheckKey(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/orders" || r.Header.Get(apiKeyHeader) != "good-key-0123456789abcdefghij" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"items":[]}`))
	}))
	t.Cleanup(srv.Close)
	require.NoError(t, checkKey(t.Context(), srv.Client(), srv.URL, "good-key-0123456789abcdefghij"))
	err := checkKey(t.Context(), srv.Client(), srv.URL, "bad-key")
	require.ErrorContains(t, err, "401")
}
