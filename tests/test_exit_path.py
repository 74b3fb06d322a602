"""The exit path off CDKTF: the synthesized cdk.tf.json is plain Terraform JSON configuration.

A team leaving CDKTF commits `cdktf.out/stacks/<stack>/cdk.tf.json` and runs Terraform on it directly. This proves
it against the local AWS emulator: the state stack's JSON, copied out of the output as a user would commit
it, applies with plain `terraform init` + `apply` (no cdktf involved), and a fresh synth copied over the committed
file plans no changes (`terraform plan -detailed-exitcode` exits 0). Skips locally without terraform, the provider
mirror or moto; fails on CI (CI=true), like test_rehearsal.py.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_rehearsal import emulator, terraform, tf_env, tools_present  # noqa: F401  (shared fixtures)
from tools import rehearse

STACK = "airflow-state-111111111111"   # the state stack of dev's account


def synthesize_state_stack(endpoint: str, out: Path, state_dir: Path) -> Path:
    """`python main.py --env dev --aws-emulator-endpoint ...` in a subprocess, as a user runs it; returns the JSON."""
    rehearse.run([sys.executable, str(rehearse.ROOT / "main.py"), "--env", "dev",
                  "--aws-emulator-endpoint", endpoint, "--emulator-state-dir", str(state_dir), "--out", str(out),
                  "--quiet"], cwd=rehearse.ROOT, timeout=rehearse.SYNTH_TIMEOUT)
    return out / "stacks" / STACK / "cdk.tf.json"


@pytest.mark.slow
def test_committed_cdk_tf_json_applies_with_plain_terraform_and_a_fresh_synth_plans_no_changes(
        emulator, tf_env, tmp_path):
    state_dir = tmp_path / "state"
    first = synthesize_state_stack(emulator, tmp_path / "synth-1", state_dir)
    committed = tmp_path / "repo" / "infra" / STACK           # a user's repository, outside cdktf.out
    committed.mkdir(parents=True)
    shutil.copy(first, committed / "cdk.tf.json")
    doc = json.loads((committed / "cdk.tf.json").read_text())
    resources = sum(len(of_type) for of_type in doc["resource"].values())
    assert resources == 25

    terraform(committed, tf_env, "init")
    applied = terraform(committed, tf_env, "apply", "-auto-approve", "-parallelism=10", timeout=300)
    assert f"Apply complete! Resources: {resources} added, 0 changed, 0 destroyed." in applied
    listed = rehearse.run(["terraform", "state", "list", "-no-color"], cwd=committed, env=tf_env, timeout=60).stdout.split()
    assert len([a for a in listed if not a.startswith("data.")]) == resources

    # The next change arrives as a fresh synth copied over the committed file: nothing to do.
    shutil.copy(synthesize_state_stack(emulator, tmp_path / "synth-2", state_dir), committed / "cdk.tf.json")
    plan = subprocess.run(["terraform", "plan", "-detailed-exitcode", "-input=false", "-no-color", "-lock=false"],
                          cwd=committed, env=tf_env, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-2000:]
    assert "No changes. Your infrastructure matches the configuration." in plan.stdout
