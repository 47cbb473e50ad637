package service_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/apps/orders/internal/httpapi"
	"github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/deploy"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/platform"
)

// operationalRoutes are served for probes and tools on the service's own
// port; Kong must not route to them.
var operationalRoutes = []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml"}

// TestKong_routes_reach_the_orders_API checks kong/kong.yml against the
// routes the real router serves: Kong sends the API's paths, and only
// those, to this service on its port.
func TestKong_routes_reach_the_orders_API(t *testing.T) {
	t.Parallel()
	cfg, err := deploy.LoadKongConfig(filepath.Join("..", "..", "..", "kong", "kong.yml"))
	require.NoError(t, err)
	svc, ok := cfg.Service(service.Name)
	require.True(t, ok, "kong.yml has no service %s", service.Name)
	u, err := url.Parse(svc.URL)
	require.NoError(t, err)
	assert.Equal(t, service.Name, u.Hostname())
	assert.Equal(t, strconv.Itoa(service.DefaultPort), u.Port())

	var prefixes []string
	for _, r := range cfg.AllRoutes() {
		if r.Service != service.Name {
			continue
		}
		require.NotNil(t, r.StripPath)
		require.False(t, *r.StripPath, "the app routes on the full path")
		prefixes = append(prefixes, r.Paths...)
	}
	require.NotEmpty(t, prefixes, "no Kong route leads to %s", service.Name)

	log := slog.New(slog.DiscardHandler)
	health := httpkit.Health{Ping: func(context.Context) error { return nil }}
	h, ok := platform.Handler(log, health, httpapi.Routes(nil, log)).(chi.Routes)
	require.True(t, ok, "platform.Handler returns a chi router")
	var routes []string
	require.NoError(t, chi.Walk(h, func(_, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes = append(routes, route)
		return nil
	}))

	// Kong matches a path prefix as a plain string prefix.
	routed := func(route string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(route, p) {
				return true
			}
		}
		return false
	}
	for _, p := range prefixes {
		served := false
		for _, r := range routes {
			served = served || r == p || strings.HasPrefix(r, strings.TrimSuffix(p, "/")+"/")
		}
		assert.True(t, served, "Kong routes %s to %s, which serves nothing under it", p, service.Name)
	}
	for _, r := range routes {
		operational := false
		for _, o := range operationalRoutes {
			operational = operational || r == o
		}
		if operational {
			assert.False(t, routed(r), "Kong exposes %s", r)
		} else {
			assert.True(t, routed(r), "no Kong route reaches %s", r)
		}
	}
}
