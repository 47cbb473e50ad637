package deploy

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	fargateType  = "awsx:ecs:FargateService"
	secretType   = "aws:secretsmanager/secret:Secret"
	versionType  = "aws:secretsmanager/secretVersion:SecretVersion"
	listenerType = "aws:lb/listener:Listener"
)

var serviceNames = []string{"invoices", "kong", "orders"}

func fargateServices(t *testing.T, m *mocks) map[string]mockResource {
	t.Helper()
	out := map[string]mockResource{}
	for _, r := range m.byType(fargateType) {
		out[r.Name] = r
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	require.Equal(t, serviceNames, names)
	return out
}

func TestTasksRunOnlyInPrivateSubnetsWithoutPublicIP(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)

	vpc := m.one(t, "awsx:ec2:Vpc", "network-vpc")
	specs := vpc.get(t, "subnetSpecs").([]any)
	var types []string
	for _, s := range specs {
		types = append(types, s.(map[string]any)["type"].(string))
	}
	assert.ElementsMatch(t, []string{"Private", "Public"}, types)

	private := []any{testPrivateSubnets[0], testPrivateSubnets[1]}
	for name, svc := range fargateServices(t, m) {
		assert.Equal(t, false, svc.get(t, "assignPublicIp"), name)
		assert.Equal(t, false, svc.get(t, "networkConfiguration", "assignPublicIp"), name)
		assert.Equal(t, private, svc.get(t, "networkConfiguration", "subnets"), "%s must run in the private subnets only", name)
		assert.Len(t, svc.get(t, "networkConfiguration", "securityGroups"), 1, name)
	}
}

func TestOnlyTheLoadBalancerIsPublicAndOnlyKongIsItsTarget(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)

	albs := m.byType("aws:lb/loadBalancer:LoadBalancer")
	require.Len(t, albs, 1, "exactly one load balancer")
	alb := albs[0]
	assert.Equal(t, false, alb.get(t, "internal"), "the ALB is internet-facing")
	assert.Equal(t, []any{testPublicSubnets[0], testPublicSubnets[1]}, alb.get(t, "subnets"))

	tgs := m.byType("aws:lb/targetGroup:TargetGroup")
	require.Len(t, tgs, 1, "exactly one target group")
	tgArn := arnOf(tgs[0].Name)
	assert.Equal(t, "ip", tgs[0].get(t, "targetType"))
	assert.EqualValues(t, KongProxyPort, tgs[0].get(t, "port"))

	for name, svc := range fargateServices(t, m) {
		lbs := svc.get(t, "loadBalancers")
		if name != kongName {
			assert.Empty(t, lbs, "%s must not be behind the load balancer", name)
			continue
		}
		require.Len(t, lbs, 1)
		assert.Equal(t, tgArn, svc.get(t, "loadBalancers", "[0]", "targetGroupArn"))
		assert.Equal(t, kongName, svc.get(t, "loadBalancers", "[0]", "containerName"))
		assert.EqualValues(t, KongProxyPort, svc.get(t, "loadBalancers", "[0]", "containerPort"))
	}

	// Only the ALB's security group accepts traffic from the internet.
	albSG := "network-alb-id"
	for _, rule := range m.byType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") {
		if cidr, ok := rule.get(t, "cidrIpv4").(string); ok && cidr != "" {
			assert.Equal(t, albSG, rule.get(t, "securityGroupId"), "rule %s opens a non-ALB group to %s", rule.Name, cidr)
		}
	}
	// Nothing else is public.
	for _, r := range m.all() {
		if v, ok := r.Inputs["publiclyAccessible"]; ok {
			assert.False(t, v.BoolValue(), "%s %s is publicly accessible", r.Type, r.Name)
		}
	}
}

func TestSecurityGroupsAllowOnlyTheDocumentedPaths(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)

	type path struct {
		from, to string
		port     float64
	}
	var got []path
	for _, rule := range m.byType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") {
		from, _ := rule.get(t, "referencedSecurityGroupId").(string)
		if from == "" {
			from = rule.get(t, "cidrIpv4").(string)
		}
		got = append(got, path{
			strings.TrimSuffix(strings.TrimPrefix(from, "network-"), "-id"),
			strings.TrimSuffix(strings.TrimPrefix(rule.get(t, "securityGroupId").(string), "network-"), "-id"),
			rule.get(t, "fromPort").(float64),
		})
		assert.Equal(t, rule.get(t, "fromPort"), rule.get(t, "toPort"), "single-port rules only")
	}
	want := []path{
		{"0.0.0.0/0", "alb", 80},
		{"alb", "kong", KongProxyPort},
		{"alb", "kong", KongStatusPort},
		{"kong", "orders", 3333},
		{"kong", "invoices", 3334},
		{"orders", "db", PostgresPort},
		{"invoices", "db", PostgresPort},
		{"orders", "mq", AMQPSPort},
		{"invoices", "mq", AMQPSPort},
		{"kong", "endpoints", httpsPort},
		{"orders", "endpoints", httpsPort},
		{"invoices", "endpoints", httpsPort},
	}
	assert.ElementsMatch(t, want, got)
}

func TestDataStoresArePrivateAndEncrypted(t *testing.T) {
	t.Parallel()
	for _, perService := range []bool{false, true} {
		m := mustRun(t, map[string]string{"dbInstancePerService": strconv.FormatBool(perService)})

		instances := m.byType("aws:rds/instance:Instance")
		if perService {
			require.Len(t, instances, 2, "one instance per service")
		} else {
			require.Len(t, instances, 1, "one shared instance")
		}
		for _, db := range instances {
			assert.Equal(t, false, db.get(t, "publiclyAccessible"), db.Name)
			assert.Equal(t, true, db.get(t, "storageEncrypted"), db.Name)
			assert.Equal(t, true, db.get(t, "manageMasterUserPassword"), "%s: RDS keeps the master password in Secrets Manager", db.Name)
			assert.Nil(t, db.get(t, "password"), "%s: no password input", db.Name)
			rot := m.one(t, "aws:secretsmanager/secretRotation:SecretRotation", db.Name+"-rotation")
			assert.Equal(t, arnOf("rds!"+db.Name), rot.get(t, "secretId"))
			assert.EqualValues(t, 90, rot.get(t, "rotationRules", "automaticallyAfterDays"))
		}

		brokers := m.byType("aws:mq/broker:Broker")
		require.Len(t, brokers, 1)
		mq := brokers[0]
		assert.Equal(t, false, mq.get(t, "publiclyAccessible"))
		assert.Equal(t, true, mq.get(t, "encryptionOptions", "useAwsOwnedKey"))
		assert.Equal(t, "RabbitMQ", mq.get(t, "engineType"))
		assert.Equal(t, BrokerClusterMultiAZ, mq.get(t, "deploymentMode"), "three nodes: what the quorum queues are for")
		assert.Equal(t, []any{testPrivateSubnets[0], testPrivateSubnets[1]}, mq.get(t, "subnetIds"))
		assert.Equal(t, "mq.m5.large", mq.get(t, "hostInstanceType"))
		pw := mq.Inputs["users"].ArrayValue()[0].ObjectValue()["password"]
		assert.True(t, pw.ContainsSecrets(), "the broker password input is a secret")
	}
}

func TestBrokerSingleInstanceByConfig(t *testing.T) {
	t.Parallel()
	m := mustRun(t, map[string]string{"mqDeploymentMode": "SINGLE_INSTANCE", "mqInstanceType": "mq.t3.micro"})
	mq := m.byType("aws:mq/broker:Broker")[0]
	assert.Equal(t, BrokerSingleInstance, mq.get(t, "deploymentMode"))
	assert.Equal(t, []any{testPrivateSubnets[0]}, mq.get(t, "subnetIds"))
}

// A single-node broker may run classic queues; both services are told.
func TestBrokerClassicQueuesByConfig(t *testing.T) {
	t.Parallel()
	m := mustRun(t, map[string]string{"mqDeploymentMode": "SINGLE_INSTANCE", "mqInstanceType": "mq.t3.micro", "mqQueueType": "classic"})
	svcs := fargateServices(t, m)
	for _, app := range Apps {
		env := pairs(containers(t, svcs[app.Name])[app.Name]["environment"], "value")
		assert.Equal(t, "classic", env["BROKER_QUEUE_TYPE"], app.Name)
	}
}

func TestNoPlainTextPasswordInContainers(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)
	secretName := regexp.MustCompile(`(?i)pass|secret|token|_URL$`)

	for name, svc := range fargateServices(t, m) {
		// Nothing anywhere in the task definition or service holds a password.
		assert.False(t, containsAny(svc.dump(), testMQPassword, testDBPassword), "%s inputs contain a password", name)
		for cname, c := range containers(t, svc) {
			for k, v := range pairs(c["environment"], "value") {
				assert.False(t, secretName.MatchString(k), "%s/%s: %s must come from `secrets`, not the environment", name, cname, k)
				assert.False(t, containsAny(v, testMQPassword, testDBPassword, "://orderflow:"), "%s/%s: %s holds a credential", name, cname, k)
			}
		}
	}
}

// TestTaskDefinitionSecrets: the apps connect as their own login role, with
// its password from its secret; only the migration container gets the
// master password, straight from the RDS-managed secret's password key, so
// a rotation reaches every task that starts after it.
func TestTaskDefinitionSecrets(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)
	svcs := fargateServices(t, m)

	// secret ARN -> the value stored in it (via the SecretVersion of the same name).
	stored := map[string]string{}
	for _, v := range m.byType(versionType) {
		require.True(t, v.Inputs["secretString"].ContainsSecrets(), "%s: the secret string is a Pulumi secret", v.Name)
		stored[arnOf(v.Name)] = v.get(t, "secretString").(string)
		assert.Equal(t, v.Name+"-id", v.get(t, "secretId"))
	}

	brokerURL := "amqps://orderflow:" + strings.ReplaceAll(testMQPassword, "!", "%21") + "@b-1234.mq.eu-west-1.amazonaws.com:5671"
	for _, app := range Apps {
		cs := containers(t, svcs[app.Name])
		c := cs[app.Name]
		env := pairs(c["environment"], "value")
		sec := pairs(c["secrets"], "valueFrom")
		roleSecret := arnOf("db-" + app.Name + "-role")
		assert.Equal(t, map[string]string{
			"DATABASE_PASSWORD": roleSecret + ":password::",
			"BROKER_URL":        arnOf("mq-url"),
		}, sec, app.Name)
		assert.Equal(t, testDBHost, env["DATABASE_HOST"])
		assert.Equal(t, app.Name, env["DATABASE_NAME"])
		assert.Equal(t, app.Name+"_app", env["DATABASE_USER"])
		assert.Equal(t, "false", env["DATABASE_CREATE"], "the login role may not create databases")
		assert.NotContains(t, env, "DATABASE_URL")
		assert.Equal(t, brokerURL, stored[sec["BROKER_URL"]], "%s BROKER_URL", app.Name)

		var role struct{ Username, Password string }
		require.NoError(t, json.Unmarshal([]byte(stored[roleSecret]), &role))
		assert.Equal(t, app.Name+"_app", role.Username)
		assert.Equal(t, testDBPassword, role.Password, "generated by Secrets Manager")
		version := m.one(t, versionType, "db-"+app.Name+"-role")
		assert.Contains(t, version.IgnoreChanges, "secretString", "generated once, then kept")

		// The migration step runs first, as the master user, and must succeed.
		mig := cs[migrateContainer]
		require.NotNil(t, mig, "%s has a migration container", app.Name)
		assert.Equal(t, []any{"/app", "migrate"}, mig["command"])
		assert.Equal(t, false, mig["essential"])
		assert.Equal(t, c["image"], mig["image"], "the same image")
		assert.Equal(t, map[string]string{
			"DATABASE_PASSWORD":       roleSecret + ":password::",
			"DATABASE_ADMIN_PASSWORD": arnOf("rds!db") + ":password::",
		}, pairs(mig["secrets"], "valueFrom"))
		migEnv := pairs(mig["environment"], "value")
		assert.Equal(t, "orderflow", migEnv["DATABASE_ADMIN_USER"])
		assert.Equal(t, app.Name+"_owner", migEnv["DATABASE_OWNER"])
		assert.Equal(t, app.Name+"_app", migEnv["DATABASE_USER"])
		assert.Contains(t, c["dependsOn"], map[string]any{"containerName": migrateContainer, "condition": "SUCCESS"})
	}
	// Kong gets the consumers' API keys, each from its member of one secret,
	// under the variable kong.yml refers to; nothing else.
	vars, err := KongKeyVariables()
	require.NoError(t, err)
	require.NotEmpty(t, vars)
	keysArn := arnOf("kong-api-keys")
	want := map[string]string{}
	for _, v := range vars {
		want[v] = keysArn + ":" + v + "::"
	}
	kong := containers(t, svcs[kongName])[kongName]
	assert.Equal(t, want, pairs(kong["secrets"], "valueFrom"))
	for k := range pairs(kong["environment"], "value") {
		assert.NotContains(t, vars, k, "a key in the plain environment")
	}
	var keys map[string]string
	require.NoError(t, json.Unmarshal([]byte(stored[keysArn]), &keys))
	assert.ElementsMatch(t, vars, slices.Collect(maps.Keys(keys)), "one generated key per variable")
	seen := map[string]bool{}
	for v, k := range keys {
		assert.Regexp(t, `^[A-Za-z0-9]{40}$`, k, "%s: what kong/render-config.sh accepts", v)
		assert.False(t, seen[k], "%s: every consumer has a key of its own", v)
		seen[k] = true
		assert.NotContains(t, svcs[kongName].dump(), k, "the key is not in the task definition")
	}
	keysVersion := m.one(t, versionType, "kong-api-keys")
	assert.Contains(t, keysVersion.IgnoreChanges, "secretString", "generated once: a deploy never changes a customer's key")
	// No master password is read at deploy time any more.
	for _, v := range m.byType(versionType) {
		assert.NotContains(t, v.dump(), "postgres://", v.Name)
	}
}

func TestExecutionRolesReadOnlyTheirOwnSecrets(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)

	for _, app := range Apps {
		pol := m.one(t, "aws:iam/rolePolicy:RolePolicy", app.Name+"-execution")
		var doc policyDocument
		require.NoError(t, json.Unmarshal([]byte(pol.get(t, "policy").(string)), &doc))
		var secrets []string
		for _, s := range doc.Statement {
			assert.NotContains(t, s.Action, "*", "no wildcard actions")
			assert.NotContains(t, s.Action, "secretsmanager:*")
			if s.Sid == "ReadOwnSecrets" {
				secrets = s.Resource
			}
			if s.Sid != "EcrAuth" {
				assert.NotContains(t, s.Resource, "*", "%s: only ecr:GetAuthorizationToken may use Resource *", s.Sid)
			}
		}
		other := "invoices"
		if app.Name == "invoices" {
			other = "orders"
		}
		// Its own login role's secret, the broker URL, and the RDS master secret
		// (for the migration container).
		assert.ElementsMatch(t, []string{arnOf("db-" + app.Name + "-role"), arnOf("mq-url"), arnOf("rds!db")}, secrets, app.Name)
		assert.NotContains(t, secrets, arnOf("db-"+other+"-role"))
	}
	kong := m.one(t, "aws:iam/rolePolicy:RolePolicy", "kong-execution")
	var kongDoc policyDocument
	require.NoError(t, json.Unmarshal([]byte(kong.get(t, "policy").(string)), &kongDoc))
	var kongSecrets []string
	for _, s := range kongDoc.Statement {
		if slices.Contains(s.Action, "secretsmanager:GetSecretValue") {
			kongSecrets = append(kongSecrets, s.Resource...)
		}
	}
	assert.Equal(t, []string{arnOf("kong-api-keys")}, kongSecrets, "Kong reads its API keys and no other secret")
	// Task roles carry only the collector's policy, and Kong's none.
	var taskPolicies []string
	for _, p := range m.byType("aws:iam/rolePolicy:RolePolicy") {
		if !strings.HasSuffix(p.Name, "-execution") {
			taskPolicies = append(taskPolicies, p.Name)
		}
	}
	assert.ElementsMatch(t, []string{"orders-task", "invoices-task"}, taskPolicies)
	for _, r := range m.byType("aws:iam/role:Role") {
		assert.Nil(t, r.get(t, "managedPolicyArns"), "%s has no managed policies", r.Name)
	}
}

func TestAutoscalingBoundsComeFromConfig(t *testing.T) {
	t.Parallel()
	m := mustRun(t, map[string]string{"minCapacity": "3", "maxCapacity": "7", "cpuTargetUtilization": "55"})

	targets := m.byType("aws:appautoscaling/target:Target")
	require.Len(t, targets, 3)
	for _, tgt := range targets {
		assert.EqualValues(t, 3, tgt.get(t, "minCapacity"), tgt.Name)
		assert.EqualValues(t, 7, tgt.get(t, "maxCapacity"), tgt.Name)
		assert.Equal(t, "ecs:service:DesiredCount", tgt.get(t, "scalableDimension"))
		name := strings.TrimSuffix(tgt.Name, "-scaling")
		assert.Equal(t, "service/cluster/"+name, tgt.get(t, "resourceId"))
	}
	var policies []mockResource
	for _, p := range m.byType("aws:appautoscaling/policy:Policy") {
		if strings.HasSuffix(p.Name, "-cpu") {
			policies = append(policies, p)
		}
	}
	require.Len(t, policies, 3)
	for _, p := range policies {
		assert.Equal(t, "TargetTrackingScaling", p.get(t, "policyType"))
		assert.Equal(t, "ECSServiceAverageCPUUtilization",
			p.get(t, "targetTrackingScalingPolicyConfiguration", "predefinedMetricSpecification", "predefinedMetricType"))
		assert.EqualValues(t, 55, p.get(t, "targetTrackingScalingPolicyConfiguration", "targetValue"))
	}
	for name, svc := range fargateServices(t, m) {
		// The first deploy starts minCapacity tasks; autoscaling owns the count after.
		assert.EqualValues(t, 3, svc.get(t, "desiredCount"), name)
	}
}

func TestServicesHaveHealthChecksCircuitBreakerAndLogs(t *testing.T) {
	t.Parallel()
	m := mustRun(t, map[string]string{"logRetentionDays": "14", "otlpEndpoint": "http://collector.internal:4318"})
	svcs := fargateServices(t, m)

	for name, svc := range svcs {
		assert.Equal(t, true, svc.get(t, "deploymentCircuitBreaker", "enable"), name)
		assert.Equal(t, true, svc.get(t, "deploymentCircuitBreaker", "rollback"), name)
		assert.Equal(t, true, svc.get(t, "taskDefinitionArgs", "logGroup", "skip"), "%s uses its own log group", name)
		assert.Equal(t, arnOf(name+"-execution"), svc.get(t, "taskDefinitionArgs", "executionRole", "roleArn"))
		assert.Equal(t, arnOf(name+"-task"), svc.get(t, "taskDefinitionArgs", "taskRole", "roleArn"))
		c := containers(t, svc)[name]
		assert.Equal(t, "/orderflow/test/"+name, c["logConfiguration"].(map[string]any)["options"].(map[string]any)["awslogs-group"])
		lg := m.one(t, "aws:cloudwatch/logGroup:LogGroup", name+"-logs")
		assert.EqualValues(t, 14, lg.get(t, "retentionInDays"))
	}
	for _, app := range Apps {
		cs := containers(t, svcs[app.Name])
		require.Len(t, cs, 2, "the app and its migration step; no collector with otlpEndpoint")
		c := cs[app.Name]
		assert.Equal(t, []any{"CMD", "/app", "healthcheck"}, c["healthCheck"].(map[string]any)["command"])
		env := pairs(c["environment"], "value")
		assert.Equal(t, map[string]string{
			"PORT":                        strconv.Itoa(app.Port),
			"HTTP_HOST":                   "0.0.0.0",
			"LOG_LEVEL":                   "info",
			"OTEL_SERVICE_NAME":           app.Name,
			"OTEL_RESOURCE_ATTRIBUTES":    "deployment.environment.name=test",
			"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
			"OTEL_TRACES_SAMPLER_ARG":     "0.1",
			"OTEL_TRACES_EXPORTER":        "otlp",
			"OTEL_METRICS_EXPORTER":       "otlp",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.internal:4318",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
			"DATABASE_CREATE":             "false",
			"DATABASE_HOST":               testDBHost,
			"DATABASE_NAME":               app.Name,
			"DATABASE_USER":               app.Name + "_app",
			"GOMEMLIMIT":                  "384MiB", // three quarters of the default 512 MiB task
			"GOMAXPROCS":                  "1",      // the default task has a quarter of a vCPU
			"BROKER_QUEUE_TYPE":           "quorum",
		}, env)
	}
	kong := containers(t, svcs[kongName])[kongName]
	assert.Equal(t, []any{"CMD", "kong", "health"}, kong["healthCheck"].(map[string]any)["command"])

	// The OTLP port is opened for the apps only.
	var otlp []string
	for _, r := range m.byType("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") {
		if r.get(t, "fromPort") == float64(4318) {
			otlp = append(otlp, r.get(t, "securityGroupId").(string))
		}
	}
	assert.ElementsMatch(t, []string{"network-orders-id", "network-invoices-id"}, otlp)

	cluster := m.one(t, "aws:ecs/cluster:Cluster", "cluster")
	assert.Equal(t, []any{map[string]any{"name": "containerInsights", "value": "enabled"}}, cluster.get(t, "settings"))
}

func TestKongReachesTheAppsThroughCloudMap(t *testing.T) {
	t.Parallel()
	m := mustRun(t, nil)

	dhcp := m.one(t, "aws:ec2/vpcDhcpOptions:VpcDhcpOptions", "network-dhcp")
	assert.Equal(t, "orderflow.local", dhcp.get(t, "domainName"), "the namespace is the tasks' DNS search domain")
	ns := m.one(t, "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace", "network-namespace")
	assert.Equal(t, "orderflow.local", ns.get(t, "name"))

	svcs := fargateServices(t, m)
	for _, app := range Apps {
		d := m.one(t, "aws:servicediscovery/service:Service", app.Name+"-discovery")
		assert.Equal(t, app.Name, d.get(t, "name"), "the Cloud Map name is the host name in kong.yml")
		assert.Equal(t, "network-namespace-id", d.get(t, "dnsConfig", "namespaceId"))
		assert.Equal(t, arnOf(app.Name+"-discovery"), svcs[app.Name].get(t, "serviceRegistries", "registryArn"))
	}
	assert.Nil(t, svcs[kongName].get(t, "serviceRegistries"))
}

func TestListeners(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		config map[string]string
		want   map[string]string // port -> default action type
	}{
		{"plain HTTP without certificate", nil, map[string]string{"80": "forward"}},
		{"HTTPS with redirect", map[string]string{"certificateArn": testCertArn}, map[string]string{"80": "redirect", "443": "forward"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := mustRun(t, tt.config)
			got := map[string]string{}
			for _, l := range m.byType(listenerType) {
				port := l.get(t, "port").(float64)
				action := l.get(t, "defaultActions", "[0]").(map[string]any)
				got[strconv.Itoa(int(port))] = action["type"].(string)
				switch action["type"] {
				case "forward":
					assert.Equal(t, arnOf("gateway-kong"), action["targetGroupArn"])
				case "redirect":
					assert.Equal(t, "HTTPS", action["redirect"].(map[string]any)["protocol"])
					assert.Equal(t, "HTTP_301", action["redirect"].(map[string]any)["statusCode"])
				}
				if port == 443 {
					assert.Equal(t, testCertArn, l.get(t, "certificateArn"))
					assert.Equal(t, tlsPolicy, l.get(t, "sslPolicy"))
				}
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestOutputsHoldNoCredentials(t *testing.T) {
	t.Parallel()
	var (
		wg      sync.WaitGroup
		outputs map[string]any
	)
	wg.Add(1)
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		cfg, err := LoadConfig(ctx)
		if err != nil {
			return err
		}
		d, err := Deploy(ctx, cfg)
		if err != nil {
			return err
		}
		d.Outputs().ToMapOutput().ApplyT(func(v map[string]any) error {
			outputs = v
			wg.Done()
			return nil
		})
		wg.Wait()
		return nil
	}, pulumi.WithMocks(testProject, "test", &mocks{}), withConfig(baseConfig(), testProject+":mqPassword"))
	require.NoError(t, err)

	b, err := json.Marshal(outputs)
	require.NoError(t, err)
	dump := string(b)
	assert.False(t, containsAny(dump, testMQPassword, testDBPassword, "%21"), "outputs: %s", dump)
	assert.Equal(t, "http://orderflow-alb-123.eu-west-1.elb.amazonaws.com", outputs["kongUrl"])
	assert.Equal(t, testMQEndpoint, outputs["brokerEndpoint"])
	assert.Equal(t, arnOf("mq-url"), outputs["brokerUrlSecretArn"])
	assert.Equal(t, map[string]string{"orders": arnOf("db-orders-role"), "invoices": arnOf("db-invoices-role")}, outputs["databaseRoleSecretArns"])
	assert.Equal(t, arnOf("kong-api-keys"), outputs["kongApiKeysSecretArn"])
	assert.NotContains(t, dump, "KongKey", "no API key in the outputs")
}

// TestOnlyKongReachesTheApps: an app's port accepts Kong's security group
// and nothing else (no address range, no other group, not the load
// balancer), so every request an app serves came through Kong's
// authentication and the X-Consumer-Custom-ID it trusts is Kong's.
func TestOnlyKongReachesTheApps(t *testing.T) {
	t.Parallel()
	m := mustRun(t, map[string]string{"certificateArn": testCertArn, "otlpEndpoint": "http://collector.internal:4318"})

	appSGs := map[string]App{}
	for _, a := range Apps {
		appSGs["network-"+a.Name+"-id"] = a
	}
	kongSG := "network-kong-id"
	reached := map[string]bool{}
	for _, rule := range m.byType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") {
		a, ok := appSGs[rule.get(t, "securityGroupId").(string)]
		if !ok {
			continue
		}
		assert.Nil(t, rule.get(t, "cidrIpv4"), "rule %s opens %s to addresses", rule.Name, a.Name)
		assert.Nil(t, rule.get(t, "cidrIpv6"), "rule %s opens %s to addresses", rule.Name, a.Name)
		assert.Nil(t, rule.get(t, "prefixListId"), "rule %s", rule.Name)
		assert.Equal(t, kongSG, rule.get(t, "referencedSecurityGroupId"), "rule %s lets another group reach %s", rule.Name, a.Name)
		assert.EqualValues(t, a.Port, rule.get(t, "fromPort"), "rule %s", rule.Name)
		assert.EqualValues(t, a.Port, rule.get(t, "toPort"), "rule %s: only the app's port", rule.Name)
		assert.Equal(t, "tcp", rule.get(t, "ipProtocol"))
		reached[a.Name] = true
	}
	for _, a := range Apps {
		assert.True(t, reached[a.Name], "Kong reaches %s", a.Name)
	}
	// And Kong may send to exactly the apps' ports (besides the AWS APIs over 443).
	var kongOut []float64
	for _, rule := range m.byType("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") {
		if rule.get(t, "securityGroupId") != kongSG || rule.get(t, "fromPort") == float64(httpsPort) {
			continue
		}
		kongOut = append(kongOut, rule.get(t, "fromPort").(float64))
		_, toApp := appSGs[rule.get(t, "referencedSecurityGroupId").(string)]
		assert.True(t, toApp, "Kong egress rule %s leads to an app", rule.Name)
	}
	assert.ElementsMatch(t, []float64{3333, 3334}, kongOut)
	// The security groups are inline-rule free: every rule is one of those above.
	for _, sg := range m.byType("aws:ec2/securityGroup:SecurityGroup") {
		assert.Nil(t, sg.get(t, "ingress"), "%s has inline ingress rules", sg.Name)
		assert.Nil(t, sg.get(t, "egress"), "%s has inline egress rules", sg.Name)
	}
}

func TestGoMaxProcs_is_one_per_whole_vCPU_and_never_zero(t *testing.T) {
	t.Parallel()
	for cpu, want := range map[int]string{256: "1", 512: "1", 1024: "1", 1536: "1", 2048: "2", 4096: "4", 16384: "16"} {
		assert.Equal(t, want, goMaxProcs(cpu), "task cpu %d", cpu)
	}
}
