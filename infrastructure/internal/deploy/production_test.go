package deploy

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func TestMocks_fail_on_unexpected_resources_and_calls(t *testing.T) {
	t.Parallel()
	m := &mocks{}
	_, _, err := m.NewResource(pulumi.MockResourceArgs{TypeToken: "aws:sqs/queue:Queue", Name: "q"})
	require.ErrorContains(t, err, "unexpected resource type aws:sqs/queue:Queue")
	_, err = m.Call(pulumi.MockCallArgs{Token: "aws:index/getCallerIdentity:getCallerIdentity", Args: resource.PropertyMap{}})
	require.ErrorContains(t, err, "unexpected call aws:index/getCallerIdentity:getCallerIdentity")
	assert.Empty(t, m.all(), "nothing recorded")
}

// TestDesiredCountIsLeftToAutoscaling: the ECS service awsx creates ignores
// desiredCount, so a deploy never scales a busy service back down.
func TestDesiredCountIsLeftToAutoscaling(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)
	for name, svc := range fargateServices(t, m) {
		require.Len(t, svc.Transforms, 1, "%s: one transform", name)
		transform := svc.Transforms[0]

		got := transform(context.Background(), &pulumi.ResourceTransformArgs{
			Custom: true, Type: "aws:ecs/service:Service", Name: name,
			Props: pulumi.Map{"desiredCount": pulumi.Int(2)},
			Opts:  pulumi.ResourceOptions{IgnoreChanges: []string{"tags"}},
		})
		require.NotNil(t, got, "%s: the ECS service is transformed", name)
		assert.ElementsMatch(t, []string{"tags", "desiredCount"}, got.Opts.IgnoreChanges)
		assert.Equal(t, pulumi.Map{"desiredCount": pulumi.Int(2)}, got.Props, "the first deploy still sets it")

		for _, other := range []string{"aws:ecs/taskDefinition:TaskDefinition", "awsx:ecs:FargateService", "aws:iam/role:Role"} {
			assert.Nil(t, transform(context.Background(), &pulumi.ResourceTransformArgs{Type: other, Name: name}), "%s: %s untouched", name, other)
		}
	}
}

func TestDatabaseProductionDefaults(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)
	db := m.one(t, "aws:rds/instance:Instance", "db")
	assert.Equal(t, true, db.get(t, "multiAz"))
	assert.Equal(t, true, db.get(t, "deletionProtection"))
	assert.EqualValues(t, 7, db.get(t, "backupRetentionPeriod"))
	assert.Equal(t, false, db.get(t, "skipFinalSnapshot"))
	assert.Equal(t, "orderflow-test-db-final", db.get(t, "finalSnapshotIdentifier"))
	assert.Equal(t, []any{"postgresql", "upgrade"}, db.get(t, "enabledCloudwatchLogsExports"))
	assert.Equal(t, true, db.get(t, "performanceInsightsEnabled"))
	assert.EqualValues(t, 7, db.get(t, "performanceInsightsRetentionPeriod"))
	assert.Equal(t, true, db.get(t, "copyTagsToSnapshot"))
	assert.Equal(t, "17", db.get(t, "engineVersion"))
}

func TestDatabaseDevOverrides(t *testing.T) {
	t.Parallel()
	m := mustRun(t, map[string]string{
		"dbMultiAz": "false", "dbDeletionProtection": "false", "dbSkipFinalSnapshot": "true",
		"dbPerformanceInsights": "false", "dbBackupRetentionDays": "1",
	})
	db := m.one(t, "aws:rds/instance:Instance", "db")
	assert.Equal(t, false, db.get(t, "multiAz"))
	assert.Equal(t, false, db.get(t, "deletionProtection"))
	assert.EqualValues(t, 1, db.get(t, "backupRetentionPeriod"))
	assert.Equal(t, true, db.get(t, "skipFinalSnapshot"))
	assert.Nil(t, db.get(t, "finalSnapshotIdentifier"))
	assert.Equal(t, false, db.get(t, "performanceInsightsEnabled"))
	assert.Nil(t, db.get(t, "performanceInsightsRetentionPeriod"))
}

func TestNetworkProductionDefaults(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)
	vpc := m.one(t, "awsx:ec2:Vpc", "network-vpc")
	assert.Equal(t, "OnePerAz", vpc.get(t, "natGateways", "strategy"), "an AZ's loss leaves the others their egress")

	eps := map[string]mockResource{}
	for _, e := range m.byType("aws:ec2/vpcEndpoint:VpcEndpoint") {
		eps[strings.TrimPrefix(e.get(t, "serviceName").(string), "com.amazonaws."+testRegion+".")] = e
	}
	require.ElementsMatch(t, []string{"s3", "ecr.api", "ecr.dkr", "logs", "secretsmanager"}, keys(eps))
	s3 := eps["s3"]
	assert.Equal(t, "Gateway", s3.get(t, "vpcEndpointType"))
	assert.Equal(t, []any{testRouteTables[0], testRouteTables[1]}, s3.get(t, "routeTableIds"), "the private subnets' route tables")
	for _, svc := range interfaceEndpoints {
		e := eps[svc]
		assert.Equal(t, "Interface", e.get(t, "vpcEndpointType"), svc)
		assert.Equal(t, true, e.get(t, "privateDnsEnabled"), svc)
		assert.Equal(t, []any{testPrivateSubnets[0], testPrivateSubnets[1]}, e.get(t, "subnetIds"), svc)
		assert.Equal(t, []any{"network-endpoints-id"}, e.get(t, "securityGroupIds"), svc)
		assert.Equal(t, "vpc-123", e.get(t, "vpcId"), svc)
	}
}

func TestLoadBalancerAccessLogsAndDeletionProtection(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)
	alb := m.one(t, "aws:lb/loadBalancer:LoadBalancer", "gateway-alb")
	assert.Equal(t, true, alb.get(t, "enableDeletionProtection"))
	assert.Equal(t, map[string]any{"bucket": "gateway-logs-bucket", "prefix": "alb", "enabled": true}, alb.get(t, "accessLogs"))

	pab := m.one(t, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "gateway-logs")
	for _, k := range []string{"blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"} {
		assert.Equal(t, true, pab.get(t, k), k)
	}
	bucket := m.one(t, "aws:s3/bucketV2:BucketV2", "gateway-logs")
	assert.Equal(t, false, bucket.get(t, "forceDestroy"), "a protected stack keeps its logs")
	var doc policyDocument
	pol := m.one(t, "aws:s3/bucketPolicy:BucketPolicy", "gateway-logs")
	require.NoError(t, json.Unmarshal([]byte(pol.get(t, "policy").(string)), &doc))
	require.Len(t, doc.Statement, 1)
	assert.Equal(t, []string{"s3:PutObject"}, doc.Statement[0].Action)
	assert.Equal(t, []string{arnOf("gateway-logs") + "/alb/AWSLogs/*"}, doc.Statement[0].Resource)
	assert.Equal(t, testELBAccount, doc.Statement[0].Principal["AWS"])

	dev := mustRun(t, map[string]string{"albDeletionProtection": "false", "albAccessLogs": "false"})
	alb = dev.one(t, "aws:lb/loadBalancer:LoadBalancer", "gateway-alb")
	assert.Equal(t, false, alb.get(t, "enableDeletionProtection"))
	assert.Nil(t, alb.get(t, "accessLogs"))
	assert.Empty(t, dev.byType("aws:s3/bucketV2:BucketV2"))
}

func TestKongHasItsOwnTaskSizeAndWorkers(t *testing.T) {
	t.Parallel()
	m := mustRun(t, map[string]string{"kongWorkerProcesses": "2"})
	svcs := fargateServices(t, m)
	kong := svcs[kongName]
	assert.Equal(t, "512", kong.get(t, "taskDefinitionArgs", "cpu"))
	assert.Equal(t, "1024", kong.get(t, "taskDefinitionArgs", "memory"))
	env := pairs(containers(t, kong)[kongName]["environment"], "value")
	assert.Equal(t, "2", env["KONG_NGINX_WORKER_PROCESSES"])
	for _, app := range Apps {
		assert.Equal(t, "256", svcs[app.Name].get(t, "taskDefinitionArgs", "cpu"), app.Name)
		assert.Equal(t, "512", svcs[app.Name].get(t, "taskDefinitionArgs", "memory"), app.Name)
	}
}

func TestAppContainersHaveReadOnlyRootFilesystems(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)
	svcs := fargateServices(t, m)
	for _, app := range Apps {
		cs := containers(t, svcs[app.Name])
		assert.Equal(t, true, cs[app.Name]["readonlyRootFilesystem"], app.Name)
		assert.Equal(t, true, cs[migrateContainer]["readonlyRootFilesystem"], app.Name)
	}
}

func TestImagesHaveImmutableSourceTags(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)
	for _, r := range m.byType("aws:ecr/repository:Repository") {
		assert.Equal(t, "IMMUTABLE", r.get(t, "imageTagMutability"), r.Name)
	}
	tag := regexp.MustCompile(`^src-[0-9a-f]{16}$`)
	tags := map[string]string{}
	for _, img := range m.byType("awsx:ecr:Image") {
		tags[img.Name], _ = img.get(t, "imageTag").(string)
		assert.Regexp(t, tag, tags[img.Name], img.Name)
	}
	require.Len(t, tags, 3)
	assert.NotEqual(t, tags["orders"], tags["kong"], "other sources, other tags")

	// The same sources give the same tag, run after run.
	again, err := sourceTag(appSources(Apps[0]))
	require.NoError(t, err)
	assert.Equal(t, tags[Apps[0].Name], again)
}

func TestConsumersScaleOnTheirQueueBacklog(t *testing.T) {
	t.Parallel()
	m := mustRun(t, map[string]string{"queueBacklogPerTask": "250"})
	for _, app := range Apps {
		p := m.one(t, "aws:appautoscaling/policy:Policy", app.Name+"-backlog")
		assert.Equal(t, "TargetTrackingScaling", p.get(t, "policyType"))
		cfg := "targetTrackingScalingPolicyConfiguration"
		assert.EqualValues(t, 250, p.get(t, cfg, "targetValue"))
		assert.Equal(t, "service/cluster/"+app.Name, p.get(t, "resourceId"))
		metrics := p.get(t, cfg, "customizedMetricSpecification", "metrics").([]any)
		require.Len(t, metrics, 3)
		ready := metrics[0].(map[string]any)["metricStat"].(map[string]any)["metric"].(map[string]any)
		assert.Equal(t, "AWS/AmazonMQ", ready["namespace"])
		assert.Equal(t, "MessageReadyCount", ready["metricName"])
		assert.ElementsMatch(t, []any{
			map[string]any{"name": "Broker", "value": "orderflow-mq"},
			map[string]any{"name": "VirtualHost", "value": "/"},
			map[string]any{"name": "Queue", "value": app.Queue},
		}, ready["dimensions"])
		tasks := metrics[1].(map[string]any)["metricStat"].(map[string]any)["metric"].(map[string]any)
		assert.Equal(t, "RunningTaskCount", tasks["metricName"])
		expr := metrics[2].(map[string]any)
		assert.Equal(t, "ready / tasks", expr["expression"])
		assert.Equal(t, true, expr["returnData"])
	}
	assert.Nil(t, func() any {
		for _, p := range m.byType("aws:appautoscaling/policy:Policy") {
			if p.Name == kongName+"-backlog" {
				return p
			}
		}
		return nil
	}(), "Kong consumes no queue")
}

func TestTelemetryReachesABackendOnAWS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		config    map[string]string
		collector bool
		env       map[string]string
		unset     []string
	}{
		{
			name: "collector sidecar by default", collector: true,
			env: map[string]string{
				"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
				"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "GOMEMLIMIT": "288MiB",
			},
		},
		{
			name:   "the configured OTLP endpoint",
			config: map[string]string{"otlpEndpoint": "https://otlp.example.com"},
			env: map[string]string{
				"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
				"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example.com", "GOMEMLIMIT": "384MiB",
			},
		},
		{
			name:   "off",
			config: map[string]string{"telemetry": "off"},
			env:    map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "GOMEMLIMIT": "384MiB"},
			unset:  []string{"OTEL_EXPORTER_OTLP_ENDPOINT"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := mustRun(t, tt.config)
			svcs := fargateServices(t, m)
			for _, app := range Apps {
				cs := containers(t, svcs[app.Name])
				env := pairs(cs[app.Name]["environment"], "value")
				for k, v := range tt.env {
					assert.Equal(t, v, env[k], "%s %s", app.Name, k)
				}
				for _, k := range tt.unset {
					assert.NotContains(t, env, k, app.Name)
				}
				col, has := cs[collectorName]
				assert.Equal(t, tt.collector, has, "%s: collector sidecar", app.Name)
				_, hasPolicy := findResource(m, "aws:iam/rolePolicy:RolePolicy", app.Name+"-task")
				assert.Equal(t, tt.collector, hasPolicy, "%s: the task role may write to X-Ray and CloudWatch", app.Name)
				if !tt.collector {
					continue
				}
				assert.Equal(t, defaultOTelCollectorImage, col["image"])
				assert.Equal(t, []any{"--config=/etc/ecs/ecs-default-config.yaml"}, col["command"])
				assert.Contains(t, cs[app.Name]["dependsOn"], map[string]any{"containerName": collectorName, "condition": "START"})
				pol, _ := findResource(m, "aws:iam/rolePolicy:RolePolicy", app.Name+"-task")
				assert.Contains(t, pol.get(t, "policy"), "xray:PutTraceSegments")
				assert.Contains(t, pol.get(t, "policy"), "log-group:/aws/ecs/application/metrics")
			}
			_, kongCollector := containers(t, svcs[kongName])[collectorName]
			assert.False(t, kongCollector, "Kong exports nothing")
		})
	}
}

func findResource(m *mocks, token, name string) (mockResource, bool) {
	for _, r := range m.byType(token) {
		if r.Name == name {
			return r, true
		}
	}
	return mockResource{}, false
}

func keys[V any](m map[string]V) []string { return sortedKeys(m) }

// TestVersionsMatchTheLocalStack: compose.yml runs the PostgreSQL major and
// the RabbitMQ major.minor that RDS and Amazon MQ run by default.
func TestVersionsMatchTheLocalStack(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../../compose.yml")
	require.NoError(t, err)
	var compose struct {
		Services map[string]struct {
			Image string `yaml:"image"`
		} `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	c, err := loadConfig(t, baseConfig(), testProject+":mqPassword")
	require.NoError(t, err)
	assert.Regexp(t, `^rabbitmq:`+regexp.QuoteMeta(c.MQEngineVersion)+`\.\d+-management`, compose.Services["rabbitmq"].Image,
		"compose runs the RabbitMQ line Amazon MQ runs (mqEngineVersion %s)", c.MQEngineVersion)
	assert.Regexp(t, `^postgres:`+regexp.QuoteMeta(c.DBEngineVersion)+`\.\d+`, compose.Services["postgres"].Image,
		"compose runs the PostgreSQL major RDS runs (dbEngineVersion %s)", c.DBEngineVersion)
}
