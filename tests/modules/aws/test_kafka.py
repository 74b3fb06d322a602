"""modules/aws/kafka.py: TLS-only, IAM-only MSK with a customer key and encrypted broker logs, one port from one group,
and a triggerer grant naming exactly the configured topics and consumer group."""
from __future__ import annotations

import json

import pytest

from modules.aws.identity import PlatformIdentities, PlatformIdentitiesProps
from modules.aws.kafka import Kafka, KafkaProps, broker_subnet_ids, kafka_connection_extra, log_group_prefix
from modules.core.validation import ConfigError
from tests.modules.aws.test_identity import grant_all
from tests.conftest import make_props, only, synth

ACCOUNT = "123456789012"
LOGS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/logs"
BASE = dict(name="af-prod-kafka", vpc_id="vpc-1", subnet_ids=("subnet-a", "subnet-b", "subnet-c"),
            logs_kms_key_arn=LOGS_KEY, log_retention_days=365)


def identities_in(stack) -> PlatformIdentities:
    return grant_all(PlatformIdentities(stack, "identities", props=PlatformIdentitiesProps(cluster_name="af-prod")))


def test_provisioned_is_tls_only_iam_only_private_and_encrypted_with_its_own_key(stack):
    Kafka(stack, "kafka", props=make_props(KafkaProps, **BASE, kafka_brokers_per_zone=2))
    res = synth(stack)["resource"]
    _, cluster = only(res, "aws_msk_cluster")
    key_address, key = only(res, "aws_kms_key")
    sg_address, _ = only(res, "aws_security_group")
    assert cluster["encryption_info"] == {
        "encryption_at_rest_kms_key_arn": f"${{aws_kms_key.{key_address}.arn}}",
        "encryption_in_transit": {"client_broker": "TLS", "in_cluster": True}}
    assert cluster["client_authentication"] == {"sasl": {"iam": True, "scram": False}, "unauthenticated": False}
    assert "tls" not in cluster["client_authentication"] and key["enable_key_rotation"] is True
    nodes = cluster["broker_node_group_info"]
    assert nodes["connectivity_info"] == {"public_access": {"type": "DISABLED"}}
    assert (nodes["client_subnets"], nodes["security_groups"]) == (list(BASE["subnet_ids"]),
                                                                   [f"${{aws_security_group.{sg_address}.id}}"])
    assert (cluster["number_of_broker_nodes"], cluster["kafka_version"]) == (6, "3.8.x")


def test_broker_logs_go_to_a_kms_encrypted_log_group_with_retention(stack):
    Kafka(stack, "kafka", props=make_props(KafkaProps, **BASE))
    res = synth(stack)["resource"]
    group_address, group = only(res, "aws_cloudwatch_log_group")
    _, cluster = only(res, "aws_msk_cluster")
    assert (group["name"], group["retention_in_days"], group["kms_key_id"]) == (
        "/aws/msk/af-prod-kafka/broker", 365, LOGS_KEY)
    assert group["name"].startswith(log_group_prefix("af-prod-kafka"))
    assert cluster["logging_info"] == {"broker_logs": {"cloudwatch_logs": {
        "enabled": True, "log_group": f"${{aws_cloudwatch_log_group.{group_address}.name}}"}}}


def test_only_9098_and_only_from_the_admitted_security_group(stack):
    Kafka(stack, "kafka", props=make_props(KafkaProps, **BASE)).allow_from("cluster-nodes", source_security_group_id="sg-nodes")
    res = synth(stack)["resource"]
    _, group = only(res, "aws_security_group")
    _, rule = only(res, "aws_vpc_security_group_ingress_rule")
    assert "ingress" not in group and "egress" not in group
    assert (rule["from_port"], rule["to_port"], rule["ip_protocol"], rule["referenced_security_group_id"]) == (
        9098, 9098, "tcp", "sg-nodes")
    assert "cidr_ipv4" not in rule and "cidr_ipv6" not in rule


def test_serverless_uses_iam_auth_in_the_given_subnets_and_reads_bootstrap_brokers(stack):
    kafka = Kafka(stack, "kafka", props=make_props(KafkaProps, **BASE, kafka_mode="serverless"))
    doc = synth(stack)
    _, cluster = only(doc["resource"], "aws_msk_serverless_cluster")
    _, brokers = only(doc["data"], "aws_msk_bootstrap_brokers")
    assert "aws_msk_cluster" not in doc["resource"] and "aws_kms_key" not in doc["resource"]
    assert cluster["client_authentication"] == {"sasl": {"iam": {"enabled": True}}}
    (vpc,) = cluster["vpc_config"]
    assert vpc["subnet_ids"] == list(BASE["subnet_ids"]) and len(vpc["security_group_ids"]) == 1
    assert brokers["cluster_arn"].startswith("${aws_msk_serverless_cluster.") and kafka.bootstrap_brokers


def test_grant_read_names_exactly_the_cluster_topics_and_group(stack):
    identities = identities_in(stack)
    Kafka(stack, "kafka", props=make_props(KafkaProps, **BASE)).grant_read(identities, "airflow-triggerer",
                                                                 topics=("orders", "payments"), consumer_group="airflow")
    res = synth(stack)["resource"]
    cluster_address, _ = only(res, "aws_msk_cluster")
    (policy,) = [p for k, p in res["aws_iam_role_policy"].items() if "airflow-triggerer" in k]
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    uuid = f"${{aws_msk_cluster.{cluster_address}.cluster_uuid}}"
    base = f"arn:aws:kafka:eu-west-1:{ACCOUNT}"
    assert statements["ConnectKafka"]["Resource"] == [f"${{aws_msk_cluster.{cluster_address}.arn}}"]
    assert statements["ConnectKafka"]["Action"] == ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
    assert statements["ReadKafkaTopics"]["Resource"] == [f"{base}:topic/af-prod-kafka/{uuid}/orders",
                                                         f"{base}:topic/af-prod-kafka/{uuid}/payments"]
    assert statements["ReadKafkaTopics"]["Action"] == ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    assert statements["UseKafkaConsumerGroup"]["Resource"] == [f"{base}:group/af-prod-kafka/{uuid}/airflow"]
    assert not any("kafka-cluster:WriteData" in s["Action"] or "*" in "".join(s["Resource"])
                   for s in statements.values() if s["Sid"].endswith(("Kafka", "Topics", "Group")))


@pytest.mark.parametrize("subnets,mode,message", [
    ((), "provisioned", "subnet_ids=[] gives 0 subnets (MSK provisioned needs 2-3"),
    (("subnet-a",), "provisioned", "gives 1 subnets"),
    (("a", "b", "c", "d"), "provisioned", "needs 2-3"),
    (("a",), "serverless", "MSK serverless needs 2-5"),
])
def test_too_few_or_too_many_subnets_is_a_config_error(subnets, mode, message):
    with pytest.raises(ConfigError, match="fix: pass") as err:
        make_props(KafkaProps, **{**BASE, "subnet_ids": subnets, "kafka_mode": mode})
    assert message in str(err.value)


def test_broker_subnets_follow_the_configured_zones_and_refuse_unknown_ones():
    zones, subnets = ("eu-west-1a", "eu-west-1b", "eu-west-1c"), ["s-a", "s-b", "s-c"]
    assert broker_subnet_ids(("eu-west-1c", "eu-west-1a"), availability_zones=zones, subnet_ids=subnets) == ("s-c", "s-a")
    with pytest.raises(ConfigError, match=r"kafka_availability_zones=\['eu-west-1d'\] names zones"):
        broker_subnet_ids(("eu-west-1d",), availability_zones=zones, subnet_ids=subnets)


def test_connection_extra_is_tls_with_msk_iam_tokens_and_no_secret():
    extra = kafka_connection_extra(bootstrap_brokers="b-1.x.kafka.eu-west-1.amazonaws.com:9098", consumer_group="g")
    assert (extra["security.protocol"], extra["sasl.mechanism"], extra["group.id"]) == ("SASL_SSL", "OAUTHBEARER", "g")
    assert not {"sasl.password", "sasl.username", "ssl.key.password"} & set(extra)
