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

var (
	testPrivateSubnets = []string{"subnet-private-a", "subnet-private-b"}
	testPublicSubnets  = []string{"subnet-public-a", "subnet-public-b"}
)

// mockResource is one resource the program registered, with its inputs.
type mockResource struct {
	Type   string
	Name   string
	Inputs resource.PropertyMap
}

// mocks records every resource and answers with the few outputs the program reads.
// awsx components arrive here as single resources: they return only the outputs the
// program uses (echoing their inputs back would not decode).
type mocks struct {
	mu        sync.Mutex
	resources []mockResource
}

func arnOf(name string) string { return "arn:aws:mock:" + testRegion + ":123456789012:" + name }

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	m.resources = append(m.resources, mockResource{Type: args.TypeToken, Name: args.Name, Inputs: args.Inputs})
	m.mu.Unlock()

	id := args.Name + "-id"
	switch args.TypeToken {
	case "awsx:ec2:Vpc":
		return id, resource.NewPropertyMapFromMap(map[string]any{
			"vpcId":            "vpc-123",
			"privateSubnetIds": testPrivateSubnets,
			"publicSubnetIds":  testPublicSubnets,
		}), nil
	case "awsx:ecr:Image":
		return id, resource.NewPropertyMapFromMap(map[string]any{
			"imageUri": "123456789012.dkr.ecr." + testRegion + ".amazonaws.com/" + args.Name + "@sha256:abc",
		}), nil
	case "awsx:ecs:FargateService":
		return id, resource.PropertyMap{}, nil
	}

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
		extra["instances"] = []any{map[string]any{"endpoints": []any{testMQEndpoint}}}
	case "aws:ecr/repository:Repository":
		extra["repositoryUrl"] = "123456789012.dkr.ecr." + testRegion + ".amazonaws.com/" + args.Name
	case "aws:lb/loadBalancer:LoadBalancer":
		extra["dnsName"] = "orderflow-alb-123.eu-west-1.elb.amazonaws.com"
	case "aws:secretsmanager/secretVersion:SecretVersion":
		extra["versionId"] = "version-" + args.Name
	}
	for k, v := range resource.NewPropertyMapFromMap(extra) {
		outs[k] = v
	}
	return id, outs, nil
}

func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	switch args.Token {
	case "aws:index/getRegion:getRegion":
		return resource.NewPropertyMapFromMap(map[string]any{"name": testRegion, "id": testRegion}), nil
	case "aws:secretsmanager/getSecretVersion:getSecretVersion":
		secret, err := json.Marshal(map[string]string{"username": "orderflow", "password": testDBPassword})
		if err != nil {
			return nil, err
		}
		return resource.NewPropertyMapFromMap(map[string]any{
			"id":           "secret-version",
			"arn":          args.Args["secretId"].StringValue(),
			"secretString": string(secret),
		}), nil
	}
	return args.Args, nil
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
