from tests.conftest import synth

from modules.network import Network, NetworkProps

SUBNETS = {"public": ("10.0.128.0/22", "10.0.132.0/22"), "private": ("10.0.0.0/19", "10.0.32.0/19"),
           "database": ("10.0.160.0/22", "10.0.164.0/22")}
BASE = dict(name="af-test", cidr="10.0.0.0/16", subnets=SUBNETS, availability_zones=("eu-west-1a", "eu-west-1b"), region="eu-west-1", account_id="123456789012",
            cluster_name="af-test", flow_log_kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/k")


def test_one_nat_gateway_when_single(stack):
    Network(stack, "network", props=NetworkProps(**BASE, nat_gateways="single"))
    res = synth(stack)["resource"]
    (nat,) = res["aws_nat_gateway"].values()
    assert len(res["aws_subnet"]) == 6
