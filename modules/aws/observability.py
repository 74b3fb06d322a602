"""Alerting: CloudWatch metric alarms -> one KMS-encrypted SNS topic per severity -> PagerDuty and/or Slack.

- Topics: '<name>-alerts-critical' and '<name>-alerts-warning', encrypted with a customer key whose policy lets
  CloudWatch use it (alarms publish through SNS, which needs the key on their behalf). The topic policy lets
  only this account's CloudWatch alarms publish (aws:SourceArn + aws:SourceAccount) and only over TLS; the key
  policy lets CloudWatch use the key under the same two conditions.
- PagerDuty (optional): an HTTPS subscription whose endpoint, the integration URL with its key, is read at
  apply time from a Secrets Manager secret named in config. The secret's value is sensitive in Terraform, so
  the endpoint never appears in code, the synthesized JSON or plan output (it does live in the encrypted state).
- Slack (optional): an AWS Chatbot channel configuration for workspace/channel ids from config. Its role and
  guardrail allow reading CloudWatch only (its trust carries no confused-deputy condition: AWS documents none for
  Chatbot); Chatbot logging is off, because Chatbot would create an unencrypted, never-expiring log group in
  us-east-1 outside this stack.
- Alarms: relationship methods add the alarms of one watched thing each (`watch_database`, `watch_cache`,
  `watch_load_balancer`, `watch_cluster`, `watch_queue`); thresholds come from AlarmThresholds, the severity of
  each alarm is fixed in ALARMS below, and alarm and OK actions go to that severity's topic.
Metric names and dimensions: the CloudWatch metric references of RDS (AWS/RDS), ElastiCache (AWS/ElastiCache,
per node), Application Load Balancers (AWS/ApplicationELB), SQS (AWS/SQS) and Container Insights for EKS
(ContainerInsights; the crash-loop metric comes with enhanced observability, the add-on's default).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Mapping

from cdktf_cdktf_provider_aws import (
    chatbot_slack_channel_configuration as chatbot,
    cloudwatch_metric_alarm,
    data_aws_secretsmanager_secret_version as secret_version,
    iam_role,
    iam_role_policy,
    sns_topic,
    sns_topic_policy,
    sns_topic_subscription,
)
from constructs import Construct

from ..core import iam
from .alarm_thresholds import SEVERITIES, AlarmsSettings, AlarmThresholds  # noqa: F401 (AlarmThresholds: public name)
from .encryption import EncryptionKey, EncryptionKeyProps, ServiceUse
from ..core.validation import require
from ..core.environment import AwsEnvironment

Severity = Literal["critical", "warning"]
_NAME = re.compile(r"[a-z][a-z0-9-]{0,40}[a-z0-9]")
_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")


@dataclass(frozen=True)
class AlarmSpec:
    """One kind of alarm: which metric, how it is aggregated and compared, how bad it is."""
    namespace: str
    metric: str
    statistic: str                  # CloudWatch statistic, or a percentile such as 'p95'
    comparison: str
    threshold_field: str            # the AlarmThresholds field holding the threshold
    severity: Severity
    missing_data: str               # what no datapoint means: count metrics are absent when zero
    summary: str


_GE, _LE, _LT = "GreaterThanOrEqualToThreshold", "LessThanOrEqualToThreshold", "LessThanThreshold"
ALARMS: dict[str, AlarmSpec] = {
    # RDS PostgreSQL (dimension DBInstanceIdentifier)
    "rds-cpu": AlarmSpec("AWS/RDS", "CPUUtilization", "Average", _GE, "rds_cpu_percent", "warning", "missing",
                         "metadata database CPU high"),
    "rds-free-storage": AlarmSpec("AWS/RDS", "FreeStorageSpace", "Minimum", _LE, "rds_free_storage_bytes",
                                  "critical", "missing", "metadata database running out of storage"),
    "rds-freeable-memory": AlarmSpec("AWS/RDS", "FreeableMemory", "Minimum", _LE, "rds_freeable_memory_bytes",
                                     "warning", "missing", "metadata database low on memory"),
    "rds-connections": AlarmSpec("AWS/RDS", "DatabaseConnections", "Maximum", _GE, "rds_connections", "warning",
                                 "missing", "metadata database connections near the limit"),
    # ElastiCache Celery broker (dimension CacheClusterId: one alarm per node)
    "redis-engine-cpu": AlarmSpec("AWS/ElastiCache", "EngineCPUUtilization", "Average", _GE,
                                  "redis_engine_cpu_percent", "warning", "missing", "broker engine CPU high"),
    "redis-memory": AlarmSpec("AWS/ElastiCache", "DatabaseMemoryUsagePercentage", "Maximum", _GE,
                              "redis_memory_percent", "critical", "missing",
                              "broker memory nearly full (noeviction: writes fail when full)"),
    "redis-evictions": AlarmSpec("AWS/ElastiCache", "Evictions", "Sum", _GE, "redis_evictions", "critical",
                                 "notBreaching", "broker evicted keys (Celery messages lost)"),
    "redis-connections": AlarmSpec("AWS/ElastiCache", "CurrConnections", "Maximum", _GE, "redis_connections",
                                   "warning", "missing", "broker connections high"),
    # Application Load Balancer (LoadBalancer; TargetGroup + LoadBalancer per target group)
    "alb-5xx": AlarmSpec("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "Sum", _GE, "alb_5xx_count", "critical",
                         "notBreaching", "load balancer answering 5XX"),
    "alb-target-5xx": AlarmSpec("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", _GE, "alb_5xx_count",
                                "warning", "notBreaching", "targets answering 5XX"),
    "alb-target-response-time": AlarmSpec("AWS/ApplicationELB", "TargetResponseTime", "p95", _GE,
                                          "alb_target_response_seconds", "warning", "notBreaching",
                                          "slow responses (p95)"),
    "alb-unhealthy-hosts": AlarmSpec("AWS/ApplicationELB", "UnHealthyHostCount", "Maximum", _GE,
                                     "alb_unhealthy_hosts", "critical", "missing", "unhealthy targets"),
    # SQS (QueueName)
    "sqs-dlq-messages": AlarmSpec("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", _GE,
                                  "sqs_dlq_messages", "warning", "notBreaching", "messages in the dead-letter queue"),
    "sqs-oldest-message": AlarmSpec("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", _GE,
                                    "sqs_oldest_message_seconds", "warning", "notBreaching",
                                    "queue not consumed (oldest message age)"),
    # EKS through Container Insights (ClusterName). No datapoints for the node count means the agent or the
    # nodes are gone: that is breaching.
    "cluster-node-count": AlarmSpec("ContainerInsights", "cluster_node_count", "Minimum", _LT, "cluster_min_nodes",
                                    "critical", "breaching", "fewer cluster nodes than required"),
    "cluster-failed-nodes": AlarmSpec("ContainerInsights", "cluster_failed_node_count", "Maximum", _GE,
                                      "cluster_failed_nodes", "critical", "notBreaching", "cluster nodes failing"),
    "cluster-node-cpu": AlarmSpec("ContainerInsights", "node_cpu_utilization", "Average", _GE,
                                  "cluster_node_cpu_percent", "warning", "missing", "cluster node CPU high"),
    "cluster-crash-looping": AlarmSpec("ContainerInsights", "pod_container_status_waiting_reason_crash_loop_back_off",
                                       "Maximum", _GE, "cluster_crash_looping_containers", "warning",
                                       "notBreaching", "containers in CrashLoopBackOff"),
}


@dataclass(frozen=True, kw_only=True)
class AlertingProps:
    name: str                                      # resource name prefix, e.g. 'airflow-prod'
    settings: AlarmsSettings = field(default_factory=AlarmsSettings)   # thresholds and routing

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and _NAME.fullmatch(self.name) is not None, "name", self.name,
                "is not a valid alerting name prefix", "use 2-42 lowercase letters, digits and inner hyphens")


class Alerting(Construct):
    """Alert topics per severity with their subscriptions; alarms are added with the watch_* methods."""

    def __init__(self, scope: Construct, id_: str, *, props: AlertingProps) -> None:
        super().__init__(scope, id_)
        env = AwsEnvironment.of(self)
        p = self._props = props
        alarms_arn = f"arn:{env.partition}:cloudwatch:{env.region}:{env.account_id}:alarm:*"
        # CloudWatch calls KMS for the alarm that publishes, so the same confused-deputy conditions as the topic
        # policy hold here (SNS Developer Guide, key management: "Enable compatibility between event sources from
        # AWS services and encrypted topics"): only this account's alarms.
        this_accounts_alarms = {"ArnLike": {"aws:SourceArn": alarms_arn},
                                "StringEquals": {"aws:SourceAccount": env.account_id}}
        self.key = EncryptionKey(self, "key", props=EncryptionKeyProps(
            alias=f"{p.name}-alerts", description=f"{p.name} alert topics (SNS)",
            services=(ServiceUse(principal="cloudwatch.amazonaws.com", condition=this_accounts_alarms),)))
        self.topics: dict[str, sns_topic.SnsTopic] = {}
        for severity in SEVERITIES:
            topic = sns_topic.SnsTopic(self, f"topic-{severity}", name=f"{p.name}-alerts-{severity}",
                                       display_name=f"{p.name} {severity} alerts", kms_master_key_id=self.key.arn)
            sns_topic_policy.SnsTopicPolicy(self, f"topic-policy-{severity}", arn=topic.arn, policy=iam.policy_document(
                iam.statement("CloudWatchAlarmsOfThisAccountPublish", ["sns:Publish"], topic.arn,
                              principal={"Service": "cloudwatch.amazonaws.com"},
                              condition=this_accounts_alarms),
                iam.statement("DenyPublishWithoutTls", ["sns:Publish"], topic.arn, effect="Deny", principal="*",
                              condition={"Bool": {"aws:SecureTransport": "false"}})))
            self.topics[severity] = topic
        self.topic_arns: dict[str, str] = {severity: topic.arn for severity, topic in self.topics.items()}
        self.alarm_names: dict[str, str] = {}          # construct id -> alarm name, for outputs and tests
        if p.settings.pagerduty_secret_name:
            self._pagerduty(p)
        if p.settings.slack_channel_id:
            self._slack(p)

    # ---- destinations ---------------------------------------------------------------------------

    def _pagerduty(self, p: AlertingProps) -> None:
        # The integration URL embeds the PagerDuty integration key: read from Secrets Manager when Terraform
        # plans/applies (the deployer needs secretsmanager:GetSecretValue on it), never a literal here.
        endpoint = secret_version.DataAwsSecretsmanagerSecretVersion(
            self, "pagerduty-endpoint", secret_id=p.settings.pagerduty_secret_name)
        for severity in p.settings.pagerduty_severities:
            sns_topic_subscription.SnsTopicSubscription(
                self, f"pagerduty-{severity}", topic_arn=self.topics[severity].arn, protocol="https",
                endpoint=endpoint.secret_string, endpoint_auto_confirms=True)   # PagerDuty confirms by itself

    def _slack(self, p: AlertingProps) -> None:
        env = AwsEnvironment.of(self)
        role = iam_role.IamRole(self, "chatbot-role", name=f"{p.name}-chatbot",
                                description="AWS Chatbot: renders CloudWatch alarm notifications in Slack",
                                # No aws:SourceAccount/SourceArn condition: AWS documents none that Chatbot sends,
                                # and a condition key missing from the request denies it, which would drop every
                                # Slack alert silently. The role can only read CloudWatch (policy + guardrail).
                                assume_role_policy=iam.service_assume_role_policy("chatbot.amazonaws.com"))
        # What Chatbot's "notification permissions" template grants: read CloudWatch to render alarm charts.
        iam_role_policy.IamRolePolicy(self, "chatbot-role-policy", role=role.id, name="read-cloudwatch",
                                      policy=iam.policy_document(iam.statement(
                                          "ReadCloudWatchForNotifications",
                                          ["cloudwatch:Describe*", "cloudwatch:Get*", "cloudwatch:List*"], "*")))
        self.chatbot = chatbot.ChatbotSlackChannelConfiguration(
            self, "chatbot-slack", configuration_name=f"{p.name}-alerts", iam_role_arn=role.arn,
            slack_team_id=p.settings.slack_workspace_id, slack_channel_id=p.settings.slack_channel_id,
            sns_topic_arns=[self.topics[s].arn for s in p.settings.slack_severities],
            # Channel members act with their own roles, capped by this read-only guardrail.
            guardrail_policy_arns=[f"arn:{env.partition}:iam::aws:policy/CloudWatchReadOnlyAccess"],
            user_authorization_required=True, logging_level="NONE")

    # ---- alarms ---------------------------------------------------------------------------------

    def add_alarm(self, id_: str, *, kind: str, dimensions: Mapping[str, str], subject: str) -> None:
        """One alarm of a kind in ALARMS on one metric stream, named '<name>-<id_>'."""
        require(_ID.fullmatch(id_) is not None, "id_", id_, "is not a kebab-case alarm id",
                "use lowercase letters, digits and inner hyphens, e.g. 'sqs-orders'")
        require(kind in ALARMS, "kind", kind, "is not a known alarm kind", f"use one of {', '.join(ALARMS)}")
        spec, t = ALARMS[kind], self._props.settings
        threshold = getattr(t, spec.threshold_field)
        statistic = {"extended_statistic": spec.statistic} if spec.statistic.startswith("p") else \
            {"statistic": spec.statistic}
        topic = self.topic_arns[spec.severity]
        name = f"{self._props.name}-{id_}"
        cloudwatch_metric_alarm.CloudwatchMetricAlarm(
            self, f"alarm-{id_}", alarm_name=name, namespace=spec.namespace, metric_name=spec.metric,
            dimensions=dict(dimensions), period=t.period_seconds, evaluation_periods=t.evaluation_periods,
            comparison_operator=spec.comparison, threshold=threshold, treat_missing_data=spec.missing_data,
            alarm_description=f"[{spec.severity}] {subject}: {spec.summary} ({spec.metric} {spec.statistic} "
                              f"{spec.comparison} {threshold} for {t.evaluation_periods} x {t.period_seconds}s)",
            actions_enabled=True, alarm_actions=[topic], ok_actions=[topic], **statistic)
        self.alarm_names[id_] = name

    def watch_database(self, *, identifier: str) -> None:
        """CPU, free storage, freeable memory and connections of one RDS instance."""
        for kind in ("rds-cpu", "rds-free-storage", "rds-freeable-memory", "rds-connections"):
            self.add_alarm(kind, kind=kind, dimensions={"DBInstanceIdentifier": identifier}, subject="database")

    def watch_cache(self, *, member_cluster_ids: tuple[str, ...]) -> None:
        """Engine CPU, memory, evictions and connections of every node of a replication group
        (ElastiCache publishes per node: CacheClusterId '<group>-001', '<group>-002', ...)."""
        for i, node in enumerate(member_cluster_ids, start=1):
            for kind in ("redis-engine-cpu", "redis-memory", "redis-evictions", "redis-connections"):
                self.add_alarm(f"{kind}-node-{i}", kind=kind, dimensions={"CacheClusterId": node},
                               subject=f"cache node {i}")

    def watch_load_balancer(self, *, load_balancer_arn_suffix: str,
                            target_group_arn_suffixes: Mapping[str, str]) -> None:
        """5XX from the ALB itself, and per target group (keyed by a short name): 5XX, p95 response time and
        unhealthy targets."""
        self.add_alarm("alb-5xx", kind="alb-5xx", dimensions={"LoadBalancer": load_balancer_arn_suffix},
                       subject="load balancer")
        for host, suffix in target_group_arn_suffixes.items():
            dims = {"LoadBalancer": load_balancer_arn_suffix, "TargetGroup": suffix}
            for kind in ("alb-target-5xx", "alb-target-response-time", "alb-unhealthy-hosts"):
                self.add_alarm(f"{kind}-{host}", kind=kind, dimensions=dims, subject=f"{host} targets")

    def watch_cluster(self, *, cluster_name: str) -> None:
        """Node count, failed nodes, node CPU and crash-looping containers from Container Insights."""
        for kind in ("cluster-node-count", "cluster-failed-nodes", "cluster-node-cpu", "cluster-crash-looping"):
            self.add_alarm(kind, kind=kind, dimensions={"ClusterName": cluster_name}, subject="EKS cluster")

    def watch_queue(self, id_: str, *, queue_name: str, dlq_name: str) -> None:
        """A queue whose consumer must keep up (age of the oldest message) and its dead-letter queue (depth)."""
        self.add_alarm(f"sqs-{id_}-oldest-message", kind="sqs-oldest-message", dimensions={"QueueName": queue_name},
                       subject=f"queue {id_}")
        self.add_alarm(f"sqs-{id_}-dlq-messages", kind="sqs-dlq-messages", dimensions={"QueueName": dlq_name},
                       subject=f"dead-letter queue of {id_}")
