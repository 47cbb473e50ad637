package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/deploy"
	"github.com/orderflow/orderflow/pkg/httpkit"
)

// vaultEnvRef is a key as kong.yml must hold it: a reference to an
// environment variable, resolved by kong/render-config.sh.
var vaultEnvRef = regexp.MustCompile(`^\{vault://env/([A-Z][A-Z0-9_]*)\}$`)

// TestKong_every_route_needs_an_API_key: each route runs key-auth, with no
// anonymous fallback and the key in the header only, so that nothing reaches
// the services without an authenticated consumer.
func TestKong_every_route_needs_an_API_key(t *testing.T) {
	t.Parallel()
	cfg := kongConfig(t)
	routes := cfg.AllRoutes()
	require.NotEmpty(t, routes)
	for _, r := range routes {
		t.Run(r.Name, func(t *testing.T) {
			t.Parallel()
			var auth []deploy.KongPlugin
			for _, p := range cfg.RoutePlugins(r) {
				if slices.Contains(deploy.AuthPlugins, p.Name) {
					auth = append(auth, p)
				}
			}
			require.Len(t, auth, 1, "route %s must run exactly one authentication plugin", r.Name)
			require.Equal(t, "key-auth", auth[0].Name, "docs/security.md: key-auth")
			var c deploy.KeyAuthConfig
			require.NoError(t, auth[0].DecodeConfig(&c))
			assert.Empty(t, c.Anonymous, "an anonymous consumer would let unauthenticated requests through")
			assert.Equal(t, []string{"apikey"}, c.KeyNames, "the header the OpenAPI documents name")
			require.NotNil(t, c.KeyInQuery, "Kong's default takes keys from the query string too")
			assert.False(t, *c.KeyInQuery, "a key in a URL ends up in logs")
			if c.KeyInBody != nil {
				assert.False(t, *c.KeyInBody)
			}
			require.NotNil(t, c.HideCredentials)
			assert.True(t, *c.HideCredentials, "the services never see a key")
		})
	}
}

// TestKong_rate_limits_per_consumer: the budget is the customer's, not the
// client address's.
func TestKong_rate_limits_per_consumer(t *testing.T) {
	t.Parallel()
	cfg := kongConfig(t)
	rl := plugin[deploy.RateLimitingConfig](t, cfg, "rate-limiting")
	assert.Equal(t, "consumer", rl.LimitBy)
	for _, r := range cfg.AllRoutes() {
		var names []string
		for _, p := range cfg.RoutePlugins(r) {
			names = append(names, p.Name)
		}
		assert.Contains(t, names, "rate-limiting", "route %s is rate limited", r.Name)
	}
	cors := plugin[deploy.CORSConfig](t, cfg, "cors")
	assert.Contains(t, cors.Headers, "apikey", "browsers may send the key")
}

// TestKong_consumers_hold_no_credential: every consumer is a customer with
// a valid customer id and keys that are vault references to environment
// variables of their own, never literals.
func TestKong_consumers_hold_no_credential(t *testing.T) {
	t.Parallel()
	cfg := kongConfig(t)
	require.NotEmpty(t, cfg.Consumers, "key-auth needs consumers")
	usernames, customers, vars := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, c := range cfg.Consumers {
		assert.NotEmpty(t, c.Username)
		assert.False(t, usernames[c.Username], "username %s twice", c.Username)
		usernames[c.Username] = true
		assert.True(t, httpkit.ValidConsumerID(c.CustomID), "consumer %s: custom_id %q is the customer id the services require", c.Username, c.CustomID)
		assert.False(t, customers[c.CustomID], "custom_id %s twice: two consumers would be one customer", c.CustomID)
		customers[c.CustomID] = true
		require.NotEmpty(t, c.KeyauthCredentials, "consumer %s has no key", c.Username)
		for _, k := range c.KeyauthCredentials {
			m := vaultEnvRef.FindStringSubmatch(k.Key)
			if !assert.NotNil(t, m, "consumer %s: the key must be a {vault://env/NAME} reference, not a literal", c.Username) {
				continue
			}
			assert.False(t, vars[m[1]], "%s is the key of two credentials", m[1])
			vars[m[1]] = true
		}
	}

	// Nothing in the file looks like a key outside the references.
	raw, err := os.ReadFile(path("kong", "kong.yml"))
	require.NoError(t, err)
	for i, line := range strings.Split(string(raw), "\n") {
		if k, ok := strings.CutPrefix(strings.TrimSpace(line), "- key:"); ok {
			assert.Regexp(t, `^\s*"\{vault://env/[A-Z0-9_]+\}"$`, k, "kong.yml line %d", i+1)
		}
	}
}

// TestKong_development_consumers_are_in_the_example_env: .env.example has a
// development key for each consumer, compose passes each to Kong, and each
// renders.
func TestKong_development_consumers_are_in_the_example_env(t *testing.T) {
	t.Parallel()
	cfg := kongConfig(t)
	p := stack(t)
	kong := p.Services["kong"]
	for _, c := range cfg.Consumers {
		for _, k := range c.KeyauthCredentials {
			name := vaultEnvRef.FindStringSubmatch(k.Key)[1]
			v, ok := kong.Environment[name]
			if assert.True(t, ok, "compose does not pass %s to Kong", name) && assert.NotNil(t, v) {
				assert.GreaterOrEqual(t, len(*v), 24, "%s from .env.example", name)
			}
		}
	}
}

// renderEnv is a process environment with only what bash needs and extra.
func renderEnv(extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH")}, extra...)
}

// render runs kong/render-config.sh --render on template.
func render(t *testing.T, template string, env ...string) (string, string, error) {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "kong.yml"), filepath.Join(dir, "rendered", "kong.yml")
	require.NoError(t, os.WriteFile(in, []byte(template), 0o600))
	cmd := exec.CommandContext(t.Context(), "bash", path("kong", "render-config.sh"), "--render", in, out)
	cmd.Env = renderEnv(env...)
	msg, err := cmd.CombinedOutput()
	got, readErr := os.ReadFile(out)
	if err == nil {
		require.NoError(t, readErr)
		info, err := os.Stat(out)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the rendered keys are readable by Kong's user only")
	} else {
		assert.ErrorIs(t, readErr, os.ErrNotExist, "nothing is rendered when rendering fails")
	}
	return string(got), string(msg), err
}

const (
	keyA = "dev-key-a-0123456789abcdef0123"
	keyB = "dev-key-b-0123456789abcdef0123"
)

func TestRenderConfig(t *testing.T) {
	t.Parallel()
	const template = `# a comment naming {vault://env/NOT_SET} stays as it is
consumers:
  - username: a
    keyauth_credentials:
      - key: "{vault://env/KEY_A}"
  - username: b
    keyauth_credentials:
      - key: "{vault://env/key-b}" # Kong's env vault reads KEY_B
`
	tests := []struct {
		name string
		env  []string
		want string   // the rendered file; "" when rendering fails
		errs []string // what the message must say when it fails
	}{
		{
			name: "resolves every reference",
			env:  []string{"KEY_A=" + keyA, "KEY_B=" + keyB},
			want: strings.NewReplacer(`{vault://env/KEY_A}`, keyA, `{vault://env/key-b}`, keyB).Replace(template),
		},
		{name: "unset variable", env: []string{"KEY_A=" + keyA}, errs: []string{"line 8: KEY_B is not set", "not rendered"}},
		{name: "empty variable", env: []string{"KEY_A=" + keyA, "KEY_B="}, errs: []string{"KEY_B is not set"}},
		{name: "all unset", errs: []string{"KEY_A is not set", "KEY_B is not set"}},
		{name: "short key", env: []string{"KEY_A=" + keyA, "KEY_B=tooShort9"}, errs: []string{"KEY_B is not a usable key"}},
		{name: "key that would break the YAML", env: []string{"KEY_A=" + keyA, `KEY_B=` + keyB + `"injected: true`}, errs: []string{"KEY_B is not a usable key"}},
		{name: "one key for two consumers", env: []string{"KEY_A=" + keyA, "KEY_B=" + keyA}, errs: []string{"KEY_B holds the same key as KEY_A"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, msg, err := render(t, template, tt.env...)
			if tt.want != "" {
				require.NoError(t, err, msg)
				assert.Equal(t, tt.want, got)
				return
			}
			require.Error(t, err, "rendering must fail")
			for _, e := range tt.errs {
				assert.Contains(t, msg, e)
			}
			for _, secret := range []string{keyA, "tooShort9"} {
				assert.NotContains(t, msg, secret, "the message never shows a value")
			}
		})
	}

	t.Run("unsupported reference", func(t *testing.T) {
		t.Parallel()
		_, msg, err := render(t, "key: \"{vault://aws/orderflow/key}\"\n")
		require.Error(t, err)
		assert.Contains(t, msg, "line 1: a vault reference this script cannot resolve")
	})
}

// TestRenderConfig_renders_kong_yml: the shipped file renders with the
// example environment, and the result has no reference left and every key.
func TestRenderConfig_renders_kong_yml(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(path("kong", "kong.yml"))
	require.NoError(t, err)
	cfg := kongConfig(t)
	var env []string
	var keys []string
	for i, c := range cfg.Consumers {
		for _, k := range c.KeyauthCredentials {
			key := "test-key-" + strings.Repeat("x", 20) + strings.Repeat("y", i+1)
			env = append(env, vaultEnvRef.FindStringSubmatch(k.Key)[1]+"="+key)
			keys = append(keys, key)
		}
	}
	got, msg, err := render(t, string(raw), env...)
	require.NoError(t, err, msg)
	assert.NotContains(t, got, "{vault://env/")
	rendered := filepath.Join(t.TempDir(), "kong.yml")
	require.NoError(t, os.WriteFile(rendered, []byte(got), 0o600))
	out, err := deploy.LoadKongConfig(rendered)
	require.NoError(t, err)
	var gotKeys []string
	for _, c := range out.Consumers {
		for _, k := range c.KeyauthCredentials {
			gotKeys = append(gotKeys, k.Key)
		}
	}
	assert.Equal(t, keys, gotKeys)

	// Without the variables Kong does not start.
	_, msg, err = render(t, string(raw))
	require.Error(t, err)
	assert.Contains(t, msg, "Kong not started")
}
