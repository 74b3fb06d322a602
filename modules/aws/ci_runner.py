"""The environment's in-VPC GitHub Actions runner: an AWS CodeBuild project that CodeBuild turns into an ephemeral,
self-hosted runner for each queued workflow job carrying its label (CodeBuild-hosted GitHub Actions runners; a
managed service, not a fleet of our own). The EKS API endpoint is private, so the deploy workflow's platform and
vault-config jobs run here:

    runs-on: codebuild-<project name>-${{ github.run_id }}-${{ github.run_attempt }}

- Network: the build container gets an ENI in the private subnets with a security group of its own that admits
  nothing and sends only HTTPS: to the VPC endpoints and, through NAT, to GitHub and AWS APIs, and to the cluster's
  API endpoint (`Cluster.allow_api_from` opens both sides).
- GitHub: the source is the repository through an AWS CodeConnections connection (a GitHub App installation,
  approved once in the console); CodeBuild creates the repository webhook with it and registers each runner with
  short-lived app tokens. No personal access token, no webhook secret in code, JSON or state.
- Identity: the service role may write the project's log group, manage the build's ENIs in this VPC and use the
  connection; nothing else. A job gets AWS rights only by assuming the environment's deploy role with its own GitHub
  OIDC token (that role trusts only the deploy workflow on main in the GitHub environment).
- Privileged mode (Docker in Docker) is off; logs go to a KMS-encrypted log group; the project's key encrypts
  whatever CodeBuild stores for it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from cdktf_cdktf_provider_aws import (
    cloudwatch_log_group,
    codebuild_project as project,
    codebuild_webhook as webhook,
    iam_role,
    iam_role_policy,
    security_group,
    vpc_security_group_egress_rule as egress,
)
from constructs import Construct

from ..core import iam, validation
from ..core.environment import AwsEnvironment
from ..core.tokens import is_unresolved
from ..core.validation import require
from .encryption import EncryptionKey, EncryptionKeyProps, logs_service_use
from .settings import CiRunnerSettings, connection_account

CODEBUILD = "codebuild.amazonaws.com"
HTTPS = 443
# CodeBuild project names: letters, digits, '-' and '_', 2-150 characters, starting with a letter or digit.
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,149}")
_REPOSITORY = re.compile(r"[A-Za-z0-9-]+/[A-Za-z0-9._-]+")


def runner_label(project_name: str) -> str:
    """The `runs-on` label a workflow job uses to run on this project's runner."""
    return f"codebuild-{project_name}-${{{{ github.run_id }}}}-${{{{ github.run_attempt }}}}"


def log_group_name(project_name: str) -> str:
    return f"/aws/codebuild/{project_name}"


def workflow_name_pattern(names: tuple[str, ...]) -> str:
    """WORKFLOW_NAME filter: exactly these workflow names."""
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


@dataclass(frozen=True, kw_only=True)
class CiRunnerProps:
    name: str                           # the CodeBuild project name (EnvironmentConfig.ci_runner_project_name)
    repository: str                     # GitHub 'owner/name' whose workflow jobs it runs
    vpc_id: str
    subnet_ids: tuple[str, ...]         # the private subnets (never public ones: the ENI gets no public address)
    settings: CiRunnerSettings          # connection, image, compute type, timeouts, workflows
    log_retention_days: int = 90

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and _PROJECT.fullmatch(self.name) is not None, "name", self.name,
                "is not a CodeBuild project name", "use 2-150 letters, digits, '-' and '_'")
        require(isinstance(self.repository, str) and _REPOSITORY.fullmatch(self.repository) is not None,
                "repository", self.repository, "is not a GitHub 'owner/name'",
                "use the repository whose workflows deploy, e.g. 'example-org/airflow-platform'")
        require(self.settings.connection_arn != "", "connection_arn", self.settings.connection_arn,
                "is empty", "give the ARN of the account's GitHub connection (docs/design.md §12)")
        if not is_unresolved(list(self.subnet_ids)):
            require(len(self.subnet_ids) >= 2, "subnet_ids", list(self.subnet_ids), "has fewer than 2 subnets",
                    "pass the private subnets of at least two AZs")
        validation.log_retention("log_retention_days", self.log_retention_days)


class CiRunner(Construct):
    """A CodeBuild-hosted GitHub Actions runner in the VPC's private subnets, reachable by nobody."""

    def __init__(self, scope: Construct, id_: str, *, props: CiRunnerProps) -> None:
        super().__init__(scope, id_)
        env = AwsEnvironment.of(self)
        s = props.settings
        require(connection_account(s.connection_arn) == env.account_id, "connection_arn", s.connection_arn,
                f"belongs to another account than the stack's ({env.account_id})",
                "use the GitHub connection created in this account")
        self.project_name = props.name
        self.project_arn = env.arn("codebuild", f"project/{props.name}")
        self.label = runner_label(props.name)

        self.key = EncryptionKey(self, "key", props=EncryptionKeyProps(
            alias=f"{props.name}", description=f"{props.name} CodeBuild runner: build data and logs",
            services=(logs_service_use(env, log_group_prefixes=(log_group_name(props.name),)),)))
        self.log_group = cloudwatch_log_group.CloudwatchLogGroup(
            self, "log-group", name=log_group_name(props.name), retention_in_days=props.log_retention_days,
            kms_key_id=self.key.arn)

        # Egress only: Terraform removes the default allow-all egress of a group it creates, and no ingress rule is
        # ever added (a runner registers with GitHub outbound; nothing connects to it).
        self.security_group = security_group.SecurityGroup(
            self, "security-group", name=f"{props.name}", vpc_id=props.vpc_id,
            description=f"{props.name} GitHub Actions runner: HTTPS out only, no ingress",
            tags={"Name": props.name})
        self.security_group_id: str = self.security_group.id
        # GitHub (runner registration, job logs, actions and releases) has no fixed addresses and is reached through
        # NAT; AWS APIs through the VPC endpoints or NAT. HTTPS only; DNS goes to the VPC resolver, which security
        # groups do not filter.
        egress.VpcSecurityGroupEgressRule(
            self, "egress-https", security_group_id=self.security_group.id, cidr_ipv4="0.0.0.0/0",
            ip_protocol="tcp", from_port=HTTPS, to_port=HTTPS,
            description="HTTPS to GitHub (via NAT), AWS APIs (VPC endpoints) and the EKS API")

        self.role = iam_role.IamRole(self, "service-role", name=f"{props.name}-service",
                                     assume_role_policy=self._trust_policy(env))
        self.role_arn: str = self.role.arn
        policy = iam_role_policy.IamRolePolicy(
            self, "service-policy", role=self.role.id, name="runner",
            policy=iam.policy_document(*service_role_statements(
                env, log_group_name=log_group_name(props.name), vpc_id=props.vpc_id,
                subnet_ids=props.subnet_ids, connection_arn=s.connection_arn)))

        self.project = project.CodebuildProject(
            self, "project", name=props.name,
            description=f"In-VPC GitHub Actions runner for {props.repository} ({', '.join(s.workflow_names)})",
            service_role=self.role.arn, encryption_key=self.key.arn,
            build_timeout=s.build_timeout_minutes, queued_timeout=s.queued_timeout_minutes,
            concurrent_build_limit=s.max_concurrent_builds,
            source=project.CodebuildProjectSource(
                type="GITHUB", location=f"https://github.com/{props.repository}.git", git_clone_depth=1,
                auth=project.CodebuildProjectSourceAuth(type="CODECONNECTIONS", resource=s.connection_arn)),
            artifacts=project.CodebuildProjectArtifacts(type="NO_ARTIFACTS"),
            environment=project.CodebuildProjectEnvironment(
                type=s.environment_type, image=s.image, compute_type=s.compute_type,
                image_pull_credentials_type="CODEBUILD", privileged_mode=False),
            vpc_config=project.CodebuildProjectVpcConfig(
                vpc_id=props.vpc_id, subnets=list(props.subnet_ids), security_group_ids=[self.security_group.id]),
            logs_config=project.CodebuildProjectLogsConfig(
                cloudwatch_logs=project.CodebuildProjectLogsConfigCloudwatchLogs(
                    status="ENABLED", group_name=self.log_group.name),
                s3_logs=project.CodebuildProjectLogsConfigS3Logs(status="DISABLED")),
            # CodeBuild checks the VPC permissions when the project is created: the policy must exist first.
            depends_on=[policy])
        # One build per queued job of the listed workflows; CodeBuild creates the repository webhook through the
        # connection (no manual creation, so no webhook secret is returned into state).
        self.webhook = webhook.CodebuildWebhook(
            self, "webhook", project_name=self.project.name, build_type="BUILD",
            filter_group=[webhook.CodebuildWebhookFilterGroup(filter=[
                webhook.CodebuildWebhookFilterGroupFilter(type="EVENT", pattern="WORKFLOW_JOB_QUEUED"),
                webhook.CodebuildWebhookFilterGroupFilter(type="WORKFLOW_NAME",
                                                          pattern=workflow_name_pattern(s.workflow_names)),
            ])])

    def _trust_policy(self, env: AwsEnvironment) -> str:
        # Confused deputy: CodeBuild may assume the role only for this project of this account.
        return iam.policy_document({
            "Sid": "AssumeByThisProject", "Effect": "Allow", "Principal": {"Service": CODEBUILD},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": env.account_id, "aws:SourceArn": self.project_arn}}})


def service_role_statements(env: AwsEnvironment, *, log_group_name: str, vpc_id: str, subnet_ids: tuple[str, ...],
                            connection_arn: str) -> list[dict]:
    """What CodeBuild itself does with the service role for a VPC runner project, and nothing more (AWS CodeBuild
    User Guide: "Allow CodeBuild to interact with other AWS services", the VPC network interface policy, and
    "GitHub App connections"); narrower than those examples where IAM allows: the log group by name, the ENI
    actions by this VPC, the ENI permission by these subnets and CodeBuild."""
    group = env.arn("logs", f"log-group:{log_group_name}")
    vpc = {"ec2:Vpc": env.arn("ec2", f"vpc/{vpc_id}")}
    # One list token (subnets read from remote state) cannot be split at synth: then any subnet of this VPC.
    subnets = [env.arn("ec2", f"subnet/{subnet}") for subnet in subnet_ids] \
        if not is_unresolved(list(subnet_ids)) else [env.arn("ec2", "subnet/*")]
    connections = connection_arn.split(":")[2]     # IAM prefix = the ARN's service (codeconnections / codestar-…)
    return [
        # CreateLogGroup on this name only: CodeBuild calls it before streaming; the group already exists.
        iam.statement("WriteBuildLogs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                      [group, f"{group}:log-stream:*"]),
        # Describe calls take no resource ARNs.
        iam.statement("DescribeVpcNetworking", ["ec2:DescribeDhcpOptions", "ec2:DescribeNetworkInterfaces",
                                                "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets",
                                                "ec2:DescribeVpcs"], "*"),
        iam.statement("ManageBuildEnisInThisVpc", ["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface"],
                      [env.arn("ec2", "network-interface/*"), env.arn("ec2", "subnet/*"),
                       env.arn("ec2", "security-group/*")], condition={"StringEquals": vpc}),
        iam.statement("AttachBuildEnisForCodeBuild", ["ec2:CreateNetworkInterfacePermission"],
                      [env.arn("ec2", "network-interface/*")],
                      condition={"StringEquals": {"ec2:Subnet": subnets, "ec2:AuthorizedService": CODEBUILD}}),
        iam.statement("UseGitHubConnection", [f"{connections}:GetConnection", f"{connections}:GetConnectionToken"],
                      [connection_arn]),
    ]
