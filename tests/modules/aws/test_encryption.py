"""EncryptionKey's key policy: the IAM statement AWS requires, administrators who manage but cannot use the key, and
services that use it under their conditions."""
from __future__ import annotations

import fnmatch
import json

import cdktf
import pytest

from modules.aws.encryption import (CRYPTOGRAPHIC_ACTIONS, KEY_ADMIN_ACTIONS, EncryptionKey, EncryptionKeyProps,
                                    KeyAdministrators, ServiceUse)
from modules.core.environment import AwsEnvironment
from modules.core.validation import ConfigError
from tests.conftest import TEST_ACCOUNT, TEST_KEY_ADMIN, key_policy_denies, only, synth

# Every KMS operation that encrypts, decrypts or derives key material (symmetric and asymmetric keys alike).
KMS_CRYPTOGRAPHIC_OPERATIONS = (
    "kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext", "kms:GenerateDataKeyPair", "kms:GenerateDataKeyPairWithoutPlaintext",
    "kms:GenerateMac", "kms:VerifyMac", "kms:Sign", "kms:Verify", "kms:DeriveSharedSecret")
SYMMETRIC_OPERATIONS = KMS_CRYPTOGRAPHIC_OPERATIONS[:8]
LOGS = ServiceUse(principal="logs.eu-west-1.amazonaws.com",
                  condition={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:eu-west-1:123456789012:*"}})


def key_of(stack, *services: ServiceUse) -> tuple[dict, dict]:
    EncryptionKey(stack, "key", props=EncryptionKeyProps(alias="test", description="test", services=services))
    _, key = only(synth(stack)["resource"], "aws_kms_key")
    return key, json.loads(key["policy"])


def by_sid(policy: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in policy["Statement"]}


def test_the_account_root_statement_comes_first_and_the_lockout_check_stays_on(stack):
    key, policy = key_of(stack)
    assert policy["Statement"][0] == {"Sid": "EnableIamPolicies", "Effect": "Allow",
                                      "Principal": {"AWS": f"arn:aws:iam::{TEST_ACCOUNT}:root"}, "Action": ["kms:*"],
                                      "Resource": "*"}
    assert key.get("bypass_policy_lockout_safety_check") in (None, False)


def test_administrators_may_manage_the_key_and_no_action_they_are_allowed_uses_it(stack):
    _, policy = key_of(stack)
    admins = by_sid(policy)["KeyAdministrators"]
    assert (admins["Effect"], admins["Principal"]) == ("Allow", {"AWS": [TEST_KEY_ADMIN]})
    assert admins["Action"] == list(KEY_ADMIN_ACTIONS) and "Condition" not in admins
    for operation in KMS_CRYPTOGRAPHIC_OPERATIONS:
        assert not [a for a in admins["Action"] if fnmatch.fnmatchcase(operation.lower(), a.lower())], operation


def test_administrators_cannot_use_the_key_directly_whatever_iam_allows_them(stack):
    _, policy = key_of(stack)
    assert by_sid(policy)["AdministratorsNoDirectUse"]["Action"] == list(CRYPTOGRAPHIC_ACTIONS)
    admin = {"aws:PrincipalArn": TEST_KEY_ADMIN}
    assert all(key_policy_denies(policy, action=op, context=admin) for op in SYMMETRIC_OPERATIONS)
    assert key_policy_denies(policy, action="kms:CreateGrant", context=admin)               # a grant is use by proxy
    assert key_policy_denies(policy, action="kms:CreateGrant", context={**admin, "kms:GrantIsForAWSResource": "false"})


def test_what_a_service_does_for_an_administrator_is_not_denied(stack):
    """Terraform writes secret versions and state objects and creates RDS/EKS/MSK grants through the service: those
    calls carry kms:ViaService (and GrantIsForAWSResource), and the service's own authorization applies."""
    _, policy = key_of(stack)
    via = {"aws:PrincipalArn": TEST_KEY_ADMIN, "kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}
    assert not any(key_policy_denies(policy, action=op, context=via) for op in SYMMETRIC_OPERATIONS)
    grant = {"aws:PrincipalArn": TEST_KEY_ADMIN, "kms:ViaService": "rds.eu-west-1.amazonaws.com",
             "kms:GrantIsForAWSResource": "true"}
    assert not key_policy_denies(policy, action="kms:CreateGrant", context=grant)
    for action in ("kms:PutKeyPolicy", "kms:DescribeKey", "kms:ScheduleKeyDeletion", "kms:EnableKeyRotation"):
        assert not key_policy_denies(policy, action=action, context={"aws:PrincipalArn": TEST_KEY_ADMIN})


def test_denies_hit_neither_services_nor_other_roles(stack):
    _, policy = key_of(stack, LOGS)
    for context in ({}, {"aws:PrincipalArn": f"arn:aws:iam::{TEST_ACCOUNT}:role/af-dev-airflow"}):
        assert not any(key_policy_denies(policy, action=op, context=context)
                       for op in (*SYMMETRIC_OPERATIONS, "kms:CreateGrant"))
    denies = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert [s["Condition"]["ArnEquals"] for s in denies] == [{"aws:PrincipalArn": [TEST_KEY_ADMIN]}] * 2
    assert not {a for s in denies for a in s["Action"]} & {"kms:*", "kms:Describe*", "kms:DescribeKey"}  # (moto, too)


def test_services_use_the_key_only_under_their_conditions_after_the_administration_statements(stack):
    _, policy = key_of(stack, LOGS, ServiceUse(principal="cloudtrail.amazonaws.com", actions=("kms:DescribeKey",),
                                               condition={"StringEquals": {"aws:SourceArn": "arn:trail"}}))
    *administration, logs, trail = policy["Statement"]
    assert [s["Sid"] for s in administration] == ["EnableIamPolicies", "KeyAdministrators", "AdministratorsNoDirectUse",
                                                  "AdministratorsGrantOnlyForAwsResources"]
    assert (logs["Principal"], logs["Condition"]) == ({"Service": "logs.eu-west-1.amazonaws.com"}, LOGS.condition)
    assert "kms:Decrypt*" in logs["Action"] and trail["Action"] == ["kms:DescribeKey"]
    assert trail["Condition"] == {"StringEquals": {"aws:SourceArn": "arn:trail"}}


@pytest.mark.parametrize("arn", ["arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:role/*", "platform-admin",
                                 "arn:aws:iam::12345:role/admin", "arn:aws:sts::123456789012:assumed-role/admin/me"])
def test_a_bad_administrator_arn_is_one_line_naming_the_field_and_the_fix(arn):
    with pytest.raises(ConfigError) as raised:
        KeyAdministrators((arn,))
    assert str(raised.value).startswith(f"key_admin_arns={arn!r} is not an IAM role or user ARN; fix: use arn:")
    assert "\n" not in str(raised.value)


def test_no_administrators_is_refused():
    with pytest.raises(ConfigError, match=r"^key_admin_arns=\(\) is empty, so nobody is named to administer the keys"):
        KeyAdministrators(())


def test_a_stack_without_key_administrators_says_how_to_bind_them():
    bare = cdktf.TerraformStack(cdktf.Testing.app(), "bare")
    AwsEnvironment(account_id=TEST_ACCOUNT, region="eu-west-1").bind(bare)
    with pytest.raises(ConfigError, match=r"stack='bare' has no key administrators.*fix: bind them first"):
        EncryptionKey(bare, "key", props=EncryptionKeyProps(alias="test", description="test"))
