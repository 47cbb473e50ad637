package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"
)

// apiKeyLength is the length of a generated Kong API key: 40 letters and
// digits, about 238 bits.
const apiKeyLength = 40

// vaultEnvRef is a key in kong/kong.yml: a reference to an environment
// variable, which kong/render-config.sh resolves when the container starts.
var vaultEnvRef = regexp.MustCompile(`^\{vault://env/([A-Za-z_][A-Za-z0-9_-]*)\}$`)

// KongKeyVariables returns the environment variables that hold the
// consumers' API keys of kong/kong.yml (its {vault://env/NAME} references,
// NAME read as Kong's env vault does: - as _, in capitals), sorted. A key
// that is not such a reference is an error: no key may be a literal.
func KongKeyVariables() ([]string, error) {
	root, err := repositoryRoot()
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(root, "kong", "kong.yml"))
	if err != nil {
		return nil, fmt.Errorf("read kong.yml: %w", err)
	}
	return kongKeyVariables(raw)
}

// kongKeyVariables is KongKeyVariables of the declarative configuration raw.
func kongKeyVariables(raw []byte) ([]string, error) {
	var doc struct {
		Consumers []struct {
			Username           string `yaml:"username"`
			KeyauthCredentials []struct {
				Key string `yaml:"key"`
			} `yaml:"keyauth_credentials"`
		} `yaml:"consumers"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("decode kong.yml: %w", err)
	}
	var vars []string
	for _, c := range doc.Consumers {
		for _, k := range c.KeyauthCredentials {
			m := vaultEnvRef.FindStringSubmatch(k.Key)
			if m == nil {
				return nil, fmt.Errorf("kong.yml: consumer %s: its key is not a {vault://env/NAME} reference", c.Username)
			}
			vars = append(vars, strings.ToUpper(strings.ReplaceAll(m[1], "-", "_")))
		}
	}
	slices.Sort(vars)
	if len(slices.Compact(slices.Clone(vars))) != len(vars) {
		return nil, fmt.Errorf("kong.yml: two credentials read one variable: %v", vars)
	}
	return vars, nil
}

// newKongAPIKeys stores a generated key for each of vars in one Secrets
// Manager secret, a JSON object {"VAR": "key", ...}, which the Kong task
// reads one member per variable. The keys are generated once: later runs
// keep the stored value (ignoreChanges), so that a deploy never changes a
// customer's key. Rotating a key, or adding one for a new consumer, is a
// new version of the secret (docs/security.md).
func newKongAPIKeys(ctx *pulumi.Context, name string, vars []string, tags pulumi.StringMap, options ...pulumi.ResourceOrInvokeOption) (*URLSecret, error) {
	if len(vars) == 0 {
		return nil, fmt.Errorf("create secret %s: kong.yml names no API key", name)
	}
	invokeOpts := make([]pulumi.InvokeOption, len(options))
	opts := make([]pulumi.ResourceOption, len(options))
	for i, o := range options {
		invokeOpts[i], opts[i] = o, o
	}
	// One random string, cut into the keys: a data source answers the
	// same arguments once per run.
	generated := secretsmanager.GetRandomPasswordOutput(ctx, secretsmanager.GetRandomPasswordOutputArgs{
		PasswordLength:     pulumi.Int(apiKeyLength * len(vars)),
		ExcludePunctuation: pulumi.Bool(true),
		IncludeSpace:       pulumi.Bool(false),
	}, invokeOpts...)
	value := generated.RandomPassword().ApplyT(func(pw string) (string, error) {
		if len(pw) != apiKeyLength*len(vars) {
			return "", fmt.Errorf("generate kong api keys: got %d characters, want %d", len(pw), apiKeyLength*len(vars))
		}
		keys := make(map[string]string, len(vars))
		for i, v := range vars {
			keys[v] = pw[i*apiKeyLength : (i+1)*apiKeyLength]
		}
		b, err := json.Marshal(keys)
		if err != nil {
			return "", fmt.Errorf("marshal kong api keys: %w", err)
		}
		return string(b), nil
	}).(pulumi.StringOutput)
	return newURLSecret(ctx, name, "API keys of the Kong consumers (kong/kong.yml), one JSON member per variable", value, tags, opts,
		pulumi.IgnoreChanges([]string{"secretString"}))
}
