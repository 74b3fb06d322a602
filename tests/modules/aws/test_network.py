import json

import pytest

from modules.aws.network import Network, NetworkProps
from tests.conftest import make_props, synth

SUBNETS = {"public": ("10.0.128.0/22", "10.0.132.0/22"), "private": ("10.0.0.0/19", "10.0.32.0/19"),
           "database": ("10.0.160.0/22", "10.0.164.0/22")}
KEY = "arn:aws:kms:eu-west-1:123456789012:key/k"
BASE = dict(name="af-test", vpc_cidr="10.0.0.0/16", az_count=2, public_subnet_cidrs=SUBNETS["public"],
            private_subnet_cidrs=SUBNETS["private"], database_subnet_cidrs=SUBNETS["database"],
            availability_zones=("eu-west-1a", "eu-west-1b"), cluster_name="af-test", flow_log_kms_key_arn=KEY)


def build(stack, **overrides):
    network = Network(stack, "network", props=make_props(NetworkProps, **{**BASE, **overrides}))
    return network, synth(stack)["resource"]


def subnets_by_tier(res):
    tiers = {}
    for name, body in res["aws_subnet"].items():
        tiers.setdefault(body["tags"]["tier"], {})[name] = body
    return tiers


def test_one_subnet_per_tier_and_zone_none_mapping_public_ips(stack):
    _, res = build(stack)
    tiers = subnets_by_tier(res)
    for tier, cidrs in SUBNETS.items():
        assert sorted((s["availability_zone"], s["cidr_block"]) for s in tiers[tier].values()) == \
            sorted(zip(BASE["availability_zones"], cidrs))
    assert all(s["map_public_ip_on_launch"] is False for s in res["aws_subnet"].values())


def test_subnets_carry_load_balancer_and_autoscaler_discovery_tags(stack):
    _, res = build(stack)
    tiers = subnets_by_tier(res)
    assert all(s["tags"]["kubernetes.io/role/elb"] == "1" for s in tiers["public"].values())
    assert all(s["tags"]["kubernetes.io/role/internal-elb"] == "1" and s["tags"]["karpenter.sh/discovery"] == "af-test"
               for s in tiers["private"].values())
    assert all("karpenter.sh/discovery" not in s["tags"] for s in [*tiers["public"].values(), *tiers["database"].values()])


@pytest.mark.parametrize("strategy,count", [("single", 1), ("per_az", 2)])
def test_nat_gateways_single_or_per_az_and_private_routes_use_them(stack, strategy, count):
    _, res = build(stack, nat_gateways=strategy)
    assert len(res["aws_nat_gateway"]) == count == len(res["aws_eip"])
    nat_routes = [r for r in res["aws_route"].values() if "nat_gateway_id" in r]
    assert len(nat_routes) == 2 and len({r["nat_gateway_id"] for r in nat_routes}) == count


def test_database_subnets_have_no_route_off_the_vpc(stack):
    _, res = build(stack)
    (db_table,) = [n for n, t in res["aws_route_table"].items() if t["tags"]["Name"] == "af-test-database"]
    assert not [r for r in res["aws_route"].values() if db_table in r["route_table_id"]]
    associated = [a for a in res["aws_route_table_association"].values() if db_table in a["route_table_id"]]
    assert len(associated) == 2


def test_default_security_group_has_no_rules(stack):
    _, res = build(stack)
    (default_sg,) = res["aws_default_security_group"].values()
    assert "ingress" not in default_sg and "egress" not in default_sg


def test_flow_logs_go_to_an_encrypted_retained_group_through_a_scoped_role(stack):
    _, res = build(stack, flow_log_retention_days=90)
    (group,) = res["aws_cloudwatch_log_group"].values()
    assert (group["name"], group["retention_in_days"], group["kms_key_id"]) == ("/aws/vpc/af-test/flow-logs", 90, KEY)
    (flow,) = res["aws_flow_log"].values()
    assert (flow["traffic_type"], flow["log_destination_type"]) == ("ALL", "cloud-watch-logs")
    (role,) = res["aws_iam_role"].values()
    trust = json.loads(role["assume_role_policy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    (policy,) = res["aws_iam_role_policy"].values()
    (stmt,) = json.loads(policy["policy"])["Statement"]
    assert sorted(stmt["Action"]) == ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    assert all("aws_cloudwatch_log_group" in r for r in stmt["Resource"])


def test_endpoints_s3_gateway_and_interface_endpoints_admit_only_the_vpc(stack):
    _, res = build(stack, interface_endpoints=("ecr.api", "ecr.dkr", "sts", "logs", "sqs", "kms", "secretsmanager"))
    endpoints = {e["service_name"]: e for e in res["aws_vpc_endpoint"].values()}
    assert endpoints["com.amazonaws.eu-west-1.s3"]["vpc_endpoint_type"] == "Gateway"
    assert len(endpoints["com.amazonaws.eu-west-1.s3"]["route_table_ids"]) == 3   # 2 private + database
    interface = {k.rsplit(".", 1)[-1] if "ecr" not in k else k.split("eu-west-1.")[1]: e
                 for k, e in endpoints.items() if e["vpc_endpoint_type"] == "Interface"}
    assert sorted(interface) == ["ecr.api", "ecr.dkr", "kms", "logs", "secretsmanager", "sqs", "sts"]
    assert all(e["private_dns_enabled"] is True for e in interface.values())
    (rule,) = res["aws_vpc_security_group_ingress_rule"].values()
    assert (rule["cidr_ipv4"], rule["from_port"], rule["to_port"]) == ("10.0.0.0/16", 443, 443)


THIS_ACCOUNT_ONLY = {"Sid": "OnlyThisAccountsPrincipals", "Effect": "Allow", "Principal": "*", "Action": "*",
                     "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalAccount": "123456789012"}}}


def test_every_interface_endpoint_admits_only_this_accounts_principals(stack):
    _, res = build(stack, interface_endpoints=("ecr.api", "ecr.dkr", "sts", "logs", "sqs", "kms", "secretsmanager",
                                               "ec2", "elasticloadbalancing", "autoscaling", "eks", "ssm", "monitoring"))
    interface = [e for e in res["aws_vpc_endpoint"].values() if e["vpc_endpoint_type"] == "Interface"]
    assert len(interface) == 13
    for endpoint in interface:
        assert json.loads(endpoint["policy"])["Statement"] == [THIS_ACCOUNT_ONLY], endpoint["service_name"]


def test_eks_auth_endpoint_has_no_policy_because_the_service_accepts_none(stack):
    _, res = build(stack, interface_endpoints=("eks-auth", "sts"))
    policies = {e["service_name"]: e.get("policy") for e in res["aws_vpc_endpoint"].values()
                if e["vpc_endpoint_type"] == "Interface"}
    assert policies["com.amazonaws.eu-west-1.eks-auth"] is None
    assert json.loads(policies["com.amazonaws.eu-west-1.sts"])["Statement"] == [THIS_ACCOUNT_ONLY]


def test_s3_gateway_endpoint_admits_this_account_and_reads_of_the_aws_owned_buckets_nodes_need(stack):
    _, res = build(stack)
    (gateway,) = [e for e in res["aws_vpc_endpoint"].values() if e["vpc_endpoint_type"] == "Gateway"]
    account, aws_owned = json.loads(gateway["policy"])["Statement"]
    assert account == THIS_ACCOUNT_ONLY
    assert aws_owned == {"Sid": "ReadAwsOwnedBuckets", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
                         "Resource": ["arn:aws:s3:::prod-eu-west-1-starport-layer-bucket/*",
                                      "arn:aws:s3:::al2023-repos-eu-west-1-de612dc2/*",
                                      "arn:aws:s3:::prod-registry-k8s-io-eu-west-1/*"]}


def test_no_interface_endpoints_means_no_endpoint_security_group(stack):
    network, res = build(stack, interface_endpoints=())
    assert "aws_security_group" not in res and network.endpoint_security_group_id is None


@pytest.mark.parametrize("overrides,message", [
    (dict(availability_zones=("eu-west-1a",)), r"availability_zones=\['eu-west-1a'\] does not list 2 distinct zones"),
    (dict(public_subnet_cidrs=("10.1.0.0/24", "10.0.132.0/22")),
     r"network.public_subnet_cidrs\[0\]='10.1.0.0/24' is outside vpc_cidr"),
    (dict(flow_log_retention_days=10), r"flow_log_retention_days=10 is not a retention period"),
])
def test_bad_props_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_props(NetworkProps, **{**BASE, **overrides})


def test_only_public_subnets_get_ipv6_and_an_ipv6_route_to_the_internet_gateway(stack):
    network, res = build(stack)
    (vpc,) = res["aws_vpc"].values()
    assert vpc["assign_generated_ipv6_cidr_block"] is True and network.public_ipv6 is True
    tiers = subnets_by_tier(res)
    assert sorted(s["ipv6_cidr_block"].split(", ")[-1] for s in tiers["public"].values()) == ["0)}", "1)}"]
    assert all("ipv6_cidr_block" not in s for t in ("private", "database") for s in tiers[t].values())
    (v6,) = [r for r in res["aws_route"].values() if "destination_ipv6_cidr_block" in r]
    assert v6["destination_ipv6_cidr_block"] == "::/0" and "aws_internet_gateway" in v6["gateway_id"]
