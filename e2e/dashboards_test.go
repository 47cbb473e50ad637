package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// dashboardsDir holds the Grafana dashboards that compose provisions.
const dashboardsDir = "../deploy/grafana/dashboards"

// datasourceUID is the uid of the Prometheus datasource compose provisions.
const datasourceUID = "prometheus"

// TestDashboards_query_only_metrics_the_services_export checks every query
// of every dashboard against the metrics the services really expose after
// one of each thing they measure happened: each metric a query names, each
// label it matches on and each label it groups by.
func TestDashboards_query_only_metrics_the_services_export(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	families := exercisedMetrics(t)
	series := seriesNames(families)

	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 3, "the flow, messaging and HTTP dashboards")

	uids := map[string]string{}
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		var d dashboard
		require.NoError(t, json.Unmarshal(b, &d), file)
		require.NotEmpty(t, d.UID, file)
		require.NotEmpty(t, d.Title, file)
		require.NotContains(t, uids, d.UID, "%s and %s share a uid", file, uids[d.UID])
		uids[d.UID] = file

		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			for _, v := range d.Templating.List {
				if v.Type != "query" {
					continue
				}
				assert.Equal(t, datasourceUID, v.Datasource.UID, "variable %s", v.Name)
				m := reLabelValues.FindStringSubmatch(v.query())
				require.NotNil(t, m, "variable %s: want label_values(metric, label), got %q", v.Name, v.query())
				assert.True(t, series[m[1]], "variable %s: no metric %s", v.Name, m[1])
				assert.Contains(t, labelNames(families, m[1]), m[2], "variable %s: %s has no label %s", v.Name, m[1], m[2])
			}
			panels := d.allPanels()
			require.NotEmpty(t, panels)
			for _, p := range panels {
				require.NotNil(t, p.Datasource, "panel %q has no datasource", p.Title)
				assert.Equal(t, datasourceUID, p.Datasource.UID, "panel %q", p.Title)
				require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
				for _, target := range p.Targets {
					if target.Datasource != nil {
						assert.Equal(t, datasourceUID, target.Datasource.UID, "panel %q query %s", p.Title, target.RefID)
					}
					checkQuery(t, families, series, p.Title+" "+target.RefID, target.Expr)
				}
			}
		})
	}
}

// checkQuery checks one PromQL query against the exposed metrics.
func checkQuery(t *testing.T, families map[string]*dto.MetricFamily, series map[string]bool, where, expr string) {
	t.Helper()
	q := parseQuery(expr)
	require.NotEmpty(t, q.metrics, "%s: no metric in %q", where, expr)
	var known []string
	for _, m := range q.metrics {
		if assert.True(t, series[m], "%s: %s is not exported (query %q)", where, m, expr) {
			known = append(known, m)
		}
	}
	for _, s := range q.selectors {
		if !series[s.metric] {
			continue
		}
		have := labelNames(families, s.metric)
		for _, l := range s.labels {
			assert.Contains(t, have, l, "%s: %s has no label %s", where, s.metric, l)
		}
	}
	for _, l := range q.grouping {
		found := false
		for _, m := range known {
			found = found || slices.Contains(labelNames(families, m), l)
		}
		assert.True(t, found, "%s: no metric of %q has the label %s it groups by", where, expr, l)
	}
}

func TestParseQuery_finds_metrics_and_labels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr      string
		metrics   []string
		grouping  []string
		selectors []selector
	}{
		{
			expr:      `sum(rate(orderflow_orders_placed_total{service_name=~"$service"}[$__rate_interval]))`,
			metrics:   []string{"orderflow_orders_placed_total"},
			selectors: []selector{{"orderflow_orders_placed_total", []string{"service_name"}}},
		},
		{
			expr:     `histogram_quantile(0.95, sum by (le, http_route) (rate(http_server_request_duration_seconds_bucket[5m])))`,
			metrics:  []string{"http_server_request_duration_seconds_bucket"},
			grouping: []string{"le", "http_route"},
		},
		{
			expr:     `sum without(instance) (a) / on (job) group_left (x) b offset 5m > bool 1e3 and c`,
			metrics:  []string{"a", "b", "c"},
			grouping: []string{"instance", "job", "x"},
		},
		{
			expr:      `go_gc_duration_seconds{quantile="1", job!="a,b{}"}`,
			metrics:   []string{"go_gc_duration_seconds"},
			selectors: []selector{{"go_gc_duration_seconds", []string{"quantile", "job"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			t.Parallel()
			q := parseQuery(tt.expr)
			assert.Equal(t, tt.metrics, q.metrics)
			assert.Equal(t, tt.grouping, q.grouping)
			assert.Equal(t, tt.selectors, q.selectors)
		})
	}
}

// exercisedMetrics scrapes both services after one of each thing they
// measure happened: HTTP requests, a handled, a retried and a poisoned
// message through the outbox and the forwarder, the business events and the
// gauges.
func exercisedMetrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	broker := testkit.NewVhost(t)
	s := startStack(t, broker, broker)
	failInvoiceInserts(t, s, maxAttempts+1) // the first order is poisoned, the second retried once
	ctx := t.Context()
	code, _, err := postOrder(ctx, s.orders.URL, "c-poisoned", 1)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code)
	testkit.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := insertAttempts(t, s); n < maxAttempts {
			return fmt.Errorf("%d attempts so far", n)
		}
		return nil
	})
	code, retried, err := postOrder(ctx, s.orders.URL, "c-retried", 1)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code)
	testkit.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		o, err := getOrder(ctx, s.orders.URL, "c-retried", retried.ID)
		if err == nil && o.Status != "invoiced" {
			err = fmt.Errorf("order %s is %s", o.ID, o.Status)
		}
		return err
	})
	families := scrape(t, s.orders.URL)
	merge(families, scrape(t, s.invoices.URL))
	merge(families, failedPublish(t))
	addPrometheusSeries(families)
	return families
}

// failedPublish is what the services' forwarder instrumentation exports
// after a publish RabbitMQ refused, which the flow above does not provoke.
func failedPublish(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	tel, err := observability.New(t.Context(), "orders", "test", func(k string) string {
		return map[string]string{"OTEL_TRACES_EXPORTER": "none"}[k]
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	pub := observability.ForwarderPublisher(refusingPublisher{}, tel.Options()...)
	require.Error(t, pub.Publish(messaging.EventTopic("OrderPlaced"), message.NewMessage("m-1", nil)))
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil))
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	require.NoError(t, err)
	return families
}

type refusingPublisher struct{}

func (refusingPublisher) Publish(string, ...*message.Message) error {
	return errors.New("test: rabbitmq refused the publish")
}
func (refusingPublisher) Close() error { return nil }

// merge adds the series of from to into.
func merge(into, from map[string]*dto.MetricFamily) {
	for name, f := range from {
		if have, ok := into[name]; ok {
			have.Metric = append(have.Metric, f.Metric...)
			continue
		}
		into[name] = f
	}
}

// maxAttempts is how often a handler tries a message with the services'
// default HANDLER_MAX_RETRIES (5).
const maxAttempts = 6

// seriesNames are the names a PromQL query can select in families: a
// histogram's _bucket, _sum and _count series, every other family's name.
func seriesNames(families map[string]*dto.MetricFamily) map[string]bool {
	names := make(map[string]bool)
	for name, f := range families {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name], names[name+"_sum"], names[name+"_count"] = true, true, true
		default:
			names[name] = true
		}
	}
	return names
}

// addPrometheusSeries adds the series Prometheus itself makes to what a
// scrape returns: up (with the job and instance labels of every target) and
// ALERTS (one series per pending or firing alert of
// deploy/prometheus/rules, with the alert's labels).
func addPrometheusSeries(families map[string]*dto.MetricFamily) {
	gauge := func(name string, labels ...string) *dto.MetricFamily {
		m := &dto.Metric{}
		for _, l := range labels {
			m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(l), Value: proto.String("x")})
		}
		return &dto.MetricFamily{Name: proto.String(name), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{m}}
	}
	families["up"] = gauge("up", "job", "instance")
	families["ALERTS"] = gauge("ALERTS", "alertname", "alertstate", "severity", "job", "instance",
		"service_name", "component", "messaging_consumer_group_name")
}

// rulesDir holds the alerting rules compose's Prometheus loads.
const rulesDir = "../deploy/prometheus/rules"

// TestAlertRules_query_only_metrics_the_services_export holds every
// alerting rule's expression to the same check as the dashboards' queries,
// so that a renamed metric or label cannot leave an alert that never fires.
func TestAlertRules_query_only_metrics_the_services_export(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	families := exercisedMetrics(t)
	series := seriesNames(families)
	files, err := filepath.Glob(filepath.Join(rulesDir, "*.yml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	alerts := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		var doc struct {
			Groups []struct {
				Rules []struct {
					Alert string `yaml:"alert"`
					Expr  string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		require.NoError(t, yaml.Unmarshal(b, &doc), file)
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				alerts++
				checkQuery(t, families, series, filepath.Base(file)+" "+r.Alert, r.Expr)
			}
		}
	}
	assert.GreaterOrEqual(t, alerts, 6, "outbox age, poison, failure rate, degraded, not ready, lag")
}

// labelNames returns the labels of the family a series name belongs to:
// histogram series also have le, summaries quantile.
func labelNames(families map[string]*dto.MetricFamily, series string) []string {
	f, ok := families[series]
	if !ok {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, cut := strings.CutSuffix(series, suffix); cut && families[base] != nil {
				f = families[base]
			}
		}
	}
	if f == nil {
		return nil
	}
	var names []string
	switch f.GetType() {
	case dto.MetricType_HISTOGRAM:
		names = append(names, "le")
	case dto.MetricType_SUMMARY:
		names = append(names, "quantile")
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if !slices.Contains(names, l.GetName()) {
				names = append(names, l.GetName())
			}
		}
	}
	return names
}

// The part of a Grafana dashboard the test reads.
type (
	dashboard struct {
		UID        string  `json:"uid"`
		Title      string  `json:"title"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []variable `json:"list"`
		} `json:"templating"`
	}
	panel struct {
		Title      string      `json:"title"`
		Type       string      `json:"type"`
		Datasource *datasource `json:"datasource"`
		Targets    []struct {
			RefID      string      `json:"refId"`
			Expr       string      `json:"expr"`
			Datasource *datasource `json:"datasource"`
		} `json:"targets"`
		Panels []panel `json:"panels"` // a collapsed row's
	}
	variable struct {
		Name       string          `json:"name"`
		Type       string          `json:"type"`
		Datasource datasource      `json:"datasource"`
		Query      json.RawMessage `json:"query"`
	}
	datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
)

// allPanels returns the dashboard's panels, those in rows included, rows
// left out.
func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

// query returns a variable's query, which Grafana stores as a string or as
// {"query": "…"}.
func (v variable) query() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

// query is what the test reads from a PromQL expression.
type query struct {
	metrics   []string   // the metric names it selects
	grouping  []string   // the labels of its by, without, on, ignoring and group_ clauses
	selectors []selector // the labels each {…} matches on
}

type selector struct {
	metric string
	labels []string
}

var (
	reLabelValues = regexp.MustCompile(`^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
	reString      = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	reSelector    = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}`)
	reMatcher     = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	reRange       = regexp.MustCompile(`\[[^\]]*\]`)
	reGrouping    = regexp.MustCompile(`(?i)\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	reToken       = regexp.MustCompile(`\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*|[a-zA-Z_:][a-zA-Z0-9_:]*`)
	keywords      = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless", "inf", "nan"}
)

// parseQuery reads the metric and label names of a PromQL expression, enough
// of PromQL for dashboards: string literals, label matchers, ranges and
// grouping clauses are cut out, and what is left that is neither a number,
// a keyword nor a function call is a metric name.
func parseQuery(expr string) query {
	var q query
	s := reString.ReplaceAllString(expr, `""`)
	for _, m := range reSelector.FindAllStringSubmatch(s, -1) {
		sel := selector{metric: m[1]}
		for _, l := range reMatcher.FindAllStringSubmatch(m[2], -1) {
			sel.labels = append(sel.labels, l[1])
		}
		if sel.metric != "" {
			q.selectors = append(q.selectors, sel)
		}
	}
	s = reSelector.ReplaceAllString(s, "$1 ")
	s = reRange.ReplaceAllString(s, " ")
	for _, m := range reGrouping.FindAllStringSubmatch(s, -1) {
		for l := range strings.SplitSeq(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				q.grouping = append(q.grouping, l)
			}
		}
	}
	s = reGrouping.ReplaceAllString(s, " ")
	for _, loc := range reToken.FindAllStringIndex(s, -1) {
		tok := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		switch {
		case tok[0] >= '0' && tok[0] <= '9':
		case slices.Contains(keywords, strings.ToLower(tok)):
		case strings.HasPrefix(rest, "("):
		default:
			q.metrics = append(q.metrics, tok)
		}
	}
	return q
}
