package deploy

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// OperationalRoutes are served for probes and tools on a service's own
// port; Kong must not route to them.
var OperationalRoutes = []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml", "/asyncapi.yaml"}

// CheckKongRoutes checks the declarative configuration at path against h,
// the real router of the service called name: Kong sends the API's paths,
// and only those, to the service on port. h must be a chi router. For the
// tests of apps/*/service.
func CheckKongRoutes(tb testing.TB, path, name string, port int, h http.Handler) {
	tb.Helper()
	cfg, err := LoadKongConfig(path)
	require.NoError(tb, err)
	svc, ok := cfg.Service(name)
	require.True(tb, ok, "kong.yml has no service %s", name)
	u, err := url.Parse(svc.URL)
	require.NoError(tb, err)
	assert.Equal(tb, name, u.Hostname())
	assert.Equal(tb, strconv.Itoa(port), u.Port())

	var prefixes []string
	for _, r := range cfg.AllRoutes() {
		if r.Service != name {
			continue
		}
		require.NotNil(tb, r.StripPath)
		require.False(tb, *r.StripPath, "the app routes on the full path")
		prefixes = append(prefixes, r.Paths...)
	}
	require.NotEmpty(tb, prefixes, "no Kong route leads to %s", name)

	rs, ok := h.(chi.Routes)
	require.True(tb, ok, "platform.Handler returns a chi router")
	var routes []string
	require.NoError(tb, chi.Walk(rs, func(_, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
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
		assert.True(tb, served, "Kong routes %s to %s, which serves nothing under it", p, name)
	}
	for _, r := range routes {
		operational := false
		for _, o := range OperationalRoutes {
			operational = operational || r == o
		}
		if operational {
			assert.False(tb, routed(r), "Kong exposes %s", r)
		} else {
			assert.True(tb, routed(r), "no Kong route reaches %s", r)
		}
	}
}
