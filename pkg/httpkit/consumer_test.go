package httpkit_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/httpkit"
)

func TestRequireConsumer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []string // the ConsumerHeader values sent; nil: none
		want   string   // the caller the handler sees; "": refused with 401
	}{
		{name: "a customer id", values: []string{"c-1"}, want: "c-1"},
		{name: "unicode", values: []string{"kunde-münchen"}, want: "kunde-münchen"},
		{name: "64 characters", values: []string{strings.Repeat("ü", 64)}, want: strings.Repeat("ü", 64)},
		{name: "no header", values: nil},
		{name: "empty", values: []string{""}},
		{name: "only spaces", values: []string{"   "}},
		{name: "65 characters", values: []string{strings.Repeat("c", 65)}},
		{name: "control character", values: []string{"c-1\x7f"}},
		{name: "tab", values: []string{"c\t1"}},
		{name: "not UTF-8", values: []string{"c-\xff"}},
		{name: "two headers", values: []string{"c-1", "c-2"}},
		{name: "the same twice", values: []string{"c-1", "c-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var seen string
			called := false
			h := httpkit.RequireConsumer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called = true
				seen, _ = httpkit.Consumer(r.Context())
				w.WriteHeader(http.StatusNoContent)
			}))
			req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/orders", nil)
			for _, v := range tt.values {
				req.Header.Add(httpkit.ConsumerHeader, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if tt.want != "" {
				require.True(t, called)
				assert.Equal(t, http.StatusNoContent, rec.Code)
				assert.Equal(t, tt.want, seen)
				return
			}
			assert.False(t, called, "the handler must not run")
			require.Equal(t, http.StatusUnauthorized, rec.Code)
			assert.Equal(t, httpkit.ProblemContentType, rec.Header().Get("Content-Type"))
			assert.Equal(t, `Key realm="orderflow"`, rec.Header().Get("WWW-Authenticate"))
			var p httpkit.Problem
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
			assert.Equal(t, "unauthenticated", p.Code)
			assert.Equal(t, http.StatusUnauthorized, p.Status)
			assert.Equal(t, "/orders", p.Instance)
		})
	}
}

func TestConsumer_is_absent_without_the_middleware(t *testing.T) {
	t.Parallel()
	_, ok := httpkit.Consumer(t.Context())
	assert.False(t, ok)
	_, ok = httpkit.Consumer(httpkit.WithConsumer(t.Context(), ""))
	assert.False(t, ok, "an empty id is no caller")
	id, ok := httpkit.Consumer(httpkit.WithConsumer(t.Context(), "c-1"))
	assert.True(t, ok)
	assert.Equal(t, "c-1", id)
}
