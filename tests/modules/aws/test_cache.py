
import cdktf
import pytest

from tests.conftest import looks_like_secret as _looks_like_secret, make_props, only as _only, strings as _strings, synth

from modules.aws.cache import Cache, CacheProps

BASE = dict(name="af-broker", vpc_id="vpc-1", subnet_ids=("subnet-a", "subnet-b"),
            logs_kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/logs")


def test_tls_required_and_encrypted_at_rest_with_its_own_key(stack):
    Cache(stack, "cache", props=make_props(CacheProps, **BASE))
    res = synth(stack)["resource"]
    key_address, key = _only(res, "aws_kms_key")
    _, alias = _only(res, "aws_kms_alias")
    _, group = _only(res, "aws_elasticache_replication_group")
    assert (key["enable_key_rotation"], alias["name"]) == (True, "alias/af-broker-cache")
    assert (group["transit_encryption_enabled"], group["transit_encryption_mode"]) == (True, "required")
    assert (group["at_rest_encryption_enabled"], group["kms_key_id"]) == ("true", f"${{aws_kms_key.{key_address}.arn}}")
    assert (group["port"], group["auto_minor_version_upgrade"], group["snapshot_retention_limit"]) == (6379, "true", 7)


def test_cluster_mode_disabled_with_a_no_eviction_parameter_group(stack):
    Cache(stack, "cache", props=make_props(CacheProps, **BASE, num_nodes=3))
    res = synth(stack)["resource"]
    params_address, params = _only(res, "aws_elasticache_parameter_group")
    _, group = _only(res, "aws_elasticache_replication_group")
    assert (group["cluster_mode"], group["num_cache_clusters"]) == ("disabled", 3)
    assert "num_node_groups" not in group and "replicas_per_node_group" not in group
    assert (group["engine"], group["engine_version"], params["family"]) == ("redis", "7.1", "redis7")
    assert {p["name"]: p["value"] for p in params["parameter"]} == {"maxmemory-policy": "noeviction",
                                                                   "cluster-enabled": "no"}
    assert group["parameter_group_name"] == f"${{aws_elasticache_parameter_group.{params_address}.name}}"


def test_valkey_defaults_to_8_0_with_its_family(stack):
    Cache(stack, "cache", props=make_props(CacheProps, **BASE, engine="valkey"))
    res = synth(stack)["resource"]
    _, params = _only(res, "aws_elasticache_parameter_group")
    _, group = _only(res, "aws_elasticache_replication_group")
    assert (group["engine"], group["engine_version"], params["family"]) == ("valkey", "8.0", "valkey8")


def test_multi_az_failover_by_default(stack):
    Cache(stack, "cache", props=make_props(CacheProps, **BASE))
    _, group = _only(synth(stack)["resource"], "aws_elasticache_replication_group")
    assert (group["multi_az_enabled"], group["automatic_failover_enabled"], group["num_cache_clusters"]) == (
        True, True, 2)


def test_single_node_without_failover_when_multi_az_off(stack):
    Cache(stack, "cache", props=make_props(CacheProps, **BASE, multi_az=False, num_nodes=1))
    _, group = _only(synth(stack)["resource"], "aws_elasticache_replication_group")
    assert (group["multi_az_enabled"], group["automatic_failover_enabled"], group["num_cache_clusters"]) == (
        False, False, 1)


def test_reachable_only_from_the_named_security_group(stack):
    cache = Cache(stack, "cache", props=make_props(CacheProps, **BASE))
    cache.allow_from("workers", source_security_group_id="sg-workers")
    res = synth(stack)["resource"]
    sg_address, sg = _only(res, "aws_security_group")
    _, rule = _only(res, "aws_vpc_security_group_ingress_rule")
    _, group = _only(res, "aws_elasticache_replication_group")
    assert "ingress" not in sg and "egress" not in sg
    assert (rule["security_group_id"], rule["referenced_security_group_id"], rule["ip_protocol"],
            rule["from_port"], rule["to_port"]) == (f"${{aws_security_group.{sg_address}.id}}", "sg-workers",
                                                    "tcp", 6379, 6379)
    assert "cidr_ipv4" not in rule and "cidr_ipv6" not in rule
    assert group["security_group_ids"] == [f"${{aws_security_group.{sg_address}.id}}"]


def test_auth_token_generated_into_an_encrypted_secret_and_never_a_literal(stack):
    Cache(stack, "cache", props=make_props(CacheProps, **BASE))
    doc = synth(stack)
    res = doc["resource"]
    ((token_address, token),) = doc["data"]["aws_secretsmanager_random_password"].items()
    key_address, _ = _only(res, "aws_kms_key")
    secret_address, secret = _only(res, "aws_secretsmanager_secret")
    _, version = _only(res, "aws_secretsmanager_secret_version")
    _, group = _only(res, "aws_elasticache_replication_group")
    token_ref = f"${{data.aws_secretsmanager_random_password.{token_address}.random_password}}"
    assert (token["password_length"], token["exclude_punctuation"]) == (64, True)
    assert (secret["kms_key_id"], secret["recovery_window_in_days"]) == (f"${{aws_kms_key.{key_address}.arn}}", 7)
    assert (version["secret_id"], version["secret_string"]) == (f"${{aws_secretsmanager_secret.{secret_address}.id}}",
                                                                token_ref)
    assert group["auth_token"] == token_ref
    # The data source yields a new value on every read: both consumers keep the one written at creation.
    assert version["lifecycle"]["ignore_changes"] == ["secret_string"]
    assert group["lifecycle"]["ignore_changes"] == ["auth_token"]
    assert group["auth_token_update_strategy"] == "ROTATE"
    assert [s for s in _strings(group) if _looks_like_secret(s)] == []
    assert [s for s in _strings(version) if _looks_like_secret(s)] == []


def test_secret_detector_flags_a_literal_token():
    assert _looks_like_secret("b7Hq2LzP9wXr4KtN") and not _looks_like_secret("cache.t4g.small")


def test_slow_and_engine_logs_go_to_encrypted_log_groups_with_retention(stack):
    Cache(stack, "cache", props=make_props(CacheProps, **BASE, log_retention_days=365))
    res = synth(stack)["resource"]
    _, group = _only(res, "aws_elasticache_replication_group")
    groups = {body["name"]: address for address, body in res["aws_cloudwatch_log_group"].items()}
    assert set(groups) == {"/aws/elasticache/af-broker/slow-log", "/aws/elasticache/af-broker/engine-log"}
    assert {(b["retention_in_days"], b["kms_key_id"]) for b in res["aws_cloudwatch_log_group"].values()} == {
        (365, BASE["logs_kms_key_arn"])}
    deliveries = {d["log_type"]: d for d in group["log_delivery_configuration"]}
    assert set(deliveries) == {"slow-log", "engine-log"}
    for log_type, delivery in deliveries.items():
        address = groups[f"/aws/elasticache/af-broker/{log_type}"]
        assert (delivery["destination_type"], delivery["destination"]) == (
            "cloudwatch-logs", f"${{aws_cloudwatch_log_group.{address}.name}}")


def test_attributes_reference_the_replication_group(stack):
    cache = Cache(stack, "cache", props=make_props(CacheProps, **BASE))
    cdktf.TerraformOutput(stack, "out", value={"primary": cache.primary_endpoint, "reader": cache.reader_endpoint,
                                               "secret": cache.auth_token_secret_arn})
    doc = synth(stack)
    group_address, _ = _only(doc["resource"], "aws_elasticache_replication_group")
    secret_address, _ = _only(doc["resource"], "aws_secretsmanager_secret")
    (output,) = doc["output"].values()
    ref = f"aws_elasticache_replication_group.{group_address}"
    assert output["value"] == {"primary": f"${{{ref}.primary_endpoint_address}}",
                               "reader": f"${{{ref}.reader_endpoint_address}}",
                               "secret": f"${{aws_secretsmanager_secret.{secret_address}.arn}}"}
    assert cache.port == 6379


@pytest.mark.parametrize("changes, message", [
    (dict(node_type="cache.x9.large"), r"node_type='cache.x9.large' is not an ElastiCache node family.*"
                                       r"fix: use 'cache.<family>.<size>'"),
    (dict(node_type="t4g.small"), r"node_type='t4g.small' is not an ElastiCache node family"),
    (dict(node_type="cache.t4g.large"), r"size the cache.t4g family lacks"),
    (dict(num_nodes=1), r"num_nodes=1 is below 2 with multi_az=True.*multi_az=False for dev"),
    (dict(log_retention_days=10), r"log_retention_days=10 is not a retention period CloudWatch Logs accepts"),
    (dict(engine_version="6.2"), r"engine_version='6.2' is not a supported redis version"),
    (dict(engine="valkey", engine_version="9.0"), r"engine_version='9.0' is not a supported valkey version"),
    (dict(engine="memcached"), r"engine='memcached' is not a supported engine"),
    (dict(snapshot_retention_days=36), r"snapshot_retention_days=36 is outside 0-35"),
    (dict(name="a" * 41), r"is not a valid ElastiCache replication group id"),
    (dict(name="af--broker"), r"is not a valid ElastiCache replication group id"),
    (dict(subnet_ids=("subnet-a",)), r"subnet_ids=\['subnet-a'\] has fewer than 2 subnets"),
])
def test_rejects_bad_input(changes, message):
    with pytest.raises(ValueError, match=message):
        make_props(CacheProps, **{**BASE, **changes})


def test_single_node_accepted_without_multi_az():
    assert make_props(CacheProps, **BASE, multi_az=False, num_nodes=1).settings.num_nodes == 1


def test_malformed_snapshot_window_is_refused():
    with pytest.raises(ValueError, match=r"snapshot_window='25:00-26:00' is not a daily UTC window"):
        make_props(CacheProps, **BASE, snapshot_window="25:00-26:00")
