package deploy

import (
	"context"
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
	// Secrets maps variable names to Secrets Manager secrets (whole, or one JSON key).
	// They are injected through the container definition's `secrets` field: ECS
	// resolves them when a task starts, and the values are never in the task
	// definition. A secret rotated in Secrets Manager reaches every task started after.
	Secrets map[string]SecretRef
	// ReadonlyRootFilesystem mounts the app container's root file system read-only.
	ReadonlyRootFilesystem bool
	// Init, when set, runs to success in each task before the app container starts
	// (the migration step).
	Init *ContainerSpec
	// Collector, when set, is the image of an OpenTelemetry collector sidecar the app
	// exports to on localhost:4317/4318.
	Collector string
	// TaskPolicy is the application's own IAM policy (empty: none; the services call
	// no AWS API themselves, the collector sidecar does).
	TaskPolicy []policyStatement
	// ImageTag tags the pushed image; the repository's tags are immutable.
	ImageTag string

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
	// Backlog, when set, adds a second scaling policy that follows the service's
	// handler queue: ready messages per running task.
	Backlog          *BacklogScaling
	LogRetentionDays int
	Region           string
	// RedeployOn forces a new deployment when one of its values changes (for example a
	// secret version), since tasks read secrets only when they start.
	RedeployOn map[string]pulumi.StringInput
	DependsOn  []pulumi.Resource
	Tags       pulumi.StringMap
}

// SecretRef is a Secrets Manager secret, or one key of its JSON value.
type SecretRef struct {
	Arn pulumi.StringOutput
	Key string // empty: the whole value
}

// valueFrom is what ECS's `secrets` field takes: the ARN, or ARN:key:: for one
// JSON key of the current version.
func (r SecretRef) valueFrom() pulumi.StringOutput {
	if r.Key == "" {
		return r.Arn
	}
	return pulumi.Sprintf("%s:%s::", r.Arn, r.Key)
}

// ContainerSpec is a second container of the task, from the same image.
type ContainerSpec struct {
	Name        string
	Command     []string
	Environment map[string]pulumi.StringInput
	Secrets     map[string]SecretRef
}

// BacklogScaling scales a consumer on its queue's ready messages per task.
type BacklogScaling struct {
	BrokerName  pulumi.StringInput
	VirtualHost string
	Queue       string
	// TargetPerTask is the ready messages per running task to keep to.
	TargetPerTask int
}

// collectorName is the OpenTelemetry collector sidecar's container.
const collectorName = "otel-collector"

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
	BacklogPolicy *appautoscaling.Policy
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
		// A pushed tag never moves: each build of other sources gets its own
		// (ServiceArgs.ImageTag), and tasks run the image by digest.
		ImageTagMutability:         pulumi.String("IMMUTABLE"),
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
		ImageTag:      pulumi.StringPtr(args.ImageTag),
	}, parent)
	if err != nil {
		return fmt.Errorf("build image %s: %w", name, err)
	}
	return nil
}

// roles creates the execution role (used by the ECS agent: image pull, logs, secrets of
// this service only) and the task role (used by the task's containers: TaskPolicy, that
// is the collector's X-Ray and CloudWatch rights, or nothing).
func (s *Service) roles(ctx *pulumi.Context, name string, args *ServiceArgs, parent pulumi.ResourceOption) error {
	var err error
	s.ExecutionRole, err = newTaskRole(ctx, name+"-execution", "ECS agent role of orderflow "+name, args.Tags, parent)
	if err != nil {
		return err
	}
	s.TaskRole, err = newTaskRole(ctx, name+"-task", "Application role of orderflow "+name, args.Tags, parent)
	if err != nil {
		return err
	}
	if len(args.TaskPolicy) > 0 {
		doc, err := marshalPolicy(policyDocument{Version: "2012-10-17", Statement: args.TaskPolicy})
		if err != nil {
			return err
		}
		if _, err := iam.NewRolePolicy(ctx, name+"-task", &iam.RolePolicyArgs{
			Role:   s.TaskRole.ID(),
			Policy: pulumi.String(doc),
		}, parent); err != nil {
			return fmt.Errorf("create task policy %s: %w", name, err)
		}
	}

	var arns []pulumi.StringOutput
	for _, k := range sortedKeys(args.Secrets) {
		arns = append(arns, args.Secrets[k].Arn)
	}
	if args.Init != nil {
		for _, k := range sortedKeys(args.Init.Secrets) {
			arns = append(arns, args.Init.Secrets[k].Arn)
		}
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

func secrets(refs map[string]SecretRef) ecsx.TaskDefinitionSecretArray {
	out := ecsx.TaskDefinitionSecretArray{}
	for _, k := range sortedKeys(refs) {
		out = append(out, ecsx.TaskDefinitionSecretArgs{Name: pulumi.String(k), ValueFrom: refs[k].valueFrom()})
	}
	return out
}

// ignoreDesiredCount keeps the desired count of the ECS service awsx creates
// out of Pulumi's diff: autoscaling owns it once the service exists, and a
// deploy must not scale a busy service back to its minimum. It is a
// transform because awsx's own options do not reach its child resources.
func ignoreDesiredCount(_ context.Context, args *pulumi.ResourceTransformArgs) *pulumi.ResourceTransformResult {
	if args.Type != "aws:ecs/service:Service" {
		return nil
	}
	opts := args.Opts
	opts.IgnoreChanges = append(slices.Clone(opts.IgnoreChanges), "desiredCount")
	return &pulumi.ResourceTransformResult{Props: args.Props, Opts: opts}
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
		StopTimeout:            pulumi.Int(60),
		LogConfiguration:       s.logConfig(args, name),
		ReadonlyRootFilesystem: pulumi.Bool(args.ReadonlyRootFilesystem),
	}
	containers := map[string]ecsx.TaskDefinitionContainerDefinitionArgs{}
	var deps ecsx.TaskDefinitionContainerDependencyArray
	if args.Init != nil {
		containers[args.Init.Name] = ecsx.TaskDefinitionContainerDefinitionArgs{
			Name:                   pulumi.String(args.Init.Name),
			Image:                  s.Image.ImageUri,
			Command:                pulumi.ToStringArray(args.Init.Command),
			Essential:              pulumi.Bool(false), // it exits when done
			Environment:            environment(args.Init.Environment),
			Secrets:                secrets(args.Init.Secrets),
			LogConfiguration:       s.logConfig(args, args.Init.Name),
			ReadonlyRootFilesystem: pulumi.Bool(args.ReadonlyRootFilesystem),
		}
		deps = append(deps, ecsx.TaskDefinitionContainerDependencyArgs{
			ContainerName: pulumi.String(args.Init.Name), Condition: pulumi.String("SUCCESS"),
		})
	}
	if args.Collector != "" {
		containers[collectorName] = ecsx.TaskDefinitionContainerDefinitionArgs{
			Name:  pulumi.String(collectorName),
			Image: pulumi.String(args.Collector),
			// The image's ECS configuration: OTLP in on 4317/4318, traces to
			// X-Ray, metrics to CloudWatch (EMF).
			Command:          pulumi.ToStringArray([]string{"--config=/etc/ecs/ecs-default-config.yaml"}),
			Essential:        pulumi.Bool(true),
			LogConfiguration: s.logConfig(args, collectorName),
		}
		deps = append(deps, ecsx.TaskDefinitionContainerDependencyArgs{
			ContainerName: pulumi.String(collectorName), Condition: pulumi.String("START"),
		})
	}
	if len(deps) > 0 {
		container.DependsOn = deps
	}
	containers[name] = container

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
	s.Service, err = ecsx.NewFargateService(ctx, name, svcArgs, parent, pulumi.DependsOn(args.DependsOn),
		pulumi.Transforms([]pulumi.ResourceTransform{ignoreDesiredCount}))
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
	if args.Backlog != nil {
		if s.BacklogPolicy, err = s.backlogPolicy(ctx, name, args, parent); err != nil {
			return err
		}
	}
	return nil
}

// backlogPolicy tracks the ready messages of the service's handler queue per
// running task (Amazon MQ's queue metric over Container Insights' task count),
// so that consumers scale out on a backlog that costs them little CPU, such as
// one that waits on the database.
func (s *Service) backlogPolicy(ctx *pulumi.Context, name string, args *ServiceArgs, parent pulumi.ResourceOption) (*appautoscaling.Policy, error) {
	type dims = appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatMetricDimensionArray
	type dim = appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatMetricDimensionArgs
	stat := func(id, namespace, metric string, d dims) *appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricArgs {
		return &appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricArgs{
			Id: pulumi.String(id),
			MetricStat: &appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatArgs{
				Metric: &appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatMetricArgs{
					Namespace: pulumi.String(namespace), MetricName: pulumi.String(metric), Dimensions: d,
				},
				Stat: pulumi.String("Average"),
			},
			ReturnData: pulumi.Bool(false),
		}
	}
	b := args.Backlog
	policy, err := appautoscaling.NewPolicy(ctx, name+"-backlog", &appautoscaling.PolicyArgs{
		PolicyType:        pulumi.String("TargetTrackingScaling"),
		ServiceNamespace:  s.ScalingTarget.ServiceNamespace,
		ScalableDimension: s.ScalingTarget.ScalableDimension,
		ResourceId:        s.ScalingTarget.ResourceId,
		TargetTrackingScalingPolicyConfiguration: &appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs{
			CustomizedMetricSpecification: &appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationArgs{
				Metrics: appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricArray{
					stat("ready", "AWS/AmazonMQ", "MessageReadyCount", dims{
						dim{Name: pulumi.String("Broker"), Value: b.BrokerName},
						dim{Name: pulumi.String("VirtualHost"), Value: pulumi.String(b.VirtualHost)},
						dim{Name: pulumi.String("Queue"), Value: pulumi.String(b.Queue)},
					}),
					stat("tasks", "ECS/ContainerInsights", "RunningTaskCount", dims{
						dim{Name: pulumi.String("ClusterName"), Value: args.Cluster.Name},
						dim{Name: pulumi.String("ServiceName"), Value: pulumi.String(name)},
					}),
					&appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricArgs{
						Id:         pulumi.String("backlog_per_task"),
						Expression: pulumi.String("ready / tasks"),
						Label:      pulumi.String("ready messages per task"),
						ReturnData: pulumi.Bool(true),
					},
				},
			},
			TargetValue:      pulumi.Float64(float64(b.TargetPerTask)),
			ScaleOutCooldown: pulumi.Int(60),
			ScaleInCooldown:  pulumi.Int(300),
		},
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("create backlog scaling policy %s: %w", name, err)
	}
	return policy, nil
}
