package deploy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Deployment modes of the Amazon MQ broker.
const (
	// BrokerSingleInstance runs one broker node in one private subnet.
	BrokerSingleInstance = "SINGLE_INSTANCE"
	// BrokerClusterMultiAZ runs a three-node RabbitMQ cluster across availability zones.
	BrokerClusterMultiAZ = "CLUSTER_MULTI_AZ"
)

// Config is the validated stack configuration. LoadConfig reads it once; nothing else
// reads Pulumi config.
type Config struct {
	// Network.
	VpcCidr           string
	AvailabilityZones int
	NatGateways       string // "Single" or "OnePerAz", as awsx spells the strategy.
	Namespace         string // Cloud Map private DNS namespace and the VPC's DNS search domain.

	// Load balancer.
	CertificateArn string // empty: plain HTTP with a warning.
	DomainName     string // optional host name for the Kong URL output.

	// Compute.
	CPUArchitecture string // X86_64 or ARM64.
	TaskCPU         int    // orders and invoices
	TaskMemory      int
	KongTaskCPU     int
	KongTaskMemory  int
	KongWorkers     int // KONG_NGINX_WORKER_PROCESSES
	// QueueBacklogTarget is the ready messages per task in a consumer's
	// handler queue that the backlog scaling policy keeps to.
	QueueBacklogTarget   int
	MinCapacity          int
	MaxCapacity          int
	CPUTargetUtilization int
	LogRetentionDays     int
	LogLevel             string
	// Telemetry is where traces and metrics go: TelemetryCollector (an AWS
	// Distro for OpenTelemetry sidecar, to X-Ray and CloudWatch),
	// TelemetryOTLP (OTLPEndpoint) or TelemetryOff (exporters none).
	Telemetry          string
	OTLPEndpoint       string
	OTelCollectorImage string
	// TraceSampleRatio is the share of traces kept (parent-based): tracing
	// every order costs about 15 % of capacity (docs/performance.md).
	TraceSampleRatio string

	// Database.
	DBInstancePerService  bool
	DBInstanceClass       string
	DBEngineVersion       string
	DBAllocatedStorage    int
	DBMaxAllocatedStorage int
	DBMultiAZ             bool
	DBUsername            string
	DBBackupRetentionDays int
	DBDeletionProtection  bool
	DBSkipFinalSnapshot   bool
	DBPerformanceInsights bool
	// DBPasswordRotationDays is how often RDS rotates the master password.
	// Tasks read it from the RDS-managed secret when they start, so a
	// rotation needs no deploy.
	DBPasswordRotationDays int

	// Load balancer (besides the certificate).
	ALBDeletionProtection bool
	ALBAccessLogs         bool

	// Broker.
	MQDeploymentMode string
	MQInstanceType   string
	MQEngineVersion  string
	MQUsername       string
	// MQQueueType is the services' BROKER_QUEUE_TYPE: quorum, or classic on
	// a SINGLE_INSTANCE broker (not replicated, redeliveries unbounded).
	MQQueueType string
	// MQPassword is the broker password, always a Pulumi secret.
	MQPassword pulumi.StringOutput
}

// Where the services' traces and metrics go.
const (
	TelemetryCollector = "collector"
	TelemetryOTLP      = "otlp"
	TelemetryOff       = "off"
)

// defaultOTelCollectorImage is the AWS Distro for OpenTelemetry collector the
// sidecar runs (its /etc/ecs/ecs-default-config.yaml: OTLP in, X-Ray and
// CloudWatch EMF out).
const defaultOTelCollectorImage = "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0"

// Platform returns the Docker platform matching the task CPU architecture.
func (c *Config) Platform() string {
	if c.CPUArchitecture == "ARM64" {
		return "linux/arm64"
	}
	return "linux/amd64"
}

// HTTPS reports whether the load balancer terminates TLS.
func (c *Config) HTTPS() bool { return c.CertificateArn != "" }

// OTLPPort returns the TCP port of the OTLP endpoint, or 0 when none is configured.
func (c *Config) OTLPPort() int {
	if c.OTLPEndpoint == "" {
		return 0
	}
	u, err := url.Parse(c.OTLPEndpoint)
	if err != nil {
		return 0
	}
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

var (
	// logRetentionDays are the values CloudWatch Logs accepts.
	logRetentionDays = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
	dbUsernameRE     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,62}$`)
	mqUsernameRE     = regexp.MustCompile(`^[A-Za-z0-9._~-]{2,100}$`)
	namespaceRE      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)
	certificateArnRE = regexp.MustCompile(`^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+$`)
)

// LoadConfig reads and validates the stack configuration (namespace = project name).
// It reports every problem at once, joined with errors.Join.
func LoadConfig(ctx *pulumi.Context) (*Config, error) {
	return load(&reader{ctx: ctx, ns: ctx.Project()})
}

func load(r *reader) (*Config, error) {
	c := &Config{
		VpcCidr:           r.str("vpcCidr", "10.0.0.0/16"),
		AvailabilityZones: r.integer("availabilityZones", 2, 2, 6),
		Namespace:         r.str("serviceNamespace", "orderflow.local"),

		CertificateArn:        r.str("certificateArn", ""),
		DomainName:            r.str("domainName", ""),
		ALBDeletionProtection: r.flag("albDeletionProtection", true),
		ALBAccessLogs:         r.flag("albAccessLogs", true),

		CPUArchitecture:      r.oneOf("cpuArchitecture", "X86_64", "X86_64", "ARM64"),
		TaskCPU:              r.integer("taskCpu", 256, 256, 16384),
		TaskMemory:           r.integer("taskMemory", 512, 512, 122880),
		KongTaskCPU:          r.integer("kongTaskCpu", 512, 256, 16384),
		KongTaskMemory:       r.integer("kongTaskMemory", 1024, 512, 122880),
		KongWorkers:          r.integer("kongWorkerProcesses", 1, 1, 64),
		MinCapacity:          r.integer("minCapacity", 2, 1, 100),
		MaxCapacity:          r.integer("maxCapacity", 4, 1, 100),
		CPUTargetUtilization: r.integer("cpuTargetUtilization", 60, 10, 90),
		QueueBacklogTarget:   r.integer("queueBacklogPerTask", 500, 1, 1000000),
		LogRetentionDays:     r.integer("logRetentionDays", 30, 1, 3653),
		LogLevel:             r.oneOf("logLevel", "info", "debug", "info", "warn", "error"),
		OTLPEndpoint:         r.str("otlpEndpoint", ""),
		OTelCollectorImage:   r.str("otelCollectorImage", defaultOTelCollectorImage),
		TraceSampleRatio:     r.str("traceSampleRatio", "0.1"),

		DBInstancePerService:  r.boolean("dbInstancePerService"),
		DBInstanceClass:       r.str("dbInstanceClass", "db.t4g.medium"),
		DBEngineVersion:       r.str("dbEngineVersion", "17"),
		DBAllocatedStorage:    r.integer("dbAllocatedStorage", 20, 20, 65536),
		DBMaxAllocatedStorage: r.integer("dbMaxAllocatedStorage", 100, 20, 65536),
		DBMultiAZ:             r.flag("dbMultiAz", true),
		DBUsername:            r.str("dbUsername", "orderflow"),
		DBBackupRetentionDays: r.integer("dbBackupRetentionDays", 7, 0, 35),
		DBDeletionProtection:  r.flag("dbDeletionProtection", true),
		DBSkipFinalSnapshot:   r.boolean("dbSkipFinalSnapshot"),
		DBPerformanceInsights: r.flag("dbPerformanceInsights", true),
		// Secrets Manager allows at most 1000 days.
		DBPasswordRotationDays: r.integer("dbPasswordRotationDays", 90, 1, 1000),

		MQDeploymentMode: r.oneOf("mqDeploymentMode", BrokerClusterMultiAZ, BrokerSingleInstance, BrokerClusterMultiAZ),
		MQInstanceType:   r.str("mqInstanceType", "mq.m5.large"),
		MQEngineVersion:  r.str("mqEngineVersion", "3.13"),
		MQUsername:       r.str("mqUsername", "orderflow"),
		MQQueueType:      r.oneOf("mqQueueType", "quorum", "quorum", "classic"),
	}
	switch nat := r.oneOf("natGateways", "onePerAz", "single", "onePerAz"); nat {
	case "onePerAz":
		c.NatGateways = "OnePerAz"
	default:
		c.NatGateways = "Single"
	}
	defaultTelemetry := TelemetryCollector
	if c.OTLPEndpoint != "" {
		defaultTelemetry = TelemetryOTLP
	}
	c.Telemetry = r.oneOf("telemetry", defaultTelemetry, TelemetryCollector, TelemetryOTLP, TelemetryOff)
	c.MQPassword = r.secret("mqPassword", validateMQPassword)
	validate(r, c)
	if len(r.errs) > 0 {
		return nil, fmt.Errorf("invalid stack configuration (pulumi config, namespace %q):\n%w", r.ns, errors.Join(r.errs...))
	}
	return c, nil
}

// validate checks the rules that span more than one key or go beyond a type and range.
func validate(r *reader, c *Config) {
	if _, n, err := net.ParseCIDR(c.VpcCidr); err != nil || n.IP.To4() == nil {
		r.fail("vpcCidr", "must be an IPv4 CIDR block such as 10.0.0.0/16, got %q", c.VpcCidr)
	} else if ones, _ := n.Mask.Size(); ones < 16 || ones > 20 {
		r.fail("vpcCidr", "prefix length must be between /16 and /20, got /%d", ones)
	}
	if !namespaceRE.MatchString(c.Namespace) {
		r.fail("serviceNamespace", "must be a lower-case DNS name with at least two labels, such as orderflow.local, got %q", c.Namespace)
	}
	if c.CertificateArn != "" && !certificateArnRE.MatchString(c.CertificateArn) {
		r.fail("certificateArn", "must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>), got %q", c.CertificateArn)
	}
	if err := fargateSize(c.TaskCPU, c.TaskMemory); err != nil {
		r.fail("taskMemory", "%v", err)
	}
	if err := fargateSize(c.KongTaskCPU, c.KongTaskMemory); err != nil {
		r.fail("kongTaskMemory", "%v", err)
	}
	if c.Telemetry == TelemetryOTLP && c.OTLPEndpoint == "" {
		r.fail("telemetry", "otlp needs otlpEndpoint")
	}
	if c.MaxCapacity < c.MinCapacity {
		r.fail("maxCapacity", "must be at least minCapacity (%d), got %d", c.MinCapacity, c.MaxCapacity)
	}
	if !slices.Contains(logRetentionDays, c.LogRetentionDays) {
		r.fail("logRetentionDays", "must be one of %v, got %d", logRetentionDays, c.LogRetentionDays)
	}
	if c.OTLPEndpoint != "" {
		u, err := url.Parse(c.OTLPEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			r.fail("otlpEndpoint", "must be an http(s) URL such as http://collector.example.internal:4318, got %q", c.OTLPEndpoint)
		}
	}
	if f, err := strconv.ParseFloat(c.TraceSampleRatio, 64); err != nil || f < 0 || f > 1 {
		r.fail("traceSampleRatio", "must be a number from 0 to 1 such as 0.1, got %q", c.TraceSampleRatio)
	}
	if !strings.HasPrefix(c.DBInstanceClass, "db.") {
		r.fail("dbInstanceClass", "must be an RDS instance class such as db.t4g.micro, got %q", c.DBInstanceClass)
	}
	if c.DBEngineVersion == "" {
		r.fail("dbEngineVersion", "must not be empty")
	}
	if c.DBMaxAllocatedStorage < c.DBAllocatedStorage {
		r.fail("dbMaxAllocatedStorage", "must be at least dbAllocatedStorage (%d), got %d", c.DBAllocatedStorage, c.DBMaxAllocatedStorage)
	}
	if !dbUsernameRE.MatchString(c.DBUsername) || slices.Contains([]string{"rdsadmin", "postgres", "admin"}, strings.ToLower(c.DBUsername)) {
		r.fail("dbUsername", "must start with a letter, hold only letters, digits and _, be at most 63 characters and not be a reserved name, got %q", c.DBUsername)
	}
	if !strings.HasPrefix(c.MQInstanceType, "mq.") {
		r.fail("mqInstanceType", "must be an Amazon MQ instance type such as mq.t3.micro, got %q", c.MQInstanceType)
	}
	if c.MQDeploymentMode == BrokerClusterMultiAZ && c.MQInstanceType == "mq.t3.micro" {
		r.fail("mqInstanceType", "mq.t3.micro supports only SINGLE_INSTANCE; use mq.m5.large or larger for CLUSTER_MULTI_AZ")
	}
	if c.MQQueueType == "classic" && c.MQDeploymentMode != BrokerSingleInstance {
		r.fail("mqQueueType", "classic queues live on one node and are for a SINGLE_INSTANCE broker; a cluster keeps quorum queues")
	}
	if c.MQEngineVersion == "" {
		r.fail("mqEngineVersion", "must not be empty")
	}
	if !mqUsernameRE.MatchString(c.MQUsername) || strings.EqualFold(c.MQUsername, "guest") {
		r.fail("mqUsername", "must be 2-100 characters of letters, digits and . _ ~ -, and not guest, got %q", c.MQUsername)
	}
}

// fargateSize checks a task CPU and memory pair against the sizes Fargate offers.
func fargateSize(cpu, memory int) error {
	type span struct{ min, max, step int }
	sizes := map[int]span{
		256:   {512, 2048, 512}, // 512, 1024, 2048
		512:   {1024, 4096, 1024},
		1024:  {2048, 8192, 1024},
		2048:  {4096, 16384, 1024},
		4096:  {8192, 30720, 1024},
		8192:  {16384, 61440, 4096},
		16384: {32768, 122880, 8192},
	}
	s, ok := sizes[cpu]
	if !ok {
		return fmt.Errorf("taskCpu must be one of 256, 512, 1024, 2048, 4096, 8192, 16384, got %d", cpu)
	}
	if cpu == 256 && (memory == 512 || memory == 1024 || memory == 2048) {
		return nil
	}
	if cpu != 256 && memory >= s.min && memory <= s.max && (memory-s.min)%s.step == 0 {
		return nil
	}
	return fmt.Errorf("%d MiB is not a Fargate size for taskCpu %d (allowed: %d-%d MiB in steps of %d)", memory, cpu, s.min, s.max, s.step)
}

// validateMQPassword applies Amazon MQ's password rules for RabbitMQ brokers.
func validateMQPassword(p string) error {
	unique := map[rune]struct{}{}
	for _, c := range p {
		unique[c] = struct{}{}
	}
	switch {
	case len(p) < 12 || len(p) > 250:
		return fmt.Errorf("must be 12 to 250 characters long, got %d", len(p))
	case strings.ContainsAny(p, ",:="):
		return errors.New("must not contain commas, colons or equal signs")
	case len(unique) < 4:
		return errors.New("must contain at least 4 different characters")
	}
	return nil
}

// reader reads typed keys from one config namespace and collects every problem.
type reader struct {
	ctx  *pulumi.Context
	ns   string
	errs []error
	// keys are the keys read, in order (for tests and documentation checks).
	keys []string
}

func (r *reader) fullKey(key string) string { return r.ns + ":" + key }

func (r *reader) fail(key, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", r.fullKey(key), fmt.Sprintf(format, args...)))
}

// raw returns the value of key; an empty value counts as unset.
func (r *reader) raw(key string) (string, bool) {
	r.keys = append(r.keys, key)
	v, ok := r.ctx.GetConfig(r.fullKey(key))
	return v, ok && v != ""
}

func (r *reader) str(key, def string) string {
	if v, ok := r.raw(key); ok {
		return v
	}
	return def
}

func (r *reader) integer(key string, def, lo, hi int) int {
	v, ok := r.raw(key)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.fail(key, "must be an integer, got %q", v)
		return def
	}
	if n < lo || n > hi {
		r.fail(key, "must be between %d and %d, got %d", lo, hi, n)
	}
	return n
}

// boolean reads a flag; unset means false.
func (r *reader) boolean(key string) bool { return r.flag(key, false) }

// flag reads a flag with a default.
func (r *reader) flag(key string, def bool) bool {
	v, ok := r.raw(key)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(key, "must be true or false, got %q", v)
		return def
	}
	return b
}

func (r *reader) oneOf(key, def string, allowed ...string) string {
	v, ok := r.raw(key)
	if !ok {
		return def
	}
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return a
		}
	}
	r.fail(key, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
	return def
}

// secret reads a required key that must be stored encrypted (pulumi config set --secret).
// The value is checked by check and returned as a Pulumi secret output; it never
// appears in an error message.
func (r *reader) secret(key string, check func(string) error) pulumi.StringOutput {
	v, ok := r.raw(key)
	switch {
	case !ok:
		r.fail(key, "required but not set; run: pulumi config set --secret %s <value>", key)
	case !r.ctx.IsConfigSecret(r.fullKey(key)):
		r.fail(key, "must be stored encrypted; run: pulumi config set --secret %s <value>", key)
	default:
		if err := check(v); err != nil {
			r.fail(key, "%v", err)
		}
	}
	return pulumi.ToSecret(pulumi.String(v)).(pulumi.StringOutput)
}
