"""Backends: the S3 backend every stack but a not-yet-migrated state stack uses, and local state for emulator runs."""
from __future__ import annotations

from pathlib import Path

from cdktf import LocalBackend, S3Backend, TerraformStack

from environments.config import EnvironmentConfig, StateConfig

from .provider import Emulator


def use_s3_backend(stack: TerraformStack, *, state: StateConfig, account_id: str, partition: str, key: str) -> None:
    S3Backend(stack, bucket=state.bucket, key=key, region=state.region, encrypt=True,
              kms_key_id=f"arn:{partition}:kms:{state.region}:{account_id}:{state.kms_key_alias}")
    # Terraform >= 1.10 locks with a lock object next to the state (no DynamoDB table);
    # cdktf 0.21 has no option for it, hence the override.
    stack.add_override("terraform.backend.s3.use_lockfile", True)


def use_environment_backend(stack: TerraformStack, *, config: EnvironmentConfig, layer: str,
                            emulator: Emulator | None) -> None:
    """`<env>/<layer>.tfstate` in the state bucket, or local state when synthesized for an emulator."""
    if emulator:
        emulator_backend(stack, emulator)
    else:
        use_s3_backend(stack, state=config.state, key=f"{config.name}/{layer}.tfstate", account_id=config.account_id,
                       partition=config.partition)


def emulator_backend(stack: TerraformStack, emulator: Emulator) -> None:
    """State of an emulator run is local, in the emulator's state directory (the real state bucket is never
    touched); outside cdktf.out, as cdktf's own local default, so a re-synth keeps it."""
    LocalBackend(stack, path=str(Path(emulator.state_dir) / f"terraform.{stack.node.id}.tfstate"))
