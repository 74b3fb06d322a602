"""Karpenter's interruption queue: EventBridge sends EC2 spot interruption warnings, rebalance recommendations,
instance state changes and AWS Health events to one KMS-encrypted SQS queue that Karpenter reads, so it drains a
node before EC2 takes it away. Airflow workers run on spot capacity (modules/platform/addons.py NodePool): with the queue,
the two-minute spot warning cordons the node and lets Celery stop taking tasks instead of losing them mid-run.

Event patterns and the queue's 5-minute retention follow Karpenter's getting-started CloudFormation template.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf_cdktf_provider_aws import cloudwatch_event_rule, cloudwatch_event_target, sqs_queue, sqs_queue_policy
from constructs import Construct

from ..core import iam, validation
from ..core.environment import AwsEnvironment
from .encryption import EncryptionKey, EncryptionKeyProps, ServiceUse
from .identity import PlatformIdentities

EVENTS_PRINCIPAL = "events.amazonaws.com"
INTERRUPTION_EVENTS = {
    "spot-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "instance-state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    "scheduled-change": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
}
CONSUME_ACTIONS = ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]


@dataclass(frozen=True, kw_only=True)
class NodeInterruptionQueueProps:
    cluster_name: str

    def __post_init__(self) -> None:
        validation.eks_cluster_name("cluster_name", self.cluster_name)


class NodeInterruptionQueue(Construct):
    def __init__(self, scope: Construct, id_: str, *, props: NodeInterruptionQueueProps) -> None:
        super().__init__(scope, id_)
        env = AwsEnvironment.of(self)
        self._props = props
        name = f"{props.cluster_name}-karpenter-interruption"
        rules = {event: cloudwatch_event_rule.CloudwatchEventRule(
            self, f"rule-{event}", name=f"{props.cluster_name}-karpenter-{event}",
            description=f"{event} -> Karpenter interruption queue", event_pattern=json.dumps(pattern, sort_keys=True))
            for event, pattern in INTERRUPTION_EVENTS.items()}
        rule_arns = [rule.arn for rule in rules.values()]
        # EventBridge encrypts what it delivers, for these rules only.
        self.key = EncryptionKey(self, "key", props=EncryptionKeyProps(
            alias=name, description=f"{name} queue",
            services=(ServiceUse(principal=EVENTS_PRINCIPAL, condition={
                "ArnEquals": {"aws:SourceArn": rule_arns}, "StringEquals": {"aws:SourceAccount": env.account_id}}),)))
        queue = sqs_queue.SqsQueue(self, "queue", name=name, message_retention_seconds=300,
                                   kms_master_key_id=self.key.arn, kms_data_key_reuse_period_seconds=300)
        policy = sqs_queue_policy.SqsQueuePolicy(self, "queue-policy", queue_url=queue.url, policy=iam.policy_document(
            iam.statement("EventBridgeSendsInterruptions", ["sqs:SendMessage"], queue.arn,
                          principal={"Service": EVENTS_PRINCIPAL}, condition={"ArnEquals": {"aws:SourceArn": rule_arns}}),
            iam.statement("DenyInsecureTransport", ["sqs:*"], queue.arn, effect="Deny", principal="*",
                          condition={"Bool": {"aws:SecureTransport": "false"}})))
        for event, rule in rules.items():
            cloudwatch_event_target.CloudwatchEventTarget(
                self, f"target-{event}", rule=rule.name, target_id="karpenter-interruption-queue", arn=queue.arn,
                depends_on=[policy])
        self.queue_name: str = queue.name
        self.queue_arn: str = queue.arn
        self.kms_key_arn: str = self.key.arn

    def grant_consume(self, identities: PlatformIdentities, workload_id: str = "karpenter") -> None:
        """Let Karpenter receive and delete on exactly this queue and decrypt through SQS only."""
        env = AwsEnvironment.of(self)
        identities.grant(workload_id, "ConsumeInterruptionQueue", CONSUME_ACTIONS, [self.queue_arn])
        identities.grant(workload_id, "DecryptInterruptionQueue", ["kms:Decrypt"], [self.kms_key_arn],
                         condition={"StringEquals": {"kms:ViaService": f"sqs.{env.region}.amazonaws.com"}})
