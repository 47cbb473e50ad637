package httpkit_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/httpkit"
)

func TestQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		query  string
		ok     bool
		field  string // named by the problem
		detail string
	}{
		{name: "none", query: "", ok: true},
		{name: "allowed", query: "a=1&b=x%20y", ok: true},
		{name: "plus is a space", query: "a=x+y", ok: true},
		{name: "malformed escape", query: "a=%%%", detail: `the query string is malformed: invalid escape "%%%"`},
		{name: "truncated escape", query: "a=%4", detail: `the query string is malformed: invalid escape "%4"`},
		{name: "semicolon", query: "a=1;b=2", detail: "the query string is malformed: invalid semicolon separator in query"},
		{name: "unknown", query: "a=1&c=2", field: "c", detail: "c is not a parameter of this route"},
		{name: "repeated", query: "a=1&a=2", field: "a", detail: "a is given 2 times; give it once"},
		{name: "repeated, same value", query: "a=1&a=1", field: "a", detail: "a is given 2 times; give it once"},
		{name: "empty", query: "a=", field: "a", detail: "a is empty; give a value or leave the parameter out"},
		{name: "bare name", query: "a", field: "a", detail: "a is empty; give a value or leave the parameter out"},
		{name: "empty name", query: "=1", field: `""`, detail: `"" is not a parameter name`},
		{name: "value not utf-8", query: "a=%C3", field: "a", detail: "a is not valid UTF-8"},
		{name: "name not utf-8", query: "%FF=1", field: `"\xff"`, detail: `"\xff" is not valid UTF-8`},
		{name: "first problem in name order", query: "z=1&c=", field: "c", detail: "c is not a parameter of this route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/things?"+tt.query, nil)
			rec := httptest.NewRecorder()

			q, ok := httpkit.Query(rec, req, "a", "b")

			require.Equal(t, tt.ok, ok, "body: %s", rec.Body.String())
			if tt.ok {
				assert.Equal(t, http.StatusOK, rec.Code, "nothing written")
				assert.Empty(t, rec.Body.String())
				assert.Equal(t, req.URL.Query(), q)
				return
			}
			assert.Equal(t, http.StatusBadRequest, rec.Code)
			var p httpkit.Problem
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
			assert.Equal(t, "invalid_query", p.Code)
			assert.Equal(t, tt.detail, p.Detail)
			if tt.field == "" {
				assert.Empty(t, p.Errors)
			} else {
				require.Len(t, p.Errors, 1)
				assert.Equal(t, tt.field, p.Errors[0].Field)
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/orders", nil)
	rec := httptest.NewRecorder()

	httpkit.Unavailable(rec, req, slog.New(slog.NewTextHandler(io.Discard, nil)), "database",
		&syscallError{syscall.ECONNREFUSED})

	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "2", rec.Header().Get("Retry-After"))
	assert.Equal(t, httpkit.ProblemContentType, rec.Header().Get("Content-Type"))
	var p httpkit.Problem
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	assert.Equal(t, httpkit.Problem{
		Type: "urn:orderflow:problem:unavailable", Title: "Service Unavailable", Status: 503,
		Detail: "the database is unavailable; retry later", Instance: "/orders", Code: "unavailable",
	}, p)
	assert.NotContains(t, rec.Body.String(), "refused")
}

type syscallError struct{ err error }

func (e *syscallError) Error() string { return "dial 10.0.0.7: " + e.err.Error() }
