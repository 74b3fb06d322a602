import json
from fnmatch import fnmatchcase

import pytest

from modules.aws.ci_roles import BOUNDED_IAM_CHANGES, CiEnvironment, CiRoles, CiRolesProps, subject
from tests.conftest import TEST_ACCOUNT, synth
from tests.iam_eval import ADMINISTRATOR_ACCESS, allowed

KEY = f"arn:aws:kms:eu-west-1:{TEST_ACCOUNT}:key/state"
BUCKET = "example-airflow-terraform-state"
REPO = "example-org/airflow-platform"
DEV = CiEnvironment(name="dev", prefix="airflow-dev", state_prefix="dev", trail_bucket="airflow-dev-trail")
STAGING = CiEnvironment(name="staging", prefix="airflow-staging", state_prefix="staging")
PROD = CiEnvironment(name="prod", prefix="airflow-prod", state_prefix="prod", plan_environment="prod-plan",
                     plan_secret_names=("airflow-prod/alerting/pagerduty",))
BASE = dict(repository=REPO, state_bucket=BUCKET, state_kms_key_arn=KEY, state_access_log_bucket=f"{BUCKET}-logs",
            environments=(DEV,))
SUB = "token.actions.githubusercontent.com:sub"


def roles_by_name(res: dict) -> dict[str, dict]:
    return {role["name"]: role for role in res["aws_iam_role"].values()}


def trust(role: dict) -> dict:
    (statement,) = json.loads(role["assume_role_policy"])["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    return statement


def subjects(role: dict) -> list[str]:
    condition = trust(role)["Condition"]
    return condition.get("StringLike", condition["StringEquals"])[SUB]


def policies_by_name(res: dict) -> dict[str, dict]:
    return {p["name"]: json.loads(p["policy"]) for p in res["aws_iam_policy"].values()}


def by_sid(policy: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in policy["Statement"]}


def covers(patterns: list[str], *actions: str) -> bool:
    """Whether IAM action patterns (with `*` wildcards) match every one of `actions`."""
    return all(any(fnmatchcase(action, pattern) for pattern in patterns) for action in actions)


def inline_policy(res: dict, role_name: str) -> dict:
    role_ids = {address: role["name"] for address, role in res["aws_iam_role"].items()}
    (policy,) = [json.loads(p["policy"]) for p in res["aws_iam_role_policy"].values()
                 if role_ids[p["role"].split(".")[1]] == role_name]
    return policy


def test_deploy_role_trusts_only_its_environment_in_the_deploy_workflow_on_main(stack):
    CiRoles(stack, "ci", props=CiRolesProps(**{**BASE, "environments": (DEV, STAGING)}))
    res = synth(stack)["resource"]
    (provider,) = res["aws_iam_openid_connect_provider"].values()
    assert (provider["url"], provider["client_id_list"]) == ("https://token.actions.githubusercontent.com",
                                                             ["sts.amazonaws.com"])
    roles = roles_by_name(res)
    for env in ("dev", "staging"):
        role = roles[f"github-actions-{env}-deploy"]
        statement = trust(role)
        assert statement["Principal"]["Federated"].startswith("${aws_iam_openid_connect_provider.")
        assert "StringLike" not in statement["Condition"]            # exact subject, no wildcard
        assert statement["Condition"]["StringEquals"][SUB] == [
            f"repo:{REPO}:environment:{env}:job_workflow_ref:{REPO}/.github/workflows/deploy.yml@refs/heads/main"]
        assert role["max_session_duration"] == 3600


def test_plan_role_of_a_non_production_environment_trusts_only_pull_requests_of_the_plan_workflow(stack):
    CiRoles(stack, "ci", props=CiRolesProps(**BASE))
    role = roles_by_name(synth(stack)["resource"])["github-actions-dev-plan"]
    assert trust(role)["Condition"]["StringLike"] == {
        SUB: [f"repo:{REPO}:pull_request:job_workflow_ref:{REPO}/.github/workflows/plan.yml@refs/pull/*/merge"]}


def test_plan_role_of_production_trusts_only_the_plan_workflow_on_main_in_its_protected_environment(stack):
    CiRoles(stack, "ci", props=CiRolesProps(**{**BASE, "environments": (PROD,)}))
    role = roles_by_name(synth(stack)["resource"])["github-actions-prod-plan"]
    assert "StringLike" not in trust(role)["Condition"]              # exact subject: no pull request number
    (only,) = subjects(role)
    assert only == f"repo:{REPO}:environment:prod-plan:job_workflow_ref:{REPO}/.github/workflows/plan.yml@refs/heads/main"
    assert ":pull_request:" not in only and "refs/pull/" not in only


def test_no_role_is_trusted_by_two_environments_subjects(stack):
    CiRoles(stack, "ci", props=CiRolesProps(**{**BASE, "environments": (DEV, STAGING)}))
    trusted = {name: subjects(role) for name, role in roles_by_name(synth(stack)["resource"]).items()}
    assert all(len(subs) == 1 for subs in trusted.values())
    deploy = {name: subs for name, subs in trusted.items() if name.endswith("-deploy")}
    assert len({s for subs in deploy.values() for s in subs}) == len(deploy) == 2


def test_deploy_role_is_administrator_only_within_its_deploy_boundary(stack):
    CiRoles(stack, "ci", props=CiRolesProps(**BASE))
    res = synth(stack)["resource"]
    deploy = roles_by_name(res)["github-actions-dev-deploy"]
    (boundary_address,) = [a for a, p in res["aws_iam_policy"].items() if p["name"] == "airflow-dev-deploy-boundary"]
    assert deploy["permissions_boundary"] == f"${{aws_iam_policy.{boundary_address}.arn}}"
    admin = [a for a in res["aws_iam_role_policy_attachment"].values() if a["policy_arn"].endswith("/AdministratorAccess")]
    (attachment,) = admin
    assert attachment["role"].startswith("${aws_iam_role.ci_environment-dev_deploy-role_")
    bounded = {role["name"] for role in res["aws_iam_role"].values() if role.get("permissions_boundary")}
    assert bounded == {"github-actions-dev-deploy"}       # the plan role is read-only, with no admin to bound


@pytest.mark.parametrize("boundary", ["airflow-dev-deploy-boundary", "airflow-dev-workload-boundary"])
def test_both_boundaries_deny_every_escalation_the_delegation_pattern_names(stack, boundary):
    CiRoles(stack, "ci", props=CiRolesProps(**{**BASE, "environments": (DEV, STAGING)}))
    s = by_sid(policies_by_name(synth(stack)["resource"])[boundary])
    iam = f"arn:aws:iam::{TEST_ACCOUNT}"
    denied = {sid: st for sid, st in s.items() if st["Effect"] == "Deny"}
    # Everything the role's own policy allows but the account and organization, minus the denies (which no identity
    # policy can override).
    assert [(st["NotAction"], st["Resource"]) for st in s.values() if st["Effect"] == "Allow"] == [
        (["organizations:*", "account:*", "billing:*", "payments:*"], "*")]
    assert denied["DenyChangingCiRoles"]["Resource"] == f"{iam}:role/github-actions-*"
    assert covers(denied["DenyChangingCiRoles"]["Action"], "iam:AttachRolePolicy", "iam:PutRolePolicy",
                  "iam:UpdateAssumeRolePolicy", "iam:DeleteRole", "iam:PutRolePermissionsBoundary", "iam:PassRole")
    assert denied["DenyChangingGitHubOidcProvider"]["Resource"] == (
        f"{iam}:oidc-provider/token.actions.githubusercontent.com")
    assert covers(denied["DenyChangingGitHubOidcProvider"]["Action"], "iam:UpdateOpenIDConnectProviderThumbprint",
                  "iam:AddClientIDToOpenIDConnectProvider", "iam:DeleteOpenIDConnectProvider")
    assert set(denied["DenyChangingBoundaries"]["Resource"]) == {
        f"{iam}:policy/airflow-{env}-{kind}-boundary" for env in ("dev", "staging") for kind in ("deploy", "workload")}
    assert covers(denied["DenyChangingBoundaries"]["Action"], "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion",
                  "iam:DeletePolicy", "iam:DeletePolicyVersion")
    unbounded = denied["DenyRolesAndUsersWithoutWorkloadBoundary"]
    assert set(unbounded["Action"]) == set(BOUNDED_IAM_CHANGES) >= {"iam:CreateRole", "iam:CreateUser",
                                                                    "iam:PutRolePolicy", "iam:AttachRolePolicy"}
    assert unbounded["Resource"] == "*" and unbounded["Condition"] == {
        "StringNotEquals": {"iam:PermissionsBoundary": f"{iam}:policy/airflow-dev-workload-boundary"}}
    assert set(denied["DenyRemovingBoundaries"]["Action"]) == {"iam:DeleteRolePermissionsBoundary",
                                                               "iam:DeleteUserPermissionsBoundary"}
    other_roles = denied["DenyPassingOrRetrustingOtherRoles"]
    assert (other_roles["Action"], other_roles["NotResource"]) == (["iam:PassRole", "iam:UpdateAssumeRolePolicy"],
                                                                   [f"{iam}:role/airflow-dev-*"])
    storage = denied["DenyChangingStateStorage"]
    assert covers(storage["Action"], "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:DeleteBucket",
                  "s3:PutBucketVersioning", "s3:PutEncryptionConfiguration", "s3:PutLifecycleConfiguration",
                  "s3:DeleteObjectVersion", "s3:PutBucketPublicAccessBlock")
    assert set(storage["Resource"]) == {f"arn:aws:s3:::{b}{suffix}" for b in (BUCKET, f"{BUCKET}-logs")
                                        for suffix in ("", "/*")}
    key = denied["DenyChangingStateKey"]
    assert {"kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:CreateGrant"} <= set(key["Action"])
    assert key["Resource"] == [KEY, f"arn:aws:kms:eu-west-1:{TEST_ACCOUNT}:alias/terraform-state"]
    assert set(denied["DenyStoppingGuardrails"]["Action"]) >= {
        "cloudtrail:StopLogging", "cloudtrail:DeleteTrail", "guardduty:DeleteDetector",
        "guardduty:DisassociateFromAdministratorAccount"}
    assert denied["DenyDeletingAuditLogs"]["Resource"] == ["arn:aws:s3:::airflow-dev-trail/*"]


def test_deploy_boundary_keeps_the_deploy_off_other_state_and_other_roles(stack):
    CiRoles(stack, "ci", props=CiRolesProps(**{**BASE, "environments": (DEV, STAGING)}))
    s = by_sid(policies_by_name(synth(stack)["resource"])["airflow-dev-deploy-boundary"])
    assert set(s["DenyOtherEnvironmentsState"]["Resource"]) == {f"arn:aws:s3:::{BUCKET}/global/*",
                                                               f"arn:aws:s3:::{BUCKET}/staging/*"}
    assert {"s3:GetObject*", "s3:PutObject*", "s3:DeleteObject*"} <= set(s["DenyOtherEnvironmentsState"]["Action"])
    assert s["DenyAssumingOtherRoles"] == {"Sid": "DenyAssumingOtherRoles", "Effect": "Deny",
                                           "Action": ["sts:AssumeRole"],
                                           "NotResource": [f"arn:aws:iam::{TEST_ACCOUNT}:role/airflow-dev-*"]}


def test_no_role_the_deploy_creates_gets_it_out_of_its_boundary(stack):
    """The chain the review found: create a prefix role with the workload boundary and AdministratorAccess, assume
    it, and from it assume a role that trusts the account root (a break-glass admin). Each step as IAM evaluates it."""
    CiRoles(stack, "ci", props=CiRolesProps(**{**BASE, "environments": (DEV, STAGING)}))
    policies = policies_by_name(synth(stack)["resource"])
    iam = f"arn:aws:iam::{TEST_ACCOUNT}"
    workload_boundary = f"{iam}:policy/airflow-dev-workload-boundary"
    deploy = dict(identity=[ADMINISTRATOR_ACCESS], boundary=policies["airflow-dev-deploy-boundary"])
    created = dict(identity=[ADMINISTRATOR_ACCESS], boundary=policies["airflow-dev-workload-boundary"])
    bounded = {"iam:PermissionsBoundary": workload_boundary}
    # The deploy's own work stays possible: its environment's roles, with the workload boundary.
    assert allowed("iam:CreateRole", f"{iam}:role/airflow-dev-x", context=bounded, **deploy)
    assert allowed("iam:AttachRolePolicy", f"{iam}:role/airflow-dev-x", context=bounded, **deploy)
    assert allowed("sts:AssumeRole", f"{iam}:role/airflow-dev-x", **deploy)
    for session in (deploy, created):
        assert not allowed("sts:AssumeRole", f"{iam}:role/platform-admin", **session)
        assert not allowed("sts:AssumeRole", f"{iam}:role/airflow-staging-x", **session)
        # Roles outside the prefix, even with the workload boundary; capping an existing admin role and filling it.
        for action in ("iam:CreateRole", "iam:PutRolePermissionsBoundary", "iam:AttachRolePolicy", "iam:PutRolePolicy"):
            assert not allowed(action, f"{iam}:role/platform-admin", context=bounded, **session), action
        # Long-lived credentials and new identity providers a role could trust.
        for action, resource in (("iam:CreateUser", "user/x"), ("iam:CreateAccessKey", "user/break-glass"),
                                 ("iam:CreateLoginProfile", "user/break-glass"),
                                 ("iam:UpdateLoginProfile", "user/break-glass"),
                                 ("iam:CreateServiceSpecificCredential", "user/break-glass"),
                                 ("iam:AttachUserPolicy", "user/break-glass"),
                                 ("iam:PutGroupPolicy", "group/admins"),
                                 ("iam:CreateOpenIDConnectProvider", "oidc-provider/evil.example.com"),
                                 ("iam:CreateSAMLProvider", "saml-provider/evil")):
            assert not allowed(action, f"{iam}:{resource}", context=bounded, **session), action


@pytest.mark.parametrize("boundary", ["airflow-dev-deploy-boundary", "airflow-dev-workload-boundary"])
def test_guardrails_cannot_be_blinded_only_created(stack, boundary):
    CiRoles(stack, "ci", props=CiRolesProps(**{**BASE, "environments": (DEV, STAGING)}))
    session = dict(identity=[ADMINISTRATOR_ACCESS], boundary=policies_by_name(synth(stack)["resource"])[boundary])
    trail = f"arn:aws:cloudtrail:eu-west-1:{TEST_ACCOUNT}:trail/airflow-dev-trail"
    for action in ("cloudtrail:CreateTrail", "cloudtrail:StartLogging", "cloudtrail:AddTags"):   # what creating does
        assert allowed(action, trail, **session), action
    for action in ("cloudtrail:UpdateTrail", "cloudtrail:PutEventSelectors", "cloudtrail:StopLogging",
                   "cloudtrail:DeleteTrail"):
        assert not allowed(action, trail, **session), action
    detector = f"arn:aws:guardduty:eu-west-1:{TEST_ACCOUNT}:detector/d"
    for action in ("guardduty:CreateFilter", "guardduty:CreateIPSet", "guardduty:ArchiveFindings",
                   "guardduty:DeleteDetector"):
        assert not allowed(action, detector, **session), action
    key = f"arn:aws:kms:eu-west-1:{TEST_ACCOUNT}:key/trail"
    trail_key = {"kms:ResourceAliases": ["alias/airflow-dev-cloudtrail"]}
    assert allowed("kms:CreateKey", "*", **session) and allowed("kms:PutKeyPolicy", key, **session)  # other keys
    for action in ("kms:PutKeyPolicy", "kms:DisableKey", "kms:ScheduleKeyDeletion", "kms:DisableKeyRotation"):
        assert not allowed(action, key, context=trail_key, **session), action
    assert not allowed("kms:DeleteAlias", f"arn:aws:kms:eu-west-1:{TEST_ACCOUNT}:alias/airflow-dev-cloudtrail",
                       **session)


def test_workload_boundary_keeps_workloads_off_terraform_state(stack):
    CiRoles(stack, "ci", props=CiRolesProps(**BASE))
    s = by_sid(policies_by_name(synth(stack)["resource"])["airflow-dev-workload-boundary"])
    assert (s["DenyTerraformState"]["Effect"], s["DenyTerraformState"]["Resource"]) == (
        "Deny", f"arn:aws:s3:::{BUCKET}/*")


def test_plan_role_reads_its_own_state_and_locks_and_no_other_object_or_secret(stack):
    CiRoles(stack, "ci", props=CiRolesProps(**{**BASE, "environments": (DEV, STAGING)}))
    res = synth(stack)["resource"]
    assert {n for n in roles_by_name(res) if n.endswith("-plan")} == {"github-actions-dev-plan",
                                                                     "github-actions-staging-plan"}
    s = by_sid(inline_policy(res, "github-actions-dev-plan"))
    bucket = f"arn:aws:s3:::{BUCKET}"
    assert {sid: (st["Effect"], st["Action"], st.get("Resource", st.get("NotResource"))) for sid, st in s.items()
            if sid != "DenyDataReads"} == {
        "ListState": ("Allow", ["s3:ListBucket"], bucket),
        "ReadState": ("Allow", ["s3:GetObject"], f"{bucket}/dev/*"),
        "UseStateKey": ("Allow", ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"], KEY),
        "GenerateRandomPasswords": ("Allow", ["secretsmanager:GetRandomPassword"], "*"),
        # ReadOnlyAccess reads every object: NotResource takes all but this environment's state away again.
        "DenyOtherObjects": ("Deny", ["s3:GetObject", "s3:GetObjectVersion"], [f"{bucket}/dev/*"]),
        "DenyObjectWrites": ("Deny", ["s3:PutObject*", "s3:DeleteObject*", "s3:RestoreObject", "s3:ReplicateObject",
                                      "s3:ReplicateDelete"], "*"),
        "DenySecretValues": ("Deny", ["secretsmanager:GetSecretValue"], "*")}
    assert {"ssm:GetParameter", "logs:GetLogEvents", "sqs:ReceiveMessage", "lambda:GetFunction", "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer", "rds:DownloadDBLogFilePortion", "dynamodb:PartiQLSelect",
            "cloudtrail:LookupEvents"} <= set(s["DenyDataReads"]["Action"])     # code, images, DB logs, events
    attached = {a["policy_arn"] for a in res["aws_iam_role_policy_attachment"].values() if "_plan-role_" in a["role"]}
    assert attached == {"arn:aws:iam::aws:policy/ReadOnlyAccess"}


@pytest.mark.parametrize("env", [DEV, PROD])
def test_plan_role_writes_and_deletes_no_object_not_even_a_lock(stack, env):
    """Whatever its attached policies allow (stood in for by AdministratorAccess), the plan role's own denies leave it
    no object write: it can neither hold nor break a .tflock of an apply."""
    CiRoles(stack, "ci", props=CiRolesProps(**{**BASE, "environments": (env,)}))
    plan = inline_policy(synth(stack)["resource"], f"github-actions-{env.name}-plan")
    for key in (f"{env.state_prefix}/infra.tfstate.tflock", f"{env.state_prefix}/infra.tfstate", "other/x"):
        for action in ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectAcl"):
            assert not allowed(action, f"arn:aws:s3:::{BUCKET}/{key}", identity=[ADMINISTRATOR_ACCESS, plan]), (
                action, key)
    assert allowed("s3:GetObject", f"arn:aws:s3:::{BUCKET}/{env.state_prefix}/infra.tfstate",
                   identity=[ADMINISTRATOR_ACCESS, plan])


def test_production_plan_reads_the_secrets_its_data_sources_need_and_no_others(stack):
    CiRoles(stack, "ci", props=CiRolesProps(**{**BASE, "environments": (PROD,)}))
    s = by_sid(inline_policy(synth(stack)["resource"], "github-actions-prod-plan"))
    secret = f"arn:aws:secretsmanager:eu-west-1:{TEST_ACCOUNT}:secret:airflow-prod/alerting/pagerduty-??????"
    assert (s["ReadDataSourceSecrets"]["Action"], s["ReadDataSourceSecrets"]["Resource"]) == (
        ["secretsmanager:GetSecretValue"], [secret])
    assert s["DenySecretValues"]["NotResource"] == [secret]


def test_existing_oidc_provider_is_reused_not_created(stack):
    arn = f"arn:aws:iam::{TEST_ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    roles = CiRoles(stack, "ci", props=CiRolesProps(**BASE, existing_oidc_provider_arn=arn))
    res = synth(stack)["resource"]
    assert "aws_iam_openid_connect_provider" not in res and roles.oidc_provider_arn == arn
    assert {trust(r)["Principal"]["Federated"] for r in res["aws_iam_role"].values()} == {arn}


def test_subject_is_githubs_customized_format():
    assert subject("o/r", "environment:prod", ".github/workflows/deploy.yml", "refs/heads/main") == (
        "repo:o/r:environment:prod:job_workflow_ref:o/r/.github/workflows/deploy.yml@refs/heads/main")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("repository", "https://github.com/example-org/airflow-platform", r"repository.*is not a GitHub 'owner/name'"),
    ("repository", "example-org/*", r"repository.*is not a GitHub 'owner/name'"),
    ("deploy_branch", "release/*", r"deploy_branch.*wildcards are not allowed"),
    ("deploy_workflow", "deploy.yml", r"deploy_workflow='deploy.yml' is not a workflow file path"),
    ("environments", (), r"environments.*is empty"),
    ("environments", (DEV, DEV), r"environments.*lists an environment \(or prefix\) twice"),
    ("max_session_hours", 24, r"max_session_hours.*is not 1-12 hours"),
])
def test_fails_fast_on_props_that_would_widen_or_break_the_trust(field, value, message):
    with pytest.raises(ValueError, match=message):
        CiRolesProps(**{**BASE, field: value})


@pytest.mark.parametrize(("field", "value"), [("name", "prod*"), ("plan_environment", "prod plan"),
                                               ("prefix", "Airflow"), ("state_prefix", "../prod")])
def test_fails_fast_on_an_environment_that_would_widen_a_subject_or_a_resource(field, value):
    with pytest.raises(ValueError, match=rf"^{field}="):
        CiEnvironment(**{"name": "dev", "prefix": "airflow-dev", "state_prefix": "dev", field: value})
