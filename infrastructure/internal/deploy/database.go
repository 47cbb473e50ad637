package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"

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
	// PasswordRotationDays is the rotation interval of the RDS-managed master secret
	// (RDS's own default is 7 days). DATABASE_URL holds the password as of the last
	// `pulumi up`, so every rotation must be followed by one.
	PasswordRotationDays int
	Tags                 pulumi.StringMap
}

// DatabaseConnection describes how one service reaches its database.
type DatabaseConnection struct {
	// Database is the logical database name.
	Database string
	// Host is the RDS endpoint address (no credentials).
	Host pulumi.StringOutput
	// MasterSecretArn is the RDS-managed secret (JSON with username and password) of the
	// instance that holds the database.
	MasterSecretArn pulumi.StringOutput
	// URL holds DATABASE_URL, postgres://user:password@host:5432/<database>?sslmode=require.
	URL *URLSecret
}

// Database is the RDS PostgreSQL instance (or instances) and the DATABASE_URL secrets.
// Instances are encrypted, private, and their master password is generated and kept by
// RDS in Secrets Manager (manageMasterUserPassword). Each service creates its own logical
// database on first start (DATABASE_CREATE=true: CREATE DATABASE through the "postgres"
// database with DATABASE_URL's credentials) and migrates its schema; nothing is created
// by hand.
type Database struct {
	pulumi.ResourceState

	Instances   []*rds.Instance
	Connections map[string]*DatabaseConnection
}

var identifierUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// NewDatabase creates the subnet group, the instance(s) and one DATABASE_URL secret per database.
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
		// Managed rotation (no Lambda): only the schedule is set. RotateImmediately=false
		// keeps the password that DATABASE_URL is built from below. Destroying the
		// instance deletes the managed secret, so the schedule is not deleted on its own.
		if _, err := secretsmanager.NewSecretRotation(ctx, instName+"-rotation", &secretsmanager.SecretRotationArgs{
			SecretId:          masterSecretArn,
			RotateImmediately: pulumi.Bool(false),
			RotationRules: &secretsmanager.SecretRotationRotationRulesArgs{
				AutomaticallyAfterDays: pulumi.Int(args.PasswordRotationDays),
			},
		}, parent, pulumi.DeletedWith(inst)); err != nil {
			return nil, fmt.Errorf("set master password rotation %s: %w", instName, err)
		}
		// The master password is read from the RDS-managed secret at deploy time, only to
		// build DATABASE_URL; it stays a secret in the Pulumi state.
		password := secretsmanager.LookupSecretVersionOutput(ctx, secretsmanager.LookupSecretVersionOutputArgs{
			SecretId: masterSecretArn,
		}, parent).SecretString().ApplyT(masterPassword).(pulumi.StringOutput)

		for _, db := range dbs {
			dbURL := pulumi.All(inst.Address, password).ApplyT(func(v []any) string {
				return postgresURL(args.Username, v[1].(string), v[0].(string), db)
			}).(pulumi.StringOutput)
			secret, err := newURLSecret(ctx, name+"-"+db+"-url",
				"DATABASE_URL of the orderflow "+db+" service", dbURL, args.Tags, parent)
			if err != nil {
				return nil, err
			}
			d.Connections[db] = &DatabaseConnection{
				Database:        db,
				Host:            inst.Address,
				MasterSecretArn: masterSecretArn,
				URL:             secret,
			}
		}
	}
	if err := ctx.RegisterResourceOutputs(d, pulumi.Map{}); err != nil {
		return nil, fmt.Errorf("register database outputs: %w", err)
	}
	return d, nil
}

func (d *Database) instance(ctx *pulumi.Context, name string, subnets *rds.SubnetGroup, args *DatabaseArgs, parent pulumi.ResourceOption) (*rds.Instance, error) {
	inst, err := rds.NewInstance(ctx, name, &rds.InstanceArgs{
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
		Tags:                     args.Tags,
	}, parent)
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

// masterPassword extracts the password from an RDS-managed master user secret.
func masterPassword(secretString string) (string, error) {
	var v struct {
		Password string `json:"password"`
	}
	if err := json.Unmarshal([]byte(secretString), &v); err != nil {
		return "", fmt.Errorf("decode rds master secret: %w", err)
	}
	if v.Password == "" {
		return "", errors.New("decode rds master secret: no password field")
	}
	return v.Password, nil
}

// postgresURL builds DATABASE_URL with TLS required.
func postgresURL(user, password, host, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     net.JoinHostPort(host, strconv.Itoa(PostgresPort)),
		Path:     "/" + db,
		RawQuery: "sslmode=require",
	}
	return u.String()
}
