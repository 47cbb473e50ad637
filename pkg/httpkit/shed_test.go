package httpkit_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/httpkit"
)

func TestShed(t *testing.T) {
	t.Parallel()
	over, shed := false, 0
	mw := httpkit.Shed(func(context.Context) (string, bool) { return "more than 3 events wait", !over }, func(*http.Request) { shed++ })
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) }))
	post := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/orders", nil))
		return rec
	}

	assert.Equal(t, http.StatusCreated, post().Code, "not overloaded: the request goes through")
	assert.Zero(t, shed)

	over = true
	rec := post()
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "2", rec.Header().Get("Retry-After"))
	assert.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	var p httpkit.Problem
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	assert.Equal(t, "overloaded", p.Code)
	assert.Equal(t, "more than 3 events wait; retry later", p.Detail)
	assert.Equal(t, 1, shed, "each shed request is counted")
}
