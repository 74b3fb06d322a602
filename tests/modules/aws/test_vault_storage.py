"""Vault's data at rest: its own customer-managed key, the snapshot bucket (KMS, expiry), the uploader's PutObject on
the snapshot prefix only, and the EBS CSI driver's use of the key only through EC2."""
from __future__ import annotations

import json

import pytest

from modules.aws.identity import PlatformIdentities, PlatformIdentitiesProps
from modules.aws.vault_storage import SNAPSHOT_PREFIX, VaultStorage, VaultStorageProps
from modules.core.validation import ConfigError
from tests.conftest import new_stack, only, synth
from tests.modules.aws.test_identity import grant_all

BASE = dict(name="af-test", snapshot_bucket_name="af-test-vault-snapshots", access_log_bucket="af-test-access-logs")


@pytest.fixture(scope="module")
def doc():
    stack = new_stack()
    identities = grant_all(PlatformIdentities(stack, "identities", props=PlatformIdentitiesProps(
        cluster_name="af-test", addon_managed=("ebs-csi-driver", "cloudwatch-agent"))), vault_snapshot=False)
    storage = VaultStorage(stack, "vault-storage", props=VaultStorageProps(**BASE, snapshot_retention_days=14))
    storage.grant_snapshot_upload(identities)
    storage.grant_volume_encryption(identities)
    return synth(stack)


def _policy_of(doc, workload: str) -> list[dict]:
    res = doc["resource"]
    (address,) = [a for a, r in res["aws_iam_role"].items() if r["name"] == f"af-test-{workload}"]
    (policy,) = [p for p in res["aws_iam_role_policy"].values() if p["role"] == f"${{aws_iam_role.{address}.id}}"]
    return json.loads(policy["policy"])["Statement"]


def _key_ref(doc) -> str:
    address, _ = only(doc["resource"], "aws_kms_key")
    return f"${{aws_kms_key.{address}.arn}}"


def test_snapshot_bucket_is_encrypted_with_the_vault_key_and_expires_snapshots(doc):
    res = doc["resource"]
    _, bucket = only(res, "aws_s3_bucket")
    assert bucket["bucket"] == "af-test-vault-snapshots" and bucket["lifecycle"] == {"prevent_destroy": True}
    ((rule,),) = [v["rule"] for v in res["aws_s3_bucket_server_side_encryption_configuration"].values()]
    assert rule["apply_server_side_encryption_by_default"] == {"sse_algorithm": "aws:kms",
                                                               "kms_master_key_id": _key_ref(doc)}
    ((lifecycle,),) = [v["rule"] for v in res["aws_s3_bucket_lifecycle_configuration"].values()]
    assert lifecycle["expiration"] == [{"days": 14}] and lifecycle["noncurrent_version_expiration"] == [
        {"noncurrent_days": 7}]
    _, key = only(res, "aws_kms_key")
    assert key["enable_key_rotation"] is True and "Vault" in key["description"]
    (alias,) = res["aws_kms_alias"].values()
    assert alias["name"] == "alias/af-test-vault-data"


def test_uploader_may_only_put_objects_under_the_snapshot_prefix_with_the_key_through_s3(doc):
    put, use_key = _policy_of(doc, "vault-snapshot")
    assert (put["Action"], put["Resource"]) == (["s3:PutObject"], [
        f"${{aws_s3_bucket.{only(doc['resource'], 'aws_s3_bucket')[0]}.arn}}/{SNAPSHOT_PREFIX}/*"])
    assert "Condition" not in put          # nothing else: no list, read or delete on the bucket
    assert (sorted(use_key["Action"]), use_key["Resource"], use_key["Condition"]) == (
        ["kms:Decrypt", "kms:GenerateDataKey"], [_key_ref(doc)],
        {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}})


def test_ebs_csi_driver_uses_the_vault_key_only_through_ec2(doc):
    statements = [s for s in _policy_of(doc, "ebs-csi-driver") if s["Resource"] == [_key_ref(doc)]]
    use, grant = sorted(statements, key=lambda s: s["Sid"], reverse=True)
    assert use["Sid"] == "UseVaultVolumeKeyViaEc2" and use["Condition"] == {
        "StringEquals": {"kms:ViaService": "ec2.eu-west-1.amazonaws.com"}}
    assert not {"kms:Encrypt", "kms:GenerateDataKey"} & set(use["Action"])
    assert (grant["Action"], grant["Condition"]) == (["kms:CreateGrant"], {"Bool": {"kms:GrantIsForAWSResource": "true"}})
    # no other workload may use the key
    others = [wid for wid in ("vault", "airflow-task", "airflow-worker", "external-secrets")
              if any(_key_ref(doc) in s["Resource"] for s in _policy_of(doc, wid))]
    assert others == []


@pytest.mark.parametrize("field,value,message", [
    ("snapshot_bucket_name", "Vault_Snapshots", "is not a valid S3 bucket name"),
    ("snapshot_retention_days", 0, "is not between 1 and 3650 days"),
])
def test_props_refuse_bad_input(field, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        VaultStorageProps(**{**BASE, field: value})
    assert err.value.field == field
