package httpkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/httpkit"
)

type readiness struct {
	Status     string            `json:"status"`
	Components map[string]string `json:"components"`
}

func serve(tb testing.TB, h http.HandlerFunc, target string) *httptest.ResponseRecorder {
	tb.Helper()
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequestWithContext(tb.Context(), http.MethodGet, target, nil))
	return rec
}

func TestHealth_Ready(t *testing.T) {
	t.Parallel()
	pingOK := func(context.Context) error { return nil }
	pingFails := func(context.Context) error { return errors.New("connection refused") }
	components := func(m map[string]string) func() map[string]string {
		return func() map[string]string { return m }
	}
	tests := []struct {
		name       string
		health     httpkit.Health
		status     int
		state      string
		components map[string]string
	}{
		{
			name:       "all up",
			health:     httpkit.Health{Ping: pingOK, Components: components(map[string]string{"broker": "up", "router": "up"})},
			status:     http.StatusOK,
			state:      httpkit.StateUp,
			components: map[string]string{"broker": "up", "router": "up", "database": "up"},
		},
		{
			name:       "no components",
			health:     httpkit.Health{Ping: pingOK},
			status:     http.StatusOK,
			state:      httpkit.StateUp,
			components: map[string]string{"database": "up"},
		},
		{
			name:       "component down degrades",
			health:     httpkit.Health{Ping: pingOK, Components: components(map[string]string{"broker": "down", "router": "up"})},
			status:     http.StatusOK,
			state:      httpkit.StateDegraded,
			components: map[string]string{"broker": "down", "router": "up", "database": "up"},
		},
		{
			name:       "component starting degrades",
			health:     httpkit.Health{Ping: pingOK, Components: components(map[string]string{"forwarder": "starting"})},
			status:     http.StatusOK,
			state:      httpkit.StateDegraded,
			components: map[string]string{"forwarder": "starting", "database": "up"},
		},
		{
			name:       "ping fails",
			health:     httpkit.Health{Ping: pingFails, Components: components(map[string]string{"broker": "up"})},
			status:     http.StatusServiceUnavailable,
			state:      httpkit.StateDown,
			components: map[string]string{"broker": "up", "database": "down"},
		},
		{
			name:       "ping fails and component down",
			health:     httpkit.Health{Ping: pingFails, Components: components(map[string]string{"broker": "down"})},
			status:     http.StatusServiceUnavailable,
			state:      httpkit.StateDown,
			components: map[string]string{"broker": "down", "database": "down"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := serve(t, tt.health.Ready, "/readyz")

			require.Equal(t, tt.status, rec.Code)
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			var got readiness
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
			assert.Equal(t, tt.state, got.Status)
			assert.Equal(t, tt.components, got.Components)
		})
	}
}

func TestHealth_Ready_bounds_the_ping(t *testing.T) {
	t.Parallel()
	var deadline time.Time
	var hasDeadline bool
	h := httpkit.Health{Ping: func(ctx context.Context) error {
		deadline, hasDeadline = ctx.Deadline()
		return nil
	}}
	start := time.Now()
	rec := serve(t, h.Ready, "/readyz")

	require.Equal(t, http.StatusOK, rec.Code)
	require.True(t, hasDeadline, "the ping must not wait forever")
	assert.WithinDuration(t, start.Add(time.Second), deadline, time.Second)
}

func TestHealth_Ready_ping_timeout_is_unready(t *testing.T) {
	t.Parallel()
	h := httpkit.Health{Ping: func(ctx context.Context) error {
		<-ctx.Done() // a database that never answers
		return ctx.Err()
	}}
	rec := serve(t, h.Ready, "/readyz")

	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	var got readiness
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	assert.Equal(t, httpkit.StateDown, got.Status)
}

func TestHealth_Live(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		health httpkit.Health
	}{
		{name: "database up", health: httpkit.Health{Ping: func(context.Context) error { return nil }}},
		{name: "database down", health: httpkit.Health{Ping: func(context.Context) error { return errors.New("down") }}},
		{name: "nothing configured", health: httpkit.Health{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := serve(t, tt.health.Live, "/healthz")

			require.Equal(t, http.StatusOK, rec.Code)
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			assert.JSONEq(t, `{"status":"up"}`, rec.Body.String())
		})
	}
}

func TestHealth_States_reports_the_database_with_the_components(t *testing.T) {
	t.Parallel()
	h := httpkit.Health{
		Ping:       func(context.Context) error { return errors.New("connection refused") },
		Components: func() map[string]string { return map[string]string{"broker": httpkit.StateUp} },
	}
	assert.Equal(t, map[string]string{"broker": httpkit.StateUp, "database": httpkit.StateDown}, h.States(t.Context()))
}
