"""Alerting as composed in each environment's infra stack: encrypted topics, publish policies, PagerDuty and
Slack exactly as configured, and every required alarm on the right metric of the right resource, with its
threshold from the environment's config and its actions on the topic of its severity."""
from __future__ import annotations

import json

import pytest

import environments
from modules.aws.observability import ALARMS

CONFIGS = {name: environments.load(name) for name in environments.NAMES}


def ref(res: dict, rtype: str, fragment: str, attribute: str) -> str:
    """'${<rtype>.<address>.<attribute>}' of the one resource of `rtype` whose address contains `fragment`."""
    (address,) = [a for a in res[rtype] if fragment in a]
    return f"${{{rtype}.{address}.{attribute}}}"


def expected_alarms(name: str, res: dict) -> dict[str, tuple[str, dict]]:
    """alarm name -> (kind, dimensions) that the environment must have."""
    c, p = CONFIGS[name], f"airflow-{name}"
    db = {"DBInstanceIdentifier": ref(res, "aws_db_instance", "database", "identifier")}
    group = ref(res, "aws_elasticache_replication_group", "cache", "id")
    lb = ref(res, "aws_lb", "edge", "arn_suffix")
    cluster = {"ClusterName": ref(res, "aws_eks_cluster", "cluster", "name")}
    out = {f"{p}-{kind}": (kind, db) for kind in ("rds-cpu", "rds-free-storage", "rds-freeable-memory", "rds-connections")}
    for i in range(1, c.cache.num_nodes + 1):
        for kind in ("redis-engine-cpu", "redis-memory", "redis-evictions", "redis-connections"):
            out[f"{p}-{kind}-node-{i}"] = (kind, {"CacheClusterId": f"{group}-{i:03d}"})
    out[f"{p}-alb-5xx"] = ("alb-5xx", {"LoadBalancer": lb})
    for host in ("airflow", "grafana"):
        dims = {"LoadBalancer": lb, "TargetGroup": ref(res, "aws_lb_target_group", f"{host}-target-group", "arn_suffix")}
        for kind in ("alb-target-5xx", "alb-target-response-time", "alb-unhealthy-hosts"):
            out[f"{p}-{kind}-{host}"] = (kind, dims)
    for kind in ("cluster-node-count", "cluster-failed-nodes", "cluster-node-cpu", "cluster-crash-looping"):
        out[f"{p}-{kind}"] = (kind, cluster)
    queues = {q["name"]: address for address, q in res["aws_sqs_queue"].items()}
    for rule in ("landing-object-created", "application-events"):
        main, dlq = f"{p}-events-{rule}", f"{p}-events-{rule}-dlq"
        out[f"{p}-sqs-{rule}-oldest-message"] = ("sqs-oldest-message",
                                                 {"QueueName": f"${{aws_sqs_queue.{queues[main]}.name}}"})
        out[f"{p}-sqs-{rule}-dlq-messages"] = ("sqs-dlq-messages",
                                               {"QueueName": f"${{aws_sqs_queue.{queues[dlq]}.name}}"})
    return out


def topics(res: dict) -> dict[str, str]:
    return {t["name"].rsplit("-", 1)[1]: f"${{aws_sns_topic.{a}.arn}}" for a, t in res["aws_sns_topic"].items()
            if t["name"].startswith(tuple(f"airflow-{n}-alerts-" for n in environments.NAMES))}


@pytest.mark.parametrize("name", environments.NAMES)
def test_alert_topics_are_encrypted_with_the_alerting_key(stacks, name):
    res = stacks[f"airflow-{name}-infra"]["resource"]
    key = ref(res, "aws_kms_key", "alerting", "arn")
    alert_topics = {t["name"]: t for t in res["aws_sns_topic"].values() if "-alerts-" in t["name"]}
    assert set(alert_topics) == {f"airflow-{name}-alerts-critical", f"airflow-{name}-alerts-warning"}
    assert {t["kms_master_key_id"] for t in alert_topics.values()} == {key}
    (address,) = [a for a in res["aws_kms_key"] if "alerting" in a]
    (cloudwatch,) = [s for s in json.loads(res["aws_kms_key"][address]["policy"])["Statement"]
                     if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    c = CONFIGS[name]
    assert cloudwatch["Condition"] == {"ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:{c.region}:{c.account_id}:alarm:*"},
                                       "StringEquals": {"aws:SourceAccount": c.account_id}}


@pytest.mark.parametrize("name", environments.NAMES)
def test_only_the_accounts_cloudwatch_alarms_may_publish(stacks, name):
    res = stacks[f"airflow-{name}-infra"]["resource"]
    arns = set(topics(res).values())
    policies = [p for p in res["aws_sns_topic_policy"].values() if p["arn"] in arns]
    assert len(policies) == 2
    for policy in policies:
        allow = json.loads(policy["policy"])["Statement"][0]
        assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": CONFIGS[name].account_id}
        assert allow["Condition"]["ArnLike"]["aws:SourceArn"].startswith(
            f"arn:aws:cloudwatch:{CONFIGS[name].region}:{CONFIGS[name].account_id}:alarm:")


@pytest.mark.parametrize("name", environments.NAMES)
def test_pagerduty_subscription_follows_the_config(stacks, name):
    a, doc = CONFIGS[name].alarms, stacks[f"airflow-{name}-infra"]
    res, t = doc["resource"], topics(doc["resource"])
    subscriptions = [s for s in res.get("aws_sns_topic_subscription", {}).values() if s["topic_arn"] in t.values()]
    secrets = {d["secret_id"]: addr for addr, d in doc.get("data", {}).get("aws_secretsmanager_secret_version", {}).items()}
    if not a.pagerduty_secret_name:
        assert subscriptions == [] and not [s for s in secrets if "pagerduty" in s]
        return
    endpoint = f"${{data.aws_secretsmanager_secret_version.{secrets[a.pagerduty_secret_name]}.secret_string}}"
    assert sorted(s["topic_arn"] for s in subscriptions) == sorted(t[s] for s in a.pagerduty_severities)
    assert {(s["protocol"], s["endpoint"]) for s in subscriptions} == {("https", endpoint)}


@pytest.mark.parametrize("name", environments.NAMES)
def test_slack_chatbot_follows_the_config(stacks, name):
    a, res = CONFIGS[name].alarms, stacks[f"airflow-{name}-infra"]["resource"]
    configs = list(res.get("aws_chatbot_slack_channel_configuration", {}).values())
    if not a.slack_channel_id:
        assert configs == []
        return
    (config,) = configs
    assert (config["slack_team_id"], config["slack_channel_id"]) == (a.slack_workspace_id, a.slack_channel_id)
    assert sorted(config["sns_topic_arns"]) == sorted(topics(res)[s] for s in a.slack_severities)
    assert config["guardrail_policy_arns"] == ["arn:aws:iam::aws:policy/CloudWatchReadOnlyAccess"]
    assert config["iam_role_arn"] == ref(res, "aws_iam_role", "chatbot", "arn")
    (role,) = [r for address, r in res["aws_iam_role"].items() if "chatbot" in address]
    (trust,) = json.loads(role["assume_role_policy"])["Statement"]
    assert (trust["Principal"], trust.get("Condition")) == ({"Service": "chatbot.amazonaws.com"}, None)


def test_environments_differ_in_where_alerts_go():
    routes = {n: (bool(c.alarms.pagerduty_secret_name), bool(c.alarms.slack_channel_id)) for n, c in CONFIGS.items()}
    assert routes == {"dev": (False, False), "staging": (False, True), "prod": (True, True)}


@pytest.mark.parametrize("name", environments.NAMES)
def test_every_required_alarm_watches_its_metric_with_the_configured_threshold_and_topic(stacks, name):
    res, a = stacks[f"airflow-{name}-infra"]["resource"], CONFIGS[name].alarms
    alarms = {x["alarm_name"]: x for x in res["aws_cloudwatch_metric_alarm"].values()}
    expected, t = expected_alarms(name, res), topics(res)
    assert set(alarms) == set(expected)
    for alarm_name, (kind, dimensions) in expected.items():
        spec, alarm = ALARMS[kind], alarms[alarm_name]
        statistic = alarm.get("extended_statistic", alarm.get("statistic"))
        assert (alarm["namespace"], alarm["metric_name"], alarm["dimensions"], statistic) == (
            spec.namespace, spec.metric, dimensions, spec.statistic), alarm_name
        assert (alarm["threshold"], alarm["comparison_operator"]) == (getattr(a, spec.threshold_field),
                                                                      spec.comparison), alarm_name
        assert (alarm["period"], alarm["evaluation_periods"]) == (a.period_seconds, a.evaluation_periods)
        assert alarm["alarm_actions"] == alarm["ok_actions"] == [t[spec.severity]], alarm_name
        assert alarm["actions_enabled"] is True


def test_thresholds_differ_per_environment(stacks):
    def threshold(name: str, alarm: str) -> float:
        (value,) = [x["threshold"] for x in stacks[f"airflow-{name}-infra"]["resource"]["aws_cloudwatch_metric_alarm"]
                    .values() if x["alarm_name"] == f"airflow-{name}-{alarm}"]
        return value
    assert [threshold(n, "cluster-node-count") for n in environments.NAMES] == [1, 2, 3]
    assert [threshold(n, "rds-connections") for n in environments.NAMES] == [300, 700, 1500]


@pytest.mark.parametrize("name", environments.NAMES)
def test_topic_arns_are_stack_outputs(stacks, name):
    doc = stacks[f"airflow-{name}-infra"]
    t = topics(doc["resource"])
    assert {s: doc["output"][f"alerts-topic-arn-{s}"]["value"] for s in ("critical", "warning")} == t


def test_production_alarms_must_reach_someone():
    import dataclasses

    from modules.core.validation import ConfigError

    silent = dataclasses.replace(CONFIGS["prod"].alarms, pagerduty_secret_name="", slack_workspace_id="",
                                 slack_channel_id="")
    with pytest.raises(ConfigError, match=r"alarms.pagerduty_secret_name='' and slack_channel_id are both empty for a "
                                          r"production environment"):
        silent.check_production()
    CONFIGS["prod"].alarms.check_production()      # prod as configured pages and posts to Slack
