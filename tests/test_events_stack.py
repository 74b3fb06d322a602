"""Events in each environment's composed infra stack: bus, rules, targets, queues and their policies, the queue key,
the triggerer's scoped IAM, MSK on (staging, prod) and off (dev), and synthesized overrides of the Kafka switch."""
from __future__ import annotations

import json

import pytest

import environments

INFRA = {name: f"airflow-{name}-infra" for name in environments.NAMES}
# Renaming any of these plans a destroy of data (landing objects, queued events, the keys encrypting them).
STATEFUL = {"aws_s3_bucket": {"events_landing_bucket_CE50F6D9"}, "aws_kms_key": {"events_queue-key_B9EC59FB"},
            "aws_sqs_queue": {"events_queue-landing-object-created_D3AB8F79", "events_queue-application-events_05CAD68A",
                              "events_dead-letter-queue-landing-object-created_DD5B0CD2",
                              "events_dead-letter-queue-application-events_F68D3F9C"}}
KAFKA_STATEFUL = {"aws_kms_key": {"kafka_key_04EB7037"}, "aws_msk_cluster": {"kafka_cluster_4FCB1297"}}


def prefixed(res: dict, rtype: str, prefix: str) -> dict:
    return {k: v for k, v in res.get(rtype, {}).items() if k.startswith(prefix)}


def triggerer_statements(res: dict) -> dict[str, dict]:
    (policy,) = [p for k, p in res["aws_iam_role_policy"].items() if "airflow-triggerer" in k]
    return {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}


@pytest.mark.parametrize("env", environments.NAMES)
def test_event_resources_keep_their_terraform_addresses(stacks, env):
    res = stacks[INFRA[env]]["resource"]
    expected = {t: set(a) for t, a in STATEFUL.items()}
    if environments.load(env).events.kafka:
        for rtype, addresses in KAFKA_STATEFUL.items():
            expected.setdefault(rtype, set()).update(addresses)
    for rtype, addresses in expected.items():
        assert addresses <= set(res[rtype]), rtype
    assert set(prefixed(res, "aws_sqs_queue", "events_")) == STATEFUL["aws_sqs_queue"]


@pytest.mark.parametrize("env", environments.NAMES)
def test_one_bus_per_environment_and_every_rule_delivers_to_its_queue_with_retries_and_dlq(stacks, env):
    c = environments.load(env)
    res = stacks[INFRA[env]]["resource"]
    (bus,) = res["aws_cloudwatch_event_bus"].values()
    assert bus["name"] == f"airflow-{env}-events"
    # (the infra stack's other rules and queues, Karpenter's interruption queue, are not the events module's)
    rules = {r["name"]: r for r in prefixed(res, "aws_cloudwatch_event_rule", "events_").values()}
    assert set(rules) == {f"airflow-{env}-{n}" for n in c.events.rule_names}
    queues = {f"${{aws_sqs_queue.{k}.arn}}": q for k, q in prefixed(res, "aws_sqs_queue", "events_").items()}
    targets = prefixed(res, "aws_cloudwatch_event_target", "events_")
    assert len(targets) == len(rules)
    for target in targets.values():
        queue, dlq = queues[target["arn"]], queues[target["dead_letter_config"]["arn"]]
        assert dlq["name"] == f"{queue['name']}-dlq"
        assert target["retry_policy"] == {"maximum_retry_attempts": c.events.retry_attempts,
                                          "maximum_event_age_in_seconds": c.events.max_event_age_seconds}
        redrive = json.loads(queue["redrive_policy"])
        assert (queues[redrive["deadLetterTargetArn"]], redrive["maxReceiveCount"]) == (dlq, c.events.max_receive_count)


@pytest.mark.parametrize("env", environments.NAMES)
def test_queues_are_encrypted_with_the_events_key_and_admit_only_eventbridge_for_their_rule(stacks, env):
    res = stacks[INFRA[env]]["resource"]
    key_ref = "${aws_kms_key.events_queue-key_B9EC59FB.arn}"
    events_queues = prefixed(res, "aws_sqs_queue", "events_")
    assert {q["kms_master_key_id"] for q in events_queues.values()} == {key_ref}
    rule_of_queue = {}
    for target in prefixed(res, "aws_cloudwatch_event_target", "events_").values():
        rule_arn = target["rule"].replace(".name}", ".arn}")
        rule_of_queue[target["arn"]] = rule_of_queue[target["dead_letter_config"]["arn"]] = rule_arn
    policies = prefixed(res, "aws_sqs_queue_policy", "events_")
    assert len(policies) == len(events_queues)
    for policy in policies.values():
        queue_arn = policy["queue_url"].replace(".url}", ".arn}")
        allows = [s for s in json.loads(policy["policy"])["Statement"] if s["Effect"] == "Allow"]
        assert allows == [{"Sid": "EventBridgeSendsForRule", "Effect": "Allow",
                           "Principal": {"Service": "events.amazonaws.com"}, "Action": ["sqs:SendMessage"],
                           "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_of_queue[queue_arn]}}}]
    key_policy = json.loads(res["aws_kms_key"]["events_queue-key_B9EC59FB"]["policy"])
    (service,) = [s for s in key_policy["Statement"] if s.get("Principal", {}).get("Service")]
    assert sorted(service["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted(set(rule_of_queue.values()))


@pytest.mark.parametrize("env", environments.NAMES)
def test_triggerer_may_consume_exactly_the_rule_queues_and_kafka_topics(stacks, env):
    c = environments.load(env)
    res = stacks[INFRA[env]]["resource"]
    statements = triggerer_statements(res)
    main_queues = sorted(f"${{aws_sqs_queue.{k}.arn}}" for k, q in prefixed(res, "aws_sqs_queue", "events_").items()
                         if not q["name"].endswith("-dlq"))
    assert sorted(statements["ConsumeEventQueues"]["Resource"]) == main_queues
    assert statements["DecryptEventQueues"]["Resource"] == ["${aws_kms_key.events_queue-key_B9EC59FB.arn}"]
    assert statements["DecryptEventQueues"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"sqs.{c.region}.amazonaws.com"}}
    # No other workload may read the event queues.
    for address, policy in res["aws_iam_role_policy"].items():
        if "airflow-triggerer" not in address:
            assert not any(q in policy["policy"] for q in main_queues), address
    if c.events.kafka:
        topics = sorted(arn.rsplit("/", 1)[1] for arn in statements["ReadKafkaTopics"]["Resource"])
        assert topics == sorted(c.events.kafka_topics)
        assert statements["UseKafkaConsumerGroup"]["Resource"][0].endswith(f"/{c.events.kafka_consumer_group}")
    else:
        assert not {"ConnectKafka", "ReadKafkaTopics", "UseKafkaConsumerGroup"} & set(statements)


@pytest.mark.parametrize("env", environments.NAMES)
def test_kafka_follows_the_config_switch_and_is_reachable_only_from_cluster_nodes(stacks, env):
    c = environments.load(env)
    doc = stacks[INFRA[env]]
    res = doc["resource"]
    if not c.events.kafka:
        assert "aws_msk_cluster" not in res and "aws_msk_serverless_cluster" not in res
        assert not {"kafka-bootstrap-brokers", "kafka-cluster-arn"} & set(doc["output"])
        return
    (cluster,) = res["aws_msk_cluster"].values()
    assert cluster["client_authentication"] == {"sasl": {"iam": True, "scram": False}, "unauthenticated": False}
    assert cluster["encryption_info"]["encryption_in_transit"] == {"client_broker": "TLS", "in_cluster": True}
    assert cluster["encryption_info"]["encryption_at_rest_kms_key_arn"] == "${aws_kms_key.kafka_key_04EB7037.arn}"
    assert len(cluster["broker_node_group_info"]["client_subnets"]) == len(c.events.kafka_availability_zones)
    (sg_ref,) = cluster["broker_node_group_info"]["security_groups"]
    ingress = [r for r in res["aws_vpc_security_group_ingress_rule"].values() if r["security_group_id"] == sg_ref]
    assert [(r["from_port"], r["to_port"], r["referenced_security_group_id"]) for r in ingress] == [
        (9098, 9098, "${aws_security_group.cluster_node-security-group_0BA3F6F5.id}")]
    egress = [r for r in res["aws_vpc_security_group_egress_rule"].values()
              if r.get("referenced_security_group_id") == sg_ref]
    assert [(r["from_port"], r["security_group_id"]) for r in egress] == [
        (9098, "${aws_security_group.cluster_node-security-group_0BA3F6F5.id}")]
    (group,) = [g for g in res["aws_cloudwatch_log_group"].values() if g["name"].startswith("/aws/msk/")]
    assert (group["retention_in_days"], group["kms_key_id"]) == (c.log_retention_days,
                                                                 "${aws_kms_key.logs-key_44F95A88.arn}")
    logs_key = json.loads(res["aws_kms_key"]["logs-key_44F95A88"]["policy"])
    admitted = [a for s in logs_key["Statement"] if "Condition" in s
                for a in s["Condition"].get("ArnLike", {}).get("kms:EncryptionContext:aws:logs:arn", [])]
    assert f"arn:aws:logs:{c.region}:{c.account_id}:log-group:/aws/msk/airflow-{env}-kafka/*" in admitted
    assert doc["output"]["kafka-bootstrap-brokers"]["value"] == "${aws_msk_cluster.kafka_cluster_4FCB1297.bootstrap_brokers_sasl_iam}"


@pytest.mark.parametrize("env", environments.NAMES)
def test_outputs_name_every_queue_for_the_platform(stacks, env):
    c = environments.load(env)
    outputs = stacks[INFRA[env]]["output"]
    for rule in c.events.rule_names:
        assert outputs[f"events-queue-url-{rule}"]["value"].endswith(".url}")
        assert outputs[f"events-queue-name-{rule}"]["value"].endswith(".name}")
    assert outputs["events-bus-name"]["value"] == "${aws_cloudwatch_event_bus.events_bus_2D5985C2.name}"


def synthesize_dev(tmp_path, *overrides: str) -> dict:
    import main

    out = tmp_path / "cdktf.out"
    main.synthesize(["dev"], list(overrides), out)
    return json.loads((out / "stacks" / "airflow-dev-infra" / "cdk.tf.json").read_text())


def test_turning_kafka_on_in_dev_creates_a_provisioned_cluster_in_the_chosen_zones(tmp_path):
    # Zones first: every --set is validated as it is applied, and Kafka on needs its zones.
    doc = synthesize_dev(tmp_path, 'events.kafka_availability_zones=["eu-west-1a","eu-west-1b"]', "events.kafka=true",
                         "events.kafka_broker_instance_type=kafka.t3.small")
    res = doc["resource"]
    (cluster,) = res["aws_msk_cluster"].values()
    zone_of = {f"${{aws_subnet.{k}.id}}": (s["tags"]["tier"], s["availability_zone"])
               for k, s in res["aws_subnet"].items()}
    assert [zone_of[s] for s in cluster["broker_node_group_info"]["client_subnets"]] == [
        ("private", "eu-west-1a"), ("private", "eu-west-1b")]
    assert (cluster["number_of_broker_nodes"], cluster["broker_node_group_info"]["instance_type"]) == (2, "kafka.t3.small")
    assert "ReadKafkaTopics" in triggerer_statements(res) and "kafka-bootstrap-brokers" in doc["output"]


def test_serverless_kafka_override_uses_iam_auth_and_the_bootstrap_brokers_data_source(tmp_path):
    doc = synthesize_dev(tmp_path, 'events.kafka_availability_zones=["eu-west-1a","eu-west-1b"]',
                         "events.kafka_mode=serverless", "events.kafka=true")
    (cluster,) = doc["resource"]["aws_msk_serverless_cluster"].values()
    assert cluster["client_authentication"] == {"sasl": {"iam": {"enabled": True}}}
    assert "aws_msk_cluster" not in doc["resource"]
    assert doc["output"]["kafka-bootstrap-brokers"]["value"].startswith("${data.aws_msk_bootstrap_brokers.")


def test_an_added_rule_gets_its_queue_target_and_triggerer_grant(tmp_path):
    rules = '[{"name": "orders", "event_pattern": {"source": ["app.orders"], "detail-type": ["OrderPlaced"]}}]'
    res = synthesize_dev(tmp_path, f"events.rules={rules}")["resource"]
    (rule_address,) = [k for k, r in res["aws_cloudwatch_event_rule"].items() if r["name"] == "airflow-dev-orders"]
    (queue_address,) = [k for k, q in res["aws_sqs_queue"].items() if q["name"] == "airflow-dev-events-orders"]
    (target,) = [t for t in res["aws_cloudwatch_event_target"].values()
                 if t["rule"] == f"${{aws_cloudwatch_event_rule.{rule_address}.name}}"]
    assert target["arn"] == f"${{aws_sqs_queue.{queue_address}.arn}}"
    assert f"${{aws_sqs_queue.{queue_address}.arn}}" in triggerer_statements(res)["ConsumeEventQueues"]["Resource"]
