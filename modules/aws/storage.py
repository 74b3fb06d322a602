"""S3 buckets with the hardening every bucket gets: versioning, encryption, public access block,
bucket-owner-enforced ownership, a TLS-only policy, lifecycle rules and server access logging."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdktf import ITerraformDependable, TerraformResourceLifecycle
from cdktf_cdktf_provider_aws import (
    s3_bucket,
    s3_bucket_lifecycle_configuration as lifecycle,
    s3_bucket_logging,
    s3_bucket_ownership_controls as ownership,
    s3_bucket_policy,
    s3_bucket_public_access_block as pab,
    s3_bucket_server_side_encryption_configuration as sse,
    s3_bucket_versioning,
)
from constructs import Construct

from ..core import iam, validation
from ..core.environment import AwsEnvironment
from .identity import TASK_LOG_PREFIX, PlatformIdentities
from .settings import StorageSettings


@dataclass(frozen=True, kw_only=True)
class BucketProps:
    name: str
    kms_key_arn: str
    access_log_bucket: str | None = None        # bucket id receiving server access logs; None only for log buckets
    # The log bucket's policy (AccessLogBucket.policy): S3 checks on PutBucketLogging that it admits the delivery.
    access_log_policy: ITerraformDependable | None = None
    noncurrent_version_expiration_days: int = 90
    expiration_days: int | None = None          # expire current objects (logs); None keeps them
    archive_after_days: int | None = None       # move current objects to Glacier Instant Retrieval; None keeps them
    bucket_key: bool = True                     # S3 Bucket Key: fewer KMS calls (off where a writer's context matters)
    prevent_destroy: bool = False
    policy_statements: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        validation.bucket_name("name", self.name)
        for name in ("noncurrent_version_expiration_days", "expiration_days", "archive_after_days"):
            days = getattr(self, name)
            if days is not None and not 1 <= days <= 36500:
                raise validation.ConfigError(name, days, "is not a number of days S3 lifecycle accepts",
                                             "use 1-36500 days")
        if self.archive_after_days is not None and self.expiration_days is not None:
            validation.require(self.archive_after_days < self.expiration_days, "archive_after_days",
                               self.archive_after_days, f"is not before expiration_days={self.expiration_days}",
                               "archive before objects expire, or leave archive_after_days=None")


class _HardenedBucket(Construct):
    def __init__(self, scope: Construct, id_: str, *, props: BucketProps, sse_rule: Any) -> None:
        super().__init__(scope, id_)
        self.resource = s3_bucket.S3Bucket(
            self, "bucket", bucket=props.name, force_destroy=False,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if props.prevent_destroy else None)
        self.name: str = self.resource.bucket
        self.bucket_id: str = self.resource.id
        self.arn: str = self.resource.arn
        bucket = self.resource.id
        s3_bucket_versioning.S3BucketVersioningA(
            self, "versioning", bucket=bucket,
            versioning_configuration=s3_bucket_versioning.S3BucketVersioningVersioningConfiguration(status="Enabled"))
        sse.S3BucketServerSideEncryptionConfigurationA(self, "encryption", bucket=bucket, rule=[sse_rule])
        self._public_access_block = pab.S3BucketPublicAccessBlock(
            self, "public-access-block", bucket=bucket, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True)
        ownership.S3BucketOwnershipControls(
            self, "ownership", bucket=bucket,
            rule=ownership.S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"))
        statements = [iam.deny_insecure_transport([self.arn, f"{self.arn}/*"]),
                      *[self._expand(s) for s in props.policy_statements]]
        # After the public access block: S3 rejects policies while the block is being changed.
        self.policy = s3_bucket_policy.S3BucketPolicy(self, "policy", bucket=bucket,
                                                      policy=iam.policy_document(*statements),
                                                      depends_on=[self._public_access_block])
        expiration = lifecycle.S3BucketLifecycleConfigurationRuleExpiration(days=props.expiration_days) \
            if props.expiration_days else None
        # Glacier Instant Retrieval: a fraction of Standard's price, and still readable at once (no restore job).
        archive = lifecycle.S3BucketLifecycleConfigurationRuleTransition(
            days=props.archive_after_days, storage_class="GLACIER_IR") if props.archive_after_days else None
        lifecycle.S3BucketLifecycleConfiguration(self, "lifecycle", bucket=bucket, rule=[
            lifecycle.S3BucketLifecycleConfigurationRule(
                id="expire-noncurrent-and-incomplete", status="Enabled",
                filter=[lifecycle.S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                noncurrent_version_expiration=[lifecycle.S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                    noncurrent_days=props.noncurrent_version_expiration_days)],
                abort_incomplete_multipart_upload=[
                    lifecycle.S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                        days_after_initiation=7)],
                expiration=[expiration] if expiration else None,
                transition=[archive] if archive else None)])
        if props.access_log_bucket:
            s3_bucket_logging.S3BucketLoggingA(self, "access-logging", bucket=bucket,
                                               target_bucket=props.access_log_bucket, target_prefix=f"s3/{props.name}/",
                                               depends_on=[props.access_log_policy] if props.access_log_policy else None)

    def _expand(self, stmt: dict[str, Any]) -> dict[str, Any]:
        """Statements may name the bucket as the placeholders BUCKET_ARN (and BUCKET_ARN/prefix*)."""
        def sub(value: Any) -> Any:
            if isinstance(value, str):
                return value.replace("BUCKET_ARN", self.arn)
            if isinstance(value, list):
                return [sub(v) for v in value]
            return value
        return {k: sub(v) for k, v in stmt.items()}


class SecureBucket(_HardenedBucket):
    """A bucket encrypted with a customer KMS key (bucket keys on, to cut KMS calls and cost)."""

    def __init__(self, scope: Construct, id_: str, *, props: BucketProps) -> None:
        super().__init__(scope, id_, props=props, sse_rule=sse.S3BucketServerSideEncryptionConfigurationRuleA(
            bucket_key_enabled=props.bucket_key,
            apply_server_side_encryption_by_default=sse.S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                sse_algorithm="aws:kms", kms_master_key_id=props.kms_key_arn)))


class AccessLogBucket(_HardenedBucket):
    """The target of S3 server access logs and ALB access logs. Both log deliveries support only SSE-S3
    (AES-256) on the target bucket, so this is the one bucket not encrypted with a customer KMS key."""

    def __init__(self, scope: Construct, id_: str, *, name: str, expiration_days: int,
                 prevent_destroy: bool = False, extra_statements: tuple[dict[str, Any], ...] = ()) -> None:
        """`extra_statements` admit more log deliveries (e.g. ALB access logs); BUCKET_ARN is substituted."""
        delivery = iam.statement(
            "S3ServerAccessLogDelivery", ["s3:PutObject"], ["BUCKET_ARN/s3/*"],
            principal={"Service": "logging.s3.amazonaws.com"},
            condition={"StringEquals": {"aws:SourceAccount": AwsEnvironment.of(scope).account_id}})
        props = BucketProps(name=name, kms_key_arn="", expiration_days=expiration_days,
                            noncurrent_version_expiration_days=min(30, expiration_days),
                            prevent_destroy=prevent_destroy, policy_statements=(delivery, *extra_statements))
        super().__init__(scope, id_, props=props, sse_rule=sse.S3BucketServerSideEncryptionConfigurationRuleA(
            apply_server_side_encryption_by_default=sse.S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                sse_algorithm="AES256")))


@dataclass(frozen=True, kw_only=True)
class AirflowBucketsProps:
    name: str                                   # key alias prefix, e.g. 'airflow-dev'
    bucket_names: dict[str, str]                # purpose ('dags', 'task-logs', 'plugins', 'access-logs') -> name
    settings: StorageSettings = field(default_factory=StorageSettings)   # log expiry
    prevent_destroy: bool = True                # stateful: refuse `terraform destroy` of DAGs and logs
    access_log_statements: tuple[dict[str, Any], ...] = ()   # more log deliveries into access-logs (ALB)

    def __post_init__(self) -> None:
        missing = {"dags", "task-logs", "plugins", "access-logs"} - set(self.bucket_names)
        validation.require(not missing, "bucket_names", sorted(self.bucket_names), f"lacks {sorted(missing)}",
                           "name all four buckets: dags, task-logs, plugins, access-logs")
        for purpose, bucket in self.bucket_names.items():
            validation.bucket_name(f"bucket_names.{purpose}", bucket)


class AirflowBuckets(Construct):
    """DAGs, task logs and plugins (SSE-KMS with one storage key), plus the access-log bucket they log to.
    DAG and plugin versions are kept for rollback (the S3 DAG bundle reads current objects only)."""

    def __init__(self, scope: Construct, id_: str, *, props: AirflowBucketsProps) -> None:
        super().__init__(scope, id_)
        from .encryption import EncryptionKey, EncryptionKeyProps

        self.key = EncryptionKey(self, "storage-key", props=EncryptionKeyProps(
            alias=f"{props.name}-storage", description=f"{props.name} Airflow DAGs, plugins and task logs"))
        self.kms_key_arn: str = self.key.arn
        names = props.bucket_names
        self.access_logs = AccessLogBucket(self, "access-logs", name=names["access-logs"],
                                           expiration_days=props.settings.access_log_expiration_days,
                                           prevent_destroy=props.prevent_destroy,
                                           extra_statements=props.access_log_statements)

        def bucket(purpose: str, **extra: Any) -> SecureBucket:
            return SecureBucket(self, purpose, props=BucketProps(
                name=names[purpose], kms_key_arn=self.key.arn, access_log_bucket=self.access_logs.bucket_id, access_log_policy=self.access_logs.policy,
                prevent_destroy=props.prevent_destroy, **extra))

        self.dags = bucket("dags")
        self.task_logs = bucket("task-logs", expiration_days=props.settings.task_log_expiration_days,
                                noncurrent_version_expiration_days=7)
        self.plugins = bucket("plugins")

    def grant_airflow(self, identities: PlatformIdentities) -> None:
        """What each Airflow component reads and writes here (airflow_access_statements)."""
        for workload, statements in airflow_access_statements(
                dags_bucket_arn=self.dags.arn, plugins_bucket_arn=self.plugins.arn, logs_bucket_arn=self.task_logs.arn,
                kms_key_arn=self.kms_key_arn, region=AwsEnvironment.of(self).region).items():
            identities.add_statements(workload, *statements)


def airflow_access_statements(*, dags_bucket_arn: str, plugins_bucket_arn: str, logs_bucket_arn: str,
                              kms_key_arn: str, region: str) -> dict[str, list[dict[str, Any]]]:
    """Per Airflow workload: DAG bundles and plugins to read, task logs under `task-logs/` (TASK_LOG_PREFIX) to
    write or read, and the storage key only through S3."""
    task_logs = f"{logs_bucket_arn}/{TASK_LOG_PREFIX}/*"
    dags, plugins = dags_bucket_arn, plugins_bucket_arn
    read_bundles = [
        iam.statement("ReadDagsAndPlugins", ["s3:GetObject", "s3:GetObjectVersion"], [f"{dags}/*", f"{plugins}/*"]),
        iam.statement("ListDagsAndPlugins", ["s3:ListBucket"], [dags, plugins])]
    # ListBucket on the logs bucket reveals key names only; without it S3 answers 403 instead of 404 to
    # the HeadObject S3TaskHandler makes before appending to / reading a log that does not exist yet.
    read_logs = [iam.statement("ReadTaskLogs", ["s3:GetObject"], [task_logs]),
                 iam.statement("ListTaskLogs", ["s3:ListBucket"], [logs_bucket_arn])]
    write_logs = [iam.statement("WriteTaskLogs", ["s3:PutObject"], [task_logs]), *read_logs]
    via_s3 = {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}
    decrypt = iam.statement("DecryptStorageViaS3", ["kms:Decrypt"], [kms_key_arn], condition=via_s3)
    # Every Airflow pod syncs the plugins bucket at start (modules/platform/airflow.py), the API server and
    # triggerer too.
    read_plugins = [iam.statement("ReadPlugins", ["s3:GetObject", "s3:GetObjectVersion"], [f"{plugins}/*"]),
                    iam.statement("ListPlugins", ["s3:ListBucket"], [plugins])]
    encrypt = iam.statement("UseStorageKeyViaS3", ["kms:Decrypt", "kms:GenerateDataKey"], [kms_key_arn],
                            condition=via_s3)
    return {
        # Airflow 3's scheduler neither writes task logs (the task supervisor on the worker/pod uploads them)
        # nor serves them (the API server reads S3): it gets no access to the logs bucket.
        "airflow-scheduler": [*read_bundles, decrypt],
        "airflow-dag-processor": [*read_bundles, decrypt],
        "airflow-triggerer": [*read_plugins, *write_logs, encrypt],   # deferred tasks' trigger logs
        "airflow-api-server": [*read_plugins, *read_logs, decrypt],   # shows task logs: read-only
        "airflow-worker": [*read_bundles, *write_logs, encrypt],
        "airflow-task": [*read_bundles, *write_logs, encrypt],
    }
