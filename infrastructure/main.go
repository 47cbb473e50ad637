// Command infrastructure is the Pulumi program that deploys orderflow to AWS ECS Fargate.
// Run it with the pulumi CLI from this directory (`pulumi up`); see docs/deploy.md.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/orderflow/orderflow/infrastructure/internal/deploy"
)

func main() {
	pulumi.Run(deploy.Program)
}
