package deploy

import (
	"encoding/json"
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// policyDocument is an IAM policy; it is rendered with json.Marshal.
type policyDocument struct {
	Version   string            `json:"Version"`
	Statement []policyStatement `json:"Statement"`
}

type policyStatement struct {
	Sid       string            `json:"Sid,omitempty"`
	Effect    string            `json:"Effect"`
	Principal map[string]string `json:"Principal,omitempty"`
	Action    []string          `json:"Action"`
	Resource  []string          `json:"Resource,omitempty"`
}

func marshalPolicy(doc policyDocument) (string, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("marshal iam policy: %w", err)
	}
	return string(b), nil
}

// newTaskRole creates a role that ECS tasks can assume, with no permissions attached.
func newTaskRole(ctx *pulumi.Context, name, description string, tags pulumi.StringMap, opts ...pulumi.ResourceOption) (*iam.Role, error) {
	trust, err := marshalPolicy(policyDocument{
		Version: "2012-10-17",
		Statement: []policyStatement{{
			Effect:    "Allow",
			Principal: map[string]string{"Service": "ecs-tasks.amazonaws.com"},
			Action:    []string{"sts:AssumeRole"},
		}},
	})
	if err != nil {
		return nil, err
	}
	role, err := iam.NewRole(ctx, name, &iam.RoleArgs{
		AssumeRolePolicy: pulumi.String(trust),
		Description:      pulumi.String(description),
		Tags:             tags,
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("create role %s: %w", name, err)
	}
	return role, nil
}

// executionPolicy grants what the ECS agent needs to start one service's tasks and
// nothing else: pull from its own repository, write to its own log group, and read
// only its own secrets.
func executionPolicy(repositoryArn, logGroupArn string, secretArns []string) (string, error) {
	statements := []policyStatement{
		{
			Sid:      "EcrAuth",
			Effect:   "Allow",
			Action:   []string{"ecr:GetAuthorizationToken"},
			Resource: []string{"*"}, // this action does not support resource-level permissions
		},
		{
			Sid:      "PullOwnImage",
			Effect:   "Allow",
			Action:   []string{"ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"},
			Resource: []string{repositoryArn},
		},
		{
			Sid:      "WriteOwnLogs",
			Effect:   "Allow",
			Action:   []string{"logs:CreateLogStream", "logs:PutLogEvents"},
			Resource: []string{logGroupArn + ":*"},
		},
	}
	if len(secretArns) > 0 {
		statements = append(statements, policyStatement{
			Sid:      "ReadOwnSecrets",
			Effect:   "Allow",
			Action:   []string{"secretsmanager:GetSecretValue"},
			Resource: secretArns,
		})
	}
	return marshalPolicy(policyDocument{Version: "2012-10-17", Statement: statements})
}
