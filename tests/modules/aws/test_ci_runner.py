import json

import pytest

from modules.aws.ci_runner import CiRunner, CiRunnerProps, runner_label, workflow_name_pattern
from modules.aws.settings import CiRunnerSettings
from modules.core.validation import ConfigError
from tests.conftest import make_props, only, synth

CONNECTION = "arn:aws:codeconnections:eu-west-1:123456789012:connection/4f2b1c9e-7d3a-4e51-9b8c-0a6d2e5f7c13"
BASE = dict(name="af-dev-ci-runner", repository="example-org/airflow-platform", vpc_id="vpc-1",
            subnet_ids=("subnet-a", "subnet-b"), connection_arn=CONNECTION)
PROJECT_ARN = "arn:aws:codebuild:eu-west-1:123456789012:project/af-dev-ci-runner"


def runner(stack, **values) -> dict:
    CiRunner(stack, "ci-runner", props=make_props(CiRunnerProps, **{**BASE, **values}))
    return synth(stack)["resource"]


def service_policy(res: dict) -> dict:
    _, policy = only(res, "aws_iam_role_policy")
    return {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}


def test_project_is_a_github_runner_for_the_repository_through_the_connection(stack):
    res = runner(stack)
    _, project = only(res, "aws_codebuild_project")
    assert project["source"] == {"type": "GITHUB", "location": "https://github.com/example-org/airflow-platform.git",
                                 "git_clone_depth": 1, "auth": {"type": "CODECONNECTIONS", "resource": CONNECTION}}
    assert project["artifacts"] == {"type": "NO_ARTIFACTS"}
    assert (project["name"], project["build_timeout"], project["queued_timeout"], project["concurrent_build_limit"]) == (
        "af-dev-ci-runner", 60, 30, 2)
    assert "aws_codebuild_source_credential" not in res      # no token stored anywhere


def test_runner_is_in_the_private_subnets_behind_an_egress_only_group(stack):
    res = runner(stack)
    _, project = only(res, "aws_codebuild_project")
    group_name, group = only(res, "aws_security_group")
    assert project["vpc_config"] == {"vpc_id": "vpc-1", "subnets": ["subnet-a", "subnet-b"],
                                     "security_group_ids": [f"${{aws_security_group.{group_name}.id}}"]}
    assert "ingress" not in group and "aws_vpc_security_group_ingress_rule" not in res
    _, rule = only(res, "aws_vpc_security_group_egress_rule")
    assert (rule["ip_protocol"], rule["from_port"], rule["to_port"], rule["cidr_ipv4"]) == ("tcp", 443, 443, "0.0.0.0/0")


def test_build_environment_is_unprivileged_curated_and_encrypted_with_its_own_key(stack):
    res = runner(stack, image="aws/codebuild/amazonlinux-aarch64-standard:3.0", compute_type="BUILD_GENERAL1_LARGE")
    _, project = only(res, "aws_codebuild_project")
    key_name, _ = only(res, "aws_kms_key")
    assert project["environment"] == {"type": "ARM_CONTAINER", "image": "aws/codebuild/amazonlinux-aarch64-standard:3.0",
                                      "compute_type": "BUILD_GENERAL1_LARGE", "image_pull_credentials_type": "CODEBUILD",
                                      "privileged_mode": False}
    assert project["encryption_key"] == f"${{aws_kms_key.{key_name}.arn}}"
    _, group = only(res, "aws_cloudwatch_log_group")
    assert (group["name"], group["kms_key_id"], group["retention_in_days"]) == (
        "/aws/codebuild/af-dev-ci-runner", f"${{aws_kms_key.{key_name}.arn}}", 90)
    assert project["logs_config"] == {"cloudwatch_logs": {"status": "ENABLED", "group_name": "${aws_cloudwatch_log_group."
                                                          + only(res, "aws_cloudwatch_log_group")[0] + ".name}"},
                                      "s3_logs": {"status": "DISABLED"}}


def test_webhook_starts_a_build_only_for_queued_jobs_of_the_named_workflows(stack):
    res = runner(stack, workflow_names=("deploy", "plan (prod)"))
    _, hook = only(res, "aws_codebuild_webhook")
    assert hook["filter_group"] == [{"filter": [{"type": "EVENT", "pattern": "WORKFLOW_JOB_QUEUED"},
                                                {"type": "WORKFLOW_NAME", "pattern": r"^(deploy|plan\ \(prod\))$"}]}]
    assert "manual_creation" not in hook and hook["build_type"] == "BUILD"   # CodeBuild creates it: no secret


def test_service_role_grants_exactly_logs_enis_in_this_vpc_and_the_connection(stack):
    res = runner(stack)
    statements = service_policy(res)
    group = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/codebuild/af-dev-ci-runner"
    assert {sid: (s["Action"], s["Resource"]) for sid, s in statements.items()} == {
        "WriteBuildLogs": (["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                           [group, f"{group}:log-stream:*"]),
        "DescribeVpcNetworking": (["ec2:DescribeDhcpOptions", "ec2:DescribeNetworkInterfaces",
                                   "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"], "*"),
        "ManageBuildEnisInThisVpc": (["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface"],
                                     ["arn:aws:ec2:eu-west-1:123456789012:network-interface/*",
                                      "arn:aws:ec2:eu-west-1:123456789012:subnet/*",
                                      "arn:aws:ec2:eu-west-1:123456789012:security-group/*"]),
        "AttachBuildEnisForCodeBuild": (["ec2:CreateNetworkInterfacePermission"],
                                        ["arn:aws:ec2:eu-west-1:123456789012:network-interface/*"]),
        "UseGitHubConnection": (["codeconnections:GetConnection", "codeconnections:GetConnectionToken"], [CONNECTION]),
    }
    assert statements["ManageBuildEnisInThisVpc"]["Condition"] == {
        "StringEquals": {"ec2:Vpc": "arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-1"}}
    assert statements["AttachBuildEnisForCodeBuild"]["Condition"] == {"StringEquals": {
        "ec2:Subnet": ["arn:aws:ec2:eu-west-1:123456789012:subnet/subnet-a",
                       "arn:aws:ec2:eu-west-1:123456789012:subnet/subnet-b"],
        "ec2:AuthorizedService": "codebuild.amazonaws.com"}}
    assert "aws_iam_role_policy_attachment" not in res       # no managed policy on top


def test_legacy_codestar_connection_uses_its_own_iam_prefix(stack):
    legacy = CONNECTION.replace("codeconnections", "codestar-connections")
    assert service_policy(runner(stack, connection_arn=legacy))["UseGitHubConnection"]["Action"] == [
        "codestar-connections:GetConnection", "codestar-connections:GetConnectionToken"]


def test_only_codebuild_for_this_project_may_assume_the_service_role(stack):
    _, role = only(runner(stack), "aws_iam_role")
    (trust,) = json.loads(role["assume_role_policy"])["Statement"]
    assert (trust["Principal"], trust["Action"]) == ({"Service": "codebuild.amazonaws.com"}, "sts:AssumeRole")
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012", "aws:SourceArn": PROJECT_ARN}}


def test_project_waits_for_its_policy_so_codebuild_can_check_the_vpc_rights(stack):
    res = runner(stack)
    policy_name, _ = only(res, "aws_iam_role_policy")
    assert only(res, "aws_codebuild_project")[1]["depends_on"] == [f"aws_iam_role_policy.{policy_name}"]


def test_runs_on_label_names_the_project():
    assert runner_label("airflow-dev-ci-runner") == \
        "codebuild-airflow-dev-ci-runner-${{ github.run_id }}-${{ github.run_attempt }}"
    assert workflow_name_pattern(("deploy",)) == "^(deploy)$"


def test_connection_of_another_account_is_refused(stack):
    other = CONNECTION.replace("123456789012", "210987654321")
    with pytest.raises(ConfigError, match=r"connection_arn=.* belongs to another account"):
        runner(stack, connection_arn=other)


@pytest.mark.parametrize("values,match", [
    (dict(connection_arn="arn:aws:codeconnections:eu-west-1:123456789012:connection/not-a-uuid"),
     r"ci_runner.connection_arn=.* is not a CodeConnections connection ARN; fix: use arn:aws:codeconnections"),
    (dict(image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/runner:1"), r"ci_runner.image=.* curated image"),
    (dict(compute_type="BUILD_LAMBDA_4GB"), r"ci_runner.compute_type='BUILD_LAMBDA_4GB' is not a CodeBuild EC2"),
    (dict(build_timeout_minutes=3), r"ci_runner.build_timeout_minutes=3 is outside 5-2160"),
    (dict(queued_timeout_minutes=481), r"ci_runner.queued_timeout_minutes=481 is outside 5-480"),
    (dict(workflow_names=()), r"ci_runner.workflow_names=\[\] is empty"),
    (dict(workflow_names=(" deploy",)), r"ci_runner.workflow_names=.* padded"),
    (dict(enabled=False), r"ci_runner.enabled=False turns the in-VPC runner off without a reason"),
])
def test_settings_refuse_bad_values_in_one_line(values, match):
    with pytest.raises(ConfigError, match=match) as err:
        CiRunnerSettings(**{"connection_arn": CONNECTION, **values})
    assert "\n" not in str(err.value)


def test_runner_can_be_off_with_a_reason():
    assert CiRunnerSettings(enabled=False, off_reason="deploys run from the operators' VPN").enabled is False


@pytest.mark.parametrize("values,match", [
    (dict(repository="not a repo"), r"repository='not a repo' is not a GitHub 'owner/name'"),
    (dict(subnet_ids=("subnet-a",)), r"subnet_ids=\['subnet-a'\] has fewer than 2 subnets"),
    (dict(connection_arn=""), r"connection_arn='' is empty"),
])
def test_props_refuse_what_the_runner_cannot_work_with(values, match):
    with pytest.raises(ConfigError, match=match):
        make_props(CiRunnerProps, **{**BASE, **values})
