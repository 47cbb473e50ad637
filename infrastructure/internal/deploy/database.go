package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/rds"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// DatabaseArgs configures NewDatabase.
type DatabaseArgs struct {
	// Databases are the logical databases, one per service (orders, invoices).
	Databases []string
	// PerService gives every database its own RDS instance; otherwise one instance
	// holds them all.
	PerService          bool
	SubnetIDs           pulumi.StringArrayInput
	SecurityGroupID     pulumi.StringInput
	InstanceClass       string
	EngineVersion       string
	AllocatedStorage    int
	MaxAllocatedStorage int
	MultiAZ             bool
	Username            string
	BackupRetentionDays int
	DeletionProtection  bool
	SkipFinalSnapshot   bool
	PerformanceInsights bool
	// PasswordRotationDays is the rotation interval of the RDS-managed master secret
	// (RDS's own default is 7 days). Tasks read the password from that secret when
	// they start, so a rotation needs no deploy.
	PasswordRotationDays int
	Tags                 pulumi.StringMap
}

// DatabaseConnection describes how one service reaches its database.
type DatabaseConnection struct {
	// Database is the logical database name.
	Database string
	// Host is the RDS endpoint address (no credentials).
	Host pulumi.StringOutput
	// MasterUsername is the RDS master user; only the migration step logs in as it.
	MasterUsername string
	// MasterSecretArn is the RDS-managed secret (JSON with username and password) of the
	// instance that holds the database; RDS rotates it.
	MasterSecretArn pulumi.StringOutput
	// AppUser is the service's least-privilege login role (<service>_app).
	AppUser string
	// AppSecret holds AppUser's password as JSON {"username", "password"}.
	AppSecret *URLSecret
}

// Database is the RDS PostgreSQL instance (or instances) and one login-role secret per
// service. Instances are encrypted, private, Multi-AZ by default, export their logs to
// CloudWatch, and their master password is generated, kept and rotated by RDS in Secrets
// Manager (manageMasterUserPassword). The services never log in as the master user: each
// task's migration container (`/app migrate`) uses it to create the service's owner and
// login roles and its database, and migrates as the owner; the service then connects as
// its login role.
type Database struct {
	pulumi.ResourceState

	Instances   []*rds.Instance
	Connections map[string]*DatabaseConnection
}

var identifierUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// AppRole is the login role of a service's database.
func AppRole(service string) string { return service + "_app" }

// NewDatabase creates the subnet group, the instance(s) and one role secret per database.
func NewDatabase(ctx *pulumi.Context, name string, args *DatabaseArgs, opts ...pulumi.ResourceOption) (*Database, error) {
	d := &Database{Connections: map[string]*DatabaseConnection{}}
	if err := ctx.RegisterComponentResource("orderflow:infra:Database", name, d, opts...); err != nil {
		return nil, fmt.Errorf("register database: %w", err)
	}
	parent := pulumi.Parent(d)
	if len(args.Databases) == 0 {
		return nil, errors.New("create database: no databases requested")
	}

	subnets, err := rds.NewSubnetGroup(ctx, name+"-subnets", &rds.SubnetGroupArgs{
		Description: pulumi.String("orderflow private subnets"),
		SubnetIds:   args.SubnetIDs,
		Tags:        args.Tags,
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("create db subnet group: %w", err)
	}

	// Which instance holds which databases.
	groups := [][]string{args.Databases}
	if args.PerService {
		groups = nil
		for _, db := range args.Databases {
			groups = append(groups, []string{db})
		}
	}
	for _, dbs := range groups {
		instName := name
		if args.PerService {
			instName = name + "-" + dbs[0]
		}
		inst, err := d.instance(ctx, instName, subnets, args, parent)
		if err != nil {
			return nil, err
		}
		d.Instances = append(d.Instances, inst)

		masterSecretArn := inst.MasterUserSecrets.Index(pulumi.Int(0)).SecretArn().Elem()
		// Managed rotation (no Lambda): only the schedule is set. Destroying the
		// instance deletes the managed secret, so the schedule is not deleted on its own.
		if _, err := secretsmanager.NewSecretRotation(ctx, instName+"-rotation", &secretsmanager.SecretRotationArgs{
			SecretId: masterSecretArn,
			RotationRules: &secretsmanager.SecretRotationRotationRulesArgs{
				AutomaticallyAfterDays: pulumi.Int(args.PasswordRotationDays),
			},
		}, parent, pulumi.DeletedWith(inst)); err != nil {
			return nil, fmt.Errorf("set master password rotation %s: %w", instName, err)
		}

		for _, db := range dbs {
			secret, err := newRoleSecret(ctx, name+"-"+db+"-role", AppRole(db), args.Tags, parent)
			if err != nil {
				return nil, err
			}
			d.Connections[db] = &DatabaseConnection{
				Database:        db,
				Host:            inst.Address,
				MasterUsername:  args.Username,
				MasterSecretArn: masterSecretArn,
				AppUser:         AppRole(db),
				AppSecret:       secret,
			}
		}
	}
	if err := ctx.RegisterResourceOutputs(d, pulumi.Map{}); err != nil {
		return nil, fmt.Errorf("register database outputs: %w", err)
	}
	return d, nil
}

// newRoleSecret stores a generated password for a login role as JSON
// {"username", "password"}. Secrets Manager generates it once: later runs
// keep the stored value (ignoreChanges), and the migration container sets
// the role's password from it at every task start, so replacing the
// secret's value and rolling the service changes the password.
func newRoleSecret(ctx *pulumi.Context, name, role string, tags pulumi.StringMap, parent pulumi.ResourceOrInvokeOption) (*URLSecret, error) {
	generated := secretsmanager.GetRandomPasswordOutput(ctx, secretsmanager.GetRandomPasswordOutputArgs{
		PasswordLength:     pulumi.Int(32),
		ExcludePunctuation: pulumi.Bool(true),
	}, parent)
	value := generated.RandomPassword().ApplyT(func(pw string) (string, error) {
		b, err := json.Marshal(map[string]string{"username": role, "password": pw})
		if err != nil {
			return "", fmt.Errorf("marshal role secret: %w", err)
		}
		return string(b), nil
	}).(pulumi.StringOutput)
	secret, err := secretsmanager.NewSecret(ctx, name, &secretsmanager.SecretArgs{
		Description:          pulumi.String("Password of the PostgreSQL role " + role),
		RecoveryWindowInDays: pulumi.Int(7),
		Tags:                 tags,
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("create secret %s: %w", name, err)
	}
	version, err := secretsmanager.NewSecretVersion(ctx, name, &secretsmanager.SecretVersionArgs{
		SecretId:     secret.ID(),
		SecretString: pulumi.ToSecret(value).(pulumi.StringOutput),
	}, parent, pulumi.AdditionalSecretOutputs([]string{"secretString"}), pulumi.IgnoreChanges([]string{"secretString"}))
	if err != nil {
		return nil, fmt.Errorf("create secret version %s: %w", name, err)
	}
	return &URLSecret{Secret: secret, Version: version}, nil
}

func (d *Database) instance(ctx *pulumi.Context, name string, subnets *rds.SubnetGroup, args *DatabaseArgs, parent pulumi.ResourceOption) (*rds.Instance, error) {
	instArgs := &rds.InstanceArgs{
		Engine:                   pulumi.String("postgres"),
		EngineVersion:            pulumi.String(args.EngineVersion),
		InstanceClass:            pulumi.String(args.InstanceClass),
		AllocatedStorage:         pulumi.Int(args.AllocatedStorage),
		MaxAllocatedStorage:      pulumi.Int(args.MaxAllocatedStorage),
		StorageType:              pulumi.String("gp3"),
		StorageEncrypted:         pulumi.Bool(true),
		PubliclyAccessible:       pulumi.Bool(false),
		MultiAz:                  pulumi.Bool(args.MultiAZ),
		Port:                     pulumi.Int(PostgresPort),
		Username:                 pulumi.String(args.Username),
		ManageMasterUserPassword: pulumi.Bool(true),
		DbSubnetGroupName:        subnets.Name,
		VpcSecurityGroupIds:      pulumi.StringArray{args.SecurityGroupID},
		BackupRetentionPeriod:    pulumi.Int(args.BackupRetentionDays),
		CopyTagsToSnapshot:       pulumi.Bool(true),
		AutoMinorVersionUpgrade:  pulumi.Bool(true),
		DeletionProtection:       pulumi.Bool(args.DeletionProtection),
		SkipFinalSnapshot:        pulumi.Bool(args.SkipFinalSnapshot),
		FinalSnapshotIdentifier:  finalSnapshotID(ctx, name, args.SkipFinalSnapshot),
		// The server log and the major-version upgrade log, in CloudWatch Logs.
		EnabledCloudwatchLogsExports: pulumi.StringArray{pulumi.String("postgresql"), pulumi.String("upgrade")},
		PerformanceInsightsEnabled:   pulumi.Bool(args.PerformanceInsights),
		Tags:                         args.Tags,
	}
	if args.PerformanceInsights {
		instArgs.PerformanceInsightsRetentionPeriod = pulumi.Int(7) // the free tier
	}
	inst, err := rds.NewInstance(ctx, name, instArgs, parent)
	if err != nil {
		return nil, fmt.Errorf("create rds instance %s: %w", name, err)
	}
	return inst, nil
}

// finalSnapshotID names the snapshot RDS takes when the instance is destroyed.
func finalSnapshotID(ctx *pulumi.Context, name string, skip bool) pulumi.StringPtrInput {
	if skip {
		return nil
	}
	id := identifierUnsafe.ReplaceAllString(fmt.Sprintf("orderflow-%s-%s-final", ctx.Stack(), name), "-")
	return pulumi.String(id)
}
