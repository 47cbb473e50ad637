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

// The outbox forwarding lag of a run, from the services' own histogram
// (orderflow_outbox_forward_lag_seconds: an event's commit to RabbitMQ's
// confirm of its publish), read from each service's /metrics before the run
// and after it, so that only the run's events count, whatever the services
// did before.

const lagMetric = "orderflow_outbox_forward_lag_seconds"

// lagTarget is the target for the forwarding lag's p99.
const lagTarget = 0.020 // seconds

// lagBuckets is one service's lag histogram: cumulative counts by upper
// bound (seconds), all destinations added up.
type lagBuckets map[float64]uint64

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

// scrapeLag reads a service's lag histogram from baseURL/metrics.
func scrapeLag(ctx context.Context, c *http.Client, baseURL string) (lagBuckets, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		return nil, err //nolint:wrapcheck // the URL is the operator's
	}
	resp, err := c.Do(req) //nolint:gosec // the operator's service URL
	if err != nil {
		return nil, fmt.Errorf("scrape %s/metrics: %w", baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s/metrics: %s", baseURL, resp.Status)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s/metrics: %w", baseURL, err)
	}
	b := lagBuckets{}
	fam, ok := fams[lagMetric]
	if !ok {
		return b, nil // nothing forwarded yet: the histogram appears with its first event
	}
	if fam.GetType() != dto.MetricType_HISTOGRAM {
		return nil, fmt.Errorf("%s/metrics: %s is not a histogram", baseURL, lagMetric)
	}
	for _, m := range fam.GetMetric() {
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

// scrapeLags reads the lag histogram of every service.
func scrapeLags(ctx context.Context, c *http.Client, services []service) ([]lagBuckets, error) {
	out := make([]lagBuckets, 0, len(services))
	for _, s := range services {
		b, err := scrapeLag(ctx, c, s.url)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// lagOver is service's lag between two scrapes.
func lagOver(service string, before, after lagBuckets) OutboxLag {
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
	l := OutboxLag{Service: service, Events: delta(math.Inf(1))}
	if l.Events == 0 {
		return l
	}
	// The share within 20 ms is the count at the bound 20 ms, which the
	// services' histogram has; with other bounds, the count at the largest
	// bound under it: a lower bound of the share.
	within := 0.0
	for _, ub := range bounds {
		if ub <= lagTarget {
			within = float64(delta(ub))
		}
	}
	l.Within20msPct = math.Round(10000*within/float64(l.Events)) / 100
	for _, ub := range bounds {
		if math.IsInf(ub, 1) {
			break
		}
		if float64(delta(ub)) >= 0.99*float64(l.Events) {
			l.P99AtMostMs = ub * 1000
			break
		}
	}
	return l
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
