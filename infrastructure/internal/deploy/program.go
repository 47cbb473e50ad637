// Package deploy is the Pulumi program that runs orderflow on AWS ECS Fargate.
//
// One ComponentResource per concern: Network (VPC, security groups, service discovery),
// Database (RDS PostgreSQL), Broker (Amazon MQ for RabbitMQ), Gateway (the public ALB,
// in front of Kong only) and Service (image, roles, logs, Fargate service, autoscaling),
// used for orders, invoices and Kong. Every credential lives in Secrets Manager and
// reaches containers through their `secrets` field; none is in an environment variable
// or a stack output.
package deploy

import (
	"fmt"
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
}

// Apps are the application services, in deployment order. Their names are also the
// Cloud Map service names, i.e. the host names Kong uses in kong/kong.yml.
var Apps = []App{
	{Name: "orders", Port: 3333, Dockerfile: "apps/orders/Dockerfile"},
	{Name: "invoices", Port: 3334, Dockerfile: "apps/invoices/Dockerfile"},
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
		VpcID:           d.Network.VpcID,
		PublicSubnetIDs: d.Network.PublicSubnetIDs,
		SecurityGroupID: d.Network.LoadBalancerSG.ID(),
		CertificateArn:  cfg.CertificateArn,
		DomainName:      cfg.DomainName,
		Tags:            tags,
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
		env := map[string]pulumi.StringInput{
			"PORT":                     pulumi.String(strconv.Itoa(a.Port)),
			"HTTP_HOST":                pulumi.String("0.0.0.0"), // the services listen on 127.0.0.1 unless told
			"LOG_LEVEL":                pulumi.String(cfg.LogLevel),
			"OTEL_SERVICE_NAME":        pulumi.String(a.Name),
			"OTEL_RESOURCE_ATTRIBUTES": pulumi.String("deployment.environment.name=" + ctx.Stack()),
			"OTEL_TRACES_SAMPLER":      pulumi.String("parentbased_traceidratio"),
			"OTEL_TRACES_SAMPLER_ARG":  pulumi.String(cfg.TraceSampleRatio),
			// The service creates its own database (CREATE DATABASE through the
			// "postgres" database, with DATABASE_URL's credentials) when it is missing.
			"DATABASE_CREATE": pulumi.String("true"),
			// A soft limit for the Go heap well inside the task's memory: the
			// runtime collects harder as it nears it, rather than be killed.
			"GOMEMLIMIT": pulumi.String(goMemLimit(cfg.TaskMemory)),
		}
		if cfg.OTLPEndpoint != "" {
			env["OTEL_EXPORTER_OTLP_ENDPOINT"] = pulumi.String(cfg.OTLPEndpoint)
		}
		args := common()
		args.Dockerfile = repoRoot + "/" + a.Dockerfile
		args.Port = a.Port
		args.HealthCheck = appHealthCheck
		args.Environment = env
		args.Secrets = map[string]pulumi.StringOutput{
			"DATABASE_URL": conn.URL.Arn(),
			"BROKER_URL":   d.Broker.URL.Arn(),
		}
		args.SecurityGroupID = d.Network.AppSGs[a.Name].ID()
		args.Namespace = d.Network.Namespace
		args.RedeployOn = map[string]pulumi.StringInput{
			"databaseUrl": conn.URL.Version.VersionId,
			"brokerUrl":   d.Broker.URL.Version.VersionId,
		}
		args.DependsOn = []pulumi.Resource{d.Network.DNSSearch, conn.URL.Version, d.Broker.URL.Version}
		svc, err := NewService(ctx, a.Name, &args)
		if err != nil {
			return nil, err
		}
		d.Services[a.Name] = svc
	}

	kong := common()
	kong.Dockerfile = repoRoot + "/" + kongDockerfile
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
	}
	kong.SecurityGroupID = d.Network.KongSG.ID()
	kong.TargetGroup = d.Gateway.KongTargets
	kong.DependsOn = append([]pulumi.Resource{d.Network.DNSSearch}, d.Gateway.Listeners...)
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
	dbHosts, dbURLSecrets, dbMasterSecrets := pulumi.StringMap{}, pulumi.StringMap{}, pulumi.StringMap{}
	for _, name := range sortedKeys(d.Database.Connections) {
		c := d.Database.Connections[name]
		dbHosts[name] = c.Host
		dbURLSecrets[name] = c.URL.Arn()
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
		"databaseUrlSecretArns":    dbURLSecrets,
		"databaseMasterSecretArns": dbMasterSecrets,
		"brokerEndpoint":           d.Broker.Endpoint,
		"brokerUrlSecretArn":       d.Broker.URL.Arn(),
	}
}

// goMemLimit is the Go runtime's soft memory limit for a task of taskMemory
// MiB: three quarters of it, the rest left to the runtime's own overhead
// outside the heap limit's reach (stacks, binary, page tables) and the
// agent.
func goMemLimit(taskMemory int) string {
	return strconv.Itoa(taskMemory*3/4) + "MiB"
}
