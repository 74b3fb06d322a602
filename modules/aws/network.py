"""The VPC: public, private (nodes and pods) and database subnets per AZ, NAT, flow logs, endpoints."""
from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_aws import (
    cloudwatch_log_group,
    default_security_group,
    eip,
    flow_log,
    iam_role,
    iam_role_policy,
    internet_gateway,
    nat_gateway,
    route,
    route_table,
    route_table_association,
    security_group,
    subnet,
    vpc,
    vpc_endpoint,
    vpc_security_group_ingress_rule as ingress,
)
from cdktf import Fn
from constructs import Construct

from ..core import iam, validation
from ..core.environment import AwsEnvironment
from .settings import TIERS, NetworkSettings  # noqa: F401 (TIERS: public name)


# Interface endpoints left without an endpoint policy: EKS Auth (called only by the Pod Identity agent, with the
# node role) is not listed as supporting endpoint policies in AWS PrivateLink's "AWS services that integrate with
# AWS PrivateLink", and EC2 rejects a policy for a service that does not support one. It keeps the default (full
# access through the endpoint); IAM still decides who may call. Not in any environment's list today.
NO_ENDPOINT_POLICY = frozenset({"eks-auth"})


def _this_accounts_principals(account_id: str) -> dict:
    # "Principal": "*" + aws:PrincipalAccount: any role or user of this account, nobody else's credentials
    # (AWS PrivateLink Guide, "Control access to VPC endpoints using endpoint policies").
    return {"Sid": "OnlyThisAccountsPrincipals", "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*",
            "Condition": {"StringEquals": {"aws:PrincipalAccount": account_id}}}


def interface_endpoint_policy(env: AwsEnvironment) -> str:
    """Interface endpoints carry only requests signed by this account's principals (nodes, pods, controllers)."""
    return iam.policy_document(_this_accounts_principals(env.account_id))


def aws_owned_buckets(env: AwsEnvironment) -> list[str]:
    """Objects outside this account the nodes read through the S3 gateway endpoint, unsigned or signed by AWS."""
    return [f"arn:{env.partition}:s3:::{bucket}/*" for bucket in (
        # ECR image layers: pre-signed by ECR, so the principal is not ours (ECR User Guide, "Minimum Amazon S3
        # bucket permissions for Amazon ECR"); EKS add-on and node images all come from ECR.
        f"prod-{env.region}-starport-layer-bucket",
        # Amazon Linux 2023 package repositories, read anonymously by dnf (AL2023 User Guide, S3 gateway endpoints).
        f"al2023-repos-{env.region}-de612dc2",
        # registry.k8s.io serves image layers to clients in AWS from a public bucket in their region (e.g.
        # kube-state-metrics of kube-prometheus-stack); anonymous reads, so no principal condition can hold.
        f"prod-registry-k8s-io-{env.region}",
    )]


def s3_gateway_endpoint_policy(env: AwsEnvironment) -> str:
    """Every S3 request from the private and database subnets passes the gateway endpoint (its route covers all of
    the region's S3): this account's principals, plus reads of the AWS-owned buckets nodes need. Nodes run no SSM
    agent (cluster.py), so the SSM agent's buckets are not listed."""
    return iam.policy_document(
        _this_accounts_principals(env.account_id),
        {"Sid": "ReadAwsOwnedBuckets", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
         "Resource": aws_owned_buckets(env)})


@dataclass(frozen=True, kw_only=True)
class NetworkProps:
    name: str                                   # prefix of resource names, e.g. 'airflow-dev'
    settings: NetworkSettings                   # CIDRs, zones, NAT strategy, interface endpoints
    cluster_name: str                           # for load-balancer and node-autoscaler subnet discovery tags
    flow_log_kms_key_arn: str
    flow_log_retention_days: int = 30

    def __post_init__(self) -> None:
        validation.log_retention("flow_log_retention_days", self.flow_log_retention_days)

    @property
    def az_count(self) -> int:
        return self.settings.az_count


class Network(Construct):
    """Public subnets route to the internet gateway; private subnets reach out only through NAT;
    database subnets have no route off the VPC at all. Nothing is reachable from outside by default."""

    def __init__(self, scope: Construct, id_: str, *, props: NetworkProps) -> None:
        super().__init__(scope, id_)
        env = AwsEnvironment.of(self)
        name = props.name
        # An Amazon-provided IPv6 block, used by the public tier only: the ALB serves clients dual-stack
        # (A and AAAA); nodes, pods and databases stay IPv4-only and private.
        self.vpc = vpc.Vpc(self, "vpc", cidr_block=props.settings.vpc_cidr, enable_dns_hostnames=True, enable_dns_support=True,
                           assign_generated_ipv6_cidr_block=True, tags={"Name": name})
        self.public_ipv6 = True
        self.vpc_id: str = self.vpc.id
        self.cidr = props.settings.vpc_cidr
        # The default SG is attached to anything created without one: strip all its rules.
        default_security_group.DefaultSecurityGroup(self, "default-security-group", vpc_id=self.vpc.id,
                                                    tags={"Name": f"{name}-default-deny-all"})
        tier_tags = {
            "public": {"kubernetes.io/role/elb": "1"},
            "private": {"kubernetes.io/role/internal-elb": "1", "karpenter.sh/discovery": props.cluster_name},
            "database": {},
        }
        self.subnet_ids: dict[str, list[str]] = {}
        for tier in TIERS:
            self.subnet_ids[tier] = [
                subnet.Subnet(self, f"{tier}-subnet-{i}", vpc_id=self.vpc.id, cidr_block=cidr,
                              availability_zone=props.settings.zones(env.region)[i], map_public_ip_on_launch=False,
                              ipv6_cidr_block=Fn.cidrsubnet(self.vpc.ipv6_cidr_block, 8, i) if tier == "public" else None,
                              assign_ipv6_address_on_creation=False if tier == "public" else None,
                              tags={"Name": f"{name}-{tier}-{i}", "tier": tier, **tier_tags[tier]}).id
                for i, cidr in enumerate(props.settings.subnets[tier])]
        self.public_subnet_ids = self.subnet_ids["public"]
        self.private_subnet_ids = self.subnet_ids["private"]
        self.database_subnet_ids = self.subnet_ids["database"]

        igw = internet_gateway.InternetGateway(self, "internet-gateway", vpc_id=self.vpc.id, tags={"Name": name})
        public_rt = route_table.RouteTable(self, "public-route-table", vpc_id=self.vpc.id,
                                           tags={"Name": f"{name}-public"})
        route.Route(self, "public-default-route", route_table_id=public_rt.id, destination_cidr_block="0.0.0.0/0",
                    gateway_id=igw.id)
        route.Route(self, "public-default-route-ipv6", route_table_id=public_rt.id,
                    destination_ipv6_cidr_block="::/0", gateway_id=igw.id)
        self._associate("public", self.public_subnet_ids, [public_rt.id] * props.az_count)

        nat_count = props.az_count if props.settings.nat_gateways == "per_az" else 1
        nats = []
        for i in range(nat_count):
            address = eip.Eip(self, f"nat-eip-{i}", domain="vpc", tags={"Name": f"{name}-nat-{i}"})
            nats.append(nat_gateway.NatGateway(self, f"nat-gateway-{i}", allocation_id=address.allocation_id,
                                               subnet_id=self.public_subnet_ids[i], tags={"Name": f"{name}-nat-{i}"},
                                               depends_on=[igw]))
        self.nat_gateway_count = nat_count
        self.private_route_table_ids: list[str] = []
        for i in range(props.az_count):
            rt = route_table.RouteTable(self, f"private-route-table-{i}", vpc_id=self.vpc.id,
                                        tags={"Name": f"{name}-private-{i}"})
            route.Route(self, f"private-default-route-{i}", route_table_id=rt.id, destination_cidr_block="0.0.0.0/0",
                        nat_gateway_id=nats[i % nat_count].id)
            self.private_route_table_ids.append(rt.id)
        self._associate("private", self.private_subnet_ids, self.private_route_table_ids)
        database_rt = route_table.RouteTable(self, "database-route-table", vpc_id=self.vpc.id,
                                             tags={"Name": f"{name}-database"})
        self._associate("database", self.database_subnet_ids, [database_rt.id] * props.az_count)

        vpc_endpoint.VpcEndpoint(self, "s3-gateway-endpoint", vpc_id=self.vpc.id, vpc_endpoint_type="Gateway",
                                 service_name=f"com.amazonaws.{env.region}.s3",
                                 route_table_ids=[*self.private_route_table_ids, database_rt.id],
                                 policy=s3_gateway_endpoint_policy(env), tags={"Name": f"{name}-s3"})
        self.endpoint_security_group_id: str | None = None
        if props.settings.interface_endpoints:
            self._interface_endpoints(props)
        self._flow_logs(props)

    def _associate(self, tier: str, subnet_ids: list[str], route_table_ids: list[str]) -> None:
        for i, (subnet_id, rt_id) in enumerate(zip(subnet_ids, route_table_ids)):
            route_table_association.RouteTableAssociation(self, f"{tier}-route-table-association-{i}",
                                                          subnet_id=subnet_id, route_table_id=rt_id)

    def _interface_endpoints(self, props: NetworkProps) -> None:
        env = AwsEnvironment.of(self)
        sg = security_group.SecurityGroup(
            self, "endpoint-security-group", name=f"{props.name}-vpc-endpoints", vpc_id=self.vpc.id,
            description="HTTPS to VPC interface endpoints from inside the VPC only", tags={"Name": f"{props.name}-vpc-endpoints"})
        ingress.VpcSecurityGroupIngressRule(self, "endpoint-ingress-https", security_group_id=sg.id,
                                            description="HTTPS from the VPC", ip_protocol="tcp", from_port=443,
                                            to_port=443, cidr_ipv4=props.settings.vpc_cidr)
        self.endpoint_security_group_id = sg.id
        for service in props.settings.interface_endpoints:
            vpc_endpoint.VpcEndpoint(
                self, f"{service.replace('.', '-')}-endpoint", vpc_id=self.vpc.id, vpc_endpoint_type="Interface",
                service_name=f"com.amazonaws.{env.region}.{service}", private_dns_enabled=True,
                subnet_ids=self.private_subnet_ids, security_group_ids=[sg.id],
                policy=None if service in NO_ENDPOINT_POLICY else interface_endpoint_policy(env),
                tags={"Name": f"{props.name}-{service}"})

    def _flow_logs(self, props: NetworkProps) -> None:
        env = AwsEnvironment.of(self)
        group = cloudwatch_log_group.CloudwatchLogGroup(
            self, "flow-log-group", name=f"/aws/vpc/{props.name}/flow-logs",
            retention_in_days=props.flow_log_retention_days, kms_key_id=props.flow_log_kms_key_arn)
        role = iam_role.IamRole(self, "flow-log-role", name=f"{props.name}-vpc-flow-logs",
                                assume_role_policy=iam.service_assume_role_policy(
                                    "vpc-flow-logs.amazonaws.com", source_account=env.account_id))
        # Only this log group: the service creates streams in it and writes events.
        iam_role_policy.IamRolePolicy(self, "flow-log-policy", role=role.id, name="write-flow-log-group",
                                      policy=iam.policy_document(iam.statement(
                                          "WriteFlowLogs", ["logs:CreateLogStream", "logs:PutLogEvents",
                                                            "logs:DescribeLogStreams"],
                                          [group.arn, f"{group.arn}:*"])))
        flow_log.FlowLog(self, "flow-log", vpc_id=self.vpc.id, traffic_type="ALL", log_destination_type="cloud-watch-logs",
                         log_destination=group.arn, iam_role_arn=role.arn, max_aggregation_interval=60,
                         tags={"Name": f"{props.name}-flow-log"})
        self.flow_log_group_name: str = group.name


def admit_tcp_from(scope: Construct, id_: str, *, security_group_id: str, port: int, source_security_group_id: str,
                   description: str) -> ingress.VpcSecurityGroupIngressRule:
    """Open one TCP port of a security group to exactly one other security group (never to a CIDR): how the
    database, cache, broker and node groups admit their clients."""
    return ingress.VpcSecurityGroupIngressRule(
        scope, id_, security_group_id=security_group_id, ip_protocol="tcp", from_port=port, to_port=port,
        referenced_security_group_id=source_security_group_id, description=description)
