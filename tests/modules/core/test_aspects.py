import cdktf
import pytest
from cdktf_cdktf_provider_aws import cloudwatch_log_group, kms_alias, lb, s3_bucket, security_group, vpc_security_group_ingress_rule as ingress

from modules.core.aspects import RULES, PolicyPack, PolicyViolation, Tagging, apply_now
from modules.aws.storage import AccessLogBucket, BucketProps, SecureBucket
from tests.conftest import new_stack, synth

KEY = "arn:aws:kms:eu-west-1:123456789012:key/k"


def findings(stack) -> list[tuple[str, str]]:
    policy = PolicyPack()
    cdktf.Aspects.of(stack).add(policy)
    cdktf.Testing.synth(stack)
    return [(f.rule_id, f.address.split(".")[0]) for f in policy.findings]


def test_every_rule_has_an_id_and_a_message_with_a_fix():
    assert sorted(r.id for r in RULES) == ["AF-ENC-1", "AF-IAM-1", "AF-LOG-1", "AF-NET-1", "AF-S3-1"]
    assert all("fix:" in r.message for r in RULES)


def test_bare_bucket_is_refused_as_unencrypted_and_public():
    stack = new_stack()
    s3_bucket.S3Bucket(stack, "bare", bucket="bare-bucket")
    assert sorted(findings(stack)) == [("AF-ENC-1", "aws_s3_bucket"), ("AF-S3-1", "aws_s3_bucket")]


def test_hardened_buckets_pass_and_only_log_targets_may_use_sse_s3():
    stack = new_stack()
    logs = AccessLogBucket(stack, "logs", name="af-test-logs", expiration_days=90)
    SecureBucket(stack, "data", props=BucketProps(name="af-test-data", kms_key_arn=KEY, access_log_bucket=logs.bucket_id))
    assert findings(stack) == []
    lonely = new_stack()
    AccessLogBucket(lonely, "logs", name="af-test-logs", expiration_days=90)
    assert findings(lonely) == [("AF-ENC-1", "aws_s3_bucket")]   # SSE-S3 with nothing logging to it


def test_log_group_without_retention_or_key_is_refused():
    stack = new_stack()
    cloudwatch_log_group.CloudwatchLogGroup(stack, "group", name="/x")
    assert sorted(findings(stack)) == [("AF-ENC-1", "aws_cloudwatch_log_group"), ("AF-LOG-1", "aws_cloudwatch_log_group")]


def _open_rule(stack, sg, port, cidr="0.0.0.0/0"):
    ingress.VpcSecurityGroupIngressRule(stack, f"rule-{sg.node.id}-{port}-{cidr.replace('/', '-').replace(':', '')}",
                                        security_group_id=sg.id, ip_protocol="tcp", from_port=port, to_port=port,
                                        cidr_ipv4=cidr if "." in cidr else None, cidr_ipv6=cidr if ":" in cidr else None)


def test_internet_ingress_is_refused_except_80_and_443_on_a_load_balancer_group():
    stack = new_stack()
    alb_sg = security_group.SecurityGroup(stack, "alb", vpc_id="vpc-1", description="alb")
    other = security_group.SecurityGroup(stack, "other", vpc_id="vpc-1", description="other")
    lb.Lb(stack, "lb", security_groups=[alb_sg.id], subnets=["s-1", "s-2"])
    _open_rule(stack, alb_sg, 443)
    _open_rule(stack, alb_sg, 80, "::/0")
    _open_rule(stack, alb_sg, 22)           # not 80/443
    _open_rule(stack, other, 443)           # not a load balancer's group
    _open_rule(stack, other, 5432, "10.0.0.0/16")   # narrow CIDR is fine
    assert findings(stack) == [("AF-NET-1", "aws_vpc_security_group_ingress_rule")] * 2


def test_inline_open_ingress_is_refused():
    stack = new_stack()
    security_group.SecurityGroup(stack, "sg", vpc_id="vpc-1", description="x", ingress=[security_group.SecurityGroupIngress(
        from_port=22, to_port=22, protocol="tcp", cidr_blocks=["0.0.0.0/0"])])
    assert findings(stack) == [("AF-NET-1", "aws_security_group")]


def test_violation_message_names_rule_stack_address_and_fix():
    stack = new_stack("demo")
    s3_bucket.S3Bucket(stack, "bare", bucket="bare-bucket")
    with pytest.raises(PolicyViolation, match=r"policy AF-S3-1: demo: aws_s3_bucket\.bare: .*fix: add a public access block"):
        synth(stack)


def test_tagging_adds_governance_tags_over_a_resources_own_and_keeps_its_other_tags():
    stack = new_stack()
    cdktf.Aspects.of(stack).add(Tagging({"owner": "team", "environment": "dev"}))
    security_group.SecurityGroup(stack, "sg", vpc_id="vpc-1", description="x", tags={"Name": "mine", "owner": "me"})
    security_group.SecurityGroup(stack, "bare", vpc_id="vpc-1", description="y")
    cloudwatch_log_group.CloudwatchLogGroup(stack, "g", name="/x", retention_in_days=7, kms_key_id=KEY)
    kms_alias.KmsAlias(stack, "alias", name="alias/x", target_key_id="k")   # schema has no tags argument
    res = synth(stack)["resource"]
    assert {n: sg["tags"] for n, sg in res["aws_security_group"].items()} == {
        "sg": {"Name": "mine", "owner": "team", "environment": "dev"}, "bare": {"owner": "team", "environment": "dev"}}
    (group,) = res["aws_cloudwatch_log_group"].values()
    assert group["tags"] == {"owner": "team", "environment": "dev"}
    (alias,) = res["aws_kms_alias"].values()
    assert "tags" not in alias


def test_apply_now_gives_the_same_document_as_registered_aspects():
    def build(apply: bool):
        stack = new_stack("demo")
        logs = AccessLogBucket(stack, "logs", name="af-test-logs", expiration_days=90)
        SecureBucket(stack, "data", props=BucketProps(name="af-test-data", kms_key_arn=KEY, access_log_bucket=logs.bucket_id))
        s3_bucket.S3Bucket(stack, "bare", bucket="bare-bucket")
        policy, tagging = PolicyPack(), Tagging({"owner": "team"})
        if apply:
            apply_now(stack, tagging, policy)
        else:
            cdktf.Aspects.of(stack).add(tagging)
            cdktf.Aspects.of(stack).add(policy)
        return cdktf.Testing.synth(stack), sorted((f.rule_id, f.address) for f in policy.findings)
    now, registered = build(True), build(False)
    assert now == registered
    assert [rule for rule, _ in now[1]] == ["AF-ENC-1", "AF-S3-1"] and '"owner": "team"' in now[0]


def test_log_group_with_retention_but_no_key_is_refused_as_unencrypted():
    """The policy pack requires both halves of "retention and KMS": a missing key is AF-ENC-1, missing retention
    AF-LOG-1 (one finding per missing half, so neither is reported twice)."""
    no_key, no_retention = new_stack("no-key"), new_stack("no-retention")
    cloudwatch_log_group.CloudwatchLogGroup(no_key, "group", name="/x", retention_in_days=30)
    cloudwatch_log_group.CloudwatchLogGroup(no_retention, "group", name="/x", kms_key_id=KEY)
    assert findings(no_key) == [("AF-ENC-1", "aws_cloudwatch_log_group")]
    assert findings(no_retention) == [("AF-LOG-1", "aws_cloudwatch_log_group")]


def test_a_role_left_with_an_empty_policy_is_refused(stack):
    from modules.aws.identity import PlatformIdentities, PlatformIdentitiesProps

    identities = PlatformIdentities(stack, "identities", props=PlatformIdentitiesProps(cluster_name="af-test"))
    identities.grant("vault", "AutoUnsealWithKms", ["kms:Decrypt"], ["arn:aws:kms:eu-west-1:123456789012:key/k"])
    with pytest.raises(PolicyViolation) as err:
        synth(stack)
    flagged = {f.address.split(".")[1].split("_policy_")[0] for f in err.value.findings if f.rule_id == "AF-IAM-1"}
    assert "identities_vault" not in flagged and "identities_karpenter" in flagged
    assert len(flagged) == len(identities.identities) - 1      # every role but the one granted something
