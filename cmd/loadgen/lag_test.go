package main

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exposition is a /metrics page with the lag histogram for two
// destinations, as the services export it.
func exposition(a, b [5]int) string {
	page := "# HELP orderflow_outbox_forward_lag_seconds Time from an event's occurrence to RabbitMQ confirming its publish.\n" +
		"# TYPE orderflow_outbox_forward_lag_seconds histogram\n"
	for i, c := range [][5]int{a, b} {
		dest := []string{"events.OrderPlaced", "events.Other"}[i]
		for j, le := range []string{"0.005", "0.01", "0.02", "0.05", "+Inf"} {
			page += fmt.Sprintf("orderflow_outbox_forward_lag_seconds_bucket{messaging_destination_name=%q,le=%q} %d\n", dest, le, c[j])
		}
		page += fmt.Sprintf("orderflow_outbox_forward_lag_seconds_sum{messaging_destination_name=%q} 1.5\n", dest)
		page += fmt.Sprintf("orderflow_outbox_forward_lag_seconds_count{messaging_destination_name=%q} %d\n", dest, c[4])
	}
	return page + "# TYPE go_goroutines gauge\ngo_goroutines 12\n"
}

func serve(t *testing.T, page string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = fmt.Fprint(w, page)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestScrapeMetrics_adds_up_destinations(t *testing.T) {
	t.Parallel()
	url := serve(t, exposition([5]int{1, 2, 3, 4, 5}, [5]int{10, 20, 30, 40, 50}))
	m, err := scrapeMetrics(t.Context(), http.DefaultClient, url)
	require.NoError(t, err)
	assert.Equal(t, buckets{0.005: 11, 0.01: 22, 0.02: 33, 0.05: 44, math.Inf(1): 55}, m.lag)
	assert.Empty(t, m.post, "a service with no POST /orders")
}

// TestScrapeMetrics_takes_POST_orders_alone reads the request duration
// histogram as the orders service exports it: POST /orders under two
// statuses, and other routes and methods that must not count.
func TestScrapeMetrics_takes_POST_orders_alone(t *testing.T) {
	t.Parallel()
	page := "# TYPE http_server_request_duration_seconds histogram\n"
	for _, s := range []struct {
		method, route, status string
		counts                [4]int
	}{
		{"POST", "/orders", "201", [4]int{80, 95, 99, 100}},
		{"POST", "/orders", "422", [4]int{5, 5, 5, 5}},
		{"GET", "/orders/{id}", "200", [4]int{1000, 1000, 1000, 1000}},
		{"POST", "/invoices", "201", [4]int{7, 7, 7, 7}},
	} {
		labels := fmt.Sprintf("http_request_method=%q,http_response_status_code=%q,http_route=%q,service_name=\"orders\"", s.method, s.status, s.route)
		for j, le := range []string{"0.005", "0.01", "0.025", "+Inf"} {
			page += fmt.Sprintf("http_server_request_duration_seconds_bucket{%s,le=%q} %d\n", labels, le, s.counts[j])
		}
		page += fmt.Sprintf("http_server_request_duration_seconds_sum{%s} 1\n", labels)
		page += fmt.Sprintf("http_server_request_duration_seconds_count{%s} %d\n", labels, s.counts[3])
	}
	m, err := scrapeMetrics(t.Context(), http.DefaultClient, serve(t, page))
	require.NoError(t, err)
	assert.Equal(t, buckets{0.005: 85, 0.01: 100, 0.025: 104, math.Inf(1): 105}, m.post)
	assert.Empty(t, m.lag, "nothing forwarded yet")
}

func TestScrapeMetrics_before_the_first_event_is_empty(t *testing.T) {
	t.Parallel()
	m, err := scrapeMetrics(t.Context(), http.DefaultClient, serve(t, "# TYPE go_goroutines gauge\ngo_goroutines 12\n"))
	require.NoError(t, err)
	assert.Empty(t, m.lag)
	assert.Empty(t, m.post)
}

func TestScrapeMetrics_fails_without_metrics(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	_, err := scrapeMetrics(t.Context(), http.DefaultClient, srv.URL)
	require.ErrorContains(t, err, "404")
}

func TestScrapeMetrics_fails_on_a_lag_that_is_not_a_histogram(t *testing.T) {
	t.Parallel()
	_, err := scrapeMetrics(t.Context(), http.DefaultClient, serve(t, "# TYPE orderflow_outbox_forward_lag_seconds gauge\norderflow_outbox_forward_lag_seconds 1\n"))
	require.ErrorContains(t, err, "not a histogram")
}

func TestLagOver_counts_only_the_run(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	before := buckets{0.005: 100, 0.01: 100, 0.02: 100, 0.05: 100, inf: 100}
	// The run: 1,000 events, 980 within 10 ms, 995 within 20 ms, the rest
	// within 50 ms.
	after := buckets{0.005: 600, 0.01: 1080, 0.02: 1095, 0.05: 1100, inf: 1100}
	l := lagOver("orders", before, after)
	assert.Equal(t, OutboxLag{Service: "orders", Events: 1000, Within20msPct: 99.5, P99AtMostMs: 20}, l)

	// Before the first event there was no histogram at all.
	l = lagOver("invoices", buckets{}, buckets{0.005: 0, 0.01: 0, 0.02: 90, 0.05: 100, inf: 100})
	assert.Equal(t, OutboxLag{Service: "invoices", Events: 100, Within20msPct: 90, P99AtMostMs: 50}, l)

	// A histogram without a 20 ms bound: the share under the largest
	// bound below it, a lower bound.
	l = lagOver("orders", buckets{}, buckets{0.01: 90, 0.025: 99, inf: 100})
	assert.Equal(t, OutboxLag{Service: "orders", Events: 100, Within20msPct: 90, P99AtMostMs: 25}, l)

	// Nothing forwarded: no figures.
	assert.Equal(t, OutboxLag{Service: "orders"}, lagOver("orders", before, before))

	// A service restarted between the scrapes counts from zero.
	l = lagOver("orders", before, buckets{0.005: 5, 0.01: 5, 0.02: 5, 0.05: 5, inf: 5})
	assert.Equal(t, OutboxLag{Service: "orders", Events: 5, Within20msPct: 100, P99AtMostMs: 5}, l)
}

func TestInHandlerOver(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	before := buckets{0.005: 50, 0.01: 60, 0.025: 70, inf: 70}
	// The run: 1,000 requests, 970 within 10 ms, 995 within 25 ms.
	after := buckets{0.005: 850, 0.01: 1030, 0.025: 1065, inf: 1070}
	assert.Equal(t, &InHandler{Requests: 1000, Within10msPct: 97, P99AtMostMs: 25}, inHandlerOver(before, after))
	assert.Nil(t, inHandlerOver(before, before), "no request, no figures")
	assert.Nil(t, inHandlerOver(buckets{}, buckets{}), "not exported at all")
}

func TestTargets(t *testing.T) {
	t.Parallel()
	good := []OutboxLag{{Service: "orders", Events: 10, Within20msPct: 99.5}, {Service: "invoices", Events: 10, Within20msPct: 100}}
	yes, no := true, false
	for _, tc := range []struct {
		name string
		r    Result
		want Targets
	}{
		{
			"all met",
			Result{HTTPP99Ms: 9.9, E2EP99Ms: 49, OutboxLag: good},
			Targets{HTTPP99: true, E2EP99: true, OutboxLagP99: &yes, Met: true},
		},
		{
			"slow POST",
			Result{HTTPP99Ms: 10.1, E2EP99Ms: 49, OutboxLag: good},
			Targets{E2EP99: true, OutboxLagP99: &yes},
		},
		{
			"slow forwarding",
			Result{HTTPP99Ms: 5, E2EP99Ms: 20, OutboxLag: []OutboxLag{good[0], {Service: "invoices", Events: 10, Within20msPct: 98.9}}},
			Targets{HTTPP99: true, E2EP99: true, OutboxLagP99: &no},
		},
		{
			"lag not measured",
			Result{HTTPP99Ms: 5, E2EP99Ms: 20},
			Targets{HTTPP99: true, E2EP99: true},
		},
		{
			"errors",
			Result{HTTPP99Ms: 5, E2EP99Ms: 20, OutboxLag: good, Errors: 1},
			Targets{HTTPP99: true, E2EP99: true, OutboxLagP99: &yes},
		},
		{
			"backlog",
			Result{HTTPP99Ms: 5, E2EP99Ms: 20, OutboxLag: good, BacklogAtEnd: 3},
			Targets{HTTPP99: true, E2EP99: true, OutboxLagP99: &yes},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, targetsOf(&tc.r))
		})
	}
}
