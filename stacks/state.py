"""Bootstrap stack (once per account): the versioned, KMS-encrypted, TLS-only Terraform state bucket.

It starts with a local backend (its own bucket does not exist yet) and moves its state into that
bucket once created: set `migrated=True` on the StateConfig and run `terraform init -migrate-state`.
"""
from __future__ import annotations

from cdktf import LocalBackend, TerraformOutput
from constructs import Construct

from environments.config import StateConfig
from modules.core.aspects import GovernedStack
from modules.core.environment import AwsEnvironment
from modules.aws.ci_roles import CiRoles, CiRolesProps
from modules.aws.encryption import EncryptionKey, EncryptionKeyProps, KeyAdministrators
from modules.aws.storage import AccessLogBucket, BucketProps, SecureBucket

from .backend import emulator_backend, use_s3_backend
from .errors import section_props
from .provider import Emulator, aws_provider

STATE_KEY = "global/state.tfstate"


class StateStack(GovernedStack):
    def __init__(self, scope: Construct, id_: str, *, state: StateConfig, account_id: str,
                 emulator: Emulator | None = None) -> None:
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
        access_logs = AccessLogBucket(self, "state-access-logs", name=f"{state.bucket}-logs"[:63],
                                      expiration_days=365, prevent_destroy=True)
        bucket = SecureBucket(self, "state-bucket", props=BucketProps(
            name=state.bucket, kms_key_arn=key.arn, access_log_bucket=access_logs.bucket_id, access_log_policy=access_logs.policy,
            noncurrent_version_expiration_days=90, prevent_destroy=True))
        TerraformOutput(self, "state-bucket-name", value=bucket.name)
        TerraformOutput(self, "state-kms-key-arn", value=key.arn)
        if state.github_repository:
            ci_props = section_props("state", lambda: CiRolesProps(
                repository=state.github_repository, state_bucket=state.bucket, state_kms_key_arn=key.arn,
                deploy_environments=state.github_deploy_environments))
            ci = CiRoles(self, "ci-roles", props=ci_props)
            TerraformOutput(self, "plan-role-arn", value=ci.plan_role_arn)       # repo variable AWS_PLAN_ROLE_ARN
            TerraformOutput(self, "deploy-role-arn", value=ci.deploy_role_arn)   # environment variable AWS_DEPLOY_ROLE_ARN
