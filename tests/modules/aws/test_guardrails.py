import json

import pytest

from modules.aws.guardrails import AccountGuardrails, AccountGuardrailsProps
from modules.aws.settings import GuardrailsSettings
from modules.aws.storage import AccessLogBucket
from modules.core.validation import ConfigError
from tests.conftest import make_props, new_stack, synth

BASE = dict(name="af-prod", bucket_name="af-prod-cloudtrail")
TRAIL_ARN = "arn:aws:cloudtrail:eu-west-1:123456789012:trail/af-prod-trail"
REASON = "organization trail and delegated GuardDuty admin in the management account"


def guardrails(stack, **values) -> dict:
    if values.get("cloudtrail", True):     # an access-log bucket nothing logs to would fail AF-ENC-1 (SSE-S3)
        logs = AccessLogBucket(stack, "access-logs", name="af-access-logs", expiration_days=90)
        values.update(access_log_bucket=logs.bucket_id, access_log_policy=logs.policy)
    AccountGuardrails(stack, "guardrails", props=make_props(AccountGuardrailsProps, **BASE, **values))
    return synth(stack)["resource"]


def trail_bucket_policy(res: dict) -> dict:
    (policy,) = [p for p in res["aws_s3_bucket_policy"].values() if "trail-bucket" in p["bucket"]]
    return {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}


def test_trail_is_multi_region_validated_kms_encrypted_and_delivers_to_its_log_group(stack):
    res = guardrails(stack, log_retention_days=365)
    (trail,) = res["aws_cloudtrail"].values()
    assert (trail["name"], trail["is_multi_region_trail"], trail["include_global_service_events"],
            trail["enable_log_file_validation"], trail["enable_logging"]) == ("af-prod-trail", True, True, True, True)
    ((key_address, key),) = res["aws_kms_key"].items()
    assert trail["kms_key_id"] == f"${{aws_kms_key.{key_address}.arn}}"
    assert key["enable_key_rotation"] is True
    ((bucket_address, bucket),) = [(a, b) for a, b in res["aws_s3_bucket"].items() if "trail-bucket" in a]
    assert trail["s3_bucket_name"] == f"${{aws_s3_bucket.{bucket_address}.bucket}}"
    assert bucket["bucket"] == "af-prod-cloudtrail" and bucket["lifecycle"] == {"prevent_destroy": True}
    ((group_address, group),) = res["aws_cloudwatch_log_group"].items()
    assert (group["name"], group["retention_in_days"]) == ("/aws/cloudtrail/af-prod", 365)
    assert group["kms_key_id"] == f"${{aws_kms_key.{key_address}.arn}}"
    assert trail["cloud_watch_logs_group_arn"] == f"${{aws_cloudwatch_log_group.{group_address}.arn}}:*"
    ((role_address, role),) = res["aws_iam_role"].items()
    assert trail["cloud_watch_logs_role_arn"] == f"${{aws_iam_role.{role_address}.arn}}"
    (trust,) = json.loads(role["assume_role_policy"])["Statement"]
    assert trust["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    ((policy_address, policy),) = res["aws_iam_role_policy"].items()
    (write,) = json.loads(policy["policy"])["Statement"]
    assert write["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert write["Resource"] == [f"${{aws_cloudwatch_log_group.{group_address}.arn}}:log-stream:*"]
    # CloudTrail checks the bucket policy and its role when the trail is created.
    (bucket_policy,) = [a for a in res["aws_s3_bucket_policy"] if "trail-bucket" in a]
    assert trail["depends_on"] == [f"aws_s3_bucket_policy.{bucket_policy}", f"aws_iam_role_policy.{policy_address}"]


def test_key_policy_lets_cloudtrail_use_the_key_only_for_this_trail(stack):
    (key,) = guardrails(stack)["aws_kms_key"].values()
    statements = json.loads(key["policy"])["Statement"]
    assert statements[0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    trail = [s for s in statements if s["Principal"] == {"Service": "cloudtrail.amazonaws.com"}]
    assert [(s["Action"], s["Condition"]) for s in trail] == [
        (["kms:GenerateDataKey*"], {
            "StringEquals": {"aws:SourceArn": TRAIL_ARN},
            "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": "arn:aws:cloudtrail:*:123456789012:trail/*"}}),
        (["kms:DescribeKey"], {"StringEquals": {"aws:SourceArn": TRAIL_ARN}})]
    (logs,) = [s for s in statements if s["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}]
    assert logs["Condition"] == {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": [
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/cloudtrail/af-prod*"]}}
    # Nobody else is named: beyond the administration statements (encryption.key_policy), IAM policies grant reading.
    assert [s["Sid"] for s in statements if "Service" not in s["Principal"]] == [
        "EnableIamPolicies", "KeyAdministrators", "AdministratorsNoDirectUse", "AdministratorsGrantOnlyForAwsResources"]


def test_trail_bucket_is_tls_only_and_only_this_trail_writes_to_it(stack):
    res = guardrails(stack)
    s = trail_bucket_policy(res)
    assert set(s) == {"DenyInsecureTransport", "CloudTrailChecksAcl", "CloudTrailWritesThisTrail",
                      "DenyWritesNotFromThisTrail"}
    deny_tls = s["DenyInsecureTransport"]
    assert (deny_tls["Effect"], deny_tls["Principal"], deny_tls["Condition"]) == (
        "Deny", "*", {"Bool": {"aws:SecureTransport": "false"}})
    acl, write, deny = s["CloudTrailChecksAcl"], s["CloudTrailWritesThisTrail"], s["DenyWritesNotFromThisTrail"]
    assert (acl["Principal"], acl["Action"], acl["Condition"]) == (
        {"Service": "cloudtrail.amazonaws.com"}, ["s3:GetBucketAcl"], {"StringEquals": {"aws:SourceArn": TRAIL_ARN}})
    assert (write["Principal"], write["Action"]) == ({"Service": "cloudtrail.amazonaws.com"}, ["s3:PutObject"])
    (resource,) = write["Resource"]
    assert resource.endswith(".arn}/AWSLogs/123456789012/*")
    assert write["Condition"] == {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control",
                                                   "aws:SourceArn": TRAIL_ARN}}
    assert (deny["Effect"], deny["Principal"], deny["Action"], deny["Condition"]) == (
        "Deny", "*", ["s3:PutObject"], {"StringNotEquals": {"aws:SourceArn": TRAIL_ARN}})


def test_trail_bucket_is_hardened_encrypted_without_bucket_key_logged_and_archived(stack):
    res = guardrails(stack, trail_archive_after_days=30, trail_expiration_days=400)
    pick = lambda rtype: next(v for a, v in res[rtype].items() if "trail-bucket" in a)   # noqa: E731
    (key_address,) = res["aws_kms_key"]
    assert pick("aws_s3_bucket_versioning")["versioning_configuration"]["status"] == "Enabled"
    (rule,) = pick("aws_s3_bucket_server_side_encryption_configuration")["rule"]
    assert rule["apply_server_side_encryption_by_default"] == {
        "sse_algorithm": "aws:kms", "kms_master_key_id": f"${{aws_kms_key.{key_address}.arn}}"}
    assert rule["bucket_key_enabled"] is False        # CloudTrail's encryption context stays what the key checks
    block = pick("aws_s3_bucket_public_access_block")
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                          "restrict_public_buckets"))
    logging = pick("aws_s3_bucket_logging")
    assert logging["target_prefix"] == "s3/af-prod-cloudtrail/" and "access-logs" in logging["target_bucket"]
    (lifecycle_rule,) = pick("aws_s3_bucket_lifecycle_configuration")["rule"]
    assert lifecycle_rule["transition"] == [{"days": 30, "storage_class": "GLACIER_IR"}]
    assert lifecycle_rule["expiration"] == [{"days": 400}]
    assert lifecycle_rule["noncurrent_version_expiration"] == [{"noncurrent_days": 90}]


def test_guardduty_detector_watches_eks_audit_logs_runtime_and_s3(stack):
    res = guardrails(stack)
    ((detector_address, detector),) = res["aws_guardduty_detector"].items()
    assert detector["enable"] is True and detector["finding_publishing_frequency"] == "FIFTEEN_MINUTES"
    assert "datasources" not in detector            # deprecated: the features below replace it
    features = {f["name"]: f for f in res["aws_guardduty_detector_feature"].values()}
    assert set(features) == {"EKS_AUDIT_LOGS", "RUNTIME_MONITORING", "S3_DATA_EVENTS"}
    assert all(f["status"] == "ENABLED" and f["detector_id"] == f"${{aws_guardduty_detector.{detector_address}.id}}"
               for f in features.values())
    assert features["RUNTIME_MONITORING"]["additional_configuration"] == [
        {"name": "EKS_ADDON_MANAGEMENT", "status": "ENABLED"}]
    assert "additional_configuration" not in features["EKS_AUDIT_LOGS"]


def test_each_guardrail_can_be_off_with_a_reason(stack):
    res = guardrails(stack, cloudtrail=False, off_reason=REASON)
    assert "aws_cloudtrail" not in res and "aws_kms_key" not in res and "aws_guardduty_detector" in res
    other = guardrails(new_stack("other"), guardduty=False, off_reason=REASON)
    assert "aws_guardduty_detector" not in other and "aws_cloudtrail" in other


@pytest.mark.parametrize("name", ["cloudtrail", "guardduty"])
@pytest.mark.parametrize("reason", ["", "   "])
def test_turning_a_guardrail_off_needs_a_reason(name, reason):
    with pytest.raises(ConfigError, match=rf"^guardrails\.{name}=False turns an account guardrail off without a "
                                          r"reason; fix: keep it on, or say in off_reason what covers the account"):
        GuardrailsSettings(**{name: False}, off_reason=reason)


def test_guardrails_are_on_by_default_and_archive_before_expiry():
    settings = GuardrailsSettings()
    assert (settings.cloudtrail, settings.guardduty, settings.off_reason) == (True, True, "")
    with pytest.raises(ConfigError, match=r"^guardrails\.trail_archive_after_days=400 is not before "
                                          r"trail_expiration_days=365; fix: archive trail logs before they expire"):
        GuardrailsSettings(trail_archive_after_days=400, trail_expiration_days=365)
    with pytest.raises(ConfigError, match=r"^guardrails\.trail_expiration_days=0 is not a number of days"):
        GuardrailsSettings(trail_expiration_days=0)


def test_props_refuse_a_bad_bucket_name_and_retention():
    with pytest.raises(ConfigError, match=r"^bucket_name='Trail' is not a valid S3 bucket name"):
        AccountGuardrailsProps(name="af-prod", bucket_name="Trail")
    with pytest.raises(ConfigError, match=r"^log_retention_days=42 is not a retention period"):
        AccountGuardrailsProps(**BASE, log_retention_days=42)
