"""The bootstrap stacks, one per AWS account: the state bucket and its key, the switch to the S3 backend once
migrated, and the CI identities of the environments in the account (trusts checked per environment)."""
from __future__ import annotations

import dataclasses
import json

import cdktf
import pytest

import environments
from stacks import state_stack_name
from stacks.state import StateStack
from tests.conftest import strings

CONFIGS = {name: environments.load(name) for name in environments.NAMES}
SUB = "token.actions.githubusercontent.com:sub"


def state_stacks(stacks: dict) -> dict[str, dict]:
    return {name: doc for name, doc in stacks.items() if name.startswith("airflow-state-")}


def trusted_subjects(role: dict) -> list[str]:
    (statement,) = json.loads(role["assume_role_policy"])["Statement"]
    condition = statement["Condition"]
    assert condition["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    subjects = condition.get("StringLike", condition["StringEquals"])[SUB]
    assert set(condition) <= {"StringEquals", "StringLike"} and isinstance(subjects, list)
    return subjects


@pytest.mark.parametrize("name", environments.NAMES)
def test_state_bucket_is_protected_versioned_and_encrypted_with_a_rotating_key(stacks, name):
    config = CONFIGS[name]
    res = stacks[state_stack_name(config)]["resource"]
    buckets = {b["bucket"]: b for b in res["aws_s3_bucket"].values()}
    state = buckets[config.state.bucket]
    assert state["lifecycle"] == {"prevent_destroy": True} and state["force_destroy"] is False
    (key,) = res["aws_kms_key"].values()
    assert key["enable_key_rotation"] is True
    assert f'"AWS": "arn:aws:iam::{config.account_id}:root"' in key["policy"]     # the account's own key
    (alias,) = res["aws_kms_alias"].values()
    assert alias["name"] == "alias/terraform-state"
    kms_rules = [r["rule"][0]["apply_server_side_encryption_by_default"]
                 for r in res["aws_s3_bucket_server_side_encryption_configuration"].values()
                 if r["rule"][0]["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"]
    assert len(kms_rules) == 1 and "aws_kms_key" in kms_rules[0]["kms_master_key_id"]
    lifecycle_rules = [c["rule"][0] for c in res["aws_s3_bucket_lifecycle_configuration"].values()]
    assert {"noncurrent_days": 90} in [r["noncurrent_version_expiration"][0] for r in lifecycle_rules]
    assert len(res["aws_s3_bucket_versioning"]) == 2 and len(res["aws_s3_bucket_public_access_block"]) == 2


def test_migrated_state_stack_uses_its_own_bucket_as_s3_backend():
    config = CONFIGS["prod"]
    state, account = dataclasses.replace(config.state, migrated=True), config.account_id
    stack = StateStack(cdktf.Testing.app(), state_stack_name(config), state=state, account_id=account)
    backend = json.loads(cdktf.Testing.synth(stack))["terraform"]["backend"]
    assert backend == {"s3": {"bucket": state.bucket, "key": "global/state.tfstate", "region": state.region,
                              "encrypt": True, "use_lockfile": True,
                              "kms_key_id": f"arn:aws:kms:{state.region}:{account}:alias/terraform-state"}}


@pytest.mark.parametrize("name", environments.NAMES)
def test_each_environments_ci_roles_live_in_its_own_account_under_the_names_the_workflows_use(stacks, name):
    config = CONFIGS[name]
    doc = stacks[state_stack_name(config)]
    roles = {role["name"]: role for role in doc["resource"]["aws_iam_role"].values()}
    assert set(roles) == {config.deploy_role_name, config.plan_role_name}
    assert config.deploy_role_arn == f"arn:aws:iam::{config.account_id}:role/github-actions-{name}-deploy"
    (deploy_subject,) = trusted_subjects(roles[config.deploy_role_name])
    assert deploy_subject == (f"repo:{config.state.github_repository}:environment:{name}:job_workflow_ref:"
                              f"{config.state.github_repository}/.github/workflows/deploy.yml@refs/heads/main")
    policies = {p["name"]: p for p in doc["resource"]["aws_iam_policy"].values()}
    assert set(policies) == {f"airflow-{name}-deploy-boundary", f"airflow-{name}-workload-boundary"}
    assert config.workload_boundary_arn.endswith(f":{config.account_id}:policy/airflow-{name}-workload-boundary")
    assert set(doc["output"]["ci-role-arns"]["value"]) == {name}


def test_no_role_in_any_account_is_trusted_by_two_environments_subjects(stacks):
    owners: dict[str, set[str]] = {}
    for doc in state_stacks(stacks).values():
        for role in doc["resource"]["aws_iam_role"].values():
            for subject in trusted_subjects(role):
                context = subject.split(":job_workflow_ref:")[0].split(":", 2)[2]   # environment:<env> | pull_request
                owners.setdefault(role["name"], set()).add(context)
    assert all(len(contexts) == 1 for contexts in owners.values()), owners
    deploy_contexts = [next(iter(c)) for n, c in owners.items() if n.endswith("-deploy")]
    assert sorted(deploy_contexts) == sorted(f"environment:{name}" for name in environments.NAMES)


def test_no_pull_request_identity_reaches_production_state(stacks):
    prod = CONFIGS["prod"]
    prod_stack = state_stack_name(prod)
    for stack_name, doc in state_stacks(stacks).items():
        res = doc["resource"]
        pr_roles = {address for address, role in res["aws_iam_role"].items()
                    if any(":pull_request:" in s for s in trusted_subjects(role))}
        if stack_name == prod_stack:
            assert pr_roles == set()      # prod's plan role trusts only the protected prod-plan environment
            continue
        assert pr_roles, stack_name
        for policy in res["aws_iam_role_policy"].values():
            if policy["role"].split(".")[1] in pr_roles:
                text = " ".join(strings(json.loads(policy["policy"])))
                assert prod.account_id not in text and prod.state.bucket not in text and "/prod/" not in text


def test_production_is_planned_only_in_its_protected_plan_environment(stacks):
    prod = CONFIGS["prod"]
    roles = {r["name"]: r for r in stacks[state_stack_name(prod)]["resource"]["aws_iam_role"].values()}
    (subject,) = trusted_subjects(roles[prod.plan_role_name])
    assert subject.startswith(f"repo:{prod.state.github_repository}:environment:{prod.plan_environment}:")
    assert prod.plan_environment == "prod-plan"
    assert {n: CONFIGS[n].plan_environment for n in ("dev", "staging")} == {"dev": "", "staging": ""}


@pytest.mark.parametrize("name", environments.NAMES)
def test_deploy_role_has_administrator_access_only_inside_its_boundary(stacks, name):
    config = CONFIGS[name]
    res = stacks[state_stack_name(config)]["resource"]
    by_address = {address: role for address, role in res["aws_iam_role"].items()}
    admin_roles = {a["role"].split(".")[1] for a in res["aws_iam_role_policy_attachment"].values()
                   if a["policy_arn"] == "arn:aws:iam::aws:policy/AdministratorAccess"}
    assert [by_address[a]["name"] for a in admin_roles] == [config.deploy_role_name]
    (boundary,) = [a for a, p in res["aws_iam_policy"].items() if p["name"] == f"airflow-{name}-deploy-boundary"]
    assert all(by_address[a]["permissions_boundary"] == f"${{aws_iam_policy.{boundary}.arn}}" for a in admin_roles)
