package deploy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/appautoscaling"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ecr"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ecs"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lb"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/servicediscovery"
	"github.com/pulumi/pulumi-awsx/sdk/v2/go/awsx/awsx"
	ecrx "github.com/pulumi/pulumi-awsx/sdk/v2/go/awsx/ecr"
	ecsx "github.com/pulumi/pulumi-awsx/sdk/v2/go/awsx/ecs"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ServiceArgs configures NewService.
type ServiceArgs struct {
	Cluster *ecs.Cluster
	// BuildContext and Dockerfile are paths relative to infrastructure/ (the directory
	// `pulumi up` runs in).
	BuildContext    string
	Dockerfile      string
	Platform        string // linux/amd64 or linux/arm64
	CPUArchitecture string // X86_64 or ARM64

	Port int
	// HealthCheck is the container health check command, e.g. ["CMD", "/app", "healthcheck"].
	HealthCheck []string
	// Environment holds plain, non-secret variables only.
	Environment map[string]pulumi.StringInput
	// Secrets maps variable names to Secrets Manager secret ARNs. They are injected
	// through the container definition's `secrets` field: ECS resolves them when a task
	// starts, and the values are never in the task definition.
	Secrets map[string]pulumi.StringOutput

	TaskCPU         int
	TaskMemory      int
	SubnetIDs       pulumi.StringArrayInput
	SecurityGroupID pulumi.StringInput
	// TargetGroup registers the tasks behind the load balancer (Kong only).
	TargetGroup *lb.TargetGroup
	// Namespace registers the tasks in Cloud Map as <name>.<namespace> (A records).
	Namespace *servicediscovery.PrivateDnsNamespace

	MinCapacity          int
	MaxCapacity          int
	CPUTargetUtilization int
	LogRetentionDays     int
	Region               string
	// RedeployOn forces a new deployment when one of its values changes (for example a
	// secret version), since tasks read secrets only when they start.
	RedeployOn map[string]pulumi.StringInput
	DependsOn  []pulumi.Resource
	Tags       pulumi.StringMap
}

// Service is one Fargate service with everything it owns: ECR repository and image, log
// group, execution and task roles, Cloud Map registration and CPU autoscaling. Tasks run
// in private subnets without public IPs.
type Service struct {
	pulumi.ResourceState

	Repository    *ecr.Repository
	Image         *ecrx.Image
	LogGroup      *cloudwatch.LogGroup
	ExecutionRole *iam.Role
	TaskRole      *iam.Role
	Discovery     *servicediscovery.Service
	Service       *ecsx.FargateService
	ScalingTarget *appautoscaling.Target
	ScalingPolicy *appautoscaling.Policy
}

// NewService builds and pushes the image and runs it as a Fargate service.
func NewService(ctx *pulumi.Context, name string, args *ServiceArgs, opts ...pulumi.ResourceOption) (*Service, error) {
	s := &Service{}
	if err := ctx.RegisterComponentResource("orderflow:infra:Service", name, s, opts...); err != nil {
		return nil, fmt.Errorf("register service %s: %w", name, err)
	}
	parent := pulumi.Parent(s)
	if err := s.image(ctx, name, args, parent); err != nil {
		return nil, err
	}
	var err error
	s.LogGroup, err = cloudwatch.NewLogGroup(ctx, name+"-logs", &cloudwatch.LogGroupArgs{
		Name:            pulumi.Sprintf("/orderflow/%s/%s", ctx.Stack(), name),
		RetentionInDays: pulumi.Int(args.LogRetentionDays),
		Tags:            args.Tags,
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("create log group %s: %w", name, err)
	}
	if err := s.roles(ctx, name, args, parent); err != nil {
		return nil, err
	}
	if args.Namespace != nil {
		s.Discovery, err = servicediscovery.NewService(ctx, name+"-discovery", &servicediscovery.ServiceArgs{
			Name:        pulumi.String(name),
			Description: pulumi.String("orderflow " + name),
			DnsConfig: &servicediscovery.ServiceDnsConfigArgs{
				NamespaceId:   args.Namespace.ID(),
				RoutingPolicy: pulumi.String("MULTIVALUE"),
				DnsRecords: servicediscovery.ServiceDnsConfigDnsRecordArray{
					&servicediscovery.ServiceDnsConfigDnsRecordArgs{Type: pulumi.String("A"), Ttl: pulumi.Int(10)},
				},
			},
			HealthCheckCustomConfig: &servicediscovery.ServiceHealthCheckCustomConfigArgs{FailureThreshold: pulumi.Int(1)},
			ForceDestroy:            pulumi.Bool(true),
			Tags:                    args.Tags,
		}, parent)
		if err != nil {
			return nil, fmt.Errorf("create service discovery %s: %w", name, err)
		}
	}
	if err := s.fargate(ctx, name, args, parent); err != nil {
		return nil, err
	}
	if err := s.autoscaling(ctx, name, args, parent); err != nil {
		return nil, err
	}
	if err := ctx.RegisterResourceOutputs(s, pulumi.Map{
		"repositoryUrl": s.Repository.RepositoryUrl,
		"imageUri":      s.Image.ImageUri,
		"logGroup":      s.LogGroup.Name,
	}); err != nil {
		return nil, fmt.Errorf("register service %s outputs: %w", name, err)
	}
	return s, nil
}

// lifecyclePolicy keeps the newest images and expires the rest.
type lifecyclePolicy struct {
	Rules []lifecycleRule `json:"rules"`
}

type lifecycleRule struct {
	RulePriority int    `json:"rulePriority"`
	Description  string `json:"description"`
	Selection    struct {
		TagStatus   string `json:"tagStatus"`
		CountType   string `json:"countType"`
		CountNumber int    `json:"countNumber"`
	} `json:"selection"`
	Action struct {
		Type string `json:"type"`
	} `json:"action"`
}

func (s *Service) image(ctx *pulumi.Context, name string, args *ServiceArgs, parent pulumi.ResourceOption) error {
	var err error
	s.Repository, err = ecr.NewRepository(ctx, name, &ecr.RepositoryArgs{
		// awsx.ecr.Image re-pushes a stable tag and deploys by digest.
		ImageTagMutability:         pulumi.String("MUTABLE"),
		ImageScanningConfiguration: &ecr.RepositoryImageScanningConfigurationArgs{ScanOnPush: pulumi.Bool(true)},
		ForceDelete:                pulumi.Bool(true),
		Tags:                       args.Tags,
	}, parent)
	if err != nil {
		return fmt.Errorf("create ecr repository %s: %w", name, err)
	}
	rule := lifecycleRule{RulePriority: 1, Description: "keep the 20 newest images"}
	rule.Selection.TagStatus, rule.Selection.CountType, rule.Selection.CountNumber = "any", "imageCountMoreThan", 20
	rule.Action.Type = "expire"
	policy, err := json.Marshal(lifecyclePolicy{Rules: []lifecycleRule{rule}})
	if err != nil {
		return fmt.Errorf("marshal ecr lifecycle policy: %w", err)
	}
	if _, err := ecr.NewLifecyclePolicy(ctx, name, &ecr.LifecyclePolicyArgs{
		Repository: s.Repository.Name,
		Policy:     pulumi.String(string(policy)),
	}, parent); err != nil {
		return fmt.Errorf("create ecr lifecycle policy %s: %w", name, err)
	}
	s.Image, err = ecrx.NewImage(ctx, name, &ecrx.ImageArgs{
		RepositoryUrl: s.Repository.RepositoryUrl,
		Context:       pulumi.String(args.BuildContext),
		Dockerfile:    pulumi.String(args.Dockerfile),
		Platform:      pulumi.String(args.Platform),
	}, parent)
	if err != nil {
		return fmt.Errorf("build image %s: %w", name, err)
	}
	return nil
}

// roles creates the execution role (used by the ECS agent: image pull, logs, secrets of
// this service only) and the task role (used by the application: no permissions, since
// the services call no AWS API).
func (s *Service) roles(ctx *pulumi.Context, name string, args *ServiceArgs, parent pulumi.ResourceOption) error {
	var err error
	s.ExecutionRole, err = newTaskRole(ctx, name+"-execution", "ECS agent role of orderflow "+name, args.Tags, parent)
	if err != nil {
		return err
	}
	s.TaskRole, err = newTaskRole(ctx, name+"-task", "Application role of orderflow "+name+" (no permissions)", args.Tags, parent)
	if err != nil {
		return err
	}

	var arns []pulumi.StringOutput
	for _, k := range sortedKeys(args.Secrets) {
		arns = append(arns, args.Secrets[k])
	}
	policy := pulumi.All(s.Repository.Arn, s.LogGroup.Arn, pulumi.ToStringArrayOutput(arns)).ApplyT(func(v []any) (string, error) {
		secretArns := slices.Clone(v[2].([]string))
		slices.Sort(secretArns)
		return executionPolicy(v[0].(string), v[1].(string), slices.Compact(secretArns))
	}).(pulumi.StringOutput)
	if _, err := iam.NewRolePolicy(ctx, name+"-execution", &iam.RolePolicyArgs{
		Role:   s.ExecutionRole.ID(),
		Policy: policy,
	}, parent); err != nil {
		return fmt.Errorf("create execution policy %s: %w", name, err)
	}
	return nil
}

func (s *Service) logConfig(args *ServiceArgs, container string) *ecsx.TaskDefinitionLogConfigurationArgs {
	return &ecsx.TaskDefinitionLogConfigurationArgs{
		LogDriver: pulumi.String("awslogs"),
		Options: pulumi.StringMap{
			"awslogs-group":         s.LogGroup.Name,
			"awslogs-region":        pulumi.String(args.Region),
			"awslogs-stream-prefix": pulumi.String(container),
		},
	}
}

func environment(env map[string]pulumi.StringInput) ecsx.TaskDefinitionKeyValuePairArray {
	out := ecsx.TaskDefinitionKeyValuePairArray{}
	for _, k := range sortedKeys(env) {
		out = append(out, ecsx.TaskDefinitionKeyValuePairArgs{Name: pulumi.String(k), Value: env[k]})
	}
	return out
}

func secrets(arns map[string]pulumi.StringOutput) ecsx.TaskDefinitionSecretArray {
	out := ecsx.TaskDefinitionSecretArray{}
	for _, k := range sortedKeys(arns) {
		out = append(out, ecsx.TaskDefinitionSecretArgs{Name: pulumi.String(k), ValueFrom: arns[k]})
	}
	return out
}

func (s *Service) fargate(ctx *pulumi.Context, name string, args *ServiceArgs, parent pulumi.ResourceOption) error {
	container := ecsx.TaskDefinitionContainerDefinitionArgs{
		Name:      pulumi.String(name),
		Image:     s.Image.ImageUri,
		Essential: pulumi.Bool(true),
		PortMappings: ecsx.TaskDefinitionPortMappingArray{ecsx.TaskDefinitionPortMappingArgs{
			Name:          pulumi.String(name),
			ContainerPort: pulumi.Int(args.Port),
			Protocol:      pulumi.String("tcp"),
		}},
		Environment: environment(args.Environment),
		Secrets:     secrets(args.Secrets),
		HealthCheck: &ecsx.TaskDefinitionHealthCheckArgs{
			Command:     pulumi.ToStringArray(args.HealthCheck),
			Interval:    pulumi.Int(15),
			Timeout:     pulumi.Int(5),
			Retries:     pulumi.Int(3),
			StartPeriod: pulumi.Int(30),
		},
		// SIGTERM drains in-flight work; ECS kills after this many seconds.
		StopTimeout:      pulumi.Int(60),
		LogConfiguration: s.logConfig(args, name),
	}
	containers := map[string]ecsx.TaskDefinitionContainerDefinitionArgs{name: container}

	svcArgs := &ecsx.FargateServiceArgs{
		Name:           pulumi.String(name),
		Cluster:        args.Cluster.Arn,
		DesiredCount:   pulumi.Int(args.MinCapacity),
		AssignPublicIp: pulumi.Bool(false),
		NetworkConfiguration: &ecs.ServiceNetworkConfigurationArgs{
			AssignPublicIp: pulumi.Bool(false),
			Subnets:        args.SubnetIDs,
			SecurityGroups: pulumi.StringArray{args.SecurityGroupID},
		},
		DeploymentCircuitBreaker: &ecs.ServiceDeploymentCircuitBreakerArgs{
			Enable:   pulumi.Bool(true),
			Rollback: pulumi.Bool(true),
		},
		DeploymentMinimumHealthyPercent: pulumi.Int(100),
		DeploymentMaximumPercent:        pulumi.Int(200),
		PropagateTags:                   pulumi.String("SERVICE"),
		EnableEcsManagedTags:            pulumi.Bool(true),
		TaskDefinitionArgs: &ecsx.FargateServiceTaskDefinitionArgs{
			Containers:    containers,
			Cpu:           pulumi.String(strconv.Itoa(args.TaskCPU)),
			Memory:        pulumi.String(strconv.Itoa(args.TaskMemory)),
			ExecutionRole: &awsx.DefaultRoleWithPolicyArgs{RoleArn: s.ExecutionRole.Arn},
			TaskRole:      &awsx.DefaultRoleWithPolicyArgs{RoleArn: s.TaskRole.Arn},
			// The log group above (with its retention) is used instead of awsx's default.
			LogGroup: &awsx.DefaultLogGroupArgs{Skip: pulumi.BoolRef(true)},
			RuntimePlatform: &ecs.TaskDefinitionRuntimePlatformArgs{
				CpuArchitecture:       pulumi.String(args.CPUArchitecture),
				OperatingSystemFamily: pulumi.String("LINUX"),
			},
			Tags: args.Tags,
		},
		Tags: args.Tags,
	}
	if len(args.RedeployOn) > 0 {
		svcArgs.ForceNewDeployment = pulumi.Bool(true)
		svcArgs.Triggers = pulumi.StringMap(args.RedeployOn)
	}
	if args.TargetGroup != nil {
		svcArgs.LoadBalancers = ecs.ServiceLoadBalancerArray{&ecs.ServiceLoadBalancerArgs{
			TargetGroupArn: args.TargetGroup.Arn,
			ContainerName:  pulumi.String(name),
			ContainerPort:  pulumi.Int(args.Port),
		}}
		svcArgs.HealthCheckGracePeriodSeconds = pulumi.Int(60)
	}
	if s.Discovery != nil {
		svcArgs.ServiceRegistries = &ecs.ServiceServiceRegistriesArgs{RegistryArn: s.Discovery.Arn}
	}
	var err error
	s.Service, err = ecsx.NewFargateService(ctx, name, svcArgs, parent, pulumi.DependsOn(args.DependsOn))
	if err != nil {
		return fmt.Errorf("create fargate service %s: %w", name, err)
	}
	return nil
}

func (s *Service) autoscaling(ctx *pulumi.Context, name string, args *ServiceArgs, parent pulumi.ResourceOption) error {
	var err error
	s.ScalingTarget, err = appautoscaling.NewTarget(ctx, name+"-scaling", &appautoscaling.TargetArgs{
		ServiceNamespace:  pulumi.String("ecs"),
		ScalableDimension: pulumi.String("ecs:service:DesiredCount"),
		ResourceId:        pulumi.Sprintf("service/%s/%s", args.Cluster.Name, name),
		MinCapacity:       pulumi.Int(args.MinCapacity),
		MaxCapacity:       pulumi.Int(args.MaxCapacity),
		Tags:              args.Tags,
	}, parent, pulumi.DependsOn([]pulumi.Resource{s.Service}))
	if err != nil {
		return fmt.Errorf("create scaling target %s: %w", name, err)
	}
	s.ScalingPolicy, err = appautoscaling.NewPolicy(ctx, name+"-cpu", &appautoscaling.PolicyArgs{
		PolicyType:        pulumi.String("TargetTrackingScaling"),
		ServiceNamespace:  s.ScalingTarget.ServiceNamespace,
		ScalableDimension: s.ScalingTarget.ScalableDimension,
		ResourceId:        s.ScalingTarget.ResourceId,
		TargetTrackingScalingPolicyConfiguration: &appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs{
			PredefinedMetricSpecification: &appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs{
				PredefinedMetricType: pulumi.String("ECSServiceAverageCPUUtilization"),
			},
			TargetValue:      pulumi.Float64(float64(args.CPUTargetUtilization)),
			ScaleOutCooldown: pulumi.Int(60),
			ScaleInCooldown:  pulumi.Int(300),
		},
	}, parent)
	if err != nil {
		return fmt.Errorf("create scaling policy %s: %w", name, err)
	}
	return nil
}
