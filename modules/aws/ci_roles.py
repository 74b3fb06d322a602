"""GitHub Actions' way into AWS: the account's GitHub OIDC identity provider, a read-only plan role and a deploy role.

No long-lived keys: workflows exchange their GitHub OIDC token for short sessions (aws-actions/
configure-aws-credentials with `role-to-assume`). Both trust policies require the token's audience
`sts.amazonaws.com` and name exact subjects of the configured repository:

- plan role: `repo:<owner>/<name>:pull_request` (plan.yml) and `repo:<owner>/<name>:ref:refs/heads/<branch>`.
  AWS ReadOnlyAccess (refresh reads every resource) plus exactly what a plan needs of the state:
  list the bucket, read state objects, write and delete only the S3 lock objects (`*.tflock`, Terraform's
  `use_lockfile`), and use the state key to read state and encrypt lock objects.
- deploy role: `repo:<owner>/<name>:environment:<env>` for each deploy environment (deploy.yml runs every
  job in a GitHub environment; prod's required reviewers and "main only" deployment branches are set there).
  AdministratorAccess: a deploy creates IAM roles, KMS keys and the EKS cluster, so anything narrower is
  admin in effect; the trust policy and the environment approvals are what bound it.

An account holds one OIDC provider per URL: pass `existing_oidc_provider_arn` when it already exists.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


from cdktf_cdktf_provider_aws import iam_openid_connect_provider, iam_role, iam_role_policy, iam_role_policy_attachment
from constructs import Construct

from ..core import iam
from ..core.validation import ConfigError
from ..core.environment import AwsEnvironment

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_URL = f"https://{GITHUB_OIDC_HOST}"
AUDIENCE = "sts.amazonaws.com"
_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,200}")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9_-]{1,255}")
_NAME = re.compile(r"[a-z][a-z0-9-]{0,40}")


@dataclass(frozen=True, kw_only=True)
class CiRolesProps:
    repository: str                                    # "owner/name" of the GitHub repository
    state_bucket: str                                  # the Terraform state bucket's name
    state_kms_key_arn: str                             # the key encrypting state (and lock objects)
    name: str = "github-actions"                       # roles '<name>-plan' and '<name>-deploy'
    plan_branch: str = "main"                          # plans also run on pushes to this branch
    deploy_environments: tuple[str, ...] = ("dev", "staging", "prod")   # GitHub environments of deploy.yml
    existing_oidc_provider_arn: str | None = None      # None: create the account's GitHub OIDC provider
    max_session_hours: int = 1

    def __post_init__(self) -> None:
        if not _REPOSITORY.fullmatch(self.repository or "") or self.repository.endswith((".git", "/")):
            raise ConfigError("repository", self.repository, "is not a GitHub 'owner/name'",
                              "use the repository's owner and name, e.g. 'example-org/airflow-platform'")
        if "*" in self.plan_branch or not _BRANCH.fullmatch(self.plan_branch or ""):
            raise ConfigError("plan_branch", self.plan_branch, "is not one branch name (wildcards are not allowed)",
                              "name the default branch, e.g. 'main'")
        if not self.deploy_environments or len(set(self.deploy_environments)) != len(self.deploy_environments):
            raise ConfigError("deploy_environments", list(self.deploy_environments), "is empty or lists a name twice",
                              "list each GitHub environment deploy.yml deploys through once, e.g. ('dev', 'prod')")
        for env in self.deploy_environments:
            if not _ENVIRONMENT.fullmatch(env or ""):
                raise ConfigError("deploy_environments", env, "is not a GitHub environment name usable in a subject",
                                  "use letters, digits, '-' and '_' (no wildcards)")
        if not _NAME.fullmatch(self.name or ""):
            raise ConfigError("name", self.name, "is not a lowercase kebab-case name of at most 41 characters",
                              "use e.g. 'github-actions' (roles become '<name>-plan' and '<name>-deploy')")
        if not isinstance(self.max_session_hours, int) or not 1 <= self.max_session_hours <= 12:
            raise ConfigError("max_session_hours", self.max_session_hours, "is not 1-12 hours",
                              "use 1 (a plan or deploy job fits in an hour; longer sessions live longer if leaked)")


def github_trust_policy(provider_arn: str, subjects: list[str]) -> str:
    """Only GitHub OIDC tokens for AWS STS whose subject is one of `subjects` may assume the role."""
    return iam.policy_document({
        "Sid": "AssumeFromGitHubActions", "Effect": "Allow", "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{GITHUB_OIDC_HOST}:aud": AUDIENCE, f"{GITHUB_OIDC_HOST}:sub": subjects}}})


class CiRoles(Construct):
    """The GitHub OIDC provider (unless it exists) and the plan and deploy roles GitHub Actions assume."""

    def __init__(self, scope: Construct, id_: str, *, props: CiRolesProps) -> None:
        super().__init__(scope, id_)
        env = AwsEnvironment.of(self)
        p = props
        if p.existing_oidc_provider_arn is None:
            provider = iam_openid_connect_provider.IamOpenidConnectProvider(
                self, "github-oidc-provider", url=GITHUB_OIDC_URL, client_id_list=[AUDIENCE])
            self.oidc_provider_arn: str = provider.arn
        else:
            self.oidc_provider_arn = p.existing_oidc_provider_arn
        repo = f"repo:{p.repository}"
        self.plan_subjects = (f"{repo}:pull_request", f"{repo}:ref:refs/heads/{p.plan_branch}")
        self.deploy_subjects = tuple(f"{repo}:environment:{name}" for name in p.deploy_environments)
        session = p.max_session_hours * 3600

        plan = iam_role.IamRole(
            self, "plan-role", name=f"{p.name}-plan", max_session_duration=session, force_detach_policies=True,
            description=f"terraform plan from GitHub Actions of {p.repository} (read-only, state lock write)",
            assume_role_policy=github_trust_policy(self.oidc_provider_arn, list(self.plan_subjects)))
        iam_role_policy_attachment.IamRolePolicyAttachment(
            self, "plan-read-only", role=plan.name, policy_arn=f"arn:{env.partition}:iam::aws:policy/ReadOnlyAccess")
        bucket_arn = f"arn:{env.partition}:s3:::{p.state_bucket}"
        iam_role_policy.IamRolePolicy(self, "plan-state-access", role=plan.id, name="terraform-state", policy=iam.policy_document(
            iam.statement("ListState", ["s3:ListBucket"], bucket_arn),
            iam.statement("ReadState", ["s3:GetObject"], f"{bucket_arn}/*"),
            iam.statement("WriteLockObjects", ["s3:PutObject", "s3:DeleteObject"], f"{bucket_arn}/*.tflock"),
            iam.statement("UseStateKey", ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                          p.state_kms_key_arn)))

        deploy = iam_role.IamRole(
            self, "deploy-role", name=f"{p.name}-deploy", max_session_duration=session, force_detach_policies=True,
            description=f"deploys from GitHub Actions of {p.repository} through environments "
                        f"{', '.join(p.deploy_environments)}",
            assume_role_policy=github_trust_policy(self.oidc_provider_arn, list(self.deploy_subjects)))
        iam_role_policy_attachment.IamRolePolicyAttachment(
            self, "deploy-administrator", role=deploy.name,
            policy_arn=f"arn:{env.partition}:iam::aws:policy/AdministratorAccess")

        self.plan_role_arn: str = plan.arn
        self.plan_role_name: str = plan.name
        self.deploy_role_arn: str = deploy.arn
        self.deploy_role_name: str = deploy.name
