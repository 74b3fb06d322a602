"""EventBridge -> SQS for event-driven DAGs (docs/design.md §6): event -> rule -> queue -> AssetWatcher -> DAG run.

Per environment: a custom event bus; a landing bucket (hardened like every bucket, EventBridge notifications on);
two default rules (objects created in the landing bucket, on the default bus where S3 sends; application events on
the custom bus) plus the rules from config. Every rule gets its own SQS queue and dead-letter queue, encrypted with
one customer KMS key for the events queues. The queue's policy admits only `events.amazonaws.com` sending on behalf
of that one rule (`aws:SourceArn`); the target retries with a bounded age and then parks the event in the DLQ, which
also takes messages consumers failed `max_receive_count` times (redrive policy).

Airflow's triggerer consumes the queues (`grant_consume`); `airflow_environment()` gives the environment variables the
example DAGs in dags/ read to find them, so no DAG hardcodes an account id or queue URL.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from cdktf import ITerraformDependable
from cdktf_cdktf_provider_aws import (
    cloudwatch_event_bus,
    cloudwatch_event_rule,
    cloudwatch_event_target as target,
    kms_alias,
    kms_key,
    s3_bucket_notification,
    sqs_queue,
    sqs_queue_policy,
    sqs_queue_redrive_allow_policy,
)
from constructs import Construct

from ..core import iam
from .encryption import key_policy
from .event_patterns import APPLICATION_RULE, LANDING_RULE, EventRule
from .identity import PlatformIdentities
from .kafka import KAFKA_CONNECTION_ID
from .storage import BucketProps, SecureBucket
from .settings import EventsSettings
from ..core.validation import ConfigError
from ..core.environment import AwsEnvironment

EVENTS_PRINCIPAL = "events.amazonaws.com"
DEAD_LETTER_RETENTION_SECONDS = 1209600        # 14 days, SQS's maximum: time to inspect and redrive
CONSUME_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]

# Environment variables the example DAGs read (set on the Airflow pods from airflow_environment()).
ENV_REGION = "PLATFORM_EVENTS_REGION"
ENV_QUEUE_URL_PREFIX = "PLATFORM_EVENTS_QUEUE_URL_"
ENV_KAFKA_TOPICS = "PLATFORM_EVENTS_KAFKA_TOPICS"
ENV_KAFKA_CONN_ID = "PLATFORM_EVENTS_KAFKA_CONN_ID"


# ---- pure naming, shared by the construct and the Airflow wiring -----------------------------------------------

def queue_name(name: str, rule: str) -> str:
    return f"{name}-events-{rule}"


def dead_letter_queue_name(name: str, rule: str) -> str:
    return f"{queue_name(name, rule)}-dlq"


def queue_url(*, region: str, account_id: str, queue: str, partition: str = "aws") -> str:
    """SQS queue URLs are deterministic: https://sqs.<region>.<domain>/<account>/<name>."""
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account_id}/{queue}"


def queue_env_var(rule: str) -> str:
    """e.g. 'landing-object-created' -> PLATFORM_EVENTS_QUEUE_URL_LANDING_OBJECT_CREATED."""
    return ENV_QUEUE_URL_PREFIX + rule.upper().replace("-", "_")


def airflow_environment(*, name: str, region: str, account_id: str, rule_names: Iterable[str],
                        partition: str = "aws", kafka_topics: Iterable[str] = (),
                        kafka_connection_id: str = KAFKA_CONNECTION_ID) -> dict[str, str]:
    """Environment variables for the Airflow pods (triggerer and DAG processor parse the DAGs): the region, one
    queue URL per rule and, when Kafka is on (non-empty `kafka_topics`), the topics and connection id.
    `name` is the environment's resource prefix (e.g. 'airflow-dev'); rule_names = EventsConfig.rule_names."""
    env = {ENV_REGION: region}
    for rule in rule_names:
        env[queue_env_var(rule)] = queue_url(region=region, account_id=account_id, queue=queue_name(name, rule),
                                             partition=partition)
    topics = list(kafka_topics)
    if topics:
        env[ENV_KAFKA_TOPICS] = ",".join(topics)
        env[ENV_KAFKA_CONN_ID] = kafka_connection_id
    return env


def default_rules(*, landing_bucket_name: str, application_source_prefix: str) -> tuple[EventRule, EventRule]:
    """The two rules every environment has."""
    return (
        EventRule(name=LANDING_RULE, bus="default", description="Objects created in the landing bucket",
                  event_pattern={"source": ["aws.s3"], "detail-type": ["Object Created"],
                                 "detail": {"bucket": {"name": [landing_bucket_name]}}}),
        EventRule(name=APPLICATION_RULE, bus="custom", description="Application events put on the platform bus",
                  event_pattern={"source": [{"prefix": application_source_prefix}]}),
    )


# ---- the construct ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class EventsProps:
    name: str                                   # resource prefix, e.g. 'airflow-dev'
    landing_bucket_name: str
    landing_kms_key_arn: str                    # SSE-KMS key of the landing bucket (the storage key)
    access_log_bucket: str                      # bucket id receiving the landing bucket's server access logs
    access_log_policy: ITerraformDependable | None = None   # its policy (AccessLogBucket.policy): logging waits for it
    settings: EventsSettings = field(default_factory=EventsSettings)   # rules, delivery and queue behaviour
    prevent_destroy: bool = True


@dataclass(frozen=True)
class EventQueue:
    """What one rule delivers to (tokens): consumers use name/url/arn, alarms the dead-letter queue."""
    rule: str
    rule_arn: str
    name: str
    url: str
    arn: str
    dead_letter_name: str
    dead_letter_arn: str


class Events(Construct):
    """The bus, the landing bucket, and one rule -> encrypted queue (+ DLQ) per rule."""

    def __init__(self, scope: Construct, id_: str, *, props: EventsProps) -> None:
        super().__init__(scope, id_)
        env = AwsEnvironment.of(self)
        self._props = props
        name = props.name
        self.bus = cloudwatch_event_bus.CloudwatchEventBus(self, "bus", name=f"{name}-events")
        self.bus_name: str = self.bus.name
        self.bus_arn: str = self.bus.arn

        self.landing = SecureBucket(self, "landing", props=BucketProps(
            name=props.landing_bucket_name, kms_key_arn=props.landing_kms_key_arn,
            access_log_bucket=props.access_log_bucket, access_log_policy=props.access_log_policy, expiration_days=props.settings.landing_expiration_days,
            noncurrent_version_expiration_days=7, prevent_destroy=props.prevent_destroy))
        # S3 sends every object event of this bucket to the account's default bus; rules pick what they need.
        s3_bucket_notification.S3BucketNotification(self, "landing-notifications", bucket=self.landing.bucket_id,
                                                     eventbridge=True)

        self.rule_specs = (*default_rules(landing_bucket_name=props.landing_bucket_name,
                                          application_source_prefix=props.settings.application_source_prefix), *props.settings.rules)
        rules = {r.name: cloudwatch_event_rule.CloudwatchEventRule(
            self, f"rule-{r.name}", name=f"{name}-{r.name}", description=r.description or f"{r.name} -> SQS",
            event_bus_name=self.bus.name if r.bus == "custom" else "default",
            event_pattern=json.dumps(r.event_pattern, sort_keys=True)) for r in self.rule_specs}

        self.key = kms_key.KmsKey(
            self, "queue-key", description=f"{name} EventBridge -> SQS queues", enable_key_rotation=True,
            rotation_period_in_days=365, deletion_window_in_days=30,
            policy=key_policy(
                self,
                # EventBridge encrypts what it sends to the queues (and their DLQs), for these rules only.
                iam.statement("EventBridgeWritesRuleQueues", ["kms:GenerateDataKey", "kms:Decrypt"], "*",
                              principal={"Service": EVENTS_PRINCIPAL},
                              condition={"ArnEquals": {"aws:SourceArn": [r.arn for r in rules.values()]},
                                         "StringEquals": {"aws:SourceAccount": env.account_id}})))
        kms_alias.KmsAlias(self, "queue-key-alias", name=f"alias/{name}-events", target_key_id=self.key.key_id)
        self.kms_key_arn: str = self.key.arn

        self.queues: dict[str, EventQueue] = {}
        for spec in self.rule_specs:
            self.queues[spec.name] = self._queue(spec, rules[spec.name])

    def _queue(self, spec: EventRule, rule: cloudwatch_event_rule.CloudwatchEventRule) -> EventQueue:
        p, r = self._props, spec.name
        encrypted = dict(kms_master_key_id=self.key.arn, kms_data_key_reuse_period_seconds=300)
        dlq = sqs_queue.SqsQueue(self, f"dead-letter-queue-{r}", name=dead_letter_queue_name(p.name, r),
                                 message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS, **encrypted)
        queue = sqs_queue.SqsQueue(
            self, f"queue-{r}", name=queue_name(p.name, r), message_retention_seconds=p.settings.message_retention_seconds,
            visibility_timeout_seconds=p.settings.visibility_timeout_seconds, receive_wait_time_seconds=20,
            redrive_policy=json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": p.settings.max_receive_count}),
            **encrypted)
        # Only the main queue may use this DLQ as its dead-letter target.
        sqs_queue_redrive_allow_policy.SqsQueueRedriveAllowPolicy(
            self, f"redrive-allow-{r}", queue_url=dlq.url,
            redrive_allow_policy=json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [queue.arn]}))
        policies = [sqs_queue_policy.SqsQueuePolicy(self, f"{kind}-policy-{r}", queue_url=q.url,
                                                    policy=self._queue_policy(q.arn, rule.arn))
                    for kind, q in (("queue", queue), ("dead-letter-queue", dlq))]
        target.CloudwatchEventTarget(
            self, f"target-{r}", rule=rule.name, event_bus_name=rule.event_bus_name, target_id="sqs", arn=queue.arn,
            retry_policy=target.CloudwatchEventTargetRetryPolicy(
                maximum_retry_attempts=p.settings.retry_attempts, maximum_event_age_in_seconds=p.settings.max_event_age_seconds),
            dead_letter_config=target.CloudwatchEventTargetDeadLetterConfig(arn=dlq.arn),
            depends_on=policies)          # the first delivery must find the policy in place
        return EventQueue(rule=r, rule_arn=rule.arn, name=queue.name, url=queue.url, arn=queue.arn,
                          dead_letter_name=dlq.name, dead_letter_arn=dlq.arn)

    @staticmethod
    def _queue_policy(queue_arn: str, rule_arn: str) -> str:
        """EventBridge may send for this one rule; nothing else is admitted, and nothing without TLS."""
        return iam.policy_document(
            iam.statement("EventBridgeSendsForRule", ["sqs:SendMessage"], queue_arn,
                          principal={"Service": EVENTS_PRINCIPAL}, condition={"ArnEquals": {"aws:SourceArn": rule_arn}}),
            iam.statement("DenyInsecureTransport", ["sqs:*"], queue_arn, effect="Deny", principal="*",
                          condition={"Bool": {"aws:SecureTransport": "false"}}))

    def grant_consume(self, identities: PlatformIdentities, workload_id: str) -> None:
        """Let one workload receive and delete on exactly these queues (not the DLQs) and decrypt through SQS only."""
        env = AwsEnvironment.of(self)
        identities.grant(workload_id, "ConsumeEventQueues", CONSUME_ACTIONS, [q.arn for q in self.queues.values()])
        identities.grant(workload_id, "DecryptEventQueues", ["kms:Decrypt"], [self.kms_key_arn],
                         condition={"StringEquals": {"kms:ViaService": f"sqs.{env.region}.amazonaws.com"}})

    def queue(self, rule: str) -> EventQueue:
        if rule not in self.queues:
            raise ConfigError("rule", rule, "is not a rule of this environment", f"use one of {sorted(self.queues)}")
        return self.queues[rule]

    def outputs(self) -> dict[str, Any]:
        """Values the platform stack and operators read (stack outputs)."""
        values: dict[str, Any] = {"events-bus-name": self.bus_name, "events-landing-bucket-name": self.landing.name,
                                  "events-kms-key-arn": self.kms_key_arn}
        for rule, q in self.queues.items():
            values[f"events-queue-name-{rule}"] = q.name
            values[f"events-queue-url-{rule}"] = q.url
            values[f"events-dead-letter-queue-name-{rule}"] = q.dead_letter_name
        return values
