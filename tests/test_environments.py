"""Every environment synthesizes, with the stack layout, backends, tags and sizes its config asks for."""
from __future__ import annotations

import dataclasses
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


ACCOUNTS = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}


def test_synthesizes_a_state_stack_per_account_and_the_stacks_of_each_environment(stacks):
    assert set(stacks) == {*(f"airflow-state-{account}" for account in ACCOUNTS.values()),
                           *(f"airflow-{name}-{layer}" for name in environments.NAMES
                             for layer in ("infra", "platform", "vault-config"))}


def test_each_environment_has_an_account_and_a_state_bucket_of_its_own_by_default():
    assert {name: config.account_id for name, config in CONFIGS.items()} == ACCOUNTS
    assert len({config.state.bucket for config in CONFIGS.values()}) == len(CONFIGS)


@pytest.mark.parametrize("name", environments.NAMES)
@pytest.mark.parametrize("layer", ["infra", "platform"])
def test_backend_is_the_encrypted_s3_state_of_the_environments_own_account(stacks, name, layer):
    account = ACCOUNTS[name]
    backend = stacks[f"airflow-{name}-{layer}"]["terraform"]["backend"]
    assert backend == {"s3": {
        "bucket": f"example-airflow-terraform-state-{account}", "key": f"{name}/{layer}.tfstate", "region": "eu-west-1",
        "encrypt": True, "use_lockfile": True,
        "kms_key_id": f"arn:aws:kms:eu-west-1:{account}:alias/terraform-state"}}
    (provider,) = stacks[f"airflow-{name}-{layer}"]["provider"]["aws"]
    assert provider["allowed_account_ids"] == [account]


@pytest.mark.parametrize("account", ACCOUNTS.values())
def test_state_stack_keeps_a_relative_local_backend_until_migrated(stacks, account):
    assert stacks[f"airflow-state-{account}"]["terraform"]["backend"] == {
        "local": {"path": f"../../../terraform.airflow-state-{account}.tfstate"}}
    (provider,) = stacks[f"airflow-state-{account}"]["provider"]["aws"]
    assert provider["allowed_account_ids"] == [account]


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


# An account's state stack holds one set of CI identities per environment in the account, keyed by it
# (modules/aws/ci_roles.py): the only place an environment name is part of an address.
CI_IDENTITY_SET = re.compile(r"^ci-roles_environment-(?:%s)_" % "|".join(environments.NAMES))


def test_construct_ids_never_contain_the_environment_name(stacks):
    for stack_name, doc in stacks.items():
        for rtype, items in doc.get("resource", {}).items():
            for logical_id in items:
                if stack_name.startswith("airflow-state-"):
                    logical_id = CI_IDENTITY_SET.sub("ci-roles_", logical_id)
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


# ---- accounts: production shares neither account nor state with a non-production environment ------------------

@pytest.mark.parametrize("name,override,message", [
    ("prod", "account_id=111111111111", r"^environments\.prod\.account_id='111111111111' is shared by production "
     r"environment prod and non-production environment dev; fix: give prod an AWS account of its own"),
    ("staging", "account_id=333333333333", r"^environments\.staging\.account_id='333333333333' is shared by "
     r"production environment prod and non-production environment staging; fix: give prod"),
    ("prod", "state.bucket=example-airflow-terraform-state-111111111111",
     r"^environments\.prod\.state\.bucket='example-airflow-terraform-state-111111111111' holds the state of "
     r"production environment prod and of non-production environment dev; fix:"),
    ("prod", "plan_environment=", r"^environments\.prod\.plan_environment='' is empty for a production environment: "
     r"pull requests would read its state; fix: set plan_environment='prod-plan'"),
])
def test_production_alone_still_refuses_what_it_would_share_with_a_configured_non_production_one(name, override,
                                                                                               message):
    with pytest.raises(ConfigError, match=message):
        environments.load(name, [override])


CONNECTION_IN_444 = ("ci_runner.connection_arn=arn:aws:codeconnections:eu-west-1:444444444444:"
                     "connection/4f2b1c9e-7d3a-4e51-9b8c-0a6d2e5f7c13")


def test_an_override_applied_to_every_environment_is_checked_across_them():
    environments.load("dev", ["account_id=444444444444", CONNECTION_IN_444])   # alone: no other environment is there
    with pytest.raises(ConfigError, match=r"^environments\.dev\.account_id='444444444444' is shared by production "
                                          r"environment prod and non-production environment dev; fix:"):
        environments.load_all(environments.NAMES, ["account_id=444444444444"])


def test_non_production_environments_may_share_an_account_and_its_state():
    staging = environments.load("staging", ["account_id=111111111111",
                                            "state.bucket=example-airflow-terraform-state-111111111111",
                                            "state.key_admin_arns=arn:aws:iam::111111111111:role/platform-admin",
                                            "ci_runner.connection_arn=" + CONFIGS["dev"].ci_runner.connection_arn,
                                            "guardrails.off_reason=shares the account of dev",
                                            "guardrails.cloudtrail=false", "guardrails.guardduty=false"])
    environments.check_isolation(staging, [CONFIGS["dev"], CONFIGS["prod"]])   # no error


def test_environments_of_one_account_may_not_have_one_name_prefix_the_other():
    """The CI boundaries scope an environment's roles as role/<prefix>-*: airflow-dev-* would match airflow-dev-eu's."""
    staging_in_dev = environments.load("staging", ["account_id=111111111111",
                                                   "state.bucket=example-airflow-terraform-state-111111111111",
                                                   "state.key_admin_arns=arn:aws:iam::111111111111:role/platform-admin",
                                                   "ci_runner.connection_arn=" + CONFIGS["dev"].ci_runner.connection_arn,
                                                   "guardrails.off_reason=shares the account of dev",
                                                   "guardrails.cloudtrail=false", "guardrails.guardduty=false"])
    dev_eu = dataclasses.replace(staging_in_dev, name="dev-eu")
    with pytest.raises(ConfigError, match=r"^environments\.dev-eu\.name='dev-eu' shares account 111111111111 with dev, "
                                          r"and role/airflow-dev-\* would match both environments' roles; fix:"):
        environments.check_isolation(dev_eu, [CONFIGS["dev"]])
    environments.check_isolation(dataclasses.replace(staging_in_dev, name="deveu"), [CONFIGS["dev"]])   # no error


@pytest.mark.parametrize("overrides,message", [
    (["account_id=111111111111"], r"^environments\.staging\.state='example-airflow-terraform-state-222222222222' "
     r"differs from the state of dev \(example-airflow-terraform-state-111111111111\), in the same account"),
    (["account_id=111111111111", "state.bucket=example-airflow-terraform-state-111111111111",
      "state.key_admin_arns=arn:aws:iam::111111111111:role/platform-admin"],
     r"^environments\.staging\.guardrails\.guardduty=True is also on in dev, in the same account 111111111111, and AWS "
     r"allows one GuardDuty detector per account and region; fix:"),
    (["state.bucket=example-airflow-terraform-state-111111111111"],
     r"^environments\.staging\.state\.bucket='example-airflow-terraform-state-111111111111' is also the state bucket "
     r"of dev in account 111111111111; fix:"),
])
def test_environments_sharing_an_account_or_bucket_must_share_state_and_one_detector(overrides, message):
    with pytest.raises(ConfigError, match=message):
        environments.load("staging", overrides)


def test_no_environment_turns_its_guardrails_off_for_a_shared_account():
    assert all((c.guardrails.cloudtrail, c.guardrails.guardduty) == (True, True) for c in CONFIGS.values())
    assert not hasattr(importlib.import_module("environments.common"), "SHARED_ACCOUNT_GUARDRAILS")


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


def test_production_refuses_internet_wide_ingress_without_single_sign_on():
    off = ["sso.off_reason=IdP migration", "sso.enabled=false"]      # overrides apply (and validate) in order
    with pytest.raises(ConfigError) as caught:
        environments.load("prod", off)
    assert str(caught.value).startswith("environments.prod.edge.ingress_cidrs=['0.0.0.0/0', '::/0'] exposes the "
                                        "production consoles to the whole internet without single sign-on in front")
    # Narrowed to the office/VPN ranges, or an internal ALB, it may run without SSO; non-production may anyway.
    assert environments.load("prod", ["edge.ingress_cidrs=198.51.100.0/24", *off]).sso.enabled is False
    assert environments.load("prod", ["edge.internal=true", *off]).edge.internal is True
    assert environments.load("staging", off).edge.ingress_cidrs == ("0.0.0.0/0", "::/0")


def test_every_environment_signs_in_at_the_idp_and_only_dev_keeps_grafanas_password_form():
    configs = {name: environments.load(name) for name in environments.NAMES}
    assert all(c.sso.enabled and c.sso.issuer_url.startswith("https://") for c in configs.values())
    assert {name: c.sso.local_login for name, c in configs.items()} == {"dev": True, "staging": False, "prod": False}
    assert len({c.sso.client_id for c in configs.values()}) == 3      # one IdP client per environment


def test_idp_settings_take_overrides_and_report_a_bad_one_with_its_path():
    config = environments.load("dev", ["sso.session_timeout_seconds=3600", "sso.airflow_roles.ops=Op"])
    assert (config.sso.session_timeout_seconds, config.sso.airflow_roles["ops"]) == (3600, "Op")
    with pytest.raises(ConfigError, match=r"^environments\.dev\.sso\.issuer_url='http://idp' is not an https URL"):
        environments.load("dev", ["sso.issuer_url=http://idp"])


def test_the_pods_admit_the_alb_from_the_subnets_it_lives_in():
    public, internal = environments.load("dev"), environments.load("dev", ["edge.internal=true"])
    assert public.alb_subnet_cidrs == public.network.subnets["public"]
    assert internal.alb_subnet_cidrs == internal.network.subnets["private"] != public.alb_subnet_cidrs
