package deploy

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// loadConfig runs LoadConfig in a mocked Pulumi context.
func loadConfig(t *testing.T, cfg map[string]string, secretKeys ...string) (*Config, error) {
	t.Helper()
	var (
		got     *Config
		loadErr error
	)
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		got, loadErr = LoadConfig(ctx)
		return nil
	}, pulumi.WithMocks(testProject, "test", &mocks{}), withConfig(cfg, secretKeys...))
	require.NoError(t, err)
	return got, loadErr
}

func TestMissingRequiredConfigKeyFailsClearly(t *testing.T) {
	t.Parallel()
	m, err := runProgram(map[string]string{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "orderflow:mqPassword: required but not set")
	assert.Contains(t, err.Error(), "pulumi config set --secret mqPassword")
	assert.Empty(t, m.all(), "nothing is created with an invalid configuration")
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(t, baseConfig(), testProject+":mqPassword")
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.0/16", c.VpcCidr)
	assert.Equal(t, 2, c.AvailabilityZones)
	assert.Equal(t, "OnePerAz", c.NatGateways)
	assert.Equal(t, "orderflow.local", c.Namespace)
	assert.Equal(t, 2, c.MinCapacity)
	assert.Equal(t, 4, c.MaxCapacity)
	assert.Equal(t, 60, c.CPUTargetUtilization)
	assert.Equal(t, 256, c.TaskCPU)
	assert.Equal(t, 512, c.TaskMemory)
	assert.Equal(t, 30, c.LogRetentionDays)
	assert.Equal(t, "linux/amd64", c.Platform())
	assert.False(t, c.HTTPS())
	assert.Equal(t, 0, c.OTLPPort())
	assert.Equal(t, BrokerClusterMultiAZ, c.MQDeploymentMode)
	assert.Equal(t, "mq.m5.large", c.MQInstanceType)
	assert.Equal(t, "quorum", c.MQQueueType)
	assert.False(t, c.DBInstancePerService)
	assert.True(t, c.DBMultiAZ)
	assert.True(t, c.DBDeletionProtection)
	assert.True(t, c.DBPerformanceInsights)
	assert.False(t, c.DBSkipFinalSnapshot)
	assert.True(t, c.ALBDeletionProtection)
	assert.True(t, c.ALBAccessLogs)
	assert.Equal(t, TelemetryCollector, c.Telemetry)
	assert.Equal(t, 512, c.KongTaskCPU)
	assert.Equal(t, 1024, c.KongTaskMemory)
	assert.Equal(t, 1, c.KongWorkers)
}

func TestConfigReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	cfg := map[string]string{
		"orderflow:minCapacity":      "five",
		"orderflow:maxCapacity":      "0",
		"orderflow:vpcCidr":          "10.0.0.0/8",
		"orderflow:taskMemory":       "3000",
		"orderflow:mqDeploymentMode": "ACTIVE_STANDBY_MULTI_AZ",
		"orderflow:certificateArn":   "not-an-arn",
		"orderflow:dbMultiAz":        "maybe",
		"orderflow:logRetentionDays": "10",
	}
	_, err := loadConfig(t, cfg)
	require.Error(t, err)
	for _, want := range []string{
		`orderflow:mqPassword: required but not set`,
		`orderflow:minCapacity: must be an integer, got "five"`,
		`orderflow:maxCapacity: must be between 1 and 100, got 0`,
		`orderflow:vpcCidr: prefix length must be between /16 and /20, got /8`,
		`orderflow:taskMemory: 3000 MiB is not a Fargate size for taskCpu 256`,
		`orderflow:mqDeploymentMode: must be one of SINGLE_INSTANCE, CLUSTER_MULTI_AZ`,
		`orderflow:certificateArn: must be an ACM certificate ARN`,
		`orderflow:dbMultiAz: must be true or false, got "maybe"`,
		`orderflow:logRetentionDays: must be one of`,
	} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestConfigRejectsBadSecrets(t *testing.T) {
	t.Parallel()
	t.Run("not stored as secret", func(t *testing.T) {
		t.Parallel()
		_, err := loadConfig(t, baseConfig()) // no secret keys
		require.Error(t, err)
		assert.Contains(t, err.Error(), "orderflow:mqPassword: must be stored encrypted")
		assert.NotContains(t, err.Error(), testMQPassword)
	})
	t.Run("too short", func(t *testing.T) {
		t.Parallel()
		_, err := loadConfig(t, map[string]string{"orderflow:mqPassword": "short:pw"}, "orderflow:mqPassword")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "orderflow:mqPassword: must be 12 to 250 characters long")
		assert.NotContains(t, err.Error(), "short:pw")
	})
}

func TestConfigCrossChecks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"max below min", map[string]string{"minCapacity": "5", "maxCapacity": "3"}, "orderflow:maxCapacity: must be at least minCapacity (5), got 3"},
		{"micro broker cluster", map[string]string{"mqInstanceType": "mq.t3.micro"}, "mq.t3.micro supports only SINGLE_INSTANCE"},
		{"otlp without endpoint", map[string]string{"telemetry": "otlp"}, "orderflow:telemetry: otlp needs otlpEndpoint"},
		{"kong size", map[string]string{"kongTaskCpu": "512", "kongTaskMemory": "512"}, "orderflow:kongTaskMemory: 512 MiB is not a Fargate size"},
		{"storage", map[string]string{"dbAllocatedStorage": "200", "dbMaxAllocatedStorage": "100"}, "orderflow:dbMaxAllocatedStorage: must be at least dbAllocatedStorage (200)"},
		{"otlp", map[string]string{"otlpEndpoint": "collector:4317"}, "orderflow:otlpEndpoint: must be an http(s) URL"},
		{"trace sample ratio", map[string]string{"traceSampleRatio": "1.5"}, "orderflow:traceSampleRatio: must be a number from 0 to 1"},
		{"reserved db user", map[string]string{"dbUsername": "postgres"}, "orderflow:dbUsername:"},
		{"classic queues on a cluster", map[string]string{"mqQueueType": "classic"}, "orderflow:mqQueueType: classic queues live on one node"},
		{"unknown queue type", map[string]string{"mqDeploymentMode": "SINGLE_INSTANCE", "mqInstanceType": "mq.t3.micro", "mqQueueType": "stream"}, `orderflow:mqQueueType: must be one of quorum, classic, got "stream"`},
		{"guest broker user", map[string]string{"mqUsername": "guest"}, "orderflow:mqUsername:"},
		{"namespace", map[string]string{"serviceNamespace": "local"}, "orderflow:serviceNamespace:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			for k, v := range tt.set {
				cfg[testProject+":"+k] = v
			}
			_, err := loadConfig(t, cfg, testProject+":mqPassword")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestConfigValues(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	for k, v := range map[string]string{
		"natGateways":     "onePerAz",
		"cpuArchitecture": "arm64",
		"taskCpu":         "512",
		"taskMemory":      "2048",
		"otlpEndpoint":    "https://otlp.example.com",
		"certificateArn":  testCertArn,
	} {
		cfg[testProject+":"+k] = v
	}
	c, err := loadConfig(t, cfg, testProject+":mqPassword")
	require.NoError(t, err)
	assert.Equal(t, "OnePerAz", c.NatGateways)
	assert.Equal(t, "ARM64", c.CPUArchitecture)
	assert.Equal(t, "linux/arm64", c.Platform())
	assert.Equal(t, 443, c.OTLPPort())
	assert.True(t, c.HTTPS())
}

func TestFargateSize(t *testing.T) {
	t.Parallel()
	for _, ok := range [][2]int{{256, 512}, {256, 2048}, {512, 1024}, {1024, 8192}, {4096, 30720}} {
		assert.NoError(t, fargateSize(ok[0], ok[1]), "%v", ok)
	}
	for _, bad := range [][2]int{{256, 4096}, {300, 512}, {1024, 1024}, {2048, 4500}} {
		assert.Error(t, fargateSize(bad[0], bad[1]), "%v", bad)
	}
}

func TestValidateMQPassword(t *testing.T) {
	t.Parallel()
	assert.NoError(t, validateMQPassword(testMQPassword))
	assert.Error(t, validateMQPassword("aaaaaaaaaaaaaaa"), "too few distinct characters")
	assert.Error(t, validateMQPassword("has=equals-sign"), "forbidden character")
	assert.Error(t, validateMQPassword("short"))
}

// configKeys returns every key LoadConfig reads.
func configKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		r := &reader{ctx: ctx, ns: ctx.Project()}
		_, _ = load(r)
		keys = r.keys
		return nil
	}, pulumi.WithMocks(testProject, "test", &mocks{}))
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	return keys
}

// TestExampleStackConfigIsValid loads Pulumi.dev.yaml: every orderflow key in it must be
// one the program reads, and the whole file must validate.
func TestExampleStackConfigIsValid(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../Pulumi.dev.yaml")
	require.NoError(t, err)
	var file struct {
		Config map[string]any `yaml:"config"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &file))

	known := map[string]bool{}
	for _, k := range configKeys(t) {
		known[k] = true
	}
	cfg := baseConfig()
	for k, v := range file.Config {
		key, ok := strings.CutPrefix(k, testProject+":")
		if !ok {
			continue // provider keys such as aws:region
		}
		assert.True(t, known[key], "Pulumi.dev.yaml sets unknown key %s", k)
		cfg[k] = fmt.Sprint(v)
	}
	_, err = loadConfig(t, cfg, testProject+":mqPassword")
	assert.NoError(t, err)
}

// TestEveryConfigKeyIsDocumented checks that docs/deploy.md names every key.
func TestEveryConfigKeyIsDocumented(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../../docs/deploy.md")
	require.NoError(t, err)
	for _, k := range configKeys(t) {
		assert.Contains(t, string(raw), "`"+k+"`", "docs/deploy.md does not document %s", k)
	}
}
