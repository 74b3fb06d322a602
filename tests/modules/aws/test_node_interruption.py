"""Karpenter's interruption queue: the four EC2/Health event rules, a KMS queue only those rules may send to,
and Karpenter's role allowed to consume exactly that queue."""
from __future__ import annotations

import json

import pytest

from modules.aws.node_interruption import CONSUME_ACTIONS, INTERRUPTION_EVENTS, NodeInterruptionQueue, NodeInterruptionQueueProps
from modules.core.validation import ConfigError
from tests.conftest import only, synth

ACCOUNT = "123456789012"


def build(stack):
    return NodeInterruptionQueue(stack, "node-interruption", props=NodeInterruptionQueueProps(
        cluster_name="airflow-test"))


def test_rules_catch_spot_warnings_rebalance_state_changes_and_health_events(stack):
    build(stack)
    res = synth(stack)["resource"]
    patterns = {r["name"]: json.loads(r["event_pattern"]) for r in res["aws_cloudwatch_event_rule"].values()}
    assert patterns == {f"airflow-test-karpenter-{event}": pattern for event, pattern in INTERRUPTION_EVENTS.items()}
    assert {p["detail-type"][0] for p in patterns.values()} == {
        "EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation",
        "EC2 Instance State-change Notification", "AWS Health Event"}
    (queue_id, queue), = res["aws_sqs_queue"].items()
    targets = res["aws_cloudwatch_event_target"].values()
    assert len(targets) == 4 and all(t["arn"] == f"${{aws_sqs_queue.{queue_id}.arn}}" for t in targets)


def test_queue_is_encrypted_short_lived_and_admits_only_the_rules(stack):
    build(stack)
    res = synth(stack)["resource"]
    _, queue = only(res, "aws_sqs_queue")
    assert queue["name"] == "airflow-test-karpenter-interruption" and queue["message_retention_seconds"] == 300
    assert queue["kms_master_key_id"].startswith("${aws_kms_key.")
    _, policy = only(res, "aws_sqs_queue_policy")
    allow, deny = json.loads(policy["policy"])["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"} and allow["Action"] == ["sqs:SendMessage"]
    rule_arns = sorted(f"${{aws_cloudwatch_event_rule.{n}.arn}}" for n in res["aws_cloudwatch_event_rule"])
    assert sorted(allow["Condition"]["ArnEquals"]["aws:SourceArn"]) == rule_arns
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    _, key = only(res, "aws_kms_key")
    events_use = [s for s in json.loads(key["policy"])["Statement"] if s.get("Principal") == {"Service": "events.amazonaws.com"}]
    assert len(events_use) == 1 and sorted(events_use[0]["Condition"]["ArnEquals"]["aws:SourceArn"]) == rule_arns


def test_cluster_name_is_validated():
    with pytest.raises(ConfigError, match="cluster_name='Bad_Name' is not a valid EKS cluster name"):
        NodeInterruptionQueueProps(cluster_name="Bad_Name")


def test_karpenter_may_consume_exactly_this_queue(stacks):
    for name in ("dev", "staging", "prod"):
        res = stacks[f"airflow-{name}-infra"]["resource"]
        (queue_id,) = [n for n in res["aws_sqs_queue"] if n.startswith("node-interruption")]
        (policy,) = [json.loads(p["policy"]) for n, p in res["aws_iam_role_policy"].items() if n.startswith("identities_karpenter")]
        consume = [s for s in policy["Statement"] if s["Sid"] == "ConsumeInterruptionQueue"]
        assert len(consume) == 1 and sorted(consume[0]["Action"]) == sorted(CONSUME_ACTIONS)
        assert consume[0]["Resource"] == [f"${{aws_sqs_queue.{queue_id}.arn}}"]
        (decrypt,) = [s for s in policy["Statement"] if s["Sid"] == "DecryptInterruptionQueue"]
        assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "sqs.eu-west-1.amazonaws.com"}}
        settings = json.loads(stacks[f"airflow-{name}-platform"]["resource"]["helm_release"]["karpenter"]["values"][0])["settings"]
        assert settings["interruptionQueue"].endswith(f"cross-stack-output-aws_sqs_queue{queue_id}name}}")
