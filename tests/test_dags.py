"""The example event-driven DAGs in dags/ parse with real Airflow, and watch exactly the queue and topics the
synthesized infra stack of each environment creates (given the variables airflow_environment() sets)."""
from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

import environments
from modules.aws.event_patterns import LANDING_RULE
from modules.aws.events import airflow_environment
from modules.aws.kafka import KAFKA_CONNECTION_ID

from tests.harness import ROOT, run_in_airflow

SQS_DAG, KAFKA_DAG = "event_landing_object_created", "event_kafka_topic"


def environment_of(env: str) -> dict[str, str]:
    c = environments.load(env)
    return airflow_environment(name=c.prefix, region=c.region, account_id=c.account_id, partition=c.partition,
                               rule_names=c.events.rule_names,
                               kafka_topics=c.events.kafka_topics if c.events.kafka else ())


def expected_dags(env: str) -> dict[str, str]:
    return {SQS_DAG: "sqs", **({KAFKA_DAG: "kafka"} if environments.load(env).events.kafka else {})}


@pytest.fixture(scope="module")
def watched() -> dict[str, dict]:
    cases = {env: {"environment": environment_of(env), "expect": expected_dags(env)} for env in environments.NAMES}
    result = run_in_airflow(ROOT / "tests" / "airflow_checks" / "dag_check.py", str(ROOT / "dags"), json.dumps(cases))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def ref(address: str) -> str:
    """'${aws_sqs_queue.x.arn}' -> 'aws_sqs_queue.x'."""
    match = re.fullmatch(r"\$\{(aws_[a-z0-9_]+\.[A-Za-z0-9_-]+)\.[a-z_]+\}", address)
    assert match, address
    return match.group(1)


def test_dags_parse_with_zero_import_errors_and_kafka_only_where_it_is_on(watched):
    assert {env: sorted(dags) for env, dags in watched.items()} == {
        "dev": [SQS_DAG], "staging": [KAFKA_DAG, SQS_DAG], "prod": [KAFKA_DAG, SQS_DAG]}


@pytest.mark.parametrize("env", environments.NAMES)
def test_sqs_dag_watches_the_landing_queue_the_infra_stack_creates(watched, stacks, env):
    (watch,) = watched[env][SQS_DAG]
    assert (watch["scheme"], watch["classpath"]) == ("sqs", "airflow.providers.amazon.aws.triggers.sqs.SqsSensorTrigger")
    url = urlsplit(watch["kwargs"]["sqs_queue"])
    _, account, queue = url.path.split("/")
    doc = stacks[f"airflow-{env}-infra"]
    provider = doc["provider"]["aws"][0]
    assert url.hostname == f"sqs.{provider['region']}.amazonaws.com" and watch["kwargs"]["region_name"] == provider["region"]
    assert [account] == provider["allowed_account_ids"]
    res = doc["resource"]
    (address,) = [f"aws_sqs_queue.{k}" for k, q in res["aws_sqs_queue"].items() if q["name"] == queue]
    # ...and that queue is the target of the rule matching objects created in the bucket S3 notifies EventBridge of.
    (target,) = [t for t in res["aws_cloudwatch_event_target"].values() if ref(t["arn"]) == address]
    rule = res["aws_cloudwatch_event_rule"][ref(target["rule"]).split(".")[1]]
    pattern = json.loads(rule["event_pattern"])
    (notification,) = res["aws_s3_bucket_notification"].values()
    landing = res["aws_s3_bucket"][ref(notification["bucket"]).split(".")[1]]
    assert notification["eventbridge"] is True and rule["event_bus_name"] == "default"
    assert pattern == {"source": ["aws.s3"], "detail-type": ["Object Created"],
                       "detail": {"bucket": {"name": [landing["bucket"]]}}}
    assert rule["name"].endswith(LANDING_RULE)


@pytest.mark.parametrize("env", [e for e in environments.NAMES if environments.load(e).events.kafka])
def test_kafka_dag_watches_exactly_the_topics_the_triggerer_may_read(watched, stacks, env):
    (watch,) = watched[env][KAFKA_DAG]
    assert watch["classpath"] == "airflow.providers.apache.kafka.triggers.await_message.AwaitMessageTrigger"
    assert watch["kwargs"]["kafka_config_id"] == KAFKA_CONNECTION_ID
    res = stacks[f"airflow-{env}-infra"]["resource"]
    (cluster_address,) = [f"aws_msk_cluster.{k}" for k in res["aws_msk_cluster"]]
    (policy,) = [p for k, p in res["aws_iam_role_policy"].items() if "airflow-triggerer" in k]
    (read,) = [s for s in json.loads(policy["policy"])["Statement"] if s["Sid"] == "ReadKafkaTopics"]
    assert all(f"${{{cluster_address}.cluster_uuid}}" in arn for arn in read["Resource"])
    assert sorted(watch["kwargs"]["topics"]) == sorted(arn.rsplit("/", 1)[1] for arn in read["Resource"])


def test_sqs_watcher_long_polls_and_barely_sleeps_between_polls(watched):
    """Event latency (docs/events.md): a 20 s long poll returns on the first message; the sleep after an empty poll
    is what an object landing at that moment waits for. 30 s made the first prototype's p95 tens of seconds."""
    (watch,) = watched["dev"][SQS_DAG]
    assert (watch["kwargs"]["wait_time_seconds"], watch["kwargs"]["waiter_delay"]) == (20, 1)
