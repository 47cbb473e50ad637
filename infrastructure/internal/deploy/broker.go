package deploy

import (
	"fmt"
	"net/url"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/mq"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// BrokerArgs configures NewBroker.
type BrokerArgs struct {
	// DeploymentMode is SINGLE_INSTANCE or CLUSTER_MULTI_AZ.
	DeploymentMode  string
	InstanceType    string
	EngineVersion   string
	SubnetIDs       pulumi.StringArrayOutput
	SecurityGroupID pulumi.StringInput
	Username        string
	// Password comes from `pulumi config set --secret mqPassword`.
	Password pulumi.StringOutput
	Tags     pulumi.StringMap
}

// Broker is the Amazon MQ for RabbitMQ broker and the BROKER_URL secret.
// It is private, encrypted at rest and reached over AMQPS (5671) only.
type Broker struct {
	pulumi.ResourceState

	Broker *mq.Broker
	// Endpoint is the AMQPS endpoint without credentials.
	Endpoint pulumi.StringOutput
	// URL holds BROKER_URL, amqps://user:password@host:5671.
	URL *URLSecret
}

// NewBroker creates the broker in the private subnets (one subnet for a single instance,
// all of them for a cluster) and stores BROKER_URL in Secrets Manager.
func NewBroker(ctx *pulumi.Context, name string, args *BrokerArgs, opts ...pulumi.ResourceOption) (*Broker, error) {
	b := &Broker{}
	if err := ctx.RegisterComponentResource("orderflow:infra:Broker", name, b, opts...); err != nil {
		return nil, fmt.Errorf("register broker: %w", err)
	}
	parent := pulumi.Parent(b)

	subnets := pulumi.StringArrayInput(args.SubnetIDs)
	if args.DeploymentMode == BrokerSingleInstance {
		subnets = pulumi.StringArray{args.SubnetIDs.Index(pulumi.Int(0))}
	}
	broker, err := mq.NewBroker(ctx, name, &mq.BrokerArgs{
		EngineType:              pulumi.String("RabbitMQ"),
		EngineVersion:           pulumi.String(args.EngineVersion),
		HostInstanceType:        pulumi.String(args.InstanceType),
		DeploymentMode:          pulumi.String(args.DeploymentMode),
		PubliclyAccessible:      pulumi.Bool(false),
		SubnetIds:               subnets,
		SecurityGroups:          pulumi.StringArray{args.SecurityGroupID},
		AutoMinorVersionUpgrade: pulumi.Bool(true),
		// RabbitMQ brokers are always encrypted at rest, with an AWS-owned KMS key.
		EncryptionOptions: &mq.BrokerEncryptionOptionsArgs{UseAwsOwnedKey: pulumi.Bool(true)},
		Logs:              &mq.BrokerLogsArgs{General: pulumi.Bool(true)},
		Users: mq.BrokerUserArray{&mq.BrokerUserArgs{
			Username: pulumi.String(args.Username),
			Password: args.Password,
		}},
		Tags: args.Tags,
	}, parent, pulumi.AdditionalSecretOutputs([]string{"users"}))
	if err != nil {
		return nil, fmt.Errorf("create mq broker: %w", err)
	}
	b.Broker = broker
	b.Endpoint = broker.Instances.Index(pulumi.Int(0)).Endpoints().Index(pulumi.Int(0))

	brokerURL := pulumi.All(b.Endpoint, args.Password).ApplyT(func(v []any) (string, error) {
		return amqpsURL(v[0].(string), args.Username, v[1].(string))
	}).(pulumi.StringOutput)
	if b.URL, err = newURLSecret(ctx, name+"-url", "BROKER_URL of the orderflow services", brokerURL, args.Tags, []pulumi.ResourceOption{parent}); err != nil {
		return nil, err
	}
	if err := ctx.RegisterResourceOutputs(b, pulumi.Map{"endpoint": b.Endpoint}); err != nil {
		return nil, fmt.Errorf("register broker outputs: %w", err)
	}
	return b, nil
}

// amqpsURL adds credentials to the broker's AMQPS endpoint (amqps://host:5671).
func amqpsURL(endpoint, user, password string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("parse broker endpoint: %w", err)
	}
	if u.Scheme != "amqps" || u.Host == "" {
		return "", fmt.Errorf("parse broker endpoint: want amqps://host:port, got scheme %q", u.Scheme)
	}
	u.User = url.UserPassword(user, password)
	return u.String(), nil
}
