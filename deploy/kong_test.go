package deploy_test

import (
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/deploy"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/observability"
)

// kong39Plugins are the plugins Kong Gateway 3.9 (open source) bundles. A
// plugin outside this list would need a custom image and KONG_PLUGINS.
var kong39Plugins = []string{
	"acl", "acme", "ai-prompt-decorator", "ai-prompt-guard", "ai-prompt-template", "ai-proxy",
	"ai-request-transformer", "ai-response-transformer", "aws-lambda", "azure-functions",
	"basic-auth", "bot-detection", "correlation-id", "cors", "datadog", "file-log",
	"grpc-gateway", "grpc-web", "hmac-auth", "http-log", "ip-restriction", "jwt", "key-auth",
	"ldap-auth", "loggly", "oauth2", "opentelemetry", "post-function", "pre-function",
	"prometheus", "proxy-cache", "rate-limiting", "redirect", "request-size-limiting",
	"request-termination", "request-transformer", "response-ratelimiting",
	"response-transformer", "session", "standard-webhooks", "statsd", "syslog", "tcp-log",
	"udp-log", "zipkin",
}

// requiredPlugins are the plugins the gateway must run.
var requiredPlugins = []string{"correlation-id", "rate-limiting", "request-size-limiting", "cors"}

// operationalPaths are served by the apps but must not be reachable
// through Kong.
var operationalPaths = []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml", "/asyncapi.yaml"}

func kongConfig(tb testing.TB) *deploy.KongConfig {
	tb.Helper()
	cfg, err := deploy.LoadKongConfig(path("kong", "kong.yml"))
	require.NoError(tb, err)
	return cfg
}

func TestKong_config_is_declarative_3_0(t *testing.T) {
	t.Parallel()
	cfg := kongConfig(t)
	assert.Equal(t, "3.0", cfg.FormatVersion)
}

func TestKong_services_are_the_apps_on_their_ports(t *testing.T) {
	t.Parallel()
	cfg := kongConfig(t)
	var names []string
	for _, s := range cfg.Services {
		names = append(names, s.Name)
		port, ok := apps[s.Name]
		if !assert.True(t, ok, "service %s is not an app", s.Name) {
			continue
		}
		u, err := url.Parse(s.URL)
		require.NoError(t, err)
		assert.Equal(t, "http", u.Scheme, s.Name)
		// The host is the compose service name and the Cloud Map name.
		assert.Equal(t, s.Name, u.Hostname(), s.Name)
		assert.Equal(t, strconv.Itoa(port), u.Port(), "%s: the app's DefaultPort", s.Name)
		assert.Empty(t, strings.Trim(u.Path, "/"), "%s: a path would be prepended upstream", s.Name)
	}
	var want []string
	for name := range apps {
		want = append(want, name)
	}
	assert.ElementsMatch(t, want, names, "one Kong service per app")
}

func TestKong_routes(t *testing.T) {
	t.Parallel()
	cfg := kongConfig(t)
	routes := cfg.AllRoutes()
	require.NotEmpty(t, routes)
	seen := map[string]bool{}
	for _, r := range routes {
		t.Run(r.Name, func(t *testing.T) {
			t.Parallel()
			_, ok := cfg.Service(r.Service)
			assert.True(t, ok, "route %s names an undeclared service %q", r.Name, r.Service)
			require.NotNil(t, r.StripPath, "set strip_path explicitly: Kong's default (true) cuts the prefix the apps route on")
			assert.False(t, *r.StripPath)
			require.NotEmpty(t, r.Paths)
			for _, p := range r.Paths {
				assert.True(t, strings.HasPrefix(p, "/"), "plain prefix paths only: %q", p)
				for _, op := range operationalPaths {
					assert.False(t, strings.HasPrefix(op, p), "route %s exposes %s", r.Name, op)
				}
			}
		})
		assert.False(t, seen[r.Name], "route name %s is used twice", r.Name)
		seen[r.Name] = true
	}
}

func TestKong_plugins_are_bundled_and_strictly_configured(t *testing.T) {
	t.Parallel()
	cfg := kongConfig(t)
	var names []string
	for _, p := range cfg.AllPlugins() {
		names = append(names, p.Name)
		assert.Contains(t, kong39Plugins, p.Name, "Kong 3.9 does not bundle %s", p.Name)
		newConfig, ok := deploy.PluginConfigs[p.Name]
		if assert.True(t, ok, "no typed config for plugin %s: add one to deploy.PluginConfigs", p.Name) {
			assert.NoError(t, p.DecodeConfig(newConfig()))
		}
		if p.Service != "" {
			_, ok := cfg.Service(p.Service)
			assert.True(t, ok, "plugin %s names an undeclared service %q", p.Name, p.Service)
		}
	}
	for _, want := range requiredPlugins {
		assert.Contains(t, names, want)
	}
}

// plugin decodes the config of the one plugin called name.
func plugin[T any](tb testing.TB, cfg *deploy.KongConfig, name string) T {
	tb.Helper()
	var found []deploy.KongPlugin
	for _, p := range cfg.AllPlugins() {
		if p.Name == name {
			found = append(found, p)
		}
	}
	require.Len(tb, found, 1, "plugin %s", name)
	var c T
	require.NoError(tb, found[0].DecodeConfig(&c))
	return c
}

func TestKong_plugin_settings(t *testing.T) {
	t.Parallel()
	cfg := kongConfig(t)

	corr := plugin[deploy.CorrelationIDConfig](t, cfg, "correlation-id")
	assert.Equal(t, observability.CorrelationHeader, corr.HeaderName, "the header the services read")
	assert.Contains(t, []string{"uuid", "uuid#counter"}, corr.Generator)
	require.NotNil(t, corr.EchoDownstream)
	assert.True(t, *corr.EchoDownstream)

	rl := plugin[deploy.RateLimitingConfig](t, cfg, "rate-limiting")
	assert.Equal(t, "local", rl.Policy, "DB-less Kong has no cluster policy")
	assert.True(t, rl.Second != nil || rl.Minute != nil || rl.Hour != nil, "a limit is set")

	size := plugin[deploy.RequestSizeLimitingConfig](t, cfg, "request-size-limiting")
	limit, err := size.Bytes()
	require.NoError(t, err)
	assert.Equal(t, httpkit.MaxBodyBytes, limit, "Kong's body limit is the apps' limit")

	cors := plugin[deploy.CORSConfig](t, cfg, "cors")
	for _, h := range []string{"Content-Type", "Idempotency-Key", observability.CorrelationHeader} {
		assert.Contains(t, cors.Headers, h, "browsers may send %s", h)
	}
	for _, h := range []string{"Location", "Idempotent-Replayed", observability.CorrelationHeader} {
		assert.Contains(t, cors.ExposedHeaders, h, "browsers may read %s", h)
	}
	assert.Contains(t, cors.Methods, "POST")
	assert.Contains(t, cors.Methods, "OPTIONS")
	if cors.Credentials != nil && *cors.Credentials {
		assert.NotContains(t, cors.Origins, "*", "credentials with any origin")
	}
}

func TestKong_config_decoding_is_strict(t *testing.T) {
	t.Parallel()
	valid, err := os.ReadFile(path("kong", "kong.yml"))
	require.NoError(t, err)
	tests := []struct {
		name    string
		replace [2]string // old, new
		plugins bool      // the error shows when decoding plugin configs
	}{
		{name: "unknown top-level key", replace: [2]string{"services:\n", "servises: []\nservices:\n"}},
		{name: "unknown service field", replace: [2]string{"    retries: 0\n", "    retries: 0\n    retry: 1\n"}},
		{name: "misspelt strip_path", replace: [2]string{"strip_path: false", "strip_paths: false"}},
		{name: "wrong type", replace: [2]string{"retries: 0", "retries: none"}},
		{name: "second document", replace: [2]string{"_format_version", "---\n{}\n---\n_format_version"}},
		{name: "misspelt plugin setting", replace: [2]string{"echo_downstream: true", "echo_downstrem: true"}, plugins: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mutated := strings.Replace(string(valid), tt.replace[0], tt.replace[1], 1)
			require.NotEqual(t, string(valid), mutated, "the replacement must apply")
			name := filepath.Join(t.TempDir(), "kong.yml")
			require.NoError(t, os.WriteFile(name, []byte(mutated), 0o600))

			cfg, err := deploy.LoadKongConfig(name)
			if !tt.plugins {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			var errs []error
			for _, p := range cfg.AllPlugins() {
				if err := p.DecodeConfig(deploy.PluginConfigs[p.Name]()); err != nil {
					errs = append(errs, err)
				}
			}
			assert.NotEmpty(t, errs)
		})
	}
}
