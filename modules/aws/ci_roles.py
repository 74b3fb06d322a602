"""GitHub Actions' way into one AWS account: the account's GitHub OIDC identity provider and, per environment in the
account, a deploy role, a plan role and the two permissions boundaries that keep a deploy inside its environment.

No long-lived keys: workflows exchange their GitHub OIDC token for one-hour sessions (aws-actions/
configure-aws-credentials). Every trust policy requires the audience `sts.amazonaws.com` and a subject of the
configured repository in GitHub's customized format `repo:<owner>/<name>:<context>:job_workflow_ref:<workflow>@<ref>`.
AWS STS evaluates only some GitHub claims (`aud`, `sub`; GitHub: "Support for custom claims for OIDC is unavailable
in AWS"), so the workflow file and branch are put into `sub` by the repository's OIDC subject template
(`include_claim_keys: [repo, context, job_workflow_ref]`, set once with `gh api`, docs/design.md §11):

- deploy role `<name>-<env>-deploy`: exactly `repo:R:environment:<env>:job_workflow_ref:R/.github/workflows/
  deploy.yml@refs/heads/main`: that environment's jobs of deploy.yml on main, nothing else. AdministratorAccess,
  bounded by `<prefix>-deploy-boundary` (below).
- plan role `<name>-<env>-plan`: pull requests' plan.yml (`repo:R:pull_request:job_workflow_ref:R/.github/workflows/
  plan.yml@refs/pull/*/merge`), or, when the environment names a `plan_environment` (production), only plan.yml on
  main in that protected GitHub environment (`repo:R:environment:<plan_environment>:job_workflow_ref:R/.github/
  workflows/plan.yml@refs/heads/main`): never a pull request's code. ReadOnlyAccess for refresh, this environment's
  state keys, no object write or delete at all (plans run with -lock=false, so no plan holds or breaks a .tflock),
  and explicit denies for the data ReadOnlyAccess would also let it read (other objects, parameters, secrets, logs).

The boundaries ("permissions boundary delegation"): the deploy boundary allows the deploy's work but denies changing
the CI roles, the OIDC provider, the boundaries, the state bucket and key, other environments' state, stopping or
deleting CloudTrail and GuardDuty, creating or changing any IAM role that is not `<prefix>-*` or does not carry the
workload boundary, assuming any role that is not `<prefix>-*`, and every IAM user, group policy, long-lived credential
and new identity provider; the workload boundary (on every role the environment's stacks create,
stacks/__init__.py) denies the same. So a role the deploy creates is held by the same denies as the deploy and
cannot reach a role outside the environment, and the deploy cannot widen its own permissions. What IAM cannot
express: a role's trust policy is not a condition key, so a `<prefix>-*` role may be made to trust another account;
an organization's resource control policy (`aws:PrincipalOrgID` on sts:AssumeRole) is the stronger control.

An account holds one OIDC provider per URL: pass `existing_oidc_provider_arn` when it already exists.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cdktf_cdktf_provider_aws import (
    iam_openid_connect_provider,
    iam_policy,
    iam_role,
    iam_role_policy,
    iam_role_policy_attachment,
)
from constructs import Construct

from ..core import iam
from ..core.environment import AwsEnvironment
from ..core.validation import ConfigError
from .settings import ROLE_NAME_PREFIX, deploy_role_name, plan_role_name, workload_boundary_name

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_URL = f"https://{GITHUB_OIDC_HOST}"
AUDIENCE = "sts.amazonaws.com"
# The repository's OIDC subject template this module's trust policies expect (GitHub REST API
# PUT /repos/{owner}/{repo}/actions/oidc/customization/sub).
SUBJECT_CLAIM_KEYS = ("repo", "context", "job_workflow_ref")
# A pull request's workflow runs at refs/pull/<number>/merge.
PULL_REQUEST_REF = "refs/pull/*/merge"
_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,200}")
_GITHUB_ENVIRONMENT = re.compile(r"[A-Za-z0-9_-]{1,255}")
_NAME = re.compile(r"[a-z][a-z0-9-]{0,40}")
_PREFIX = re.compile(r"[a-z][a-z0-9-]{1,40}")
_WORKFLOW = re.compile(r"\.github/workflows/[A-Za-z0-9._-]+\.ya?ml")

# IAM actions that change an IAM entity or policy (by verb), for the denies that protect named ones.
IAM_CHANGES = ["iam:Add*", "iam:Attach*", "iam:Create*", "iam:Delete*", "iam:Detach*", "iam:Put*", "iam:Remove*",
               "iam:Set*", "iam:Tag*", "iam:Untag*", "iam:Update*", "iam:Upload*", "iam:PassRole"]
# Role and user changes AWS conditions on `iam:PermissionsBoundary` (the boundary the entity has or gets).
BOUNDED_IAM_CHANGES = ["iam:CreateRole", "iam:PutRolePermissionsBoundary", "iam:AttachRolePolicy",
                       "iam:DetachRolePolicy", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:CreateUser",
                       "iam:PutUserPermissionsBoundary", "iam:AttachUserPolicy", "iam:DetachUserPolicy",
                       "iam:PutUserPolicy", "iam:DeleteUserPolicy"]
BOUNDARY_REMOVALS = ["iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary"]
# Role changes that hand out permissions (or cap someone's): only on the environment's own roles.
ROLE_CHANGES = [a for a in BOUNDED_IAM_CHANGES if "Role" in a]
# No stack makes IAM users, groups' policies, long-lived credentials or new identity providers; each would be a way in
# that outlives a one-hour session (a user's access key, a console password, an OIDC/SAML provider a role trusts).
LONG_LIVED_IDENTITIES = ["iam:CreateUser", "iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:CreateLoginProfile",
                         "iam:UpdateLoginProfile", "iam:CreateServiceSpecificCredential",
                         "iam:ResetServiceSpecificCredential", "iam:UploadSSHPublicKey", "iam:UploadSigningCertificate",
                         "iam:CreateVirtualMFADevice", "iam:EnableMFADevice", "iam:PutUserPermissionsBoundary",
                         "iam:AttachUserPolicy", "iam:PutUserPolicy", "iam:AddUserToGroup", "iam:AttachGroupPolicy",
                         "iam:PutGroupPolicy", "iam:CreateOpenIDConnectProvider", "iam:AddClientIDToOpenIDConnectProvider",
                         "iam:UpdateOpenIDConnectProviderThumbprint", "iam:CreateSAMLProvider",
                         "iam:UpdateSAMLProvider"]
STATE_BUCKET_CHANGES = ["s3:DeleteBucket", "s3:DeleteBucketPolicy", "s3:PutBucket*", "s3:PutEncryptionConfiguration",
                        "s3:PutLifecycleConfiguration", "s3:PutReplicationConfiguration",
                        "s3:PutObjectLockConfiguration", "s3:PutAccelerateConfiguration",
                        "s3:PutIntelligentTieringConfiguration", "s3:PutInventoryConfiguration",
                        "s3:PutAnalyticsConfiguration", "s3:PutMetricsConfiguration", "s3:DeleteObjectVersion",
                        "s3:PutObjectAcl", "s3:PutObjectVersionAcl", "s3:BypassGovernanceRetention"]
STATE_KEY_CHANGES = ["kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:DisableKeyRotation",
                     "kms:CreateGrant", "kms:RetireGrant", "kms:RevokeGrant", "kms:UpdateAlias", "kms:DeleteAlias",
                     "kms:UpdateKeyDescription", "kms:TagResource", "kms:UntagResource",
                     "kms:ReplicateKey", "kms:UpdatePrimaryRegion", "kms:ImportKeyMaterial",
                     "kms:DeleteImportedKeyMaterial"]
GUARDRAIL_STOPS = ["cloudtrail:StopLogging", "cloudtrail:DeleteTrail", "guardduty:DeleteDetector",
                   "guardduty:DisassociateFromMasterAccount", "guardduty:DisassociateFromAdministratorAccount"]
OBJECT_WRITES = ["s3:PutObject*", "s3:DeleteObject*", "s3:RestoreObject", "s3:ReplicateObject", "s3:ReplicateDelete"]
# Ways to blind the guardrails without stopping them: narrow or redirect the trail, suppress or archive findings. The
# deploy creates the trail with CreateTrail, StartLogging and tags only, so these are never part of its work.
GUARDRAIL_CHANGES = ["cloudtrail:UpdateTrail", "cloudtrail:PutEventSelectors", "cloudtrail:PutInsightSelectors",
                     "cloudtrail:PutResourcePolicy", "cloudtrail:DeleteResourcePolicy",
                     "cloudtrail:UpdateEventDataStore", "cloudtrail:DeleteEventDataStore",
                     "cloudtrail:StopEventDataStoreIngestion", "guardduty:CreateFilter", "guardduty:UpdateFilter",
                     "guardduty:CreateIPSet", "guardduty:UpdateIPSet", "guardduty:ArchiveFindings",
                     "guardduty:UpdateFindingsFeedback", "guardduty:UpdatePublishingDestination",
                     "guardduty:DeletePublishingDestination"]
# What would make the trail's key unusable or hand it to someone else; matched by the key's alias (the key is the
# infra stack's, its ARN unknown here). Creating the key does not call these; changing its policy later does.
TRAIL_KEY_CHANGES = ["kms:PutKeyPolicy", "kms:DisableKey", "kms:ScheduleKeyDeletion", "kms:DisableKeyRotation",
                     "kms:CreateGrant"]
STATE_OBJECT_ACCESS = ["s3:GetObject*", "s3:PutObject*", "s3:DeleteObject*", "s3:RestoreObject"]
# Data-plane reads AWS ReadOnlyAccess includes (or may include) that no `terraform plan` here needs: values, not
# configuration. Object reads and secret values are denied separately, with the exceptions a plan does need.
PLAN_DATA_READS = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory",
                   "logs:GetLogEvents", "logs:FilterLogEvents", "logs:StartQuery", "logs:StartLiveTail",
                   "logs:GetLogRecord", "sqs:ReceiveMessage", "dynamodb:GetItem", "dynamodb:BatchGetItem",
                   "dynamodb:Query", "dynamodb:Scan", "dynamodb:PartiQLSelect", "kinesis:GetRecords",
                   "s3:GetObjectTorrent", "lambda:GetFunction", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                   "rds:DownloadDBLogFilePortion", "rds:DownloadCompleteDBLogFile", "cloudtrail:LookupEvents"]


@dataclass(frozen=True, kw_only=True)
class CiEnvironment:
    """One environment deployed into this account: the CI identities and boundaries made for it."""
    name: str                                      # the GitHub environment deploy.yml deploys it through
    prefix: str                                    # name prefix of its AWS resources ('airflow-dev'): roles, boundaries
    state_prefix: str                              # its state keys: '<state_prefix>/<layer>.tfstate'
    plan_environment: str = ""                     # "" = pull requests plan it; else only jobs in that GitHub env
    plan_secret_names: tuple[str, ...] = ()        # secrets its stacks read through data sources (plan reads them)
    trail_bucket: str | None = None                # its CloudTrail bucket: no CI identity deletes the logs

    def __post_init__(self) -> None:
        for key, value in (("name", self.name), ("plan_environment", self.plan_environment)):
            if not _GITHUB_ENVIRONMENT.fullmatch(value or "") and not (key == "plan_environment" and value == ""):
                raise ConfigError(key, value, "is not a GitHub environment name usable in a subject",
                                  "use letters, digits, '-' and '_' (no wildcards)")
        if not _PREFIX.fullmatch(self.prefix or ""):
            raise ConfigError("prefix", self.prefix, "is not a lowercase kebab-case name prefix",
                              "use the environment's resource prefix, e.g. 'airflow-dev'")
        if not _NAME.fullmatch(self.state_prefix or ""):
            raise ConfigError("state_prefix", self.state_prefix, "is not a state key prefix",
                              "use the environment's name, e.g. 'dev' (state keys '<prefix>/<layer>.tfstate')")

    @property
    def deploy_boundary_name(self) -> str:
        return f"{self.prefix}-deploy-boundary"

    @property
    def workload_boundary_name(self) -> str:
        return workload_boundary_name(self.prefix)


@dataclass(frozen=True, kw_only=True)
class CiRolesProps:
    repository: str                                    # "owner/name" of the GitHub repository
    state_bucket: str                                  # this account's Terraform state bucket
    state_kms_key_arn: str                             # the key encrypting state (and lock objects)
    environments: tuple[CiEnvironment, ...]            # the environments deployed into this account
    state_access_log_bucket: str | None = None         # the state bucket's access-log bucket (protected likewise)
    state_kms_alias: str = "alias/terraform-state"
    name: str = ROLE_NAME_PREFIX                       # roles '<name>-<env>-deploy' and '<name>-<env>-plan'
    deploy_workflow: str = ".github/workflows/deploy.yml"
    plan_workflow: str = ".github/workflows/plan.yml"
    deploy_branch: str = "main"                        # deploys run only from this branch's deploy workflow
    existing_oidc_provider_arn: str | None = None      # None: create the account's GitHub OIDC provider
    max_session_hours: int = 1
    global_state_prefix: str = "global"                # the state stack's own state ('global/state.tfstate')

    def __post_init__(self) -> None:
        if not _REPOSITORY.fullmatch(self.repository or "") or self.repository.endswith((".git", "/")):
            raise ConfigError("repository", self.repository, "is not a GitHub 'owner/name'",
                              "use the repository's owner and name, e.g. 'example-org/airflow-platform'")
        if "*" in self.deploy_branch or not _BRANCH.fullmatch(self.deploy_branch or ""):
            raise ConfigError("deploy_branch", self.deploy_branch, "is not one branch name (wildcards are not allowed)",
                              "name the default branch, e.g. 'main'")
        for key in ("deploy_workflow", "plan_workflow"):
            if not _WORKFLOW.fullmatch(getattr(self, key) or ""):
                raise ConfigError(key, getattr(self, key), "is not a workflow file path",
                                  "use e.g. '.github/workflows/deploy.yml'")
        names = [env.name for env in self.environments]
        if not names or len(set(names)) != len(names) or len({e.prefix for e in self.environments}) != len(names):
            raise ConfigError("environments", names, "is empty or lists an environment (or prefix) twice",
                              "list each environment deployed into this account once")
        if not _NAME.fullmatch(self.name or ""):
            raise ConfigError("name", self.name, "is not a lowercase kebab-case name of at most 41 characters",
                              "use e.g. 'github-actions' (roles become '<name>-<env>-deploy' and '<name>-<env>-plan')")
        if not isinstance(self.max_session_hours, int) or not 1 <= self.max_session_hours <= 12:
            raise ConfigError("max_session_hours", self.max_session_hours, "is not 1-12 hours",
                              "use 1 (a plan or deploy job fits in an hour; longer sessions live longer if leaked)")


# Never needed by a deploy or a workload: leaving the AWS Organization would also shed its service control policies,
# and the account's contacts, regions and billing are the account owner's.
ACCOUNT_ACTIONS = ["organizations:*", "account:*", "billing:*", "payments:*"]


def allow_all_but_account(sid: str) -> dict[str, Any]:
    """The Allow of a boundary: every action but ACCOUNT_ACTIONS (the denies of the boundary take away the rest)."""
    return {"Sid": sid, "Effect": "Allow", "NotAction": ACCOUNT_ACTIONS, "Resource": "*"}


def subject(repository: str, context: str, workflow: str, ref: str) -> str:
    """A GitHub OIDC `sub` under the template `include_claim_keys: [repo, context, job_workflow_ref]`."""
    return f"repo:{repository}:{context}:job_workflow_ref:{repository}/{workflow}@{ref}"


def github_trust_policy(provider_arn: str, subjects: list[str]) -> str:
    """Only GitHub OIDC tokens for AWS STS whose subject is one of `subjects` may assume the role. A `*` (only ever
    the pull request number) makes the subject match StringLike; otherwise it must be StringEquals."""
    condition: dict[str, Any] = {"StringEquals": {f"{GITHUB_OIDC_HOST}:aud": AUDIENCE}}
    if any("*" in s for s in subjects):
        condition["StringLike"] = {f"{GITHUB_OIDC_HOST}:sub": subjects}
    else:
        condition["StringEquals"][f"{GITHUB_OIDC_HOST}:sub"] = subjects
    return iam.policy_document({
        "Sid": "AssumeFromGitHubActions", "Effect": "Allow", "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition})


class CiRoles(Construct):
    """The account's GitHub OIDC provider (unless it exists) and, per environment, its deploy and plan roles and its
    deploy and workload boundaries."""

    def __init__(self, scope: Construct, id_: str, *, props: CiRolesProps) -> None:
        super().__init__(scope, id_)
        self._env = AwsEnvironment.of(self)
        self._props = p = props
        if p.existing_oidc_provider_arn is None:
            provider = iam_openid_connect_provider.IamOpenidConnectProvider(
                self, "github-oidc-provider", url=GITHUB_OIDC_URL, client_id_list=[AUDIENCE])
            self.oidc_provider_arn: str = provider.arn
        else:
            self.oidc_provider_arn = p.existing_oidc_provider_arn
        self.deploy_role_arns: dict[str, str] = {}
        self.plan_role_arns: dict[str, str] = {}
        self.deploy_subjects: dict[str, tuple[str, ...]] = {}
        self.plan_subjects: dict[str, tuple[str, ...]] = {}
        self.workload_boundary_arns: dict[str, str] = {}
        for environment in p.environments:
            self._environment(environment)

    # ---- ARNs and the statements both boundaries share ------------------------------------------------------

    def _arn(self, resource: str) -> str:
        return self._env.arn("iam", resource, region=False)

    @property
    def _bucket_arn(self) -> str:
        return f"arn:{self._env.partition}:s3:::{self._props.state_bucket}"

    def _boundary_arns(self) -> list[str]:
        return [self._arn(f"policy/{name}") for e in self._props.environments
                for name in (e.deploy_boundary_name, e.workload_boundary_name)]

    def protection_statements(self, environment: CiEnvironment) -> list[dict[str, Any]]:
        """What neither a deploy nor a workload of `environment` may do: the denies of both boundaries."""
        p, env = self._props, self._env
        buckets = [self._bucket_arn] + ([f"arn:{env.partition}:s3:::{p.state_access_log_bucket}"]
                                        if p.state_access_log_bucket else [])
        trail_objects = [f"arn:{env.partition}:s3:::{e.trail_bucket}/*" for e in p.environments if e.trail_bucket]
        own_roles = self._arn(f"role/{environment.prefix}-*")
        trail_aliases = [f"alias/{e.prefix}-cloudtrail" for e in p.environments if e.trail_bucket]
        return [
            iam.statement("DenyChangingCiRoles", IAM_CHANGES, self._arn(f"role/{p.name}-*"), effect="Deny"),
            iam.statement("DenyChangingGitHubOidcProvider", IAM_CHANGES,
                          self._arn(f"oidc-provider/{GITHUB_OIDC_HOST}"), effect="Deny"),
            iam.statement("DenyChangingBoundaries", IAM_CHANGES, self._boundary_arns(), effect="Deny"),
            # The permissions boundary delegation pattern: a role or user is created or changed only if it carries
            # the workload boundary, and no boundary is ever removed, so nothing created can do more than this.
            iam.statement("DenyRolesAndUsersWithoutWorkloadBoundary", BOUNDED_IAM_CHANGES, "*", effect="Deny",
                          condition={"StringNotEquals": {"iam:PermissionsBoundary":
                                                         self._arn(f"policy/{environment.workload_boundary_name}")}}),
            iam.statement("DenyRemovingBoundaries", BOUNDARY_REMOVALS, "*", effect="Deny"),
            # Only the environment's own roles are created or changed: PutRolePermissionsBoundary on an existing
            # admin role would otherwise cap it (and AttachRolePolicy then fill it up to the workload boundary).
            {"Sid": "DenyChangingOtherRoles", "Effect": "Deny", "Action": ROLE_CHANGES, "NotResource": [own_roles]},
            iam.statement("DenyLongLivedIdentities", LONG_LIVED_IDENTITIES, "*", effect="Deny"),
            # A role of this environment may assume only another one: without this, a role the deploy creates (with
            # the workload boundary) could assume any role trusting the account root, e.g. a break-glass admin.
            {"Sid": "DenyAssumingOtherRoles", "Effect": "Deny", "Action": ["sts:AssumeRole"], "NotResource": [own_roles]},
            # Roles made before (break-glass admins, other environments' roles) are neither passed to a service nor
            # made to trust someone else: the two ways to borrow a role's permissions without assuming it.
            {"Sid": "DenyPassingOrRetrustingOtherRoles", "Effect": "Deny",
             "Action": ["iam:PassRole", "iam:UpdateAssumeRolePolicy"], "NotResource": [own_roles]},
            iam.statement("DenyChangingStateStorage", STATE_BUCKET_CHANGES,
                          buckets + [f"{b}/*" for b in buckets], effect="Deny"),
            iam.statement("DenyChangingStateKey", STATE_KEY_CHANGES,
                          [p.state_kms_key_arn, env.arn("kms", p.state_kms_alias)], effect="Deny"),
            iam.statement("DenyStoppingGuardrails", GUARDRAIL_STOPS, "*", effect="Deny"),
            iam.statement("DenyBlindingGuardrails", GUARDRAIL_CHANGES, "*", effect="Deny"),
            *([iam.statement("DenyDisablingTrailKeys", TRAIL_KEY_CHANGES, "*", effect="Deny", condition={
                "ForAnyValue:StringEquals": {"kms:ResourceAliases": trail_aliases}}),
               iam.statement("DenyMovingTrailKeyAliases", ["kms:DeleteAlias", "kms:UpdateAlias"],
                             [env.arn("kms", a) for a in trail_aliases], effect="Deny")] if trail_aliases else []),
            *([iam.statement("DenyDeletingAuditLogs", ["s3:DeleteObject", "s3:DeleteObjectVersion"], trail_objects,
                             effect="Deny")] if trail_objects else []),
        ]

    def _other_state(self, environment: CiEnvironment) -> list[str]:
        """State keys that are not `environment`'s: the state stack's own and other environments' in this account."""
        p = self._props
        return [f"{self._bucket_arn}/{prefix}/*" for prefix in
                (p.global_state_prefix, *(e.state_prefix for e in p.environments if e is not environment))]

    # ---- one environment ---------------------------------------------------------------------------------

    def _environment(self, e: CiEnvironment) -> None:
        p, env = self._props, self._env
        # The account's state stack holds one set of identities per environment in the account; the environment is
        # that set's key (as a bucket name is a bucket's), fixed for the environment's life, so its address is stable.
        scope = Construct(self, f"environment-{e.name}")
        session = p.max_session_hours * 3600
        protections = self.protection_statements(e)

        deploy_boundary = iam_policy.IamPolicy(
            scope, "deploy-boundary", name=e.deploy_boundary_name,
            description=f"Permissions boundary of {deploy_role_name(e.name, p.name)}: the deploy's work, never its own guards",
            policy=iam.policy_document(
                # Allowed is what the deploy's policy allows (AdministratorAccess: a deploy creates VPCs, EKS, RDS,
                # KMS keys and IAM roles) but the account and its organization; the denies below, which no policy
                # can override, are the rest of the boundary.
                allow_all_but_account("AllowDeployWork"),
                *protections,
                iam.statement("DenyOtherEnvironmentsState", STATE_OBJECT_ACCESS, self._other_state(e), effect="Deny")))
        workload_boundary = iam_policy.IamPolicy(
            scope, "workload-boundary", name=e.workload_boundary_name,
            description=f"Permissions boundary of every IAM role of {e.prefix}'s stacks",
            policy=iam.policy_document(
                # Workload roles' own policies grant what each needs; the boundary only takes away the guards.
                allow_all_but_account("AllowWorkloads"),
                *protections,
                iam.statement("DenyTerraformState", STATE_OBJECT_ACCESS, f"{self._bucket_arn}/*", effect="Deny")))
        self.workload_boundary_arns[e.name] = workload_boundary.arn

        repo = p.repository
        self.deploy_subjects[e.name] = (subject(repo, f"environment:{e.name}", p.deploy_workflow,
                                                f"refs/heads/{p.deploy_branch}"),)
        deploy = iam_role.IamRole(
            scope, "deploy-role", name=deploy_role_name(e.name, p.name), max_session_duration=session,
            force_detach_policies=True, permissions_boundary=deploy_boundary.arn,
            description=f"deploys {e.name} from {p.repository}'s {p.deploy_workflow} on {p.deploy_branch}",
            assume_role_policy=github_trust_policy(self.oidc_provider_arn, list(self.deploy_subjects[e.name])))
        iam_role_policy_attachment.IamRolePolicyAttachment(
            scope, "deploy-administrator", role=deploy.name,
            policy_arn=f"arn:{env.partition}:iam::aws:policy/AdministratorAccess")

        # A protected plan environment is planned from the deploy branch's merged code only, never a pull request's.
        context, ref = ((f"environment:{e.plan_environment}", f"refs/heads/{p.deploy_branch}") if e.plan_environment
                        else ("pull_request", PULL_REQUEST_REF))
        self.plan_subjects[e.name] = (subject(repo, context, p.plan_workflow, ref),)
        plan = iam_role.IamRole(
            scope, "plan-role", name=plan_role_name(e.name, p.name), max_session_duration=session,
            force_detach_policies=True,
            description=f"terraform plan of {e.name} from {p.repository}'s {p.plan_workflow} "
                        f"({e.plan_environment + ' on ' + p.deploy_branch if e.plan_environment else 'pull requests'})",
            assume_role_policy=github_trust_policy(self.oidc_provider_arn, list(self.plan_subjects[e.name])))
        iam_role_policy_attachment.IamRolePolicyAttachment(
            scope, "plan-read-only", role=plan.name, policy_arn=f"arn:{env.partition}:iam::aws:policy/ReadOnlyAccess")
        iam_role_policy.IamRolePolicy(scope, "plan-state-access", role=plan.id, name="terraform-plan",
                                      policy=self._plan_policy(e))

        self.deploy_role_arns[e.name] = deploy.arn
        self.plan_role_arns[e.name] = plan.arn

    def _plan_policy(self, e: CiEnvironment) -> str:
        p, env = self._props, self._env
        own_state = f"{self._bucket_arn}/{e.state_prefix}/*"
        secrets = [env.arn("secretsmanager", f"secret:{name}-??????") for name in e.plan_secret_names]
        return iam.policy_document(
            iam.statement("ListState", ["s3:ListBucket"], self._bucket_arn),
            iam.statement("ReadState", ["s3:GetObject"], own_state),
            iam.statement("UseStateKey", ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                          p.state_kms_key_arn),
            # The aws_secretsmanager_random_password data source: a random string, no stored secret.
            iam.statement("GenerateRandomPasswords", ["secretsmanager:GetRandomPassword"], "*"),
            *([iam.statement("ReadDataSourceSecrets", ["secretsmanager:GetSecretValue"], secrets)] if secrets else []),
            # ReadOnlyAccess reads every object of every bucket: none but this environment's state.
            {"Sid": "DenyOtherObjects", "Effect": "Deny", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
             "NotResource": [own_state]},
            # A plan writes nothing: no state, no lock object (plan.yml plans with -lock=false).
            iam.statement("DenyObjectWrites", OBJECT_WRITES, "*", effect="Deny"),
            {"Sid": "DenySecretValues", "Effect": "Deny", "Action": ["secretsmanager:GetSecretValue"],
             **({"NotResource": secrets} if secrets else {"Resource": "*"})},
            iam.statement("DenyDataReads", PLAN_DATA_READS, "*", effect="Deny"))
