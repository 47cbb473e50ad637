package deploy

import (
	"fmt"
	"strconv"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/elb"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lb"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// GatewayArgs configures NewGateway.
type GatewayArgs struct {
	VpcID           pulumi.StringInput
	PublicSubnetIDs pulumi.StringArrayInput
	SecurityGroupID pulumi.StringInput
	// CertificateArn enables HTTPS on 443 and redirects HTTP to it; empty means plain HTTP.
	CertificateArn string
	// DomainName, if set, is the host name used in the URL output (a DNS record pointing
	// at the load balancer is the user's to create).
	DomainName string
	// DeletionProtection keeps the load balancer from being deleted (by destroy too)
	// until it is turned off.
	DeletionProtection bool
	// AccessLogs writes the load balancer's access logs to an S3 bucket of its own.
	AccessLogs bool
	Tags       pulumi.StringMap
}

// Gateway is the one internet-facing Application Load Balancer. Its only target group
// holds the Kong tasks (proxy port 8000, health-checked on Kong's status API).
type Gateway struct {
	pulumi.ResourceState

	LoadBalancer *lb.LoadBalancer
	// KongTargets is the target group the Kong service registers in.
	KongTargets *lb.TargetGroup
	// Listeners must exist before a service registers in the target group.
	Listeners []pulumi.Resource
	// URL is the public base URL of the API (Kong).
	URL pulumi.StringOutput
	// LogBucket holds the access logs (nil without AccessLogs).
	LogBucket *s3.BucketV2
}

// tlsPolicy allows TLS 1.2 and 1.3 only.
const tlsPolicy = "ELBSecurityPolicy-TLS13-1-2-2021-06"

// NewGateway creates the load balancer, the Kong target group and the listeners.
func NewGateway(ctx *pulumi.Context, name string, args *GatewayArgs, opts ...pulumi.ResourceOption) (*Gateway, error) {
	g := &Gateway{}
	if err := ctx.RegisterComponentResource("orderflow:infra:Gateway", name, g, opts...); err != nil {
		return nil, fmt.Errorf("register gateway: %w", err)
	}
	parent := pulumi.Parent(g)

	albArgs := &lb.LoadBalancerArgs{
		LoadBalancerType:         pulumi.String("application"),
		Internal:                 pulumi.Bool(false),
		Subnets:                  args.PublicSubnetIDs,
		SecurityGroups:           pulumi.StringArray{args.SecurityGroupID},
		DropInvalidHeaderFields:  pulumi.Bool(true),
		EnableDeletionProtection: pulumi.Bool(args.DeletionProtection),
		Tags:                     args.Tags,
	}
	albOpts := []pulumi.ResourceOption{parent}
	if args.AccessLogs {
		policy, err := g.logBucket(ctx, name, args, parent)
		if err != nil {
			return nil, err
		}
		albArgs.AccessLogs = &lb.LoadBalancerAccessLogsArgs{
			Bucket:  g.LogBucket.Bucket,
			Prefix:  pulumi.String("alb"),
			Enabled: pulumi.Bool(true),
		}
		// ELB checks that it may write to the bucket when logging is turned on.
		albOpts = append(albOpts, pulumi.DependsOn([]pulumi.Resource{policy}))
	}
	alb, err := lb.NewLoadBalancer(ctx, name+"-alb", albArgs, albOpts...)
	if err != nil {
		return nil, fmt.Errorf("create load balancer: %w", err)
	}
	g.LoadBalancer = alb

	g.KongTargets, err = lb.NewTargetGroup(ctx, name+"-kong", &lb.TargetGroupArgs{
		VpcId:               args.VpcID,
		TargetType:          pulumi.String("ip"),
		Protocol:            pulumi.String("HTTP"),
		Port:                pulumi.Int(KongProxyPort),
		DeregistrationDelay: pulumi.Int(30),
		HealthCheck: &lb.TargetGroupHealthCheckArgs{
			Enabled:            pulumi.Bool(true),
			Protocol:           pulumi.String("HTTP"),
			Port:               pulumi.String(strconv.Itoa(KongStatusPort)),
			Path:               pulumi.String("/status/ready"),
			Matcher:            pulumi.String("200"),
			Interval:           pulumi.Int(15),
			Timeout:            pulumi.Int(5),
			HealthyThreshold:   pulumi.Int(2),
			UnhealthyThreshold: pulumi.Int(3),
		},
		Tags: args.Tags,
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("create kong target group: %w", err)
	}

	forward := lb.ListenerDefaultActionArray{&lb.ListenerDefaultActionArgs{
		Type:           pulumi.String("forward"),
		TargetGroupArn: g.KongTargets.Arn,
	}}
	host := alb.DnsName
	if args.DomainName != "" {
		host = pulumi.String(args.DomainName).ToStringOutput()
	}

	if args.CertificateArn == "" {
		if err := ctx.Log.Warn("no certificateArn configured: the load balancer serves plain HTTP on port 80. "+
			"Set one with `pulumi config set certificateArn arn:aws:acm:...` before real traffic.", &pulumi.LogArgs{Resource: g}); err != nil {
			return nil, fmt.Errorf("log warning: %w", err)
		}
		http, err := lb.NewListener(ctx, name+"-http", &lb.ListenerArgs{
			LoadBalancerArn: alb.Arn,
			Port:            pulumi.Int(httpPort),
			Protocol:        pulumi.String("HTTP"),
			DefaultActions:  forward,
			Tags:            args.Tags,
		}, parent)
		if err != nil {
			return nil, fmt.Errorf("create http listener: %w", err)
		}
		g.Listeners = []pulumi.Resource{http}
		g.URL = pulumi.Sprintf("http://%s", host)
	} else {
		https, err := lb.NewListener(ctx, name+"-https", &lb.ListenerArgs{
			LoadBalancerArn: alb.Arn,
			Port:            pulumi.Int(httpsPort),
			Protocol:        pulumi.String("HTTPS"),
			SslPolicy:       pulumi.String(tlsPolicy),
			CertificateArn:  pulumi.String(args.CertificateArn),
			DefaultActions:  forward,
			Tags:            args.Tags,
		}, parent)
		if err != nil {
			return nil, fmt.Errorf("create https listener: %w", err)
		}
		redirect, err := lb.NewListener(ctx, name+"-http", &lb.ListenerArgs{
			LoadBalancerArn: alb.Arn,
			Port:            pulumi.Int(httpPort),
			Protocol:        pulumi.String("HTTP"),
			DefaultActions: lb.ListenerDefaultActionArray{&lb.ListenerDefaultActionArgs{
				Type: pulumi.String("redirect"),
				Redirect: &lb.ListenerDefaultActionRedirectArgs{
					Protocol:   pulumi.String("HTTPS"),
					Port:       pulumi.String(strconv.Itoa(httpsPort)),
					StatusCode: pulumi.String("HTTP_301"),
				},
			}},
			Tags: args.Tags,
		}, parent)
		if err != nil {
			return nil, fmt.Errorf("create http redirect listener: %w", err)
		}
		g.Listeners = []pulumi.Resource{https, redirect}
		g.URL = pulumi.Sprintf("https://%s", host)
	}
	if err := ctx.RegisterResourceOutputs(g, pulumi.Map{"url": g.URL, "dnsName": alb.DnsName}); err != nil {
		return nil, fmt.Errorf("register gateway outputs: %w", err)
	}
	return g, nil
}

// accessLogDays is how long the load balancer's access logs are kept.
const accessLogDays = 90

// logBucket creates the private, encrypted access-log bucket and the policy
// that lets Elastic Load Balancing write to it: the region's ELB account (the
// regions before August 2022) and the log delivery service (the later ones).
func (g *Gateway) logBucket(ctx *pulumi.Context, name string, args *GatewayArgs, parent pulumi.ResourceOrInvokeOption) (*s3.BucketPolicy, error) {
	bucket, err := s3.NewBucketV2(ctx, name+"-logs", &s3.BucketV2Args{
		// A protected load balancer's logs survive a destroy too.
		ForceDestroy: pulumi.Bool(!args.DeletionProtection),
		Tags:         args.Tags,
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("create access log bucket: %w", err)
	}
	g.LogBucket = bucket
	if _, err := s3.NewBucketPublicAccessBlock(ctx, name+"-logs", &s3.BucketPublicAccessBlockArgs{
		Bucket:                bucket.ID(),
		BlockPublicAcls:       pulumi.Bool(true),
		BlockPublicPolicy:     pulumi.Bool(true),
		IgnorePublicAcls:      pulumi.Bool(true),
		RestrictPublicBuckets: pulumi.Bool(true),
	}, parent); err != nil {
		return nil, fmt.Errorf("block public access to access logs: %w", err)
	}
	if _, err := s3.NewBucketServerSideEncryptionConfigurationV2(ctx, name+"-logs", &s3.BucketServerSideEncryptionConfigurationV2Args{
		Bucket: bucket.ID(),
		Rules: s3.BucketServerSideEncryptionConfigurationV2RuleArray{&s3.BucketServerSideEncryptionConfigurationV2RuleArgs{
			ApplyServerSideEncryptionByDefault: &s3.BucketServerSideEncryptionConfigurationV2RuleApplyServerSideEncryptionByDefaultArgs{
				SseAlgorithm: pulumi.String("AES256"), // access logs support SSE-S3 only
			},
		}},
	}, parent); err != nil {
		return nil, fmt.Errorf("encrypt access logs: %w", err)
	}
	if _, err := s3.NewBucketLifecycleConfigurationV2(ctx, name+"-logs", &s3.BucketLifecycleConfigurationV2Args{
		Bucket: bucket.ID(),
		Rules: s3.BucketLifecycleConfigurationV2RuleArray{&s3.BucketLifecycleConfigurationV2RuleArgs{
			Id:         pulumi.String("expire-access-logs"),
			Status:     pulumi.String("Enabled"),
			Filter:     &s3.BucketLifecycleConfigurationV2RuleFilterArgs{Prefix: pulumi.String("alb/")},
			Expiration: &s3.BucketLifecycleConfigurationV2RuleExpirationArgs{Days: pulumi.Int(accessLogDays)},
		}},
	}, parent); err != nil {
		return nil, fmt.Errorf("expire access logs: %w", err)
	}
	elbAccount := elb.GetServiceAccountOutput(ctx, elb.GetServiceAccountOutputArgs{}, parent)
	doc := pulumi.All(bucket.Arn, elbAccount.Arn()).ApplyT(func(v []any) (string, error) {
		return marshalPolicy(policyDocument{Version: "2012-10-17", Statement: []policyStatement{{
			Sid:       "ElbWritesAccessLogs",
			Effect:    "Allow",
			Principal: map[string]string{"AWS": v[1].(string), "Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
			Action:    []string{"s3:PutObject"},
			Resource:  []string{v[0].(string) + "/alb/AWSLogs/*"},
		}}})
	}).(pulumi.StringOutput)
	policy, err := s3.NewBucketPolicy(ctx, name+"-logs", &s3.BucketPolicyArgs{Bucket: bucket.ID(), Policy: doc}, parent)
	if err != nil {
		return nil, fmt.Errorf("create access log bucket policy: %w", err)
	}
	return policy, nil
}
