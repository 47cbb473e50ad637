// Package deploy is the Pulumi program that runs orderflow on AWS ECS Fargate.
//
// One ComponentResource per concern: Network (VPC, security groups, service discovery),
// Database (RDS PostgreSQL), Broker (Amazon MQ for RabbitMQ), Gateway (the public ALB,
// in front of Kong only) and Service (image, roles, logs, Fargate service, autoscaling),
// used for orders, invoices and Kong. Every credential lives in Secrets Manager and
// reaches containers through their `secrets` field; none is in a task definition's
// environment or a stack output. The Kong consumers' API keys are one such secret, which
// ECS injects into the Kong task as the environment variables kong/kong.yml refers to.
package deploy

import (
	"fmt"
	"maps"
	"strconv"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ecs"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// App describes one application service of the repository.
type App struct {
	Name string
	// Port is the HTTP port (env PORT).
	Port int
	// Dockerfile is relative to the repository root.
	Dockerfile string
	// Queue is the handler queue the service consumes, which its backlog scaling
	// follows: events.<Event>_<handler name> (pkg/messaging, apps/*/internal/consumers).
	Queue string
}

// Apps are the application services, in deployment order. Their names are also the
// Cloud Map service names, i.e. the host names Kong uses in kong/kong.yml.
var Apps = []App{
	{Name: "orders", Port: 3333, Dockerfile: "apps/orders/Dockerfile", Queue: "events.InvoiceIssued_orders.MarkOrderInvoicedOnInvoiceIssued"},
	{Name: "invoices", Port: 3334, Dockerfile: "apps/invoices/Dockerfile", Queue: "events.OrderPlaced_invoices.IssueInvoiceOnOrderPlaced"},
}

const (
	// repoRoot is the Docker build context, relative to infrastructure/.
	repoRoot = ".."
	// kongName is the Kong service and container name.
	kongName       = "kong"
	kongDockerfile = "kong/Dockerfile"
)

// appHealthCheck runs the binary's own probe (GET /healthz on $PORT), so the images
// need no shell or curl.
var appHealthCheck = []string{"CMD", "/app", "healthcheck"}

// Deployment holds the components of a stack.
type Deployment struct {
	Network  *Network
	Database *Database
	Broker   *Broker
	Gateway  *Gateway
	Cluster  *ecs.Cluster
	// KongAPIKeys holds the consumers' API keys the Kong tasks read.
	KongAPIKeys *URLSecret
	// Services are keyed by name: orders, invoices, kong.
	Services map[string]*Service
}

// Program is the function `pulumi up` runs: it loads the configuration, deploys and
// exports the stack outputs.
func Program(ctx *pulumi.Context) error {
	cfg, err := LoadConfig(ctx)
	if err != nil {
		return err
	}
	d, err := Deploy(ctx, cfg)
	if err != nil {
		return err
	}
	for k, v := range d.Outputs() {
		ctx.Export(k, v)
	}
	return nil
}

// Deploy creates every resource of the stack from a validated configuration.
func Deploy(ctx *pulumi.Context, cfg *Config) (*Deployment, error) {
	tags := pulumi.StringMap{
		"project":    pulumi.String("orderflow"),
		"stack":      pulumi.String(ctx.Stack()),
		"managed-by": pulumi.String("pulumi"),
	}
	region, err := aws.GetRegion(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("get aws region: %w", err)
	}

	appPorts := map[string]int{}
	databases := make([]string, 0, len(Apps))
	for _, a := range Apps {
		appPorts[a.Name] = a.Port
		databases = append(databases, a.Name)
	}

	d := &Deployment{Services: map[string]*Service{}}
	d.Network, err = NewNetwork(ctx, "network", &NetworkArgs{
		Cidr:              cfg.VpcCidr,
		AvailabilityZones: cfg.AvailabilityZones,
		NatGateways:       cfg.NatGateways,
		Namespace:         cfg.Namespace,
		AppPorts:          appPorts,
		HTTPS:             cfg.HTTPS(),
		OTLPPort:          cfg.OTLPPort(),
		Region:            region.Name,
		Tags:              tags,
	})
	if err != nil {
		return nil, err
	}
	d.Database, err = NewDatabase(ctx, "db", &DatabaseArgs{
		Databases:            databases,
		PerService:           cfg.DBInstancePerService,
		SubnetIDs:            d.Network.PrivateSubnetIDs,
		SecurityGroupID:      d.Network.DatabaseSG.ID(),
		InstanceClass:        cfg.DBInstanceClass,
		EngineVersion:        cfg.DBEngineVersion,
		AllocatedStorage:     cfg.DBAllocatedStorage,
		MaxAllocatedStorage:  cfg.DBMaxAllocatedStorage,
		MultiAZ:              cfg.DBMultiAZ,
		Username:             cfg.DBUsername,
		BackupRetentionDays:  cfg.DBBackupRetentionDays,
		DeletionProtection:   cfg.DBDeletionProtection,
		SkipFinalSnapshot:    cfg.DBSkipFinalSnapshot,
		PerformanceInsights:  cfg.DBPerformanceInsights,
		PasswordRotationDays: cfg.DBPasswordRotationDays,
		Tags:                 tags,
	})
	if err != nil {
		return nil, err
	}
	d.Broker, err = NewBroker(ctx, "mq", &BrokerArgs{
		DeploymentMode:  cfg.MQDeploymentMode,
		InstanceType:    cfg.MQInstanceType,
		EngineVersion:   cfg.MQEngineVersion,
		SubnetIDs:       d.Network.PrivateSubnetIDs,
		SecurityGroupID: d.Network.BrokerSG.ID(),
		Username:        cfg.MQUsername,
		Password:        cfg.MQPassword,
		Tags:            tags,
	})
	if err != nil {
		return nil, err
	}
	d.Gateway, err = NewGateway(ctx, "gateway", &GatewayArgs{
		VpcID:              d.Network.VpcID,
		PublicSubnetIDs:    d.Network.PublicSubnetIDs,
		SecurityGroupID:    d.Network.LoadBalancerSG.ID(),
		CertificateArn:     cfg.CertificateArn,
		DomainName:         cfg.DomainName,
		DeletionProtection: cfg.ALBDeletionProtection,
		AccessLogs:         cfg.ALBAccessLogs,
		Tags:               tags,
	})
	if err != nil {
		return nil, err
	}
	d.Cluster, err = ecs.NewCluster(ctx, "cluster", &ecs.ClusterArgs{
		Settings: ecs.ClusterSettingArray{&ecs.ClusterSettingArgs{
			Name:  pulumi.String("containerInsights"),
			Value: pulumi.String("enabled"),
		}},
		Tags: tags,
	})
	if err != nil {
		return nil, fmt.Errorf("create ecs cluster: %w", err)
	}

	common := func() ServiceArgs {
		return ServiceArgs{
			Cluster:              d.Cluster,
			BuildContext:         repoRoot,
			Platform:             cfg.Platform(),
			CPUArchitecture:      cfg.CPUArchitecture,
			TaskCPU:              cfg.TaskCPU,
			TaskMemory:           cfg.TaskMemory,
			SubnetIDs:            d.Network.PrivateSubnetIDs,
			MinCapacity:          cfg.MinCapacity,
			MaxCapacity:          cfg.MaxCapacity,
			CPUTargetUtilization: cfg.CPUTargetUtilization,
			LogRetentionDays:     cfg.LogRetentionDays,
			Region:               region.Name,
			Tags:                 tags,
		}
	}

	for _, a := range Apps {
		conn := d.Database.Connections[a.Name]
		memory := cfg.TaskMemory
		if cfg.Telemetry == TelemetryCollector {
			memory -= collectorMemory
		}
		env := map[string]pulumi.StringInput{
			"PORT":                     pulumi.String(strconv.Itoa(a.Port)),
			"HTTP_HOST":                pulumi.String("0.0.0.0"), // the services listen on 127.0.0.1 unless told
			"LOG_LEVEL":                pulumi.String(cfg.LogLevel),
			"OTEL_SERVICE_NAME":        pulumi.String(a.Name),
			"OTEL_RESOURCE_ATTRIBUTES": pulumi.String("deployment.environment.name=" + ctx.Stack()),
			"OTEL_TRACES_SAMPLER":      pulumi.String("parentbased_traceidratio"),
			"OTEL_TRACES_SAMPLER_ARG":  pulumi.String(cfg.TraceSampleRatio),
			// The migration container creates the database; the service's own role may not.
			"DATABASE_CREATE": pulumi.String("false"),
			// A soft limit for the Go heap well inside the task's memory: the
			// runtime collects harder as it nears it, rather than be killed.
			"GOMEMLIMIT": pulumi.String(goMemLimit(memory)),
			"GOMAXPROCS": pulumi.String(goMaxProcs(cfg.TaskCPU)),
			// Both services declare every queue, so both get the same type.
			"BROKER_QUEUE_TYPE": pulumi.String(cfg.MQQueueType),
		}
		for k, v := range telemetryEnv(cfg) {
			env[k] = pulumi.String(v)
		}
		// The service assembles its database URL from these (pkg/database.URLFromParts),
		// with the password read from Secrets Manager when the task starts.
		dbEnv := map[string]pulumi.StringInput{
			"DATABASE_HOST": conn.Host,
			"DATABASE_NAME": pulumi.String(conn.Database),
			"DATABASE_USER": pulumi.String(conn.AppUser),
		}
		maps.Copy(env, dbEnv)
		appPassword := SecretRef{Arn: conn.AppSecret.Arn(), Key: "password"}

		args := common()
		args.Dockerfile = repoRoot + "/" + a.Dockerfile
		if args.ImageTag, err = sourceTag(appSources(a)); err != nil {
			return nil, err
		}
		args.Port = a.Port
		args.HealthCheck = appHealthCheck
		args.Environment = env
		args.Secrets = map[string]SecretRef{
			"DATABASE_PASSWORD": appPassword,
			"BROKER_URL":        {Arn: d.Broker.URL.Arn()},
		}
		args.ReadonlyRootFilesystem = true
		// The migration step: as the RDS master user (its password straight from the
		// RDS-managed secret, so a rotation changes nothing here), it sets up the
		// service's owner and login roles and migrates as the owner, then exits.
		initEnv := map[string]pulumi.StringInput{
			"LOG_LEVEL":           pulumi.String(cfg.LogLevel),
			"DATABASE_ADMIN_USER": pulumi.String(conn.MasterUsername),
			"DATABASE_OWNER":      pulumi.String(a.Name + "_owner"),
		}
		maps.Copy(initEnv, dbEnv)
		args.Init = &ContainerSpec{
			Name:        migrateContainer,
			Command:     []string{"/app", "migrate"},
			Environment: initEnv,
			Secrets: map[string]SecretRef{
				"DATABASE_PASSWORD":       appPassword,
				"DATABASE_ADMIN_PASSWORD": {Arn: conn.MasterSecretArn, Key: "password"},
			},
		}
		if cfg.Telemetry == TelemetryCollector {
			args.Collector = cfg.OTelCollectorImage
			args.TaskPolicy = collectorPolicy()
		}
		args.Backlog = &BacklogScaling{
			BrokerName: d.Broker.Broker.BrokerName, VirtualHost: "/", Queue: a.Queue, TargetPerTask: cfg.QueueBacklogTarget,
		}
		args.SecurityGroupID = d.Network.AppSGs[a.Name].ID()
		args.Namespace = d.Network.Namespace
		args.RedeployOn = map[string]pulumi.StringInput{
			"brokerUrl": d.Broker.URL.Version.VersionId,
		}
		args.DependsOn = []pulumi.Resource{d.Network.DNSSearch, conn.AppSecret.Version, d.Broker.URL.Version}
		svc, err := NewService(ctx, a.Name, &args)
		if err != nil {
			return nil, err
		}
		d.Services[a.Name] = svc
	}

	// The consumers' API keys: kong.yml refers to environment variables,
	// which the Kong task gets from one secret, one JSON member each.
	keyVars, err := KongKeyVariables()
	if err != nil {
		return nil, err
	}
	if d.KongAPIKeys, err = newKongAPIKeys(ctx, "kong-api-keys", keyVars, tags); err != nil {
		return nil, err
	}
	kong := common()
	kong.Dockerfile = repoRoot + "/" + kongDockerfile
	if kong.ImageTag, err = sourceTag(kongSources); err != nil {
		return nil, err
	}
	kong.TaskCPU, kong.TaskMemory = cfg.KongTaskCPU, cfg.KongTaskMemory
	kong.Port = KongProxyPort
	kong.HealthCheck = []string{"CMD", "kong", "health"}
	kong.Environment = map[string]pulumi.StringInput{
		"KONG_DATABASE":          pulumi.String("off"),
		"KONG_PROXY_LISTEN":      pulumi.String("0.0.0.0:" + strconv.Itoa(KongProxyPort)),
		"KONG_STATUS_LISTEN":     pulumi.String("0.0.0.0:" + strconv.Itoa(KongStatusPort)),
		"KONG_ADMIN_LISTEN":      pulumi.String("off"),
		"KONG_ADMIN_GUI_LISTEN":  pulumi.String("off"),
		"KONG_DNS_ORDER":         pulumi.String("LAST,A,CNAME"),
		"KONG_TRUSTED_IPS":       pulumi.String(cfg.VpcCidr),
		"KONG_REAL_IP_HEADER":    pulumi.String("X-Forwarded-For"),
		"KONG_REAL_IP_RECURSIVE": pulumi.String("on"),
		// Fargate shows the host's CPUs, not the task's: "auto" would start a
		// worker (and its memory) per host CPU.
		"KONG_NGINX_WORKER_PROCESSES": pulumi.String(strconv.Itoa(cfg.KongWorkers)),
	}
	kong.Secrets = map[string]SecretRef{}
	for _, v := range keyVars {
		kong.Secrets[v] = SecretRef{Arn: d.KongAPIKeys.Arn(), Key: v}
	}
	kong.SecurityGroupID = d.Network.KongSG.ID()
	kong.TargetGroup = d.Gateway.KongTargets
	kong.DependsOn = append([]pulumi.Resource{d.Network.DNSSearch, d.KongAPIKeys.Version}, d.Gateway.Listeners...)
	if d.Services[kongName], err = NewService(ctx, kongName, &kong); err != nil {
		return nil, err
	}
	return d, nil
}

// Outputs are the stack outputs. None of them holds a credential: secrets are exported
// by ARN only.
func (d *Deployment) Outputs() pulumi.Map {
	repos, images, logs := pulumi.StringMap{}, pulumi.StringMap{}, pulumi.StringMap{}
	for _, name := range sortedKeys(d.Services) {
		s := d.Services[name]
		repos[name] = s.Repository.RepositoryUrl
		images[name] = s.Image.ImageUri
		logs[name] = s.LogGroup.Name
	}
	dbHosts, dbRoleSecrets, dbMasterSecrets := pulumi.StringMap{}, pulumi.StringMap{}, pulumi.StringMap{}
	for _, name := range sortedKeys(d.Database.Connections) {
		c := d.Database.Connections[name]
		dbHosts[name] = c.Host
		dbRoleSecrets[name] = c.AppSecret.Arn()
		dbMasterSecrets[name] = c.MasterSecretArn
	}
	return pulumi.Map{
		"kongUrl":                  d.Gateway.URL,
		"loadBalancerDnsName":      d.Gateway.LoadBalancer.DnsName,
		"vpcId":                    d.Network.VpcID,
		"serviceNamespace":         d.Network.Namespace.Name,
		"clusterName":              d.Cluster.Name,
		"repositoryUrls":           repos,
		"images":                   images,
		"logGroups":                logs,
		"databaseHosts":            dbHosts,
		"databaseRoleSecretArns":   dbRoleSecrets,
		"databaseMasterSecretArns": dbMasterSecrets,
		"brokerEndpoint":           d.Broker.Endpoint,
		"brokerUrlSecretArn":       d.Broker.URL.Arn(),
		"kongApiKeysSecretArn":     d.KongAPIKeys.Arn(),
	}
}

// goMemLimit is the Go runtime's soft memory limit for a task of taskMemory
// MiB: three quarters of it, the rest left to the runtime's own overhead
// outside the heap limit's reach (stacks, binary, page tables) and the
// agent.
func goMemLimit(taskMemory int) string {
	return strconv.Itoa(taskMemory*3/4) + "MiB"
}

// goMaxProcs is how many threads run Go code at once in a task of taskCPU
// CPU units (1,024 to a vCPU): one per whole vCPU, at least one. Go's own
// default follows the task's CPU limit rounded up but never below 2, so a
// task of a quarter or half of a vCPU would run two at once, and hand work
// between two threads on a CPU that has room for one. One P per process
// cost the services a tenth less CPU per order where they got less than a
// core each (docs/performance.md, the ablation).
func goMaxProcs(taskCPU int) string {
	return strconv.Itoa(max(1, taskCPU/1024))
}

// migrateContainer is the name of the migration step in the app tasks.
const migrateContainer = "migrate"

// collectorMemory is what the app tasks leave the collector sidecar, in MiB,
// when they set the Go runtime's memory limit.
const collectorMemory = 128

// telemetryEnv is where the apps send traces and metrics: to the collector
// sidecar on localhost, to the configured OTLP endpoint, or nowhere. /metrics
// is served in every case.
func telemetryEnv(cfg *Config) map[string]string {
	switch cfg.Telemetry {
	case TelemetryOff:
		return map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
	case TelemetryOTLP:
		return map[string]string{
			"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
			"OTEL_EXPORTER_OTLP_ENDPOINT": cfg.OTLPEndpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		}
	default:
		return map[string]string{
			"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		}
	}
}

// collectorPolicy is what the AWS Distro for OpenTelemetry collector needs:
// X-Ray for traces, CloudWatch Logs (embedded metric format) for metrics, in
// the log group its ECS configuration writes to.
func collectorPolicy() []policyStatement {
	return []policyStatement{
		{
			Sid:    "XRay",
			Effect: "Allow",
			Action: []string{
				"xray:PutTraceSegments", "xray:PutTelemetryRecords",
				"xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries",
			},
			Resource: []string{"*"}, // X-Ray's actions take no resource
		},
		{
			Sid:      "MetricsAsEMF",
			Effect:   "Allow",
			Action:   []string{"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams", "logs:DescribeLogGroups"},
			Resource: []string{"arn:aws:logs:*:*:log-group:/aws/ecs/application/metrics", "arn:aws:logs:*:*:log-group:/aws/ecs/application/metrics:*"},
		},
	}
}
