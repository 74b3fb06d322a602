"""GovernedStack applies the tagging and policy Aspects' effect in Python at synth (one callback per stack):
the document must be exactly what the registered Aspects produce, overrides metadata included."""
from __future__ import annotations

import json

import cdktf
from cdktf_cdktf_provider_aws import kms_alias, s3_bucket, security_group
from cdktf_cdktf_provider_aws.provider import AwsProvider

from modules.aws.storage import AccessLogBucket, BucketProps, SecureBucket
from modules.core.aspects import GovernedStack, PolicyPack, Tagging, govern
from modules.core.environment import AwsEnvironment

KEY = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def _build(stack_class, tmp_path, name, *, use_govern=None):
    app = cdktf.App(outdir=str(tmp_path / name), stack_traces=False)
    stack = stack_class(app, "demo")
    AwsEnvironment(account_id="123456789012", region="eu-west-1").bind(stack)
    AwsProvider(stack, "aws", region="eu-west-1")
    logs = AccessLogBucket(stack, "logs", name="af-test-logs", expiration_days=90)
    SecureBucket(stack, "data", props=BucketProps(name="af-test-data", kms_key_arn=KEY, access_log_bucket=logs.bucket_id))
    s3_bucket.S3Bucket(stack, "bare", bucket="bare-bucket")                       # AF-ENC-1 and AF-S3-1 findings
    security_group.SecurityGroup(stack, "sg", vpc_id="vpc-1", description="x", tags={"Name": "mine", "owner": "me"})
    kms_alias.KmsAlias(stack, "alias", name="alias/x", target_key_id="k")        # no tags argument
    tagging, policy = Tagging({"owner": "team", "environment": "dev"}), PolicyPack()
    if use_govern if use_govern is not None else stack_class is GovernedStack:
        govern(stack, tagging=tagging, policy=policy)
    else:
        cdktf.Aspects.of(stack).add(tagging)
        cdktf.Aspects.of(stack).add(policy)
    app.synth()
    text = (tmp_path / name / "stacks" / "demo" / "cdk.tf.json").read_text()
    return text, sorted((f.rule_id, f.address) for f in policy.findings)


def test_governed_stack_writes_the_same_document_and_findings_as_registered_aspects(tmp_path):
    governed, registered = _build(GovernedStack, tmp_path, "governed"), _build(cdktf.TerraformStack, tmp_path, "aspects")
    assert governed == registered
    doc = json.loads(governed[0])
    assert doc["resource"]["aws_security_group"]["sg"]["tags"] == {"Name": "mine", "owner": "team", "environment": "dev"}
    assert "tags" not in doc["resource"]["aws_kms_alias"]["alias"]
    assert doc["//"]["metadata"]["overrides"]["aws_s3_bucket"] == ["tags"] * 3
    assert [rule for rule, _ in governed[1]] == ["AF-ENC-1", "AF-S3-1"]


def test_govern_applies_the_aspects_now_to_a_plain_stack(tmp_path):
    fallback = _build(cdktf.TerraformStack, tmp_path, "plain", use_govern=True)
    assert fallback == _build(cdktf.TerraformStack, tmp_path, "aspects")
    assert '"owner": "team"' in fallback[0] and [rule for rule, _ in fallback[1]] == ["AF-ENC-1", "AF-S3-1"]


BOUNDARY = "arn:aws:iam::123456789012:policy/af-test-workload-boundary"


def _roles(stack_class, tmp_path, name, *, use_govern):
    from cdktf_cdktf_provider_aws import iam_role

    from modules.core.aspects import PermissionsBoundary

    app = cdktf.App(outdir=str(tmp_path / name), stack_traces=False)
    stack = stack_class(app, "demo")
    AwsProvider(stack, "aws", region="eu-west-1")
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    iam_role.IamRole(stack, "bare", name="af-test-bare", assume_role_policy=trust)
    iam_role.IamRole(stack, "own", name="af-test-own", assume_role_policy=trust,
                     permissions_boundary="arn:aws:iam::123456789012:policy/other")      # replaced, not kept
    boundary, tagging, policy = PermissionsBoundary(BOUNDARY), Tagging({"owner": "team"}), PolicyPack(rules=[])
    if use_govern:
        govern(stack, tagging=tagging, policy=policy, boundary=boundary)
    else:
        for aspect in (boundary, tagging, policy):
            cdktf.Aspects.of(stack).add(aspect)
    app.synth()
    doc = json.loads((tmp_path / name / "stacks" / "demo" / "cdk.tf.json").read_text())
    # Aspects record overrides per resource, the document pass per aspect: the same entries, in another order.
    overrides = doc["//"]["metadata"]["overrides"]
    doc["//"]["metadata"]["overrides"] = {rtype: sorted(fields) for rtype, fields in overrides.items()}
    return doc


def test_permissions_boundary_lands_on_every_role_the_same_way_through_either_path(tmp_path):
    governed = _roles(GovernedStack, tmp_path, "governed", use_govern=True)
    assert governed == _roles(cdktf.TerraformStack, tmp_path, "aspects", use_govern=False)
    roles = governed["resource"]["aws_iam_role"]
    assert {name: role["permissions_boundary"] for name, role in roles.items()} == {"bare": BOUNDARY, "own": BOUNDARY}
