import json

import pytest

from modules.aws.storage import AccessLogBucket, BucketProps, SecureBucket
from modules.core.validation import ConfigError
from tests.conftest import synth

KEY = "arn:aws:kms:eu-west-1:123456789012:key/k"


def test_secure_bucket_is_versioned_kms_encrypted_private_and_tls_only(stack):
    SecureBucket(stack, "dags", props=BucketProps(name="af-dags", kms_key_arn=KEY, access_log_bucket="af-logs"))
    res = synth(stack)["resource"]
    (bucket,) = res["aws_s3_bucket"].values()
    assert bucket["force_destroy"] is False and "lifecycle" not in bucket
    (versioning,) = res["aws_s3_bucket_versioning"].values()
    assert versioning["versioning_configuration"]["status"] == "Enabled"
    ((rule,),) = [v["rule"] for v in res["aws_s3_bucket_server_side_encryption_configuration"].values()]
    assert rule["bucket_key_enabled"] is True
    assert rule["apply_server_side_encryption_by_default"] == {"sse_algorithm": "aws:kms", "kms_master_key_id": KEY}
    (block,) = res["aws_s3_bucket_public_access_block"].values()
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                          "restrict_public_buckets"))
    (owner,) = res["aws_s3_bucket_ownership_controls"].values()
    assert owner["rule"]["object_ownership"] == "BucketOwnerEnforced"
    (policy,) = res["aws_s3_bucket_policy"].values()
    (deny,) = json.loads(policy["policy"])["Statement"]
    assert (deny["Effect"], deny["Principal"], deny["Condition"]) == ("Deny", "*", {"Bool": {"aws:SecureTransport": "false"}})
    (logging,) = res["aws_s3_bucket_logging"].values()
    assert (logging["target_bucket"], logging["target_prefix"]) == ("af-logs", "s3/af-dags/")


def test_lifecycle_expires_noncurrent_versions_and_incomplete_uploads(stack):
    SecureBucket(stack, "logs", props=BucketProps(name="af-task-logs", kms_key_arn=KEY, access_log_bucket="l",
                                                  expiration_days=90, noncurrent_version_expiration_days=30))
    ((rule,),) = [v["rule"] for v in synth(stack)["resource"]["aws_s3_bucket_lifecycle_configuration"].values()]
    assert rule["status"] == "Enabled"
    assert rule["noncurrent_version_expiration"] == [{"noncurrent_days": 30}]
    assert rule["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 7}]
    assert rule["expiration"] == [{"days": 90}]


def test_prevent_destroy_when_asked(stack):
    SecureBucket(stack, "state", props=BucketProps(name="af-state", kms_key_arn=KEY, access_log_bucket="l",
                                                   prevent_destroy=True))
    (bucket,) = synth(stack)["resource"]["aws_s3_bucket"].values()
    assert bucket["lifecycle"] == {"prevent_destroy": True}


def test_access_log_bucket_admits_only_s3_log_delivery_for_this_account(stack):
    logs = AccessLogBucket(stack, "access-logs", name="af-access-logs", expiration_days=365)
    SecureBucket(stack, "data", props=BucketProps(name="af-data", kms_key_arn=KEY, access_log_bucket=logs.bucket_id))
    res = synth(stack)["resource"]
    policy = next(p for p in res["aws_s3_bucket_policy"].values() if "LogDelivery" in p["policy"])
    _, delivery = json.loads(policy["policy"])["Statement"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == ["s3:PutObject"] and delivery["Resource"][0].endswith("/s3/*")
    assert delivery["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


@pytest.mark.parametrize("name", ["Upper-Case", "ab", "has.dot.name", "-leading", "x" * 64, "xn--punycode"])
def test_invalid_bucket_names_are_refused(name):
    with pytest.raises(ConfigError, match=r"name=.* is not a valid S3 bucket name; fix: use 3-63 lowercase"):
        BucketProps(name=name, kms_key_arn=KEY)


def test_server_access_logging_waits_for_the_log_bucket_policy_that_admits_it(stack):
    logs = AccessLogBucket(stack, "logs", name="af-logs", expiration_days=90)
    SecureBucket(stack, "dags", props=BucketProps(name="af-dags", kms_key_arn=KEY, access_log_bucket=logs.bucket_id,
                                                  access_log_policy=logs.policy))
    res = synth(stack)["resource"]
    (logging,) = res["aws_s3_bucket_logging"].values()
    (log_policy,) = [name for name, body in res["aws_s3_bucket_policy"].items() if "logging.s3" in body["policy"]]
    # S3 checks the target's policy on PutBucketLogging: without the edge the two race in one apply.
    assert logging["depends_on"] == [f"aws_s3_bucket_policy.{log_policy}"]


def test_archive_must_come_before_expiry():
    with pytest.raises(ConfigError, match=r"^archive_after_days=90 is not before expiration_days=90; fix: archive"):
        BucketProps(name="af-trail", kms_key_arn=KEY, expiration_days=90, archive_after_days=90)
