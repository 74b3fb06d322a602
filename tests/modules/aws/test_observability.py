"""Alerting construct: encrypted topics per severity, who may publish, PagerDuty / Slack on and off, and the
alarms each watch_* method adds (metric, namespace, dimensions, threshold, actions)."""
import json

import pytest

from modules.aws.alarm_thresholds import AlarmsSettings, AlarmThresholds
from modules.aws.observability import ALARMS, Alerting, AlertingProps
from modules.core.validation import ConfigError
from tests.conftest import make_props, only, strings, synth

BASE = dict(name="af-test")
SLACK = dict(slack_workspace_id="T01ABCDEF23", slack_channel_id="C01ABCDEF23")


def alarms_by_name(res: dict) -> dict[str, dict]:
    return {a["alarm_name"]: a for a in res["aws_cloudwatch_metric_alarm"].values()}


def topic_refs(res: dict) -> dict[str, str]:
    """severity -> '${aws_sns_topic.<id>.arn}'"""
    return {t["name"].rsplit("-", 1)[1]: f"${{aws_sns_topic.{address}.arn}}"
            for address, t in res["aws_sns_topic"].items()}


def test_one_topic_per_severity_encrypted_with_a_rotating_key_cloudwatch_may_use(stack):
    Alerting(stack, "alerting", props=make_props(AlertingProps, **BASE))
    res = synth(stack)["resource"]
    key_address, key = only(res, "aws_kms_key")
    assert key["enable_key_rotation"] is True
    topics = {t["name"]: t for t in res["aws_sns_topic"].values()}
    assert set(topics) == {"af-test-alerts-critical", "af-test-alerts-warning"}
    assert {t["kms_master_key_id"] for t in topics.values()} == {f"${{aws_kms_key.{key_address}.arn}}"}
    statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
    cloudwatch = [s for s in statements.values() if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert len(cloudwatch) == 1 and {"kms:Decrypt*", "kms:GenerateDataKey*"} <= set(cloudwatch[0]["Action"])
    # Only on behalf of this account's alarms (confused deputy): the same conditions as the topic policy.
    assert cloudwatch[0]["Condition"] == {
        "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:*"},
        "StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_only_this_accounts_alarms_may_publish_and_only_over_tls(stack):
    Alerting(stack, "alerting", props=make_props(AlertingProps, **BASE))
    res = synth(stack)["resource"]
    refs = topic_refs(res)
    policies = {p["arn"]: json.loads(p["policy"]) for p in res["aws_sns_topic_policy"].values()}
    assert set(policies) == set(refs.values())
    for arn, policy in policies.items():
        allow, deny = policy["Statement"]
        assert (allow["Effect"], allow["Principal"], allow["Action"], allow["Resource"]) == (
            "Allow", {"Service": "cloudwatch.amazonaws.com"}, ["sns:Publish"], arn)
        assert allow["Condition"] == {"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:*"},
                                      "StringEquals": {"aws:SourceAccount": "123456789012"}}
        assert (deny["Effect"], deny["Principal"], deny["Condition"]) == (
            "Deny", "*", {"Bool": {"aws:SecureTransport": "false"}})


def test_no_pagerduty_or_slack_unless_configured(stack):
    Alerting(stack, "alerting", props=make_props(AlertingProps, **BASE))
    doc = synth(stack)
    assert "aws_sns_topic_subscription" not in doc["resource"]
    assert "aws_chatbot_slack_channel_configuration" not in doc["resource"] and "aws_iam_role" not in doc["resource"]
    assert "aws_secretsmanager_secret_version" not in doc.get("data", {})


def test_pagerduty_endpoint_is_read_from_the_named_secret_never_written_in_json(stack):
    Alerting(stack, "alerting", props=make_props(AlertingProps, **BASE, pagerduty_secret_name="af-test/alerting/pagerduty"))
    doc = synth(stack)
    data_address, secret = only(doc["data"], "aws_secretsmanager_secret_version")
    assert secret == {**secret, "secret_id": "af-test/alerting/pagerduty"}
    _, subscription = only(doc["resource"], "aws_sns_topic_subscription")
    assert subscription["endpoint"] == f"${{data.aws_secretsmanager_secret_version.{data_address}.secret_string}}"
    assert (subscription["protocol"], subscription["endpoint_auto_confirms"]) == ("https", True)
    assert subscription["topic_arn"] == topic_refs(doc["resource"])["critical"]   # only critical pages by default
    assert not [s for s in strings(doc) if "pagerduty.com" in s]


def test_pagerduty_can_page_for_both_severities(stack):
    Alerting(stack, "alerting", props=make_props(AlertingProps, **BASE, pagerduty_secret_name="pd",
                                                    pagerduty_severities=("critical", "warning")))
    res = synth(stack)["resource"]
    assert sorted(s["topic_arn"] for s in res["aws_sns_topic_subscription"].values()) == sorted(
        topic_refs(res).values())


def test_slack_through_chatbot_with_a_read_only_role_and_guardrail(stack):
    Alerting(stack, "alerting", props=make_props(AlertingProps, **BASE, **SLACK))
    res = synth(stack)["resource"]
    _, config = only(res, "aws_chatbot_slack_channel_configuration")
    role_address, role = only(res, "aws_iam_role")
    _, policy = only(res, "aws_iam_role_policy")
    assert (config["slack_team_id"], config["slack_channel_id"]) == ("T01ABCDEF23", "C01ABCDEF23")
    assert sorted(config["sns_topic_arns"]) == sorted(topic_refs(res).values())
    assert config["iam_role_arn"] == f"${{aws_iam_role.{role_address}.arn}}"
    assert config["guardrail_policy_arns"] == ["arn:aws:iam::aws:policy/CloudWatchReadOnlyAccess"]
    assert (config["user_authorization_required"], config["logging_level"]) == (True, "NONE")
    (trust,) = json.loads(role["assume_role_policy"])["Statement"]
    assert trust == {"Sid": "AssumeByService", "Effect": "Allow", "Principal": {"Service": "chatbot.amazonaws.com"},
                     "Action": "sts:AssumeRole"}     # no undocumented condition that could drop Slack alerts
    (stmt,) = json.loads(policy["policy"])["Statement"]
    assert all(a.startswith(("cloudwatch:Describe", "cloudwatch:Get", "cloudwatch:List")) for a in stmt["Action"])


def test_slack_can_receive_critical_only(stack):
    Alerting(stack, "alerting", props=make_props(AlertingProps, **BASE, **SLACK, slack_severities=("critical",)))
    res = synth(stack)["resource"]
    _, config = only(res, "aws_chatbot_slack_channel_configuration")
    assert config["sns_topic_arns"] == [topic_refs(res)["critical"]]


def test_database_alarms_use_rds_metrics_thresholds_and_severity_topics(stack):
    thresholds = AlarmsSettings(rds_cpu_percent=70, rds_free_storage_bytes=5_000_000_000, period_seconds=60,
                                evaluation_periods=5)
    Alerting(stack, "alerting", props=make_props(AlertingProps, **BASE, settings=thresholds)).watch_database(identifier="db-1")
    res = synth(stack)["resource"]
    alarms, topics = alarms_by_name(res), topic_refs(res)
    assert {n: (a["namespace"], a["metric_name"], a["dimensions"]) for n, a in alarms.items()} == {
        "af-test-rds-cpu": ("AWS/RDS", "CPUUtilization", {"DBInstanceIdentifier": "db-1"}),
        "af-test-rds-free-storage": ("AWS/RDS", "FreeStorageSpace", {"DBInstanceIdentifier": "db-1"}),
        "af-test-rds-freeable-memory": ("AWS/RDS", "FreeableMemory", {"DBInstanceIdentifier": "db-1"}),
        "af-test-rds-connections": ("AWS/RDS", "DatabaseConnections", {"DBInstanceIdentifier": "db-1"})}
    cpu, storage = alarms["af-test-rds-cpu"], alarms["af-test-rds-free-storage"]
    assert (cpu["threshold"], cpu["comparison_operator"], cpu["statistic"]) == (70, "GreaterThanOrEqualToThreshold",
                                                                               "Average")
    assert (storage["threshold"], storage["comparison_operator"]) == (5_000_000_000, "LessThanOrEqualToThreshold")
    assert (cpu["period"], cpu["evaluation_periods"], cpu["actions_enabled"]) == (60, 5, True)
    assert cpu["alarm_actions"] == cpu["ok_actions"] == [topics["warning"]]
    assert storage["alarm_actions"] == storage["ok_actions"] == [topics["critical"]]


def test_cache_alarms_are_per_node(stack):
    alerting = Alerting(stack, "alerting", props=make_props(AlertingProps, **BASE, settings=AlarmsSettings(redis_memory_percent=75)))
    alerting.watch_cache(member_cluster_ids=("broker-001", "broker-002"))
    alarms = alarms_by_name(synth(stack)["resource"])
    assert len(alarms) == 8
    memory = alarms["af-test-redis-memory-node-2"]
    assert (memory["namespace"], memory["metric_name"], memory["dimensions"], memory["threshold"]) == (
        "AWS/ElastiCache", "DatabaseMemoryUsagePercentage", {"CacheClusterId": "broker-002"}, 75)
    assert {a["metric_name"] for a in alarms.values()} == {"EngineCPUUtilization", "DatabaseMemoryUsagePercentage",
                                                           "Evictions", "CurrConnections"}
    assert alarms["af-test-redis-evictions-node-1"]["treat_missing_data"] == "notBreaching"


def test_load_balancer_alarms_per_target_group_with_p95_response_time(stack):
    alerting = Alerting(stack, "alerting", props=make_props(AlertingProps, 
        **BASE, settings=AlarmsSettings(alb_target_response_seconds=1.5)))
    alerting.watch_load_balancer(load_balancer_arn_suffix="app/lb/1", target_group_arn_suffixes={"ui": "targetgroup/ui/2"})
    alarms = alarms_by_name(synth(stack)["resource"])
    assert set(alarms) == {"af-test-alb-5xx", "af-test-alb-target-5xx-ui", "af-test-alb-target-response-time-ui",
                           "af-test-alb-unhealthy-hosts-ui"}
    assert alarms["af-test-alb-5xx"]["dimensions"] == {"LoadBalancer": "app/lb/1"}
    latency = alarms["af-test-alb-target-response-time-ui"]
    assert latency["dimensions"] == {"LoadBalancer": "app/lb/1", "TargetGroup": "targetgroup/ui/2"}
    assert (latency["extended_statistic"], latency["threshold"]) == ("p95", 1.5) and "statistic" not in latency
    assert alarms["af-test-alb-unhealthy-hosts-ui"]["metric_name"] == "UnHealthyHostCount"


def test_cluster_alarms_come_from_container_insights(stack):
    Alerting(stack, "alerting", props=make_props(AlertingProps, **BASE, settings=AlarmsSettings(cluster_min_nodes=3))
             ).watch_cluster(cluster_name="af-test")
    alarms = alarms_by_name(synth(stack)["resource"])
    assert {a["namespace"] for a in alarms.values()} == {"ContainerInsights"}
    assert {a["dimensions"]["ClusterName"] for a in alarms.values()} == {"af-test"}
    nodes = alarms["af-test-cluster-node-count"]
    assert (nodes["metric_name"], nodes["comparison_operator"], nodes["threshold"], nodes["treat_missing_data"]) == (
        "cluster_node_count", "LessThanThreshold", 3, "breaching")
    assert {a["metric_name"] for a in alarms.values()} >= {"cluster_failed_node_count", "node_cpu_utilization",
                                                           "pod_container_status_waiting_reason_crash_loop_back_off"}


def test_watch_queue_alarms_on_the_oldest_message_and_the_dead_letter_depth(stack):
    Alerting(stack, "alerting", props=make_props(AlertingProps, **BASE, settings=AlarmsSettings(sqs_oldest_message_seconds=600))
             ).watch_queue("orders", queue_name="q-orders", dlq_name="q-orders-dlq")
    alarms = alarms_by_name(synth(stack)["resource"])
    age, depth = alarms["af-test-sqs-orders-oldest-message"], alarms["af-test-sqs-orders-dlq-messages"]
    assert (age["namespace"], age["metric_name"], age["dimensions"], age["threshold"]) == (
        "AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": "q-orders"}, 600)
    assert (depth["metric_name"], depth["dimensions"], depth["threshold"]) == (
        "ApproximateNumberOfMessagesVisible", {"QueueName": "q-orders-dlq"}, 1)


def test_every_alarm_kind_names_an_existing_threshold():
    assert {spec.threshold_field for spec in ALARMS.values()} <= set(AlarmThresholds.threshold_fields())
    assert {spec.severity for spec in ALARMS.values()} == {"critical", "warning"}


@pytest.mark.parametrize("kwargs,message", [
    (dict(slack_workspace_id="T01ABCDEF23", slack_channel_id="#alerts"), r"slack_channel_id='#alerts' is not a Slack"),
    (dict(slack_workspace_id="T01ABCDEF23"), r"slack_channel_id='' and slack_workspace_id='T01ABCDEF23' must be set"),
    (dict(pagerduty_secret_name="bad name"), r"pagerduty_secret_name='bad name' is not a Secrets Manager"),
    (dict(pagerduty_secret_name="pd", pagerduty_severities=("info",)), r"pagerduty_severities=\['info'\] names"),
    (dict(name="Bad_Name"), r"name='Bad_Name' is not a valid alerting name prefix"),
])
def test_props_refuse_bad_routing(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_props(AlertingProps, **{**BASE, **kwargs})


@pytest.mark.parametrize("kwargs,message", [
    (dict(rds_cpu_percent=150), r"rds_cpu_percent=150 is outside 1-100 percent; fix: set a threshold in 1-100"),
    (dict(rds_free_storage_bytes=0), r"rds_free_storage_bytes=0 is outside 1 or more bytes"),
    (dict(alb_target_response_seconds=0), r"alb_target_response_seconds=0 is outside"),
    (dict(evaluation_periods=0), r"evaluation_periods=0 must be a whole number of periods"),
    (dict(period_seconds=90), r"period_seconds=90 is not a CloudWatch alarm period"),
    (dict(period_seconds=3600, evaluation_periods=25), r"evaluation_periods=25 times period_seconds=3600 exceeds"),
])
def test_thresholds_refuse_out_of_range_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AlarmThresholds(**kwargs)
