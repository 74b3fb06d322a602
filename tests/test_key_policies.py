"""Every KMS key policy of every environment, as synthesized: the account root statement AWS requires, administrators
who manage but cannot use the key, services that use it only under their conditions, and denies that reach nobody but
the administrators (docs/design.md §10)."""
from __future__ import annotations

import fnmatch
import json
import re

import pytest

import environments
from modules.core.validation import ConfigError
from modules.aws.encryption import KEY_ADMIN_ACTIONS
from tests.conftest import key_policy_denies
from tests.modules.aws.test_encryption import KMS_CRYPTOGRAPHIC_OPERATIONS, SYMMETRIC_OPERATIONS

CONFIGS = {name: environments.load(name) for name in environments.NAMES}
ADMINISTRATION = ["EnableIamPolicies", "KeyAdministrators", "AdministratorsNoDirectUse",
                  "AdministratorsGrantOnlyForAwsResources"]
# Condition keys that tie a service's use to this account's resources (encryption context, source ARN or account).
SCOPING_KEYS = re.compile(r"kms:EncryptionContext:.*|aws:SourceArn|aws:SourceAccount")


def key_stacks():
    """(stack name, account id, the key administrators that stack's keys must name) for every stack with keys."""
    for config in CONFIGS.values():     # one state stack per account (each environment its own by default)
        yield f"{config.project}-state-{config.account_id}", config.account_id, config.state.key_admin_arns
        yield config.stack_name("infra"), config.account_id, config.key_admin_arns


def policies(doc: dict) -> dict[str, dict]:
    return {address: json.loads(key["policy"]) for address, key in doc["resource"].get("aws_kms_key", {}).items()}


def key_users(doc: dict) -> dict[str, list[tuple[str, dict]]]:
    """Per key address, the (role ARN, statement) of every IAM role policy statement that names the key."""
    res = doc["resource"]
    names = {address: role["name"] for address, role in res["aws_iam_role"].items()}
    users: dict[str, list[tuple[str, dict]]] = {}
    for policy in res.get("aws_iam_role_policy", {}).values():
        role = names[re.fullmatch(r"\$\{aws_iam_role\.(.+)\.(id|name)\}", policy["role"]).group(1)]
        for stmt in json.loads(policy["policy"])["Statement"]:
            resources = stmt.get("Resource", [])      # NotResource statements (the CI roles' denies) name no key
            for resource in resources if isinstance(resources, list) else [resources]:
                if match := re.fullmatch(r"\$\{aws_kms_key\.(.+)\.arn\}", resource):
                    users.setdefault(match.group(1), []).append((f"arn:aws:iam::{doc['_account']}:role/{role}", stmt))
    return users


@pytest.fixture(scope="module")
def keyed(stacks):
    """(stack, admins, parsed document with its account) for every stack that has KMS keys."""
    found = []
    for name, account, admins in key_stacks():
        doc = {**stacks[name], "_account": account}
        found.append((name, admins, doc))
    return found


def test_every_environment_has_its_keys_checked(keyed):
    counts = {name: len(policies(doc)) for name, _, doc in keyed}
    assert counts["airflow-state-333333333333"] == 1 and counts["airflow-prod-infra"] == 14
    assert all(count >= 10 for name, count in counts.items() if name.endswith("-infra"))


def test_every_key_policy_starts_with_the_account_root_statement_and_the_administration_statements(keyed):
    for name, admins, doc in keyed:
        for address, policy in policies(doc).items():
            statements = policy["Statement"]
            assert [s["Sid"] for s in statements[:4]] == ADMINISTRATION, (name, address)
            assert statements[0] == {"Sid": "EnableIamPolicies", "Effect": "Allow", "Action": ["kms:*"], "Resource": "*",
                                     "Principal": {"AWS": f"arn:aws:iam::{doc['_account']}:root"}}, (name, address)
            assert statements[1]["Principal"] == {"AWS": list(admins)}, (name, address)
            assert doc["resource"]["aws_kms_key"][address].get("bypass_policy_lockout_safety_check") in (None, False)


def test_administrators_are_allowed_management_only(keyed):
    for name, _, doc in keyed:
        for address, policy in policies(doc).items():
            (allowed,) = [s for s in policy["Statement"] if s["Sid"] == "KeyAdministrators"]
            assert allowed["Action"] == list(KEY_ADMIN_ACTIONS), (name, address)
            assert not [(op, a) for op in KMS_CRYPTOGRAPHIC_OPERATIONS for a in allowed["Action"]
                        if fnmatch.fnmatchcase(op.lower(), a.lower())], (name, address)


def test_administrators_cannot_use_any_key_directly_but_their_services_can(keyed):
    for name, admins, doc in keyed:
        for address, policy in policies(doc).items():
            for admin in admins:
                direct = {"aws:PrincipalArn": admin}
                assert all(key_policy_denies(policy, action=op, context=direct)
                           for op in (*SYMMETRIC_OPERATIONS, "kms:CreateGrant")), (name, address, admin)
                via = {**direct, "kms:ViaService": "s3.eu-west-1.amazonaws.com", "kms:GrantIsForAWSResource": "true"}
                assert not any(key_policy_denies(policy, action=op, context=via)
                               for op in (*SYMMETRIC_OPERATIONS, "kms:CreateGrant")), (name, address, admin)


def test_every_service_uses_a_key_only_under_a_condition_scoping_it_to_this_account(keyed):
    for name, _, doc in keyed:
        for address, policy in policies(doc).items():
            for stmt in policy["Statement"][4:]:
                assert set(stmt["Principal"]) == {"Service"} and stmt["Effect"] == "Allow", (name, address, stmt["Sid"])
                keys = {key for operator in stmt["Condition"].values() for key in operator}
                assert any(SCOPING_KEYS.fullmatch(key) for key in keys), (name, address, stmt["Sid"])
                assert not key_policy_denies(policy, action=stmt["Action"][0], context={}), (name, address)


def test_the_denies_reach_no_workload_and_no_administrator_is_a_workload(keyed):
    for name, admins, doc in keyed:
        users, denied = key_users(doc), policies(doc)
        for address, uses in users.items():
            for role, stmt in uses:
                assert role not in admins, (name, address, role)
                via = stmt.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
                context = {"aws:PrincipalArn": role, **({"kms:ViaService": via} if via else {})}
                for action in stmt["Action"]:
                    assert not key_policy_denies(denied[address], action=action, context=context), (name, role, action)
        if name.endswith("-infra"):
            assert len(users) >= 7        # the workloads that use keys through IAM were found, so this checked them


def test_no_key_policy_refers_to_a_resource_so_none_can_form_a_cycle(keyed):
    """Administrators are ARNs known at synth; a key policy naming a role resource could wait on a role whose trust
    waits on the cluster, which waits on the key."""
    for name, _, doc in keyed:
        for address, key in doc["resource"]["aws_kms_key"].items():
            references = set(re.findall(r"\$\{([a-z_]+)\.", key["policy"]))
            assert references <= {"aws_cloudwatch_event_rule"}, (name, address, references)   # EventBridge rules only


def test_the_default_administrators_are_the_cluster_admins_and_the_environments_own_deploy_role():
    for config in CONFIGS.values():
        assert config.key_admin_arns == (*config.cluster.admin_role_arns, config.deploy_role_arn)
    assert CONFIGS["prod"].key_admin_arns == ("arn:aws:iam::333333333333:role/platform-admin",
                                              "arn:aws:iam::333333333333:role/github-actions-prod-deploy")
    deploy_roles = {config.deploy_role_arn for config in CONFIGS.values()}
    for config in CONFIGS.values():                 # no environment's CI identity administers another's keys
        assert deploy_roles & set(config.key_admin_arns) == {config.deploy_role_arn}
    assert not deploy_roles & set(CONFIGS["prod"].state.key_admin_arns)    # the shared state key: people only


def test_configured_administrators_replace_the_default_and_a_bad_one_is_one_line():
    config = environments.load("prod", ["encryption.key_admin_arns=arn:aws:iam::333333333333:role/kms-admin"])
    assert config.key_admin_arns == ("arn:aws:iam::333333333333:role/kms-admin",)
    with pytest.raises(ConfigError) as raised:
        environments.load("prod", ["encryption.key_admin_arns=arn:aws:iam::333333333333:root"])
    assert str(raised.value).startswith("environments.prod.encryption.key_admin_arns='arn:aws:iam::333333333333:root' "
                                        "is not an IAM role or user ARN; fix: ")
    with pytest.raises(ConfigError, match=r"^environments\.prod\.encryption\.key_admin_arns='arn:aws-cn:"
                                                       r"iam::333333333333:role/x' is not in partition aws"):
        environments.load("prod", ["encryption.key_admin_arns=arn:aws-cn:iam::333333333333:role/x"])
    with pytest.raises(ConfigError, match=r"^environments\.prod\.state\.key_admin_arns=\(\) is empty"):
        environments.load("prod", ["state.key_admin_arns=[]"])


def test_the_emulator_accepts_every_key_policy_and_still_lets_terraform_describe_the_keys(keyed):
    """`make rehearse` applies dev's infra to moto: CreateKey and PutKeyPolicy take each policy (valid JSON, valid
    principals), and DescribeKey, which moto refuses under any Deny listing it, still answers."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        kms = boto3.client("kms", region_name="eu-west-1")
        for name, _, doc in keyed:
            for address, key in doc["resource"]["aws_kms_key"].items():
                policy = re.sub(r"\$\{aws_cloudwatch_event_rule\.([^.]+)\.arn\}",
                                r"arn:aws:events:eu-west-1:333333333333:rule/\1", key["policy"])
                key_id = kms.create_key(Policy=policy, Description=address)["KeyMetadata"]["KeyId"]
                kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=policy)
                assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Enabled"] is True, (name, address)
                assert json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]) == json.loads(policy)
