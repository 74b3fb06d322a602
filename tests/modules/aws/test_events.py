"""modules/aws/events.py and modules/aws/event_patterns.py: bus, rules, encrypted queues with DLQs, queue policies scoped to one
rule, the queue key's policy, the consumer grant, and the pure naming the DAGs rely on."""
from __future__ import annotations

import json

import pytest

from modules.aws.event_patterns import EventRule, event_pattern, event_rules
from modules.aws.events import (Events, EventsProps, airflow_environment, dead_letter_queue_name, queue_env_var,
                            queue_name, queue_url)
from modules.aws.identity import PlatformIdentities, PlatformIdentitiesProps
from modules.core.validation import ConfigError
from tests.modules.aws.test_identity import grant_all
from tests.conftest import make_props, only, synth

ACCOUNT = "123456789012"
BASE = dict(name="af-dev", landing_bucket_name="af-dev-landing",
            landing_kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/storage", access_log_bucket="af-dev-access-logs")
ORDERS = EventRule(name="orders", event_pattern={"source": ["app.orders"], "detail-type": ["OrderPlaced"]})


def build(stack, **overrides):
    return Events(stack, "events", props=make_props(EventsProps, **{**BASE, **overrides}))


def ref(value: str) -> str:
    """'${aws_sqs_queue.x.arn}' -> 'x'."""
    return value.split(".")[1]


def rules_by_name(res):
    return {r["name"]: (k, r) for k, r in res["aws_cloudwatch_event_rule"].items()}


def queues_by_name(res):
    return {q["name"]: (k, q) for k, q in res["aws_sqs_queue"].items()}


def test_one_custom_bus_and_the_two_default_rules_on_the_right_buses(stack):
    build(stack)
    res = synth(stack)["resource"]
    bus_address, bus = only(res, "aws_cloudwatch_event_bus")
    rules = rules_by_name(res)
    assert bus["name"] == "af-dev-events"
    assert set(rules) == {"af-dev-landing-object-created", "af-dev-application-events"}
    landing, application = rules["af-dev-landing-object-created"][1], rules["af-dev-application-events"][1]
    assert landing["event_bus_name"] == "default"          # S3 sends to the default bus only
    assert json.loads(landing["event_pattern"]) == {"source": ["aws.s3"], "detail-type": ["Object Created"],
                                                    "detail": {"bucket": {"name": ["af-dev-landing"]}}}
    assert application["event_bus_name"] == f"${{aws_cloudwatch_event_bus.{bus_address}.name}}"
    assert json.loads(application["event_pattern"]) == {"source": [{"prefix": "app."}]}


def test_landing_bucket_is_hardened_and_notifies_eventbridge(stack):
    build(stack)
    res = synth(stack)["resource"]
    bucket_address, bucket = only(res, "aws_s3_bucket")
    _, notification = only(res, "aws_s3_bucket_notification")
    _, sse = only(res, "aws_s3_bucket_server_side_encryption_configuration")
    _, logging = only(res, "aws_s3_bucket_logging")
    _, pab = only(res, "aws_s3_bucket_public_access_block")
    assert bucket["bucket"] == "af-dev-landing"
    assert (notification["eventbridge"], notification["bucket"]) == (True, f"${{aws_s3_bucket.{bucket_address}.id}}")
    (rule,) = sse["rule"]
    assert rule["apply_server_side_encryption_by_default"] == {"sse_algorithm": "aws:kms",
                                                               "kms_master_key_id": BASE["landing_kms_key_arn"]}
    assert logging["target_bucket"] == "af-dev-access-logs"
    assert all(pab[k] for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                "restrict_public_buckets"))


def test_every_rule_targets_its_own_encrypted_queue_with_retries_and_a_dead_letter_queue(stack):
    build(stack, rules=(ORDERS,), max_receive_count=7, retry_attempts=4, max_event_age_seconds=600)
    res = synth(stack)["resource"]
    key_address, _ = only(res, "aws_kms_key")
    rules, queues = rules_by_name(res), queues_by_name(res)
    assert len(res["aws_cloudwatch_event_target"]) == 3 and len(queues) == 6
    for target in res["aws_cloudwatch_event_target"].values():
        rule = res["aws_cloudwatch_event_rule"][ref(target["rule"])]
        suffix = rule["name"].removeprefix("af-dev-")
        queue_address, queue = queues[f"af-dev-events-{suffix}"]
        dlq_address, dlq = queues[f"af-dev-events-{suffix}-dlq"]
        assert target["arn"] == f"${{aws_sqs_queue.{queue_address}.arn}}"
        assert target["retry_policy"] == {"maximum_retry_attempts": 4, "maximum_event_age_in_seconds": 600}
        assert target["dead_letter_config"] == {"arn": f"${{aws_sqs_queue.{dlq_address}.arn}}"}
        assert json.loads(queue["redrive_policy"]) == {"deadLetterTargetArn": f"${{aws_sqs_queue.{dlq_address}.arn}}",
                                                       "maxReceiveCount": 7}
        for q in (queue, dlq):
            assert q["kms_master_key_id"] == f"${{aws_kms_key.{key_address}.arn}}"
        assert dlq["message_retention_seconds"] == 1209600
    rule = rules["af-dev-orders"][1]
    assert json.loads(rule["event_pattern"]) == ORDERS.event_pattern and "${aws_cloudwatch_event_bus." in rule[
        "event_bus_name"]


def test_queue_policies_admit_only_eventbridge_for_that_one_rule(stack):
    build(stack, rules=(ORDERS,))
    res = synth(stack)["resource"]
    queues = {f"${{aws_sqs_queue.{k}.url}}": q for k, q in res["aws_sqs_queue"].items()}
    targets = {t["arn"]: t for t in res["aws_cloudwatch_event_target"].values()}
    assert len(res["aws_sqs_queue_policy"]) == 6        # main queues and DLQs alike
    for policy in res["aws_sqs_queue_policy"].values():
        queue_arn = policy["queue_url"].replace(".url}", ".arn}")
        target = targets.get(queue_arn) or next(t for t in targets.values() if t["dead_letter_config"]["arn"] == queue_arn)
        rule_arn = target["rule"].replace(".name}", ".arn}")
        allow, deny = json.loads(policy["policy"])["Statement"]
        assert allow == {"Sid": "EventBridgeSendsForRule", "Effect": "Allow",
                         "Principal": {"Service": "events.amazonaws.com"}, "Action": ["sqs:SendMessage"],
                         "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}
        assert (deny["Effect"], deny["Principal"], deny["Condition"]) == (
            "Deny", "*", {"Bool": {"aws:SecureTransport": "false"}})
        assert policy["queue_url"] in queues


def test_dead_letter_queues_accept_redrive_only_from_their_queue(stack):
    build(stack)
    res = synth(stack)["resource"]
    queues = queues_by_name(res)
    for allow in res["aws_sqs_queue_redrive_allow_policy"].values():
        dlq = res["aws_sqs_queue"][ref(allow["queue_url"])]
        source_address, _ = queues[dlq["name"].removesuffix("-dlq")]
        assert json.loads(allow["redrive_allow_policy"]) == {
            "redrivePermission": "byQueue", "sourceQueueArns": [f"${{aws_sqs_queue.{source_address}.arn}}"]}
    assert len(res["aws_sqs_queue_redrive_allow_policy"]) == 2


def test_queue_key_lets_eventbridge_encrypt_only_for_these_rules_in_this_account(stack):
    build(stack)
    res = synth(stack)["resource"]
    _, key = only(res, "aws_kms_key")
    _, alias = only(res, "aws_kms_alias")
    *administration, service = json.loads(key["policy"])["Statement"]
    assert (key["enable_key_rotation"], alias["name"]) == (True, "alias/af-dev-events")
    assert [s["Sid"] for s in administration] == ["EnableIamPolicies", "KeyAdministrators", "AdministratorsNoDirectUse",
                                                  "AdministratorsGrantOnlyForAwsResources"]   # encryption.key_policy
    assert administration[0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert (service["Principal"], service["Action"]) == ({"Service": "events.amazonaws.com"},
                                                         ["kms:GenerateDataKey", "kms:Decrypt"])
    rule_arns = sorted(f"${{aws_cloudwatch_event_rule.{k}.arn}}" for k in res["aws_cloudwatch_event_rule"])
    assert sorted(service["Condition"]["ArnEquals"]["aws:SourceArn"]) == rule_arns
    assert service["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}


def test_grant_consume_names_exactly_the_queues_and_decrypts_only_through_sqs(stack):
    identities = grant_all(PlatformIdentities(stack, "identities", props=PlatformIdentitiesProps(cluster_name="af-dev")))
    build(stack, rules=(ORDERS,)).grant_consume(identities, "airflow-triggerer")
    res = synth(stack)["resource"]
    (policy,) = [p for k, p in res["aws_iam_role_policy"].items() if "airflow-triggerer" in k]
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    main_queues = sorted(f"${{aws_sqs_queue.{k}.arn}}" for k, q in res["aws_sqs_queue"].items()
                         if not q["name"].endswith("-dlq"))
    consume, decrypt = statements["ConsumeEventQueues"], statements["DecryptEventQueues"]
    assert sorted(consume["Resource"]) == main_queues and len(main_queues) == 3
    assert consume["Action"] == ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                 "sqs:GetQueueUrl"]
    key_address, _ = only(res, "aws_kms_key")
    assert (decrypt["Action"], decrypt["Resource"]) == (["kms:Decrypt"], [f"${{aws_kms_key.{key_address}.arn}}"])
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "sqs.eu-west-1.amazonaws.com"}}


def test_airflow_environment_gives_one_queue_url_per_rule_and_kafka_only_when_on():
    env = airflow_environment(name="af-dev", region="eu-west-1", account_id=ACCOUNT,
                              rule_names=("landing-object-created", "orders"))
    assert env == {
        "PLATFORM_EVENTS_REGION": "eu-west-1",
        "PLATFORM_EVENTS_QUEUE_URL_LANDING_OBJECT_CREATED":
            "https://sqs.eu-west-1.amazonaws.com/123456789012/af-dev-events-landing-object-created",
        "PLATFORM_EVENTS_QUEUE_URL_ORDERS": "https://sqs.eu-west-1.amazonaws.com/123456789012/af-dev-events-orders"}
    with_kafka = airflow_environment(name="af-dev", region="eu-west-1", account_id=ACCOUNT, rule_names=(),
                                     kafka_topics=("a", "b"))
    assert (with_kafka["PLATFORM_EVENTS_KAFKA_TOPICS"], with_kafka["PLATFORM_EVENTS_KAFKA_CONN_ID"]) == ("a,b",
                                                                                                         "kafka_msk")
    assert queue_url(region="cn-north-1", account_id=ACCOUNT, queue="q", partition="aws-cn") == \
        "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q"
    assert (queue_name("p", "r"), dead_letter_queue_name("p", "r"), queue_env_var("a-b")) == (
        "p-events-r", "p-events-r-dlq", "PLATFORM_EVENTS_QUEUE_URL_A_B")


# ---- pattern and rule validation (pure) --------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,message", [
    ('{"source": ["app.orders"]', "is not valid JSON (Expecting ',' delimiter"),
    ({}, "is not a non-empty JSON object"),
    ([], "is not a non-empty JSON object"),
    ({"sources": ["x"]}, "matches unknown event fields ['sources']"),
    ({"source": "app.orders"}, "is not a non-empty list of values to match"),
    ({"source": []}, "is not a non-empty list of values to match"),
    ({"detail": ["x"]}, "is not a non-empty object"),
    ({"detail": {"state": {}}}, "is an empty object"),
    ({"source": [{1, 2}]}, "is not JSON-serialisable"),
    ({"source": [float("nan")]}, "is not JSON-serialisable"),
])
def test_malformed_event_patterns_are_one_clear_config_error(pattern, message):
    with pytest.raises(ConfigError, match="fix:") as err:
        event_pattern("event_pattern", pattern)
    assert message in str(err.value)


def test_a_json_string_pattern_is_parsed_into_data():
    assert event_pattern("p", '{"source": ["a"], "detail": {"x": [{"numeric": [">", 1]}]}}') == {
        "source": ["a"], "detail": {"x": [{"numeric": [">", 1]}]}}


def test_rules_from_config_data_are_checked_for_names_buses_and_duplicates():
    (rule,) = event_rules("events.rules", ({"name": "orders", "event_pattern": '{"source": ["a"]}', "bus": "custom"},))
    assert rule == EventRule(name="orders", event_pattern={"source": ["a"]})
    cases = [
        (({"name": "Orders", "event_pattern": {"source": ["a"]}},), "events.rules[0].name='Orders' is not a valid"),
        (({"name": "o", "event_pattern": {"source": ["a"]}, "bus": "other"},), "events.rules[0].bus='other'"),
        (({"name": "o", "event_pattern": {"x": ["a"]}},), "events.rules[0].event_pattern="),
        (({"name": "o"},), "is not an event rule"),
        ((ORDERS, ORDERS), "events.rules.name='orders' is used by two rules"),
        ((EventRule(name="application-events", event_pattern={"source": ["a"]}),), "is the name of a default rule"),
        (('[{"name": "o"', ' "event_pattern": {}}'), "events.rules='[{\"name\": \"o\", \"event_pattern\": {}}' is "
                                                     "not valid JSON"),
    ]
    for value, message in cases:
        with pytest.raises(ConfigError) as err:
            event_rules("events.rules", value)
        assert message in str(err.value), str(err.value)


def test_props_refuse_out_of_range_delivery_settings():
    with pytest.raises(ConfigError, match=r"max_receive_count=0 is outside 1-1000; fix: use 1-1000"):
        make_props(EventsProps, **BASE, max_receive_count=0)
    with pytest.raises(ConfigError, match=r"retry_attempts=186 is outside 0-185"):
        make_props(EventsProps, **BASE, retry_attempts=186)
    with pytest.raises(ConfigError, match=r"application_source_prefix='aws.' is empty, too long or an AWS service source"):
        make_props(EventsProps, **BASE, application_source_prefix="aws.")
