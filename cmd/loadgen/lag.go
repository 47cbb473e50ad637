package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Two figures of a run come from the services' own histograms, read from
// each service's /metrics before the run and after it, so that only the
// run's observations count, whatever the services did before:
//   - the outbox forwarding lag (orderflow_outbox_forward_lag_seconds: an
//     event's commit to RabbitMQ's confirm of its publish), one of the
//     issue's targets;
//   - how long the orders service's handler took for each POST /orders
//     (http.server.request.duration), beside loadgen's own figure: what
//     is outside the handler (loadgen, the kernel, the wait before the
//     handler starts) is the difference.

const (
	lagMetric  = "orderflow_outbox_forward_lag_seconds"
	httpMetric = "http_server_request_duration_seconds"
)

// lagTarget is the target for the forwarding lag's p99; postTarget
// the one for POST /orders' p99.
const (
	lagTarget  = 0.020 // seconds
	postTarget = 0.010 // seconds
)

// buckets is a histogram from /metrics: cumulative counts by upper bound
// (seconds), the series it holds added up.
type buckets map[float64]uint64

// OutboxLag is one service's forwarding lag over a run.
type OutboxLag struct {
	Service string `json:"service"`
	Events  uint64 `json:"events"`
	// Within20msPct is the share of the run's events forwarded within
	// 20 ms: exact, since 20 ms is one of the histogram's bounds.
	Within20msPct float64 `json:"within_20ms_pct"`
	// P99AtMostMs is the upper bound of the histogram bucket that holds
	// the p99: the p99 is at most this. Left out when no event was
	// forwarded, or the p99 is above the largest bound (an hour).
	P99AtMostMs float64 `json:"p99_at_most_ms,omitempty"`
}

// InHandler is POST /orders as the orders service's own handler timed it
// over a run: from when its middleware got the request to when the
// handler returned.
type InHandler struct {
	Requests uint64 `json:"requests"`
	// Within10msPct is the share of the run's requests the handler
	// finished within 10 ms (10 ms is one of the histogram's bounds).
	Within10msPct float64 `json:"within_10ms_pct"`
	// P99AtMostMs is the upper bound of the bucket that holds the p99.
	P99AtMostMs float64 `json:"p99_at_most_ms,omitempty"`
}

// serviceMetrics is what loadgen reads from one service's /metrics.
type serviceMetrics struct {
	lag  buckets
	post buckets // POST /orders in the handler; empty but for orders
}

// scrapeMetrics reads a service's histograms from baseURL/metrics. A
// histogram not there yet is empty: it appears with its first observation.
func scrapeMetrics(ctx context.Context, c *http.Client, baseURL string) (serviceMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		return serviceMetrics{}, err //nolint:wrapcheck // the URL is the operator's
	}
	resp, err := c.Do(req) //nolint:gosec // the operator's service URL
	if err != nil {
		return serviceMetrics{}, fmt.Errorf("scrape %s/metrics: %w", baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return serviceMetrics{}, fmt.Errorf("scrape %s/metrics: %s", baseURL, resp.Status)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return serviceMetrics{}, fmt.Errorf("scrape %s/metrics: %w", baseURL, err)
	}
	var m serviceMetrics
	if m.lag, err = histogram(fams, lagMetric, nil); err == nil {
		m.post, err = histogram(fams, httpMetric, isPOSTOrders)
	}
	if err != nil {
		return serviceMetrics{}, fmt.Errorf("%s/metrics: %w", baseURL, err)
	}
	return m, nil
}

// isPOSTOrders picks the series of POST /orders, whatever their status.
func isPOSTOrders(m *dto.Metric) bool {
	var method, route bool
	for _, l := range m.GetLabel() {
		switch l.GetName() {
		case "http_request_method":
			method = l.GetValue() == http.MethodPost
		case "http_route":
			route = l.GetValue() == "/orders"
		}
	}
	return method && route
}

// histogram adds up the series of the histogram name that match (nil:
// all of them).
func histogram(fams map[string]*dto.MetricFamily, name string, match func(*dto.Metric) bool) (buckets, error) {
	b := buckets{}
	fam, ok := fams[name]
	if !ok {
		return b, nil
	}
	if fam.GetType() != dto.MetricType_HISTOGRAM {
		return nil, fmt.Errorf("%s is not a histogram", name)
	}
	for _, m := range fam.GetMetric() {
		if match != nil && !match(m) {
			continue
		}
		h := m.GetHistogram()
		for _, bk := range h.GetBucket() {
			if !math.IsInf(bk.GetUpperBound(), 1) { // the +Inf bucket is the count, below
				b[bk.GetUpperBound()] += bk.GetCumulativeCount()
			}
		}
		b[math.Inf(1)] += h.GetSampleCount()
	}
	return b, nil
}

// service is one of the services loadgen reads /metrics from.
type service struct{ name, url string }

// scrapeAll reads the histograms of every service.
func scrapeAll(ctx context.Context, c *http.Client, services []service) ([]serviceMetrics, error) {
	out := make([]serviceMetrics, 0, len(services))
	for _, s := range services {
		m, err := scrapeMetrics(ctx, c, s.url)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// observed is what a histogram recorded between two scrapes: how many
// observations, the share within target (seconds), and the upper bound of
// the bucket that holds the p99 (0 when there was none, or the p99 is
// above the largest finite bound).
type observed struct {
	count     uint64
	withinPct float64
	p99AtMost float64 // seconds
}

func over(before, after buckets, target float64) observed {
	bounds := make([]float64, 0, len(after))
	for ub := range after {
		bounds = append(bounds, ub)
	}
	sort.Float64s(bounds)
	delta := func(ub float64) uint64 {
		a, b := after[ub], before[ub]
		if a < b { // the service restarted between the scrapes
			return a
		}
		return a - b
	}
	o := observed{count: delta(math.Inf(1))}
	if o.count == 0 {
		return o
	}
	// The share within the target is the count at the target's bound,
	// which the services' histograms have; with other bounds, the count at
	// the largest bound under it: a lower bound of the share.
	within := 0.0
	for _, ub := range bounds {
		if ub <= target {
			within = float64(delta(ub))
		}
	}
	o.withinPct = math.Round(10000*within/float64(o.count)) / 100
	for _, ub := range bounds {
		if math.IsInf(ub, 1) {
			break
		}
		if float64(delta(ub)) >= 0.99*float64(o.count) {
			o.p99AtMost = ub
			break
		}
	}
	return o
}

// lagOver is service's forwarding lag between two scrapes.
func lagOver(service string, before, after buckets) OutboxLag {
	o := over(before, after, lagTarget)
	return OutboxLag{Service: service, Events: o.count, Within20msPct: o.withinPct, P99AtMostMs: o.p99AtMost * 1000}
}

// inHandlerOver is POST /orders in the handler between two scrapes; nil
// when the histogram counted none.
func inHandlerOver(before, after buckets) *InHandler {
	o := over(before, after, postTarget)
	if o.count == 0 {
		return nil
	}
	return &InHandler{Requests: o.count, Within10msPct: o.withinPct, P99AtMostMs: o.p99AtMost * 1000}
}

// Targets are the latency targets of the performance issue, as this run
// met them.
type Targets struct {
	HTTPP99 bool `json:"http_p99_le_10ms"`
	E2EP99  bool `json:"e2e_p99_le_50ms"`
	// OutboxLagP99 is left out when a service's /metrics could not be read.
	OutboxLagP99 *bool `json:"outbox_lag_p99_le_20ms,omitempty"`
	Met          bool  `json:"met"`
}

func targetsOf(r *Result) Targets {
	t := Targets{HTTPP99: r.HTTPP99Ms <= 10, E2EP99: r.E2EP99Ms <= 50}
	t.Met = t.HTTPP99 && t.E2EP99 && r.Errors == 0 && r.BacklogAtEnd == 0
	if len(r.OutboxLag) == 2 {
		ok := true
		for _, l := range r.OutboxLag {
			ok = ok && l.Events > 0 && l.Within20msPct >= 99
		}
		t.OutboxLagP99 = &ok
		t.Met = t.Met && ok
	} else {
		t.Met = false
	}
	return t
}

func (t Targets) String() string {
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	lag := "not measured"
	if t.OutboxLagP99 != nil {
		lag = mark(*t.OutboxLagP99)
	}
	return "POST p99 ≤ 10 ms " + mark(t.HTTPP99) + ", placed → invoiced p99 ≤ 50 ms " + mark(t.E2EP99) +
		", forwarding lag p99 ≤ 20 ms " + lag
}

func pct(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + " %" }
