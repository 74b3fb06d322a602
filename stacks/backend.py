"""The S3 backend every stack but a not-yet-migrated state stack uses."""
from __future__ import annotations

from cdktf import S3Backend, TerraformStack

from environments.config import StateConfig


def use_s3_backend(stack: TerraformStack, *, state: StateConfig, account_id: str, partition: str, key: str) -> None:
    S3Backend(stack, bucket=state.bucket, key=key, region=state.region, encrypt=True,
              kms_key_id=f"arn:{partition}:kms:{state.region}:{account_id}:{state.kms_key_alias}")
    # Terraform >= 1.10 locks with a lock object next to the state (no DynamoDB table);
    # cdktf 0.21 has no option for it, hence the override.
    stack.add_override("terraform.backend.s3.use_lockfile", True)
