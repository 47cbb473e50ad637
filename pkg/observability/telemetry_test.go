package observability_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/orderflow/orderflow/pkg/observability"
)

func TestNew_resource_follows_the_otel_environment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  []string
		want map[string]string
	}{
		{
			name: "defaults to the service and version passed in",
			want: map[string]string{"service.name": "orders", "service.version": "1.2.3", "telemetry.sdk.language": "go"},
		},
		{
			name: "OTEL_SERVICE_NAME names the service",
			env:  []string{"OTEL_SERVICE_NAME", "orders-eu"},
			want: map[string]string{"service.name": "orders-eu"},
		},
		{
			name: "OTEL_RESOURCE_ATTRIBUTES adds attributes, percent-decoded",
			env:  []string{"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=local, team=pay%20ments,service.version=9"},
			want: map[string]string{
				"service.name": "orders", "deployment.environment.name": "local", "team": "pay ments", "service.version": "9",
			},
		},
		{
			name: "OTEL_RESOURCE_ATTRIBUTES may name the service",
			env:  []string{"OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes"},
			want: map[string]string{"service.name": "from-attributes"},
		},
		{
			name: "OTEL_SERVICE_NAME wins over OTEL_RESOURCE_ATTRIBUTES",
			env:  []string{"OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes", "OTEL_SERVICE_NAME", "from-name"},
			want: map[string]string{"service.name": "from-name"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tel, rec := newTelemetry(t, tt.env...)
			_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "op")
			span.End()
			require.Len(t, rec.Ended(), 1)
			assert.Subset(t, resourceAttrs(rec.Ended()[0]), tt.want)
		})
	}
}

func TestNew_exporters_follow_the_otel_environment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     []string
		wantErr string
		// wantConsole is a string the console writer must show after
		// a span and a counter were recorded and the SDK shut down.
		wantConsole string
	}{
		{name: "no exporters", env: []string{"OTEL_TRACES_EXPORTER", "none", "OTEL_METRICS_EXPORTER", "none"}},
		{name: "no traces exporter by default"},
		{name: "otlp over http by default when an endpoint is set", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"}},
		{name: "otlp when a traces endpoint is set", env: []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1/v1/traces"}},
		// No span is recorded, so nothing is sent: these only build the
		// exporters. TestNew_otlp_exports_to_the_configured_endpoint sends.
		{name: "otlp over grpc", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}},
		{name: "otlp protocol per signal", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "bogus", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"}},
		{name: "prometheus metrics are the default", env: []string{"OTEL_TRACES_EXPORTER", "none", "OTEL_METRICS_EXPORTER", "prometheus"}},
		{name: "console traces", env: []string{"OTEL_TRACES_EXPORTER", "console"}, wantConsole: `"Name":"console-span"`},
		{name: "console metrics", env: []string{"OTEL_TRACES_EXPORTER", "none", "OTEL_METRICS_EXPORTER", "console"}, wantConsole: `"Name":"orderflow.orders.placed"`},
		{name: "a list of exporters", env: []string{"OTEL_TRACES_EXPORTER", " console , none "}, wantConsole: `"Name":"console-span"`},
		{name: "unknown trace exporter", env: []string{"OTEL_TRACES_EXPORTER", "zipkin"}, wantErr: `unsupported exporter "zipkin"`},
		{name: "unknown metrics exporter", env: []string{"OTEL_TRACES_EXPORTER", "none", "OTEL_METRICS_EXPORTER", "statsd"}, wantErr: `unsupported exporter "statsd"`},
		{name: "unsupported otlp protocol", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"}, wantErr: `unsupported OTLP protocol "http/json"`},
		{name: "malformed resource attributes", env: []string{"OTEL_TRACES_EXPORTER", "none", "OTEL_RESOURCE_ATTRIBUTES", "novalue"}, wantErr: "OTEL_RESOURCE_ATTRIBUTES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var console syncBuffer
			tel, err := observability.New(t.Context(), "orders", "1.2.3", env(tt.env...), observability.WithConsoleWriter(&console))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			if tt.wantConsole != "" {
				_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "console-span")
				span.End()
				countOrder(t, tel)
			}
			require.NoError(t, tel.Shutdown(t.Context()))
			require.NoError(t, tel.Shutdown(t.Context()), "a second shutdown is harmless")
			if tt.wantConsole != "" {
				assert.Contains(t, console.String(), tt.wantConsole)
			} else {
				assert.Empty(t, console.String())
			}
		})
	}
}

// TestNew_otlp_exports_to_the_configured_endpoint sends a span and a metric
// to a fake OTLP/HTTP collector. The OTLP exporters read their endpoint from
// the process environment, so the test sets it and cannot run in parallel.
func TestNew_otlp_exports_to_the_configured_endpoint(t *testing.T) {
	var (
		mu       sync.Mutex
		traces   []*coltracepb.ExportTraceServiceRequest
		metrics  []*colmetricpb.ExportMetricsServiceRequest
		badPaths []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/v1/traces":
			var req coltracepb.ExportTraceServiceRequest
			if err := proto.Unmarshal(body, &req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			traces = append(traces, &req)
		case "/v1/metrics":
			var req colmetricpb.ExportMetricsServiceRequest
			if err := proto.Unmarshal(body, &req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			metrics = append(metrics, &req)
		default:
			badPaths = append(badPaths, r.URL.Path)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)

	// With no endpoint in its configuration and no OTEL_TRACES_EXPORTER,
	// a service exports no traces (even though the SDK would find one).
	quiet, err := observability.New(t.Context(), "orders", "1.2.3", env())
	require.NoError(t, err)
	_, span := quiet.TracerProvider().Tracer("test").Start(t.Context(), "unexported-span")
	span.End()
	require.NoError(t, quiet.Shutdown(t.Context()))
	mu.Lock()
	assert.Empty(t, traces, "no endpoint configured: no traces exporter")
	mu.Unlock()

	// An endpoint alone turns the OTLP traces exporter on.
	tel, err := observability.New(t.Context(), "orders", "1.2.3",
		env("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL, "OTEL_METRICS_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
	require.NoError(t, err)
	_, span = tel.TracerProvider().Tracer("test").Start(t.Context(), "exported-span")
	span.End()
	countOrder(t, tel)
	require.NoError(t, tel.Shutdown(t.Context()))

	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, badPaths)
	var spanNames, services, metricNames []string
	for _, req := range traces {
		for _, rs := range req.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					services = append(services, a.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					spanNames = append(spanNames, s.GetName())
				}
			}
		}
	}
	for _, req := range metrics {
		for _, rm := range req.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					metricNames = append(metricNames, m.GetName())
				}
			}
		}
	}
	assert.Equal(t, []string{"exported-span"}, spanNames)
	assert.Equal(t, []string{"orders"}, services)
	assert.Contains(t, metricNames, "orderflow.orders.placed")
}

func TestNew_sdk_disabled_keeps_only_the_runtime_metrics(t *testing.T) {
	t.Parallel()
	var console syncBuffer
	tel, err := observability.New(t.Context(), "orders", "1.2.3",
		env("OTEL_SDK_DISABLED", "TRUE", "OTEL_TRACES_EXPORTER", "console", "OTEL_METRICS_EXPORTER", "console"),
		observability.WithConsoleWriter(&console))
	require.NoError(t, err)

	_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "op")
	assert.False(t, span.IsRecording())
	span.End()
	countOrder(t, tel)
	require.NoError(t, tel.RegisterPoisonDepth(func(context.Context) (int64, error) { return 1, nil }))

	families := scrape(t, tel.MetricsHandler())
	assert.Contains(t, families, "go_goroutines")
	for name := range families {
		assert.Regexp(t, `^(go|process)_`, name)
	}
	require.NoError(t, tel.Shutdown(t.Context()))
	assert.Empty(t, console.String())
}

// TestSetup_installs_the_globals changes OpenTelemetry's process-wide
// providers, so it does not run in parallel; the other tests pass explicit
// providers and never read the globals.
func TestSetup_installs_the_globals(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	var logs syncBuffer
	tel, err := observability.Setup(t.Context(), "orders", "1.2.3", env("OTEL_TRACES_EXPORTER", "none"),
		observability.WithSpanProcessor(rec), observability.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.WithoutCancel(t.Context()))) })

	assert.ElementsMatch(t, []string{"traceparent", "tracestate", "baggage"}, otel.GetTextMapPropagator().Fields())

	ctx, span := otel.Tracer("test").Start(t.Context(), "global")
	msg := message.NewMessage("m-1", nil)
	observability.InjectMessage(ctx, msg) // the global propagator
	span.End()
	require.Len(t, rec.Ended(), 1, "the global tracer provider is tel's")
	assert.Contains(t, msg.Metadata.Get("traceparent"), span.SpanContext().TraceID().String())

	otel.Handle(assert.AnError)
	assert.Contains(t, logs.String(), `"msg":"opentelemetry"`)
	assert.Contains(t, logs.String(), assert.AnError.Error())
}

// TestSetup_console_exporter_prints_spans_to_stdout runs Setup in a child
// process (TestHelperProcess) with a real environment: the console exporter
// writes to the process's standard output, which a test cannot redirect
// without disturbing the tests running beside it.
func TestSetup_console_exporter_prints_spans_to_stdout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		env         []string
		wantSpan    bool
		wantService string
	}{
		{name: "console", env: []string{"OTEL_TRACES_EXPORTER=console"}, wantSpan: true, wantService: "orders"},
		{
			name:     "console and service name",
			env:      []string{"OTEL_TRACES_EXPORTER=console", "OTEL_SERVICE_NAME=orders-eu", "OTEL_RESOURCE_ATTRIBUTES=team=payments"},
			wantSpan: true, wantService: "orders-eu",
		},
		{name: "none", env: []string{"OTEL_TRACES_EXPORTER=none"}},
		{name: "sdk disabled", env: []string{"OTEL_TRACES_EXPORTER=console", "OTEL_SDK_DISABLED=true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(withoutOTel(os.Environ()), append(tt.env, "OBSERVABILITY_HELPER_PROCESS=1", "OTEL_METRICS_EXPORTER=none")...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			require.NoError(t, err, "helper: %s%s", out, stderr.String())

			var spans []consoleSpan
			sc := bufio.NewScanner(bytes.NewReader(out))
			sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
			for sc.Scan() {
				if line := sc.Bytes(); bytes.HasPrefix(line, []byte("{")) {
					var s consoleSpan
					require.NoError(t, json.Unmarshal(line, &s), "%s", line)
					spans = append(spans, s)
				}
			}
			require.NoError(t, sc.Err())
			if !tt.wantSpan {
				assert.Empty(t, spans, "%s", out)
				return
			}
			require.Len(t, spans, 1, "%s", out)
			assert.Equal(t, "helper-span", spans[0].Name)
			assert.Contains(t, spans[0].Resource, consoleAttr{Key: "service.name", Value: consoleValue{Type: "STRING", Value: tt.wantService}})
		})
	}
}

// TestHelperProcess is the child process of
// TestSetup_console_exporter_prints_spans_to_stdout: a service's main, in
// short.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("OBSERVABILITY_HELPER_PROCESS") != "1" {
		t.Skip("runs as a child process of TestSetup_console_exporter_prints_spans_to_stdout")
	}
	tel, err := observability.Setup(t.Context(), "orders", "1.2.3", os.Getenv)
	require.NoError(t, err)
	_, span := otel.Tracer("helper").Start(t.Context(), "helper-span")
	span.End()
	require.NoError(t, tel.Shutdown(t.Context()))
}

// withoutOTel drops the OTEL_* variables of the developer's environment.
func withoutOTel(environ []string) []string {
	var kept []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "OTEL_") {
			kept = append(kept, kv)
		}
	}
	return kept
}

// consoleSpan is the part of stdouttrace's JSON the test reads.
type consoleSpan struct {
	Name     string
	Resource []consoleAttr
}

type consoleAttr struct {
	Key   string
	Value consoleValue
}

type consoleValue struct {
	Type  string
	Value any
}

// syncBuffer is a bytes.Buffer safe for the exporters' goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// countOrder records one orderflow.orders.placed on tel's meter, as the
// orders service does.
func countOrder(t *testing.T, tel *observability.Telemetry) {
	t.Helper()
	c, err := tel.MeterProvider().Meter("test").Int64Counter("orderflow.orders.placed")
	require.NoError(t, err)
	c.Add(t.Context(), 1)
}
