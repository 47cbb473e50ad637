package deploy

import (
	"fmt"
	"strconv"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lb"
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

	alb, err := lb.NewLoadBalancer(ctx, name+"-alb", &lb.LoadBalancerArgs{
		LoadBalancerType:        pulumi.String("application"),
		Internal:                pulumi.Bool(false),
		Subnets:                 args.PublicSubnetIDs,
		SecurityGroups:          pulumi.StringArray{args.SecurityGroupID},
		DropInvalidHeaderFields: pulumi.Bool(true),
		Tags:                    args.Tags,
	}, parent)
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
