package deploy_test

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clusterServices are the services of compose.yml's cluster profile.
var clusterServices = []string{"rabbitmq-1", "rabbitmq-2", "rabbitmq-3", "rabbitmq-lb"}

// clusterStack is compose.yml with the cluster profile on and the services
// pointed at its load balancer, as `go tool task dev:cluster` runs it.
func clusterStack(t *testing.T) *types.Project {
	t.Helper()
	env := filepath.Join(t.TempDir(), "cluster.env")
	raw, err := os.ReadFile(path(".env.example"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(env, append(raw, "\nBROKER_HOST=rabbitmq-lb\n"...), 0o600))
	opts, err := cli.NewProjectOptions([]string{path("compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnvFiles(env),
		cli.WithDotEnv,
		cli.WithProfiles([]string{"cluster"}),
	)
	require.NoError(t, err)
	p, err := opts.LoadProject(t.Context())
	require.NoError(t, err, "compose.yml --profile cluster")
	return p
}

func TestCompose_cluster_profile_is_off_by_default(t *testing.T) {
	t.Parallel()
	p := stack(t)
	for _, name := range clusterServices {
		assert.NotContains(t, p.ServiceNames(), name)
	}
}

func TestCompose_cluster_profile_runs_three_nodes_behind_a_balancer(t *testing.T) {
	t.Parallel()
	p := clusterStack(t)
	abs, err := filepath.Abs(root)
	require.NoError(t, err)
	for _, name := range clusterServices {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			svc, ok := p.Services[name]
			require.True(t, ok, "the cluster profile runs %s", name)
			require.NotNil(t, svc.HealthCheck, "no healthcheck")
			for dep, d := range svc.DependsOn {
				assert.Equal(t, types.ServiceConditionHealthy, d.Condition, "depends_on %s", dep)
			}
			for _, port := range svc.Ports {
				assert.Equal(t, "127.0.0.1", port.HostIP, "%s publishes %s:%d beyond this machine", name, port.Published, port.Target)
			}
			for _, v := range svc.Volumes {
				if v.Type == types.VolumeTypeBind {
					assert.True(t, strings.HasPrefix(v.Source, abs), "%s mounts %s from outside the repository", name, v.Source)
					_, err := os.Stat(v.Source)
					assert.NoError(t, err, "%s mounts a missing %s", name, v.Source)
					assert.True(t, v.ReadOnly, "%s: mount %s read-only", name, v.Source)
				}
			}
			assert.Regexp(t, `^[^:]+:v?[0-9][\w.-]*$`, svc.Image, "%s: pin a version", name)
			if name == "rabbitmq-lb" {
				return
			}
			// Each node: the single node's image, its own data, the
			// cluster's configuration and cookie, node name rabbit@<hostname>.
			assert.Equal(t, p.Services["rabbitmq"].Image, svc.Image, "the cluster runs the version the single node runs")
			assert.Equal(t, name, svc.Hostname)
			require.NotNil(t, svc.Environment["RABBITMQ_ERLANG_COOKIE"])
			assert.NotEmpty(t, *svc.Environment["RABBITMQ_ERLANG_COOKIE"])
			var targets []string
			for _, v := range svc.Volumes {
				targets = append(targets, v.Target)
				if v.Type == types.VolumeTypeVolume {
					assert.Equal(t, name+"-data", v.Source, "each node has its own data")
				}
			}
			assert.Contains(t, targets, "/etc/rabbitmq/conf.d/20-cluster.conf")
			if name != "rabbitmq-1" {
				assert.Contains(t, svc.DependsOn, "rabbitmq-1", "%s joins the first node, so it waits for it", name)
			}
		})
	}
	lb := p.Services["rabbitmq-lb"]
	for _, n := range clusterServices[:3] {
		assert.Contains(t, lb.DependsOn, n)
	}
	for name := range apps {
		broker, err := url.Parse(*p.Services[name].Environment["BROKER_URL"])
		require.NoError(t, err)
		assert.Equal(t, "rabbitmq-lb:5672", broker.Host, "%s talks to the cluster through its one endpoint", name)
	}
}

func TestCluster_config_names_the_three_nodes(t *testing.T) {
	t.Parallel()
	conf, err := os.ReadFile(path("deploy", "rabbitmq", "cluster.conf"))
	require.NoError(t, err)
	cfg, err := os.ReadFile(path("deploy", "haproxy", "haproxy.cfg"))
	require.NoError(t, err)
	for _, n := range clusterServices[:3] {
		assert.Contains(t, string(conf), "= rabbit@"+n+"\n", "peer discovery lists %s", n)
		assert.Contains(t, string(cfg), "server "+n+" "+n+":5672", "the balancer sends connections to %s", n)
	}
}

func TestCluster_haproxy_config_is_valid(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (Debian: apt-get install haproxy): deploy/haproxy/haproxy.cfg is not checked")
	}
	out, err := exec.CommandContext(t.Context(), bin, "-c", "-f", path("deploy", "haproxy", "haproxy.cfg")).CombinedOutput()
	require.NoError(t, err, "haproxy -c: %s", out)
	assert.Contains(t, string(out), "Configuration file is valid")
}
