package deploy_test

import (
	"bufio"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	invoices "github.com/orderflow/orderflow/apps/invoices/service"
	orders "github.com/orderflow/orderflow/apps/orders/service"
)

// root is the repository root, seen from this package's directory.
const root = ".."

// apps are the application services and their ports.
var apps = map[string]int{orders.Name: orders.DefaultPort, invoices.Name: invoices.DefaultPort}

// stackServices are the services compose.yml must run.
var stackServices = []string{"postgres", "rabbitmq", "jaeger", "kong", "prometheus", "grafana", orders.Name, invoices.Name}

// printedPorts are the host ports `go tool task dev` prints URLs for: Kong
// proxy and Manager, RabbitMQ management, Jaeger, Grafana, Prometheus.
var printedPorts = []string{"8000", "8002", "15672", "16686", "3000", "9090"}

func path(elem ...string) string { return filepath.Join(append([]string{root}, elem...)...) }

// loadCompose loads compose.yml the way `docker compose` does, with env as
// its environment (no process environment leaks in).
func loadCompose(tb testing.TB, envFiles ...string) (*types.Project, error) {
	tb.Helper()
	opts, err := cli.NewProjectOptions([]string{path("compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
	)
	require.NoError(tb, err)
	return opts.LoadProject(tb.Context())
}

// stack is compose.yml with the defaults of .env.example.
func stack(tb testing.TB) *types.Project {
	tb.Helper()
	p, err := loadCompose(tb, path(".env.example"))
	require.NoError(tb, err, "compose.yml with .env.example")
	return p
}

func TestCompose_loads_with_the_example_env(t *testing.T) {
	t.Parallel()
	p := stack(t)
	assert.Equal(t, "orderflow", p.Name)
	assert.ElementsMatch(t, stackServices, p.ServiceNames())
}

func TestCompose_needs_the_passwords_from_env(t *testing.T) {
	t.Parallel()
	empty := filepath.Join(t.TempDir(), "empty.env")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	_, err := loadCompose(t, empty)
	require.Error(t, err, "compose.yml must not start without its passwords")
	assert.Contains(t, err.Error(), "PASSWORD")
}

func TestCompose_every_service_is_healthchecked_and_waited_for(t *testing.T) {
	t.Parallel()
	p := stack(t)
	for name, svc := range p.Services {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			hc := svc.HealthCheck
			require.NotNil(t, hc, "no healthcheck")
			assert.False(t, hc.Disable)
			require.NotEmpty(t, hc.Test)
			assert.Contains(t, []string{"CMD", "CMD-SHELL"}, hc.Test[0])
			for dep, d := range svc.DependsOn {
				assert.Equal(t, types.ServiceConditionHealthy, d.Condition, "depends_on %s", dep)
				assert.Contains(t, p.ServiceNames(), dep)
			}
		})
	}
}

func TestCompose_publishes_ports_on_loopback_only(t *testing.T) {
	t.Parallel()
	p := stack(t)
	var published []string
	for name, svc := range p.Services {
		for _, port := range svc.Ports {
			assert.Equal(t, "127.0.0.1", port.HostIP, "%s publishes %s:%d beyond this machine", name, port.Published, port.Target)
			assert.NotEmpty(t, port.Published, "%s: %d", name, port.Target)
			published = append(published, port.Published)
		}
	}
	for _, port := range printedPorts {
		assert.Contains(t, published, port, "task dev prints a URL on port %s", port)
	}
}

func TestCompose_pins_images(t *testing.T) {
	t.Parallel()
	tag := regexp.MustCompile(`^[^:]+:v?[0-9][\w.-]*$`)
	p := stack(t)
	for name, svc := range p.Services {
		if svc.Build != nil {
			continue // built here; their FROM lines are checked with the Dockerfiles
		}
		assert.Regexp(t, tag, svc.Image, "%s: pin a version", name)
	}
	assert.Regexp(t, `^rabbitmq:\d+\.\d+(\.\d+)?-management`, p.Services["rabbitmq"].Image, "RabbitMQ with the management UI")
}

func TestCompose_builds_the_images_from_the_repository(t *testing.T) {
	t.Parallel()
	p := stack(t)
	abs, err := filepath.Abs(root)
	require.NoError(t, err)
	tests := []struct {
		service    string
		dockerfile string
	}{
		{service: orders.Name, dockerfile: "apps/orders/Dockerfile"},
		{service: invoices.Name, dockerfile: "apps/invoices/Dockerfile"},
		{service: "kong", dockerfile: "kong/Dockerfile"},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			t.Parallel()
			b := p.Services[tt.service].Build
			require.NotNil(t, b, "%s is built from the repository", tt.service)
			assert.Equal(t, abs, b.Context, "the build context is the repository root")
			assert.Equal(t, tt.dockerfile, b.Dockerfile)
		})
	}
}

func TestCompose_configures_the_apps(t *testing.T) {
	t.Parallel()
	p := stack(t)
	for name, port := range apps {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			svc := p.Services[name]
			env := func(k string) string {
				v := svc.Environment[k]
				require.NotNil(t, v, "%s is not set", k)
				return *v
			}
			assert.Equal(t, strconv.Itoa(port), env("PORT"))
			assert.Equal(t, "http://jaeger:4318", env("OTEL_EXPORTER_OTLP_ENDPOINT"))
			assert.Equal(t, name, env("OTEL_SERVICE_NAME"))
			assert.Equal(t, "otlp", env("OTEL_TRACES_EXPORTER"))
			assert.NotEmpty(t, env("LOG_LEVEL"))

			db, err := url.Parse(env("DATABASE_URL"))
			require.NoError(t, err)
			assert.Equal(t, "postgres:5432", db.Host)
			assert.Equal(t, "/"+name, db.Path, "each service has its own database")
			broker, err := url.Parse(env("BROKER_URL"))
			require.NoError(t, err)
			assert.Equal(t, "amqp", broker.Scheme)
			assert.Equal(t, "rabbitmq:5672", broker.Host)

			assert.Equal(t, types.HealthCheckTest{"CMD", "/app", "healthcheck"}, svc.HealthCheck.Test)
			for _, dep := range []string{"postgres", "rabbitmq"} {
				assert.Contains(t, svc.DependsOn, dep)
			}
			assert.Empty(t, svc.Ports, "only Kong reaches %s: it publishes no port", name)
			assert.Empty(t, svc.Expose, "nor exposes one beyond the compose network")
			assert.Equal(t, "0.0.0.0", env("HTTP_HOST"), "Kong reaches it on the compose network")
		})
	}
	assert.Contains(t, p.Services["kong"].DependsOn, orders.Name)
	assert.Contains(t, p.Services["kong"].DependsOn, invoices.Name)
}

func TestCompose_mounts_files_that_exist(t *testing.T) {
	t.Parallel()
	p := stack(t)
	abs, err := filepath.Abs(root)
	require.NoError(t, err)
	var targets []string
	for name, svc := range p.Services {
		for _, v := range svc.Volumes {
			targets = append(targets, name+":"+v.Target)
			if v.Type != types.VolumeTypeBind {
				continue
			}
			assert.True(t, strings.HasPrefix(v.Source, abs), "%s mounts %s from outside the repository", name, v.Source)
			_, err := os.Stat(v.Source)
			assert.NoError(t, err, "%s mounts a missing %s", name, v.Source)
			assert.True(t, v.ReadOnly, "%s: mount %s read-only", name, v.Source)
		}
	}
	for _, want := range []string{
		"postgres:/docker-entrypoint-initdb.d/10-databases.sql",
		"prometheus:/etc/prometheus/prometheus.yml",
		"prometheus:/etc/prometheus/rules",
		"grafana:/etc/grafana/provisioning",
		"grafana:" + grafanaDashboardsDir,
	} {
		assert.Contains(t, targets, want)
	}
}

// variableRef is a compose interpolation: ${NAME}, ${NAME:-default},
// ${NAME-default}, ${NAME:?error}, ${NAME?error}.
var variableRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?([^}]*)\}`)

func TestCompose_keeps_passwords_in_variables(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(path("compose.yml"))
	require.NoError(t, err)
	var lines []string // without comment lines
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			lines = append(lines, line)
		}
	}
	example := readEnvFile(t, path(".env.example"))

	used := map[string]bool{}
	for _, m := range variableRef.FindAllStringSubmatch(strings.Join(lines, "\n"), -1) {
		name, op := m[1], m[2]
		used[name] = true
		secret := strings.Contains(name, "PASSWORD") || strings.Contains(name, "SECRET") || strings.Contains(name, "TOKEN")
		if secret {
			assert.Contains(t, []string{":?", "?"}, op, "%s must be required, never defaulted in compose.yml", m[0])
		}
		if op == "" || strings.Contains(op, "?") {
			assert.Contains(t, example, name, "%s has no default: .env.example must define it", name)
		}
	}
	for name := range example {
		assert.True(t, used[name], ".env.example defines %s, which compose.yml does not use", name)
	}

	// No literal credentials: every password-like setting is a variable.
	for _, line := range lines {
		key, value, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		if strings.Contains(key, "PASSWORD") || strings.HasSuffix(key, "_PASS") {
			assert.Regexp(t, `^\s*\$\{[A-Z_]+:?\?`, value, "%s is not a required variable", key)
		}
	}
}

// readEnvFile reads KEY=VALUE lines, skipping comments and blank lines.
func readEnvFile(tb testing.TB, name string) map[string]string {
	tb.Helper()
	f, err := os.Open(name)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = f.Close() })
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(tb, ok, "%s: not KEY=VALUE: %q", name, line)
		env[k] = v
	}
	require.NoError(tb, sc.Err())
	return env
}

func TestEnvExample_has_url_safe_passwords(t *testing.T) {
	t.Parallel()
	for k, v := range readEnvFile(t, path(".env.example")) {
		if strings.Contains(k, "PASSWORD") {
			assert.Regexp(t, `^[A-Za-z0-9_-]+$`, v, "%s goes into connection URLs unescaped", k)
			assert.NotContains(t, []string{"guest", "postgres", "admin", "password"}, v, "%s: not a well-known password", k)
		}
	}
	gitignore, err := os.ReadFile(path(".gitignore"))
	require.NoError(t, err)
	assert.Contains(t, strings.Fields(string(gitignore)), ".env", ".env is git-ignored")
}
