"""Every log group the platform creates has a retention period and a customer KMS key, including the ones
Container Insights would otherwise create itself; and the logs key's policy admits every group that uses it."""
from __future__ import annotations

import fnmatch
import json

import pytest

import environments
from modules.aws.cluster import CONTAINER_INSIGHTS_LOG_TYPES
from modules.core.validation import LOG_RETENTION_DAYS

CONFIGS = {name: environments.load(name) for name in environments.NAMES}


def log_groups(doc: dict) -> dict[str, dict]:
    return doc.get("resource", {}).get("aws_cloudwatch_log_group", {})


def test_every_log_group_of_every_stack_has_retention_and_a_kms_key(stacks):
    seen = 0
    for stack_name, doc in stacks.items():
        for address, group in log_groups(doc).items():
            seen += 1
            assert group.get("retention_in_days") in LOG_RETENTION_DAYS, (stack_name, address)
            assert str(group.get("kms_key_id", "")).startswith("${aws_kms_key."), (stack_name, address)
    assert seen >= 3 * 10     # VPC, EKS, RDS, cache, WAF and Container Insights groups in each environment


@pytest.mark.parametrize("name", environments.NAMES)
def test_container_insights_log_groups_exist_before_the_addon(stacks, name):
    c, res = CONFIGS[name], stacks[f"airflow-{name}-infra"]["resource"]
    by_name = {g["name"]: (address, g) for address, g in res["aws_cloudwatch_log_group"].items()}
    expected = [f"/aws/containerinsights/{c.cluster_name}/{t}" for t in CONTAINER_INSIGHTS_LOG_TYPES]
    assert set(expected) <= set(by_name)
    (logs_key,) = [a for a in res["aws_kms_key"] if a.startswith("logs-key")]
    for group_name in expected:
        _, group = by_name[group_name]
        assert (group["retention_in_days"], group["kms_key_id"]) == (c.log_retention_days,
                                                                     f"${{aws_kms_key.{logs_key}.arn}}")
    (addon,) = [a for a in res["aws_eks_addon"].values() if a["addon_name"] == "amazon-cloudwatch-observability"]
    assert {f"aws_cloudwatch_log_group.{by_name[n][0]}" for n in expected} <= set(addon["depends_on"])


@pytest.mark.parametrize("name", environments.NAMES)
def test_the_logs_key_admits_every_log_group_that_uses_it(stacks, name):
    """CloudWatch Logs refuses to create a group with a key whose policy does not admit it: check at synth."""
    c, res = CONFIGS[name], stacks[f"airflow-{name}-infra"]["resource"]
    (logs_key,) = [a for a in res["aws_kms_key"] if a.startswith("logs-key")]
    statements = json.loads(res["aws_kms_key"][logs_key]["policy"])["Statement"]
    (logs_use,) = [s for s in statements if s.get("Principal") == {"Service": f"logs.{c.region}.amazonaws.com"}]
    patterns = logs_use["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    prefix = f"arn:aws:logs:{c.region}:{c.account_id}:log-group:"
    users = [g["name"] for g in res["aws_cloudwatch_log_group"].values()
             if g["kms_key_id"] == f"${{aws_kms_key.{logs_key}.arn}}"]
    assert len(users) >= 10
    unadmitted = [n for n in users if not any(fnmatch.fnmatchcase(prefix + n, p) for p in patterns)]
    assert unadmitted == []
