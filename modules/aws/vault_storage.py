"""Vault's data at rest in AWS: a customer-managed key for its EBS volumes (raft data and audit log) and its raft
snapshots, and the bucket the snapshot CronJob (modules/platform/vault_snapshots.py) uploads to.

Who may use what, all through IAM grants on Pod Identity roles (the key policy defers to IAM, modules/aws/encryption.py):
- the EBS CSI driver uses the key only through EC2 (`kms:ViaService`), to create and attach Vault's volumes;
- the snapshot uploader (workload `vault-snapshot`) may only PutObject under SNAPSHOT_PREFIX, with the key only through
  S3. It can neither list, read nor delete snapshots: restoring is an operator's job (docs/vault.md).
Snapshots expire after the environment's `vault.snapshot_retention_days`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdktf import ITerraformDependable
from constructs import Construct

from ..core import iam, validation
from ..core.environment import AwsEnvironment
from .encryption import EncryptionKey, EncryptionKeyProps
from .identity import PlatformIdentities
from .storage import BucketProps, SecureBucket

SNAPSHOT_PREFIX = "raft-snapshots"      # object keys: raft-snapshots/<yyyy>/<mm>/<dd>/vault-<timestamp>.snap


@dataclass(frozen=True, kw_only=True)
class VaultStorageProps:
    name: str                                   # key alias prefix, e.g. 'airflow-dev'
    snapshot_bucket_name: str
    snapshot_retention_days: int = 30
    access_log_bucket: str                      # bucket id receiving the snapshot bucket's server access logs
    access_log_policy: ITerraformDependable | None = None
    prevent_destroy: bool = True                # the snapshots are the restore path: refuse `terraform destroy`

    def __post_init__(self) -> None:
        validation.bucket_name("snapshot_bucket_name", self.snapshot_bucket_name)
        validation.require(isinstance(self.snapshot_retention_days, int) and 1 <= self.snapshot_retention_days <= 3650,
                           "snapshot_retention_days", self.snapshot_retention_days, "is not between 1 and 3650 days",
                           "keep snapshots e.g. 30 days")


class VaultStorage(Construct):
    def __init__(self, scope: Construct, id_: str, *, props: VaultStorageProps) -> None:
        super().__init__(scope, id_)
        self.key = EncryptionKey(self, "data-key", props=EncryptionKeyProps(
            alias=f"{props.name}-vault-data", description=f"{props.name} Vault volumes and raft snapshots"))
        self.kms_key_arn: str = self.key.arn
        self.snapshots = SecureBucket(self, "snapshots", props=BucketProps(
            name=props.snapshot_bucket_name, kms_key_arn=self.key.arn, access_log_bucket=props.access_log_bucket,
            access_log_policy=props.access_log_policy, expiration_days=props.snapshot_retention_days,
            # A snapshot is never rewritten; an overwritten key keeps its old version a week.
            noncurrent_version_expiration_days=7, prevent_destroy=props.prevent_destroy))
        self.snapshot_bucket_name: str = self.snapshots.name
        self.snapshot_bucket_arn: str = self.snapshots.arn

    def grant_snapshot_upload(self, identities: PlatformIdentities, workload_id: str = "vault-snapshot") -> None:
        """PutObject under SNAPSHOT_PREFIX only; the key only through S3 (snapshot_upload_statements)."""
        put, use_key = snapshot_upload_statements(AwsEnvironment.of(self), bucket_arn=self.snapshot_bucket_arn,
                                                  kms_key_arn=self.kms_key_arn)
        identities.add_statements(workload_id, put)
        self.key.grant(identities, workload_id, use_key["Sid"], use_key["Action"], use_key["Condition"])

    def grant_volume_encryption(self, identities: PlatformIdentities, workload_id: str = "ebs-csi-driver") -> None:
        """The EBS CSI driver creates and attaches Vault's volumes with this key, only through EC2."""
        for stmt in volume_key_statements(AwsEnvironment.of(self), kms_key_arn=self.kms_key_arn):
            self.key.grant(identities, workload_id, stmt["Sid"], stmt["Action"], stmt["Condition"])


def snapshot_upload_statements(env: AwsEnvironment, *, bucket_arn: str, kms_key_arn: str) -> list[dict[str, Any]]:
    """The uploader's policy: PutObject under SNAPSHOT_PREFIX (no list, read or delete), and the key only through S3
    (GenerateDataKey for an object, Decrypt for the parts of a multipart upload)."""
    return [iam.statement("PutVaultSnapshots", ["s3:PutObject"], [f"{bucket_arn}/{SNAPSHOT_PREFIX}/*"]),
            iam.statement("EncryptSnapshotsViaS3", ["kms:GenerateDataKey", "kms:Decrypt"], [kms_key_arn],
                          condition={"StringEquals": {"kms:ViaService": env.service_endpoint("s3")}})]


def volume_key_statements(env: AwsEnvironment, *, kms_key_arn: str) -> list[dict[str, Any]]:
    """What AWS documents the EBS CSI driver needs of a customer-managed key, only through EC2; grants only for
    AWS resources (EC2 attaching the volume)."""
    return [iam.statement("UseVaultVolumeKeyViaEc2", ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext",
                                                      "kms:ReEncryptFrom", "kms:ReEncryptTo"], [kms_key_arn],
                          condition={"StringEquals": {"kms:ViaService": env.service_endpoint("ec2")}}),
            iam.statement("GrantVaultVolumeKeyToEc2", ["kms:CreateGrant"], [kms_key_arn],
                          condition={"Bool": {"kms:GrantIsForAWSResource": "true"}})]
