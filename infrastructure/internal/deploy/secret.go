package deploy

import (
	"fmt"
	"slices"
	"sort"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// URLSecret is a Secrets Manager secret whose value is a connection URL with credentials.
// Containers receive it through the `secrets` field of their definition (valueFrom = ARN),
// so the URL never appears in a task definition, an environment or a stack output.
type URLSecret struct {
	Secret  *secretsmanager.Secret
	Version *secretsmanager.SecretVersion
}

// Arn returns the ARN of the secret.
func (s *URLSecret) Arn() pulumi.StringOutput { return s.Secret.Arn }

// newURLSecret stores value (marked secret in Pulumi state) in a new Secrets
// Manager secret. opts apply to the secret and its version, versionOpts to
// the version (the value) alone.
func newURLSecret(ctx *pulumi.Context, name, description string, value pulumi.StringOutput, tags pulumi.StringMap, opts []pulumi.ResourceOption, versionOpts ...pulumi.ResourceOption) (*URLSecret, error) {
	secret, err := secretsmanager.NewSecret(ctx, name, &secretsmanager.SecretArgs{
		Description:          pulumi.String(description),
		RecoveryWindowInDays: pulumi.Int(7),
		Tags:                 tags,
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("create secret %s: %w", name, err)
	}
	version, err := secretsmanager.NewSecretVersion(ctx, name, &secretsmanager.SecretVersionArgs{
		SecretId:     secret.ID(),
		SecretString: pulumi.ToSecret(value).(pulumi.StringOutput),
	}, slices.Concat(opts, []pulumi.ResourceOption{pulumi.AdditionalSecretOutputs([]string{"secretString"})}, versionOpts)...)
	if err != nil {
		return nil, fmt.Errorf("create secret version %s: %w", name, err)
	}
	return &URLSecret{Secret: secret, Version: version}, nil
}

// sortedKeys returns the keys of m in order, for deterministic resource graphs.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
