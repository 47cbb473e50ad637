package deploy

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/require"
)

const (
	testProject    = "orderflow"
	testRegion     = "eu-west-1"
	testMQPassword = "mq-Secret-Passw0rd!"
	testDBPassword = "db-Secret-Passw0rd!"
	testDBHost     = "db.abc123.eu-west-1.rds.amazonaws.com"
	testMQEndpoint = "amqps://b-1234.mq.eu-west-1.amazonaws.com:5671"
	testCertArn    = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
)

// testKongKeyChars is what the mocked Secrets Manager generates for the
// Kong API keys: distinct 40-character blocks.
var testKongKeyChars = func() string {
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "KongKey%02dabcdefghijklmnopqrstuvwxyz01234", i)
	}
	return b.String()
}()

var (
	testPrivateSubnets = []string{"subnet-private-a", "subnet-private-b"}
	testPublicSubnets  = []string{"subnet-public-a", "subnet-public-b"}
)

// mockResource is one resource the program registered, with its inputs.
type mockResource struct {
	Type          string
	Name          string
	Inputs        resource.PropertyMap
	Transforms    []pulumi.ResourceTransform
	IgnoreChanges []string
}

// mocks records every resource and answers with the outputs the program reads. It
// knows every resource type and function the program uses and fails on any other, so
// that a new resource or call is never answered with an echo of its own inputs.
// awsx components arrive here as single resources: they return only the outputs the
// program uses (echoing their inputs back would not decode).
type mocks struct {
	mu        sync.Mutex
	resources []mockResource
}

func arnOf(name string) string { return "arn:aws:mock:" + testRegion + ":123456789012:" + name }

// echoedTypes are the resource types whose outputs are their inputs plus an arn
// and a name (and the extras below).
var echoedTypes = map[string]bool{
	"aws:ec2/vpcDhcpOptions:VpcDhcpOptions":                                                      true,
	"aws:ec2/vpcDhcpOptionsAssociation:VpcDhcpOptionsAssociation":                                true,
	"aws:ec2/securityGroup:SecurityGroup":                                                        true,
	"aws:ec2/vpcEndpoint:VpcEndpoint":                                                            true,
	"aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":                                  true,
	"aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule":                                    true,
	"aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace":                               true,
	"aws:servicediscovery/service:Service":                                                       true,
	"aws:rds/subnetGroup:SubnetGroup":                                                            true,
	"aws:rds/instance:Instance":                                                                  true,
	"aws:secretsmanager/secret:Secret":                                                           true,
	"aws:secretsmanager/secretVersion:SecretVersion":                                             true,
	"aws:secretsmanager/secretRotation:SecretRotation":                                           true,
	"aws:mq/broker:Broker":                                                                       true,
	"aws:lb/loadBalancer:LoadBalancer":                                                           true,
	"aws:lb/targetGroup:TargetGroup":                                                             true,
	"aws:lb/listener:Listener":                                                                   true,
	"aws:s3/bucketV2:BucketV2":                                                                   true,
	"aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":                                     true,
	"aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2": true,
	"aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2":                       true,
	"aws:s3/bucketPolicy:BucketPolicy":                                                           true,
	"aws:ecs/cluster:Cluster":                                                                    true,
	"aws:ecr/repository:Repository":                                                              true,
	"aws:ecr/lifecyclePolicy:LifecyclePolicy":                                                    true,
	"aws:cloudwatch/logGroup:LogGroup":                                                           true,
	"aws:iam/role:Role":                                                                          true,
	"aws:iam/rolePolicy:RolePolicy":                                                              true,
	"aws:appautoscaling/target:Target":                                                           true,
	"aws:appautoscaling/policy:Policy":                                                           true,
}

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	id := args.Name + "-id"
	record := func() {
		m.mu.Lock()
		m.resources = append(m.resources, mockResource{
			Type: args.TypeToken, Name: args.Name, Inputs: args.Inputs, Transforms: args.Transforms,
			IgnoreChanges: args.RegisterRPC.GetIgnoreChanges(),
		})
		m.mu.Unlock()
	}
	switch {
	case strings.HasPrefix(args.TypeToken, "orderflow:infra:"), strings.HasPrefix(args.TypeToken, "pulumi:providers:"):
		record()
		return id, resource.PropertyMap{}, nil
	case args.TypeToken == "awsx:ec2:Vpc":
		record()
		return id, resource.NewPropertyMapFromMap(map[string]any{
			"vpcId":            "vpc-123",
			"privateSubnetIds": testPrivateSubnets,
			"publicSubnetIds":  testPublicSubnets,
		}), nil
	case args.TypeToken == "awsx:ecr:Image":
		record()
		return id, resource.NewPropertyMapFromMap(map[string]any{
			"imageUri": "123456789012.dkr.ecr." + testRegion + ".amazonaws.com/" + args.Name + "@sha256:abc",
		}), nil
	case args.TypeToken == "awsx:ecs:FargateService":
		record()
		return id, resource.PropertyMap{}, nil
	case !echoedTypes[args.TypeToken]:
		return "", nil, fmt.Errorf("mocks: unexpected resource type %s (%s)", args.TypeToken, args.Name)
	}
	record()

	outs := args.Inputs.Copy()
	outs["arn"] = resource.NewStringProperty(arnOf(args.Name))
	if _, ok := outs["name"]; !ok {
		outs["name"] = resource.NewStringProperty(args.Name)
	}
	extra := map[string]any{}
	switch args.TypeToken {
	case "aws:rds/instance:Instance":
		extra["address"] = testDBHost
		extra["masterUserSecrets"] = []any{map[string]any{"secretArn": arnOf("rds!" + args.Name)}}
	case "aws:mq/broker:Broker":
		extra["brokerName"] = "orderflow-" + args.Name
		extra["instances"] = []any{map[string]any{"endpoints": []any{testMQEndpoint}}}
	case "aws:ecr/repository:Repository":
		extra["repositoryUrl"] = "123456789012.dkr.ecr." + testRegion + ".amazonaws.com/" + args.Name
	case "aws:lb/loadBalancer:LoadBalancer":
		extra["dnsName"] = "orderflow-alb-123.eu-west-1.elb.amazonaws.com"
	case "aws:s3/bucketV2:BucketV2":
		extra["bucket"] = args.Name + "-bucket"
	case "aws:secretsmanager/secretVersion:SecretVersion":
		extra["versionId"] = "version-" + args.Name
	}
	for k, v := range resource.NewPropertyMapFromMap(extra) {
		outs[k] = v
	}
	return id, outs, nil
}

// testRouteTables are the private subnets' route tables getRouteTables finds.
var testRouteTables = []string{"rtb-private-a", "rtb-private-b"}

// testELBAccount is the region's Elastic Load Balancing account.
const testELBAccount = "arn:aws:iam::156460612806:root"

func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	switch args.Token {
	case "aws:index/getRegion:getRegion":
		return resource.NewPropertyMapFromMap(map[string]any{"name": testRegion, "id": testRegion}), nil
	case "aws:secretsmanager/getRandomPassword:getRandomPassword":
		// The role passwords (32 characters) are testDBPassword; any other
		// length is the Kong API keys, testKongKeyChars cut to it.
		pw := testDBPassword
		if n := int(args.Args["passwordLength"].NumberValue()); n != 32 {
			pw = testKongKeyChars[:n]
		}
		return resource.NewPropertyMapFromMap(map[string]any{"id": "random", "randomPassword": pw}), nil
	case "aws:ec2/getRouteTables:getRouteTables":
		return resource.NewPropertyMapFromMap(map[string]any{"id": "tables", "ids": testRouteTables}), nil
	case "aws:elb/getServiceAccount:getServiceAccount":
		return resource.NewPropertyMapFromMap(map[string]any{"id": "elb", "arn": testELBAccount}), nil
	}
	return nil, fmt.Errorf("mocks: unexpected call %s", args.Token)
}

// all returns every recorded resource.
func (m *mocks) all() []mockResource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]mockResource(nil), m.resources...)
}

// byType returns the recorded resources of a type token.
func (m *mocks) byType(token string) []mockResource {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []mockResource
	for _, r := range m.resources {
		if r.Type == token {
			out = append(out, r)
		}
	}
	return out
}

// one returns the resource of a type with a given name.
func (m *mocks) one(t *testing.T, token, name string) mockResource {
	t.Helper()
	for _, r := range m.byType(token) {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no %s named %q", token, name)
	return mockResource{}
}

// baseConfig is a valid configuration: only the required secret is set.
func baseConfig() map[string]string {
	return map[string]string{testProject + ":mqPassword": testMQPassword}
}

// withConfig sets the stack configuration of a mocked run without touching the process
// environment, so tests can run in parallel.
func withConfig(cfg map[string]string, secretKeys ...string) pulumi.RunOption {
	return func(info *pulumi.RunInfo) {
		info.Config = cfg
		info.ConfigSecretKeys = secretKeys
	}
}

// runProgram runs the program against the mocks with cfg (mqPassword stored as secret).
func runProgram(cfg map[string]string) (*mocks, error) {
	m := &mocks{}
	err := pulumi.RunErr(Program,
		pulumi.WithMocks(testProject, "test", m),
		withConfig(cfg, testProject+":mqPassword"))
	return m, err
}

// mustRun runs the program and fails the test on error.
func mustRun(t *testing.T, overrides map[string]string) *mocks {
	t.Helper()
	cfg := baseConfig()
	for k, v := range overrides {
		cfg[testProject+":"+k] = v
	}
	m, err := runProgram(cfg)
	require.NoError(t, err)
	return m
}

// plain converts a property value to Go values, unwrapping secrets and outputs.
func plain(v resource.PropertyValue) any {
	switch {
	case v.IsSecret():
		return plain(v.SecretValue().Element)
	case v.IsOutput():
		return plain(v.OutputValue().Element)
	case v.IsComputed():
		return nil
	case v.IsArray():
		out := []any{}
		for _, e := range v.ArrayValue() {
			out = append(out, plain(e))
		}
		return out
	case v.IsObject():
		out := map[string]any{}
		for k, e := range v.ObjectValue() {
			out[string(k)] = plain(e)
		}
		return out
	case v.IsNull():
		return nil
	}
	return v.V
}

// get walks a path of object keys (and "[i]" array indexes) through the inputs.
func (r mockResource) get(t *testing.T, path ...string) any {
	t.Helper()
	cur := plain(resource.NewObjectProperty(r.Inputs))
	for _, p := range path {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			var i int
			_, err := fmt.Sscanf(p, "[%d]", &i)
			require.NoError(t, err, "index %q", p)
			require.Less(t, i, len(c), "index %q", p)
			cur = c[i]
		default:
			t.Fatalf("%s %s: cannot walk into %T at %q (path %v)", r.Type, r.Name, cur, p, path)
		}
	}
	return cur
}

// dump renders all inputs (secrets included, unwrapped) for substring checks.
func (r mockResource) dump() string {
	b, _ := json.Marshal(plain(resource.NewObjectProperty(r.Inputs)))
	return string(b)
}

// containers returns the container definitions of a Fargate service, by name.
func containers(t *testing.T, svc mockResource) map[string]map[string]any {
	t.Helper()
	raw, ok := svc.get(t, "taskDefinitionArgs", "containers").(map[string]any)
	require.True(t, ok, "service %s has no containers", svc.Name)
	out := map[string]map[string]any{}
	for name, c := range raw {
		out[name] = c.(map[string]any)
	}
	return out
}

// pairs turns [{name, <valueKey>}] into a map.
func pairs(list any, valueKey string) map[string]string {
	out := map[string]string{}
	items, _ := list.([]any)
	for _, item := range items {
		kv := item.(map[string]any)
		v, _ := kv[valueKey].(string)
		out[kv["name"].(string)] = v
	}
	return out
}

// containsAny reports whether s contains one of the needles.
func containsAny(s string, needles ...string) bool {
	for _, n := range needles {
		if strings.Contains(s, n) {
			return true
		}
	}
	return false
}
