"""Every environment synthesizes, with the stack layout, backends, tags and sizes its config asks for."""
from __future__ import annotations

import importlib
import re

import pytest

import environments
from modules.aws.settings import plan_subnets
from modules.core.validation import ConfigError

CONFIGS = {name: environments.load(name) for name in environments.NAMES}


def takes_tags(rtype: str) -> bool:
    """Whether the provider schema gives this resource type a `tags` argument (read from the bindings)."""
    module = importlib.import_module(f"cdktf_cdktf_provider_aws.{rtype.removeprefix('aws_')}")
    (cls,) = [c for c in vars(module).values() if getattr(c, "TF_RESOURCE_TYPE", None) == rtype]
    return hasattr(cls, "tags_input")


def taggable(doc: dict):
    for rtype, items in doc.get("resource", {}).items():
        if takes_tags(rtype):
            yield from ((f"{rtype}.{name}", body) for name, body in items.items())


def test_synthesizes_state_and_an_infra_stack_per_environment(stacks):
    assert set(stacks) == {"airflow-state", *(f"airflow-{name}-{layer}" for name in environments.NAMES
                                              for layer in ("infra", "platform", "vault-config"))}


@pytest.mark.parametrize("name", environments.NAMES)
def test_infra_backend_is_encrypted_s3_with_native_locking(stacks, name):
    backend = stacks[f"airflow-{name}-infra"]["terraform"]["backend"]
    assert backend == {"s3": {
        "bucket": "example-airflow-terraform-state", "key": f"{name}/infra.tfstate", "region": "eu-west-1",
        "encrypt": True, "use_lockfile": True,
        "kms_key_id": "arn:aws:kms:eu-west-1:123456789012:alias/terraform-state"}}


def test_state_stack_keeps_a_relative_local_backend_until_migrated(stacks):
    assert stacks["airflow-state"]["terraform"]["backend"] == {
        "local": {"path": "../../../terraform.airflow-state.tfstate"}}


@pytest.mark.parametrize("name", environments.NAMES)
def test_every_taggable_resource_carries_the_environment_tags(stacks, name):
    config = CONFIGS[name]
    expected = {"environment": name, "project": "airflow", "owner": config.tags.owner,
                "cost-centre": config.tags.cost_centre, "managed-by": "cdktf"}
    resources = dict(taggable(stacks[f"airflow-{name}-infra"]))
    assert len(resources) > 20
    untagged = [address for address, body in resources.items() if expected.items() - body.get("tags", {}).items()]
    assert untagged == []


@pytest.mark.parametrize("name,nat_count,az_count", [("dev", 1, 2), ("staging", 1, 3), ("prod", 3, 3)])
def test_nat_gateways_and_subnets_follow_the_environment(stacks, name, nat_count, az_count):
    res = stacks[f"airflow-{name}-infra"]["resource"]
    assert len(res["aws_nat_gateway"]) == nat_count
    by_tier = {}
    for body in res["aws_subnet"].values():
        by_tier.setdefault(body["tags"]["tier"], []).append((body["availability_zone"], body["cidr_block"]))
    expected = plan_subnets(CONFIGS[name].network.vpc_cidr, az_count)
    for tier in ("public", "private", "database"):
        assert sorted(by_tier[tier]) == sorted(zip(CONFIGS[name].availability_zones, expected[tier]))


@pytest.mark.parametrize("name", environments.NAMES)
def test_flow_log_retention_follows_the_environment(stacks, name):
    groups = stacks[f"airflow-{name}-infra"]["resource"]["aws_cloudwatch_log_group"]
    (flow_logs,) = [g for g in groups.values() if g["name"] == f"/aws/vpc/airflow-{name}/flow-logs"]
    assert flow_logs["retention_in_days"] == CONFIGS[name].log_retention_days


def test_construct_ids_never_contain_the_environment_name(stacks):
    for stack_name, doc in stacks.items():
        for rtype, items in doc.get("resource", {}).items():
            for logical_id in items:
                assert not any(env in logical_id for env in environments.NAMES), (stack_name, logical_id)


SECRET_KEYS = re.compile(r"(password|auth_token|secret_string|secret_key|access_key|token|private_key)(_wo)?$")


def literal_secrets(value, path=""):
    """(path, value) of every literal (non-reference) string stored under a secret-looking key, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and SECRET_KEYS.search(key) and not item.startswith("${"):
                yield f"{path}.{key}", item
            yield from literal_secrets(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from literal_secrets(item, f"{path}[{i}]")


def test_no_literal_secret_in_any_synthesized_stack(stacks):
    assert {name: list(literal_secrets(doc)) for name, doc in stacks.items()} == {name: [] for name in stacks}
    (cache,) = stacks["airflow-prod-infra"]["resource"]["aws_elasticache_replication_group"].values()
    assert cache["auth_token"].startswith("${data.aws_secretsmanager_random_password.")   # generated, not literal


def test_secret_scan_catches_a_literal():
    assert list(literal_secrets({"resource": {"x": {"y": {"master_password": "hunter2hunter2"}}}})) == [
        (".resource.x.y.master_password", "hunter2hunter2")]
    assert list(literal_secrets({"resource": {"x": {"y": {"secret_string_wo": "hunter2hunter2"}}}})) == [
        (".resource.x.y.secret_string_wo", "hunter2hunter2")]


def test_turning_a_guardrail_off_without_a_reason_names_the_field_and_the_fix():
    with pytest.raises(ConfigError, match=r"^environments\.prod\.guardrails\.guardduty=False turns an account guardrail "
                                          r"off without a reason; fix: keep it on, or say in off_reason"):
        environments.load("prod", ["guardrails.guardduty=false"])
    config = environments.load("prod", ["guardrails.off_reason=organization trail in the management account",
                                        "guardrails.cloudtrail=false"])
    assert (config.guardrails.cloudtrail, config.guardrails.guardduty) == (False, True)


def test_in_vpc_runner_needs_a_connection_of_the_environments_own_account():
    with pytest.raises(ConfigError, match=r"^environments\.dev\.ci_runner\.connection_arn='' is empty while the in-VPC "
                                          r"deploy runner is on; fix: create the account's GitHub connection"):
        environments.load("dev", ["ci_runner.connection_arn="])
    other = "arn:aws:codeconnections:eu-west-1:999999999999:connection/4f2b1c9e-7d3a-4e51-9b8c-0a6d2e5f7c13"
    with pytest.raises(ConfigError, match=r"^environments\.dev\.ci_runner\.connection_arn=.* belongs to another "
                                          r"account than account_id="):
        environments.load("dev", [f"ci_runner.connection_arn={other}"])
    off = environments.load("dev", ["ci_runner.off_reason=deploys run from the operators' VPN",
                                    "ci_runner.enabled=false", "ci_runner.connection_arn="])
    assert off.has_ci_runner is False
    assert all(environments.load(name).has_ci_runner for name in environments.NAMES)
