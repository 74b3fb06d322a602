"""Bootstrap stack (once per AWS account, `<project>-state-<account id>`): the versioned, KMS-encrypted, TLS-only
Terraform state bucket of the account, and the CI identities of the environments deployed into it.

A human administrator applies it, never CI: it defines the CI roles' own permissions and boundaries. It starts with
a local backend (its own bucket does not exist yet) and moves its state into that bucket once created: set
`migrated=True` on the StateConfig and run `terraform init -migrate-state` (README "Bootstrap").
"""
from __future__ import annotations

from typing import Sequence

from cdktf import LocalBackend, TerraformOutput
from constructs import Construct

from environments.config import EnvironmentConfig, StateConfig
from modules.core.aspects import GovernedStack
from modules.core.environment import AwsEnvironment
from modules.aws.ci_roles import CiEnvironment, CiRoles, CiRolesProps
from modules.aws.encryption import EncryptionKey, EncryptionKeyProps, KeyAdministrators
from modules.aws.storage import AccessLogBucket, BucketProps, SecureBucket

from .backend import emulator_backend, use_s3_backend
from .errors import section_props
from .provider import Emulator, aws_provider

STATE_KEY = "global/state.tfstate"


class StateStack(GovernedStack):
    def __init__(self, scope: Construct, id_: str, *, state: StateConfig, account_id: str,
                 environments: Sequence[EnvironmentConfig] = (), emulator: Emulator | None = None) -> None:
        super().__init__(scope, id_)
        environment = AwsEnvironment(account_id=account_id, region=state.region)
        environment.bind(self)
        KeyAdministrators(state.key_admin_arns).bind(self)
        aws_provider(self, region=state.region, account_id=account_id, emulator=emulator)
        if emulator:
            emulator_backend(self, emulator)
        elif state.migrated:
            use_s3_backend(self, state=state, account_id=account_id, partition=environment.partition, key=STATE_KEY)
        else:
            # Relative to cdktf.out/stacks/<stack>/: the project root, outside the regenerated cdktf.out.
            # (Left to itself cdktf writes this machine's absolute path into the JSON.)
            LocalBackend(self, path=f"../../../terraform.{id_}.tfstate")
        key = EncryptionKey(self, "state-key", props=EncryptionKeyProps(
            alias=state.kms_key_alias.removeprefix("alias/"), description="Terraform state encryption"))
        access_logs_name = f"{state.bucket}-logs"[:63]
        access_logs = AccessLogBucket(self, "state-access-logs", name=access_logs_name,
                                      expiration_days=365, prevent_destroy=True)
        bucket = SecureBucket(self, "state-bucket", props=BucketProps(
            name=state.bucket, kms_key_arn=key.arn, access_log_bucket=access_logs.bucket_id, access_log_policy=access_logs.policy,
            noncurrent_version_expiration_days=90, prevent_destroy=True))
        TerraformOutput(self, "state-bucket-name", value=bucket.name)
        TerraformOutput(self, "state-kms-key-arn", value=key.arn)
        if state.github_repository and environments:
            ci_props = section_props("state", lambda: CiRolesProps(
                repository=state.github_repository, state_bucket=state.bucket, state_kms_key_arn=key.arn,
                state_kms_alias=state.kms_key_alias, state_access_log_bucket=access_logs_name,
                environments=tuple(ci_environment(config) for config in environments)))
            ci = CiRoles(self, "ci-roles", props=ci_props)
            # Per environment: deploy.yml and plan.yml name these roles (EnvironmentConfig.deploy_role_arn,
            # plan_role_arn); the output is for the administrator who bootstraps the account.
            TerraformOutput(self, "ci-role-arns", value={
                name: {"deploy": ci.deploy_role_arns[name], "plan": ci.plan_role_arns[name]}
                for name in ci.deploy_role_arns})


def ci_environment(config: EnvironmentConfig) -> CiEnvironment:
    """What the account's CI roles need to know of one environment (names are EnvironmentConfig's, which the workflows
    and the infra stack use too)."""
    return CiEnvironment(
        name=config.name, prefix=config.prefix, state_prefix=config.name, plan_environment=config.plan_environment,
        # Secrets its stacks read through data sources: the PagerDuty key, and the IdP client secret the ALB needs.
        plan_secret_names=tuple(n for n in (config.alarms.pagerduty_secret_name,
                                            config.sso.client_secret_name if config.sso.enabled else "") if n),
        trail_bucket=config.bucket_name("cloudtrail") if config.guardrails.cloudtrail else None)
