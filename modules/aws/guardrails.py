"""Account guardrails: what records and watches the AWS account itself, not one workload.

- CloudTrail: one multi-region trail with global service events and log-file validation (signed digest files show
  whether a log file was changed or deleted). Log files are SSE-KMS encrypted with the trail's own key, whose policy
  lets CloudTrail generate data keys only for this trail (`aws:SourceArn`) and only in a CloudTrail encryption
  context of this account. They land in the trail's own bucket (hardened like every bucket: versioning, public
  access block, TLS only, server access logs), where the policy admits CloudTrail for this trail only and refuses
  writes from anyone else; files are archived to Glacier Instant Retrieval and expire on the settings' schedule.
  Events also go to a KMS-encrypted log group with the environment's retention, so they can be searched and alarmed on.
- GuardDuty: a detector with EKS audit-log monitoring, runtime monitoring (GuardDuty manages the EKS agent add-on)
  and S3 protection. One detector per account and region is all AWS allows.

Either can be off only with a reason (GuardrailsSettings): an organization trail or a delegated GuardDuty
administrator may already cover the account, or another environment sharing the account does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from cdktf import ITerraformDependable
from cdktf_cdktf_provider_aws import (
    cloudtrail,
    cloudwatch_log_group,
    guardduty_detector,
    guardduty_detector_feature as feature,
    iam_role,
    iam_role_policy,
)
from constructs import Construct

from ..core import iam, validation
from ..core.environment import AwsEnvironment
from ..core.validation import require
from .encryption import EncryptionKey, EncryptionKeyProps, ServiceUse, logs_service_use
from .settings import GuardrailsSettings
from .storage import BucketProps, SecureBucket

CLOUDTRAIL = "cloudtrail.amazonaws.com"
# GuardDuty protection plans turned on (aws_guardduty_detector_feature names), with their additional configuration.
GUARDDUTY_FEATURES: dict[str, tuple[str, ...]] = {
    "EKS_AUDIT_LOGS": (),
    # The agent reports process, file and network events from nodes; GuardDuty installs and updates the EKS add-on
    # (and its VPC endpoint) itself, so no chart or version is pinned here.
    "RUNTIME_MONITORING": ("EKS_ADDON_MANAGEMENT",),
    # S3 data-plane events (GetObject, PutObject, ...) analysed by GuardDuty without a CloudTrail data-event trail,
    # priced per event: cheap next to recording those events in the trail.
    "S3_DATA_EVENTS": (),
}
_NAME = re.compile(r"[a-z][a-z0-9-]{0,40}[a-z0-9]")


@dataclass(frozen=True, kw_only=True)
class AccountGuardrailsProps:
    name: str                                    # resource name prefix, e.g. 'airflow-prod'
    bucket_name: str                             # the trail's own bucket
    settings: GuardrailsSettings = field(default_factory=GuardrailsSettings)
    log_retention_days: int = 365                # the trail's CloudWatch log group
    access_log_bucket: str | None = None         # bucket id receiving the trail bucket's server access logs
    access_log_policy: ITerraformDependable | None = None   # that bucket's policy (S3 checks it on PutBucketLogging)
    prevent_destroy: bool = True                 # audit logs: refuse `terraform destroy` of the bucket

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and _NAME.fullmatch(self.name) is not None, "name", self.name,
                "is not a valid guardrails name prefix", "use 2-42 lowercase letters, digits and inner hyphens")
        validation.bucket_name("bucket_name", self.bucket_name)
        validation.log_retention("log_retention_days", self.log_retention_days)


class AccountGuardrails(Construct):
    """The account's CloudTrail trail and GuardDuty detector, each only where its setting is on."""

    def __init__(self, scope: Construct, id_: str, *, props: AccountGuardrailsProps) -> None:
        super().__init__(scope, id_)
        self.trail_arn: str | None = None
        self.trail_bucket: SecureBucket | None = None
        self.trail_key: EncryptionKey | None = None
        self.detector_id: str | None = None
        if props.settings.cloudtrail:
            self._trail(props)
        if props.settings.guardduty:
            self._detector()

    def _trail(self, p: AccountGuardrailsProps) -> None:
        env = AwsEnvironment.of(self)
        trail_name = f"{p.name}-trail"
        # Known at synth, so the key and bucket policies can name the trail before it exists (no cycle).
        trail_arn = env.arn("cloudtrail", f"trail/{trail_name}")
        this_trail = {"aws:SourceArn": trail_arn}
        log_group_name = f"/aws/cloudtrail/{p.name}"
        self.trail_key = key = EncryptionKey(self, "trail-key", props=EncryptionKeyProps(
            alias=f"{p.name}-cloudtrail", description=f"{p.name} CloudTrail log files and log group", services=(
                # AWS's documented CloudTrail key policy: data keys for this trail, in this account's CloudTrail
                # encryption context; DescribeKey (no encryption context there) when the trail is created or updated.
                ServiceUse(principal=CLOUDTRAIL, actions=("kms:GenerateDataKey*",), condition={
                    "StringEquals": this_trail,
                    "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                   f"arn:{env.partition}:cloudtrail:*:{env.account_id}:trail/*"}}),
                ServiceUse(principal=CLOUDTRAIL, actions=("kms:DescribeKey",), condition={"StringEquals": this_trail}),
                logs_service_use(env, log_group_prefixes=(log_group_name,)))))
        cloudtrail_writes = iam.statement(
            "CloudTrailWritesThisTrail", ["s3:PutObject"], [f"BUCKET_ARN/AWSLogs/{env.account_id}/*"],
            principal={"Service": CLOUDTRAIL},
            condition={"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", **this_trail}})
        self.trail_bucket = bucket = SecureBucket(self, "trail-bucket", props=BucketProps(
            name=p.bucket_name, kms_key_arn=key.arn, access_log_bucket=p.access_log_bucket,
            access_log_policy=p.access_log_policy, prevent_destroy=p.prevent_destroy,
            expiration_days=p.settings.trail_expiration_days, archive_after_days=p.settings.trail_archive_after_days,
            # No S3 Bucket Key: objects keep CloudTrail's own encryption context, which the key policy conditions
            # on. A trail writes a few files per region every five minutes, so KMS calls stay few.
            bucket_key=False,
            policy_statements=(
                iam.statement("CloudTrailChecksAcl", ["s3:GetBucketAcl"], "BUCKET_ARN",
                              principal={"Service": CLOUDTRAIL}, condition={"StringEquals": this_trail}),
                cloudtrail_writes,
                # Audit logs are written by this trail only: an IAM principal's s3:PutObject grant cannot add to them.
                iam.statement("DenyWritesNotFromThisTrail", ["s3:PutObject"], ["BUCKET_ARN/*"], effect="Deny",
                              principal="*", condition={"StringNotEquals": this_trail}))))

        log_group = cloudwatch_log_group.CloudwatchLogGroup(
            self, "trail-log-group", name=log_group_name, retention_in_days=p.log_retention_days, kms_key_id=key.arn)
        role = iam_role.IamRole(self, "trail-logs-role", name=f"{p.name}-cloudtrail-logs",
                                description="CloudTrail: delivers the trail's events to its log group",
                                assume_role_policy=iam.service_assume_role_policy(CLOUDTRAIL,
                                                                                  source_account=env.account_id))
        role_policy = iam_role_policy.IamRolePolicy(
            self, "trail-logs-role-policy", role=role.id, name="write-trail-log-group",
            policy=iam.policy_document(iam.statement("WriteTrailLogGroup", ["logs:CreateLogStream", "logs:PutLogEvents"],
                                                     [f"{log_group.arn}:log-stream:*"])))
        trail = cloudtrail.Cloudtrail(
            self, "trail", name=trail_name, s3_bucket_name=bucket.name, kms_key_id=key.arn,
            is_multi_region_trail=True, include_global_service_events=True, enable_log_file_validation=True,
            enable_logging=True, cloud_watch_logs_group_arn=f"{log_group.arn}:*",   # CloudTrail wants the ':*' form
            cloud_watch_logs_role_arn=role.arn,
            # CloudTrail checks the bucket policy and the role when the trail is created.
            depends_on=[bucket.policy, role_policy])
        self.trail_arn = trail.arn

    def _detector(self) -> None:
        detector = guardduty_detector.GuarddutyDetector(
            self, "detector", enable=True,
            # New findings are exported at once either way; this is how soon updates to existing ones follow.
            finding_publishing_frequency="FIFTEEN_MINUTES")
        self.detector_id = detector.id
        for name, extra in GUARDDUTY_FEATURES.items():
            feature.GuarddutyDetectorFeature(
                self, f"feature-{name.lower().replace('_', '-')}", detector_id=detector.id, name=name,
                status="ENABLED", additional_configuration=[
                    feature.GuarddutyDetectorFeatureAdditionalConfiguration(name=e, status="ENABLED") for e in extra]
                or None)
