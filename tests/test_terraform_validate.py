"""`terraform validate` with the real hashicorp/aws 5.100.0 provider on every AWS-only stack."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.harness import find_provider_mirror, terraform_cli_config, terraform_validate

# A state stack per account (dev 111111111111, staging 222222222222, prod 333333333333) and each environment's infra.
AWS_ONLY_STACKS = ["airflow-state-111111111111", "airflow-state-222222222222", "airflow-state-333333333333",
                   "airflow-dev-infra", "airflow-staging-infra", "airflow-prod-infra"]


@pytest.fixture(scope="session")
def terraform_env(tmp_path_factory):
    if shutil.which("terraform") is None or find_provider_mirror() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("terraform or the hashicorp/aws 5.100.0 filesystem mirror is missing on CI "
                        "(set TF_PROVIDER_MIRROR to the mirror directory)")
        pytest.skip("terraform or the provider mirror is not on this machine (set TF_PROVIDER_MIRROR)")
    base = tmp_path_factory.mktemp("terraform")
    (base / "plugin-cache").mkdir()
    return terraform_cli_config(find_provider_mirror(), base), base / "plugin-cache", base


@pytest.mark.parametrize("stack_name", AWS_ONLY_STACKS)
def test_stack_passes_terraform_validate(synthesized, terraform_env, stack_name):
    cli_config, plugin_cache, base = terraform_env
    result = terraform_validate(synthesized / "stacks" / stack_name / "cdk.tf.json", base / stack_name, cli_config,
                                plugin_cache)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True and report["error_count"] == 0, report["diagnostics"]


def test_every_aws_only_stack_is_validated(stacks):
    aws_only = [name for name, doc in stacks.items() if set(doc["terraform"]["required_providers"]) == {"aws"}]
    assert sorted(aws_only) == sorted(AWS_ONLY_STACKS)
