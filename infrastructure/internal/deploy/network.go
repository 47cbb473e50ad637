package deploy

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/servicediscovery"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/vpc"
	ec2x "github.com/pulumi/pulumi-awsx/sdk/v2/go/awsx/ec2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Well-known ports of the managed services and of Kong.
const (
	PostgresPort   = 5432
	AMQPSPort      = 5671
	KongProxyPort  = 8000
	KongStatusPort = 8100
	httpsPort      = 443
	httpPort       = 80
)

// NetworkArgs configures NewNetwork.
type NetworkArgs struct {
	Cidr              string
	AvailabilityZones int
	NatGateways       string // awsx strategy: "Single" or "OnePerAz".
	// Namespace is the Cloud Map private DNS namespace. It is also the VPC's DNS search
	// domain, so Kong resolves the short host names of kong.yml (orders, invoices).
	Namespace string
	// AppPorts maps each application service to the port it listens on.
	AppPorts map[string]int
	// HTTPS opens port 443 on the load balancer.
	HTTPS bool
	// OTLPPort, when not 0 or 443, is opened for egress from the apps to the collector.
	OTLPPort int
	// Region names the VPC endpoints' services (com.amazonaws.<region>.s3, …).
	Region string
	Tags   pulumi.StringMap
}

// interfaceEndpoints are the AWS APIs the tasks reach through interface VPC
// endpoints instead of NAT: image pulls (with S3, a gateway endpoint, for
// the layers), logs and secrets.
var interfaceEndpoints = []string{"ecr.api", "ecr.dkr", "logs", "secretsmanager"}

// Network is the VPC, its service discovery namespace and one security group per tier.
// The groups allow only: internet → ALB; ALB → Kong; Kong → apps; apps → RDS and MQ;
// tasks → the VPC endpoints (443). Nothing but Kong reaches an app's port, so every
// request an app serves passed Kong's authentication, and the X-Consumer-Custom-ID it
// trusts is the one Kong set. ECR, S3, CloudWatch Logs and Secrets Manager are
// reached through VPC endpoints, so image pulls and secrets do not depend on NAT; other
// HTTPS (X-Ray and CloudWatch for the collector, public images) goes through the NAT
// gateways.
type Network struct {
	pulumi.ResourceState

	VpcID            pulumi.StringOutput
	PrivateSubnetIDs pulumi.StringArrayOutput
	PublicSubnetIDs  pulumi.StringArrayOutput
	// Namespace is the Cloud Map namespace the apps register in.
	Namespace *servicediscovery.PrivateDnsNamespace
	// DNSSearch associates the DHCP options (search domain = namespace) with the VPC;
	// tasks must start after it.
	DNSSearch *ec2.VpcDhcpOptionsAssociation

	LoadBalancerSG *ec2.SecurityGroup
	KongSG         *ec2.SecurityGroup
	AppSGs         map[string]*ec2.SecurityGroup
	DatabaseSG     *ec2.SecurityGroup
	BrokerSG       *ec2.SecurityGroup
	EndpointsSG    *ec2.SecurityGroup
	// Endpoints are the VPC endpoints, by service (s3, ecr.api, …).
	Endpoints map[string]*ec2.VpcEndpoint
}

// NewNetwork creates the VPC (private subnets for tasks and data, public subnets for the
// load balancer), the DNS search domain, the Cloud Map namespace and the security groups.
func NewNetwork(ctx *pulumi.Context, name string, args *NetworkArgs, opts ...pulumi.ResourceOption) (*Network, error) {
	n := &Network{AppSGs: map[string]*ec2.SecurityGroup{}, Endpoints: map[string]*ec2.VpcEndpoint{}}
	if err := ctx.RegisterComponentResource("orderflow:infra:Network", name, n, opts...); err != nil {
		return nil, fmt.Errorf("register network: %w", err)
	}
	parent := pulumi.Parent(n)
	azs := args.AvailabilityZones
	cidr := args.Cidr

	v, err := ec2x.NewVpc(ctx, name+"-vpc", &ec2x.VpcArgs{
		CidrBlock:                 &cidr,
		NumberOfAvailabilityZones: &azs,
		EnableDnsHostnames:        pulumi.Bool(true),
		EnableDnsSupport:          pulumi.Bool(true),
		SubnetSpecs: []ec2x.SubnetSpecArgs{
			{Type: ec2x.SubnetTypePrivate, Name: pulumi.StringRef("private")},
			{Type: ec2x.SubnetTypePublic, Name: pulumi.StringRef("public")},
		},
		NatGateways: &ec2x.NatGatewayConfigurationArgs{Strategy: ec2x.NatGatewayStrategy(args.NatGateways)},
		Tags:        args.Tags,
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("create vpc: %w", err)
	}
	n.VpcID = v.VpcId
	n.PrivateSubnetIDs = v.PrivateSubnetIds
	n.PublicSubnetIDs = v.PublicSubnetIds

	// Fargate tasks take their resolv.conf search domain from the VPC's DHCP options.
	// With the namespace as search domain, "orders" resolves to orders.<namespace>.
	dhcp, err := ec2.NewVpcDhcpOptions(ctx, name+"-dhcp", &ec2.VpcDhcpOptionsArgs{
		DomainName:        pulumi.String(args.Namespace),
		DomainNameServers: pulumi.StringArray{pulumi.String("AmazonProvidedDNS")},
		Tags:              args.Tags,
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("create dhcp options: %w", err)
	}
	n.DNSSearch, err = ec2.NewVpcDhcpOptionsAssociation(ctx, name+"-dhcp", &ec2.VpcDhcpOptionsAssociationArgs{
		VpcId:         v.VpcId,
		DhcpOptionsId: dhcp.ID(),
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("associate dhcp options: %w", err)
	}
	n.Namespace, err = servicediscovery.NewPrivateDnsNamespace(ctx, name+"-namespace", &servicediscovery.PrivateDnsNamespaceArgs{
		Name:        pulumi.String(args.Namespace),
		Description: pulumi.String("orderflow service discovery"),
		Vpc:         v.VpcId,
		Tags:        args.Tags,
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("create service discovery namespace: %w", err)
	}

	if err := n.securityGroups(ctx, name, args, parent); err != nil {
		return nil, err
	}
	if err := n.endpoints(ctx, name, args, parent); err != nil {
		return nil, err
	}
	if err := ctx.RegisterResourceOutputs(n, pulumi.Map{
		"vpcId":            n.VpcID,
		"privateSubnetIds": n.PrivateSubnetIDs,
		"publicSubnetIds":  n.PublicSubnetIDs,
	}); err != nil {
		return nil, fmt.Errorf("register network outputs: %w", err)
	}
	return n, nil
}

// securityGroups creates the groups first and the rules after, so that groups can
// reference each other without a dependency cycle.
func (n *Network) securityGroups(ctx *pulumi.Context, name string, args *NetworkArgs, parent pulumi.ResourceOption) error {
	group := func(tier, description string) (*ec2.SecurityGroup, error) {
		sg, err := ec2.NewSecurityGroup(ctx, name+"-"+tier, &ec2.SecurityGroupArgs{
			VpcId:       n.VpcID,
			Description: pulumi.String(description),
			Tags:        args.Tags,
		}, parent)
		if err != nil {
			return nil, fmt.Errorf("create security group %s: %w", tier, err)
		}
		return sg, nil
	}
	var err error
	if n.LoadBalancerSG, err = group("alb", "orderflow public load balancer"); err != nil {
		return err
	}
	if n.KongSG, err = group("kong", "orderflow Kong gateway tasks"); err != nil {
		return err
	}
	apps := sortedKeys(args.AppPorts)
	for _, app := range apps {
		if n.AppSGs[app], err = group(app, "orderflow "+app+" tasks"); err != nil {
			return err
		}
	}
	if n.DatabaseSG, err = group("db", "orderflow PostgreSQL"); err != nil {
		return err
	}
	if n.BrokerSG, err = group("mq", "orderflow RabbitMQ broker"); err != nil {
		return err
	}
	if n.EndpointsSG, err = group("endpoints", "orderflow VPC endpoints (AWS APIs)"); err != nil {
		return err
	}

	r := ruleMaker{ctx: ctx, prefix: name, parent: parent}
	lbPorts := []int{httpPort}
	if args.HTTPS {
		lbPorts = append(lbPorts, httpsPort)
	}
	for _, p := range lbPorts {
		r.ingressFromAnywhere(fmt.Sprintf("alb-in-%d", p), n.LoadBalancerSG, p, "clients")
	}
	for _, p := range []int{KongProxyPort, KongStatusPort} {
		r.between(fmt.Sprintf("alb-kong-%d", p), n.LoadBalancerSG, n.KongSG, p, "load balancer to Kong")
	}
	r.between("kong-endpoints", n.KongSG, n.EndpointsSG, httpsPort, "Kong to the VPC endpoints (ECR, logs, Secrets Manager)")
	r.egressToAnywhere("kong-out-https", n.KongSG, httpsPort, "HTTPS through NAT")
	for _, app := range apps {
		sg := n.AppSGs[app]
		r.between("kong-"+app, n.KongSG, sg, args.AppPorts[app], "Kong to "+app)
		r.between(app+"-db", sg, n.DatabaseSG, PostgresPort, app+" to PostgreSQL")
		r.between(app+"-mq", sg, n.BrokerSG, AMQPSPort, app+" to RabbitMQ")
		r.between(app+"-endpoints", sg, n.EndpointsSG, httpsPort, app+" to the VPC endpoints (ECR, logs, Secrets Manager)")
		r.egressToAnywhere(app+"-out-https", sg, httpsPort, "HTTPS through NAT (X-Ray, CloudWatch, public images)")
		if args.OTLPPort != 0 && args.OTLPPort != httpsPort {
			r.egressToAnywhere(fmt.Sprintf("%s-out-otlp-%d", app, args.OTLPPort), sg, args.OTLPPort, "OpenTelemetry collector")
		}
	}
	return r.err
}

// endpoints creates the S3 gateway endpoint on the private subnets' route
// tables and the interface endpoints in the private subnets, with private DNS,
// so that the usual service names resolve to them inside the VPC.
func (n *Network) endpoints(ctx *pulumi.Context, name string, args *NetworkArgs, parent pulumi.ResourceOrInvokeOption) error {
	privateTables := ec2.GetRouteTablesOutput(ctx, ec2.GetRouteTablesOutputArgs{
		VpcId: n.VpcID,
		Filters: ec2.GetRouteTablesFilterArray{&ec2.GetRouteTablesFilterArgs{
			Name:   pulumi.String("association.subnet-id"),
			Values: n.PrivateSubnetIDs,
		}},
	}, parent)
	service := func(s string) pulumi.String { return pulumi.String("com.amazonaws." + args.Region + "." + s) }
	s3, err := ec2.NewVpcEndpoint(ctx, name+"-s3", &ec2.VpcEndpointArgs{
		VpcId:           n.VpcID,
		ServiceName:     service("s3"),
		VpcEndpointType: pulumi.String("Gateway"),
		RouteTableIds:   privateTables.Ids(),
		Tags:            args.Tags,
	}, parent)
	if err != nil {
		return fmt.Errorf("create s3 endpoint: %w", err)
	}
	n.Endpoints["s3"] = s3
	for _, svc := range interfaceEndpoints {
		ep, err := ec2.NewVpcEndpoint(ctx, name+"-"+strings.ReplaceAll(svc, ".", "-"), &ec2.VpcEndpointArgs{
			VpcId:             n.VpcID,
			ServiceName:       service(svc),
			VpcEndpointType:   pulumi.String("Interface"),
			SubnetIds:         n.PrivateSubnetIDs,
			SecurityGroupIds:  pulumi.StringArray{n.EndpointsSG.ID()},
			PrivateDnsEnabled: pulumi.Bool(true),
			Tags:              args.Tags,
		}, parent)
		if err != nil {
			return fmt.Errorf("create %s endpoint: %w", svc, err)
		}
		n.Endpoints[svc] = ep
	}
	return nil
}

// ruleMaker creates single-port TCP rules and keeps the first error.
type ruleMaker struct {
	ctx    *pulumi.Context
	prefix string
	parent pulumi.ResourceOption
	err    error
}

// between allows TCP port from the group "from" to the group "to" (egress on from, ingress on to).
func (r *ruleMaker) between(name string, from, to *ec2.SecurityGroup, port int, description string) {
	if r.err != nil {
		return
	}
	if _, err := vpc.NewSecurityGroupEgressRule(r.ctx, r.prefix+"-"+name+"-out", &vpc.SecurityGroupEgressRuleArgs{
		SecurityGroupId:           from.ID(),
		ReferencedSecurityGroupId: to.ID(),
		IpProtocol:                pulumi.String("tcp"),
		FromPort:                  pulumi.Int(port),
		ToPort:                    pulumi.Int(port),
		Description:               pulumi.String(description),
	}, r.parent); err != nil {
		r.err = fmt.Errorf("create egress rule %s: %w", name, err)
		return
	}
	if _, err := vpc.NewSecurityGroupIngressRule(r.ctx, r.prefix+"-"+name+"-in", &vpc.SecurityGroupIngressRuleArgs{
		SecurityGroupId:           to.ID(),
		ReferencedSecurityGroupId: from.ID(),
		IpProtocol:                pulumi.String("tcp"),
		FromPort:                  pulumi.Int(port),
		ToPort:                    pulumi.Int(port),
		Description:               pulumi.String(description),
	}, r.parent); err != nil {
		r.err = fmt.Errorf("create ingress rule %s: %w", name, err)
	}
}

// anywhere is every IPv4 address.
const anywhere = "0.0.0.0/0"

// ingressFromAnywhere allows TCP port into sg from the internet (the load balancer only).
func (r *ruleMaker) ingressFromAnywhere(name string, sg *ec2.SecurityGroup, port int, description string) {
	if r.err != nil {
		return
	}
	if _, err := vpc.NewSecurityGroupIngressRule(r.ctx, r.prefix+"-"+name, &vpc.SecurityGroupIngressRuleArgs{
		SecurityGroupId: sg.ID(),
		CidrIpv4:        pulumi.String(anywhere),
		IpProtocol:      pulumi.String("tcp"),
		FromPort:        pulumi.Int(port),
		ToPort:          pulumi.Int(port),
		Description:     pulumi.String(description),
	}, r.parent); err != nil {
		r.err = fmt.Errorf("create ingress rule %s: %w", name, err)
	}
}

// egressToAnywhere allows TCP port out of sg to any address (through the NAT gateway).
func (r *ruleMaker) egressToAnywhere(name string, sg *ec2.SecurityGroup, port int, description string) {
	if r.err != nil {
		return
	}
	if _, err := vpc.NewSecurityGroupEgressRule(r.ctx, r.prefix+"-"+name, &vpc.SecurityGroupEgressRuleArgs{
		SecurityGroupId: sg.ID(),
		CidrIpv4:        pulumi.String(anywhere),
		IpProtocol:      pulumi.String("tcp"),
		FromPort:        pulumi.Int(port),
		ToPort:          pulumi.Int(port),
		Description:     pulumi.String(description),
	}, r.parent); err != nil {
		r.err = fmt.Errorf("create egress rule %s: %w", name, err)
	}
}
