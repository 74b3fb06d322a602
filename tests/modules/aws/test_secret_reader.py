"""SecretReaderRole: a role that alone reads the given secrets, assumable by exactly one workload's role, which may
assume it and no other role of the kind. Evaluated with the IAM evaluator (tests/iam_eval.py), not by reading JSON."""
from __future__ import annotations

import json

import pytest

from modules.aws.identity import PlatformIdentities, PlatformIdentitiesProps
from modules.aws.secret_reader import SecretReaderRole, SecretReaderRoleProps
from modules.core.validation import ConfigError
from tests.conftest import new_stack, synth
from tests.iam_eval import allowed
from tests.modules.aws.test_identity import ACCOUNT, BASE, DELIVERED_SECRETS, REGION, grant_all

MASTER = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-0123-AbCdEf"
USERS = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:af-test/airflow/database-users-GhIjKl"
DB_KEY, USERS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/database", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/platform"
PROPS = dict(name="af-test-db-admin-secrets", description="test", secret_arns=(MASTER, USERS),
             kms_key_arns=(DB_KEY, USERS_KEY), assumed_by="external-secrets")
VIA_SECRETS_MANAGER = {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}


def role_arn(address: str, res: dict) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{res['aws_iam_role'][address]['name']}"


@pytest.fixture(scope="module")
def built() -> tuple[dict, dict[str, dict], str, str]:
    """(resources, identity policy by role ARN, the reader's ARN, ESO's ARN) with role references resolved."""
    stack = new_stack()
    identities = grant_all(PlatformIdentities(stack, "identities", props=PlatformIdentitiesProps(**BASE)))
    SecretReaderRole(stack, "db-admin-secrets", identities=identities, props=SecretReaderRoleProps(**PROPS))
    res = synth(stack)["resource"]
    refs = {f"${{aws_iam_role.{a}.arn}}": role_arn(a, res) for a in res["aws_iam_role"]}

    def resolve(text: str) -> str:
        for ref, arn in refs.items():
            text = text.replace(ref, arn)
        return text
    policies = {refs[p["role"].replace(".id}", ".arn}")]: json.loads(resolve(p["policy"]))
                for p in res["aws_iam_role_policy"].values()}
    (reader,) = [a for a in res["aws_iam_role"] if a.startswith("db-admin-secrets")]
    (eso,) = [a for a in res["aws_iam_role"] if a.startswith("identities_external-secrets")]
    for address in res["aws_iam_role"]:
        res["aws_iam_role"][address]["assume_role_policy"] = resolve(res["aws_iam_role"][address]["assume_role_policy"])
    return res, policies, role_arn(reader, res), role_arn(eso, res)


def test_the_operators_role_cannot_read_the_master_secret_and_may_assume_only_the_reader(built):
    res, policies, reader, eso = built
    may = lambda action, resource, **ctx: allowed(action, resource, identity=[policies[eso]], context=ctx)  # noqa: E731
    assert not may("secretsmanager:GetSecretValue", MASTER) and not may("secretsmanager:DescribeSecret", MASTER)
    assert not may("kms:Decrypt", DB_KEY, **VIA_SECRETS_MANAGER)
    assert may("secretsmanager:GetSecretValue", DELIVERED_SECRETS[1])     # what it delivers itself is unchanged
    assert may("sts:AssumeRole", reader) and may("sts:TagSession", reader)
    others = [role_arn(a, res) for a in res["aws_iam_role"] if role_arn(a, res) != reader]
    assert len(others) == 13 and not [arn for arn in others if may("sts:AssumeRole", arn)]
    # No other workload may assume the reader.
    assert [arn for arn, policy in policies.items() if allowed("sts:AssumeRole", reader, identity=[policy])] == [eso]


def test_the_reader_reads_exactly_its_secrets_and_decrypts_only_through_secrets_manager(built):
    _, policies, reader, _ = built
    may = lambda action, resource, **ctx: allowed(action, resource, identity=[policies[reader]], context=ctx)  # noqa: E731
    for secret in (MASTER, USERS):
        assert may("secretsmanager:GetSecretValue", secret) and may("secretsmanager:DescribeSecret", secret)
        assert not may("secretsmanager:PutSecretValue", secret)
    assert not may("secretsmanager:GetSecretValue", DELIVERED_SECRETS[1])
    for key in (DB_KEY, USERS_KEY):
        assert may("kms:Decrypt", key, **VIA_SECRETS_MANAGER) and not may("kms:Decrypt", key)
        assert not may("kms:Decrypt", key, **{"kms:ViaService": f"s3.{REGION}.amazonaws.com"})


def test_the_reader_trusts_only_the_operators_role(built):
    res, _, reader, eso = built
    (role,) = [r for r in res["aws_iam_role"].values() if r["name"] == PROPS["name"]]
    (statement,) = json.loads(role["assume_role_policy"])["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == (
        "Allow", {"AWS": eso}, ["sts:AssumeRole", "sts:TagSession"])
    assert "Condition" not in statement and reader.endswith(":role/af-test-db-admin-secrets")


@pytest.mark.parametrize("change,field", [
    ({"name": "Not_A_Name"}, "name"), ({"secret_arns": ()}, "secret_arns"),
    ({"secret_arns": (MASTER, MASTER)}, "secret_arns"), ({"kms_key_arns": (DB_KEY, DB_KEY)}, "kms_key_arns")])
def test_props_fail_fast_naming_the_field(change, field):
    with pytest.raises(ConfigError) as err:
        SecretReaderRoleProps(**{**PROPS, **change})
    assert err.value.field == field


def test_an_unknown_assuming_workload_is_refused():
    stack = new_stack()
    identities = PlatformIdentities(stack, "identities", props=PlatformIdentitiesProps(**BASE))
    with pytest.raises(ConfigError) as err:
        SecretReaderRole(stack, "reader", identities=identities,
                         props=SecretReaderRoleProps(**{**PROPS, "assumed_by": "nobody"}))
    assert err.value.field == "workload_id"
