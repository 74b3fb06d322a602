"""The emulator recipe (tools/emulator.py): the real cdktf CLI deploys, diffs and (where Terraform may) destroys a
stack on a local moto; destroy checks stack dependencies and prevent_destroy first. Loopback only; every emulator
a test starts is stopped in its teardown."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.harness import find_provider_mirror
from tools import emulator as recipe
from tools import rehearse

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _state(path: Path, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 4, "resources": [
        {"mode": "managed", "type": "aws_s3_bucket", "name": f"b{i}", "instances": [{}]} for i in range(count)] + [
        {"mode": "data", "type": "aws_caller_identity", "name": "me", "instances": [{}]}]}))


def test_destroy_refuses_while_a_dependant_stack_holds_resources_on_the_emulator(tmp_path):
    emulator = recipe.Emulator(tmp_path)
    emulator.out.mkdir(parents=True)
    (emulator.out / "manifest.json").write_text(json.dumps({"stacks": {
        "airflow-dev-infra": {"dependencies": []},
        "airflow-dev-platform": {"dependencies": ["airflow-dev-infra"]},
        "airflow-dev-vault-config": {"dependencies": ["airflow-dev-platform"]}}}))
    assert emulator.dependants_with_state("airflow-dev-infra") == {}          # never deployed: safe to skip
    _state(emulator.state_dir / "terraform.airflow-dev-platform.tfstate", 2)
    assert emulator.dependants_with_state("airflow-dev-infra") == {"airflow-dev-platform": 2}
    _state(emulator.state_dir / "terraform.airflow-dev-platform.tfstate", 0)   # destroyed: data sources only
    assert emulator.dependants_with_state("airflow-dev-infra") == {}


@pytest.fixture(scope="module")
def tools_present() -> None:
    missing = [name for name, ok in (("terraform", shutil.which("terraform")), ("provider mirror", find_provider_mirror()),
                                     ("moto", rehearse.moto_binary()),
                                     ("cdktf CLI", (ROOT / ".tools" / "cdktf-cli" / ".synced").exists())) if not ok]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"missing on CI: {', '.join(missing)} (make install installs moto and the CLI)")
        pytest.skip(f"missing here: {', '.join(missing)}")


def run_recipe(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m tools.emulator <args>` as a user runs it: a bare environment (HOME, PATH, no TF_CLI_CONFIG_FILE)."""
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": os.pathsep.join(["/usr/local/bin", "/usr/bin", "/bin"])}
    result = subprocess.run([sys.executable, "-m", "tools.emulator", *args, "--workdir", str(workdir)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=900)
    result.stdout = ANSI.sub("", result.stdout)
    return result


@pytest.mark.slow
def test_recipe_deploys_and_diffs_the_state_stack_with_the_real_cli_and_refuses_a_protected_destroy(tools_present,
                                                                                                   tmp_path):
    workdir = tmp_path / "emulator"
    try:
        deployed = run_recipe(workdir, "deploy", "--stack", "state")
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-2000:]
        assert "Apply complete! Resources: 25 added, 0 changed, 0 destroyed." in deployed.stdout
        endpoint = (workdir / "endpoint").read_text()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", endpoint)
        # local state lives in the recipe's state folder, outside its cdktf.out
        assert recipe.resources_in_state(workdir / "state" / "terraform.airflow-state-111111111111.tfstate") == 25

        diffed = run_recipe(workdir, "diff", "--stack", "state")
        assert diffed.returncode == 0, diffed.stdout[-3000:]
        assert re.search(r"No changes|Plan: 0 to add, \d+ to change, 0 to destroy", diffed.stdout)

        refused = run_recipe(workdir, "destroy", "--stack", "state")
        assert refused.returncode == 2
        assert refused.stderr.strip().startswith(
            "emulator: error: airflow-state-111111111111 protects 2 resources with lifecycle.prevent_destroy (aws_s3_bucket.")
        assert recipe.resources_in_state(workdir / "state" / "terraform.airflow-state-111111111111.tfstate") == 25
    finally:
        stopped = run_recipe(workdir, "down")
    assert stopped.returncode == 0
    assert not (workdir / "state").exists() and not (workdir / "moto.pid").exists()
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)


def test_down_never_signals_a_process_the_pid_file_no_longer_names(tmp_path):
    import os
    import signal as signals

    emulator = recipe.Emulator(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        emulator.pid_file.write_text(str(bystander.pid))       # a stale pid file naming someone else's process
        emulator.down()
        assert bystander.poll() is None and not emulator.pid_file.exists()
    finally:
        os.killpg(bystander.pid, signals.SIGKILL)
        bystander.wait(timeout=10)


def test_an_unknown_stack_is_one_line_naming_the_stacks(tools_present, tmp_path):
    try:
        result = run_recipe(tmp_path / "emulator", "diff", "--stack", "infr")
    finally:
        run_recipe(tmp_path / "emulator", "down")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("emulator: error: airflow-dev-infr is not a stack of this app; fix: use "
                                            "--stack infra or state, or one of airflow-dev-infra, ")
