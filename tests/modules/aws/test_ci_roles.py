import json

import pytest

from modules.aws.ci_roles import CiRoles, CiRolesProps
from tests.conftest import synth

ACCOUNT = "123456789012"
KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/state"
BASE = dict(repository="example-org/airflow-platform", state_bucket="example-airflow-terraform-state",
            state_kms_key_arn=KEY)


def roles_by_name(res: dict) -> dict[str, dict]:
    return {role["name"]: role for role in res["aws_iam_role"].values()}


def test_plan_role_trusts_only_pull_requests_and_main_of_the_configured_repository(stack):
    CiRoles(stack, "ci", props=CiRolesProps(**BASE))
    res = synth(stack)["resource"]
    (provider,) = res["aws_iam_openid_connect_provider"].values()
    assert (provider["url"], provider["client_id_list"]) == ("https://token.actions.githubusercontent.com",
                                                             ["sts.amazonaws.com"])
    (statement,) = json.loads(roles_by_name(res)["github-actions-plan"]["assume_role_policy"])["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].startswith("${aws_iam_openid_connect_provider.")
    assert statement["Condition"] == {"StringEquals": {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": ["repo:example-org/airflow-platform:pull_request",
                                                    "repo:example-org/airflow-platform:ref:refs/heads/main"]}}
    assert "StringLike" not in statement["Condition"]            # no wildcard subjects


def test_deploy_role_trusts_only_the_configured_environments(stack):
    CiRoles(stack, "ci", props=CiRolesProps(**BASE, deploy_environments=("dev", "prod")))
    role = roles_by_name(synth(stack)["resource"])["github-actions-deploy"]
    (statement,) = json.loads(role["assume_role_policy"])["Statement"]
    assert statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == [
        "repo:example-org/airflow-platform:environment:dev", "repo:example-org/airflow-platform:environment:prod"]
    assert role["max_session_duration"] == 3600


def test_plan_role_is_read_only_plus_state_read_and_lock_object_write(stack):
    CiRoles(stack, "ci", props=CiRolesProps(**BASE))
    res = synth(stack)["resource"]
    attachments = {a["policy_arn"] for a in res["aws_iam_role_policy_attachment"].values()}
    assert attachments == {"arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::aws:policy/AdministratorAccess"}
    (read_only,) = [a for a in res["aws_iam_role_policy_attachment"].values() if a["policy_arn"].endswith("ReadOnlyAccess")]
    assert read_only["role"].startswith("${aws_iam_role.ci_plan-role_")
    (inline,) = res["aws_iam_role_policy"].values()
    statements = {s["Sid"]: (s["Action"], s["Resource"]) for s in json.loads(inline["policy"])["Statement"]}
    bucket = "arn:aws:s3:::example-airflow-terraform-state"
    assert statements == {
        "ListState": (["s3:ListBucket"], bucket), "ReadState": (["s3:GetObject"], f"{bucket}/*"),
        "WriteLockObjects": (["s3:PutObject", "s3:DeleteObject"], f"{bucket}/*.tflock"),
        "UseStateKey": (["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"], KEY)}


def test_existing_oidc_provider_is_reused_not_created(stack):
    arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    roles = CiRoles(stack, "ci", props=CiRolesProps(**BASE, existing_oidc_provider_arn=arn))
    res = synth(stack)["resource"]
    assert "aws_iam_openid_connect_provider" not in res and roles.oidc_provider_arn == arn
    trusted = {json.loads(r["assume_role_policy"])["Statement"][0]["Principal"]["Federated"] for r in res["aws_iam_role"].values()}
    assert trusted == {arn}


@pytest.mark.parametrize(("field", "value", "message"), [
    ("repository", "https://github.com/example-org/airflow-platform", r"repository.*is not a GitHub 'owner/name'"),
    ("repository", "example-org/*", r"repository.*is not a GitHub 'owner/name'"),
    ("plan_branch", "release/*", r"plan_branch.*wildcards are not allowed"),
    ("deploy_environments", (), r"deploy_environments.*is empty"),
    ("deploy_environments", ("prod*",), r"deploy_environments.*not a GitHub environment name"),
    ("max_session_hours", 24, r"max_session_hours.*is not 1-12 hours"),
])
def test_fails_fast_on_props_that_would_widen_or_break_the_trust(field, value, message):
    with pytest.raises(ValueError, match=message):
        CiRolesProps(**{**BASE, field: value})
