"""The real cdktf CLI (bin/cdktf: cdktf-cli 0.21.0 on its own Node 22) runs the app from a plain shell.

A plain shell: PATH holds only the system directories (no activated virtualenv, no pipenv, no npm prefix), or the
virtualenv's Node 24 first, as an activated `.venv` has it, which the CLI's node-pty cannot load. Each run writes
to a temporary output folder (`--output`), never the project's cdktf.out.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "bin" / "cdktf"
SYSTEM_PATH = ["/usr/local/bin", "/usr/bin", "/bin"]
ALL_STACKS = {*(f"airflow-state-{account}" for account in ("111111111111", "222222222222", "333333333333")),
              *(f"airflow-{env}-{layer}" for env in ("dev", "staging", "prod")
                for layer in ("infra", "platform", "vault-config"))}


@pytest.fixture(scope="module")
def cli_installed() -> None:
    if not (ROOT / ".tools" / "cdktf-cli" / ".synced").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("the cdktf CLI is not installed on CI: `make install` installs it (make cli)")
        pytest.skip("the cdktf CLI is not installed: run `make cli`")


def cli(*args: str, path: list[str] = SYSTEM_PATH, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`bin/cdktf <args>` with a user's bare environment: HOME and PATH only."""
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": os.pathsep.join(path)}
    return subprocess.run([str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def listed_stacks(stdout: str) -> dict[str, str]:
    """`cdktf list`'s table: stack name -> path (the CLI wraps a long path onto indented continuation lines)."""
    table = stdout[stdout.index("Stack name"):].splitlines()[1:]
    stacks: dict[str, str] = {}
    for line in table:
        if re.match(r"\S+\s+\S", line):
            name, path = line.split(maxsplit=1)
            stacks[name] = path.strip()
        elif line.strip() and stacks:
            stacks[name] += line.strip()
    return stacks


@pytest.mark.parametrize("path", [SYSTEM_PATH, [str(ROOT / ".venv" / "bin"), *SYSTEM_PATH]],
                         ids=["system-path", "venv-node-24-first"])
def test_cli_lists_every_stack_whichever_node_is_first_on_path(cli_installed, tmp_path, path):
    out = tmp_path / "cdktf.out"
    result = cli("list", "--output", str(out), path=path, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "pty.node" not in result.stdout + result.stderr       # the failure a Node 24 on PATH used to cause
    stacks = listed_stacks(result.stdout)
    assert set(stacks) == ALL_STACKS
    assert stacks["airflow-dev-infra"] == f"{out}/stacks/airflow-dev-infra"


def test_cli_synth_keeps_terraform_files_and_a_later_one_environment_synth_keeps_the_rest(cli_installed, tmp_path):
    out = tmp_path / "cdktf.out"
    prod = out / "stacks" / "airflow-prod-infra"
    (prod / ".terraform").mkdir(parents=True)
    (prod / ".terraform" / "terraform.tfstate").write_text('{"backend": "initialised"}')
    (prod / ".terraform.lock.hcl").write_text("# lock")

    result = cli("synth", "--output", str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert {p.parent.name for p in out.glob("stacks/*/cdk.tf.json")} == ALL_STACKS
    assert (prod / ".terraform" / "terraform.tfstate").read_text() == '{"backend": "initialised"}'
    assert (prod / ".terraform.lock.hcl").read_text() == "# lock"

    # One environment with the app directly, then the CLI again: no vanished folder, nothing orphaned or deleted.
    one = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "main.py", "--env", "dev", "--quiet", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    assert set(json.loads((out / "manifest.json").read_text())["stacks"]) == ALL_STACKS
    listed = cli("list", "--output", str(out))
    assert listed.returncode == 0 and "ENOENT" not in listed.stdout + listed.stderr, listed.stderr[-2000:]
    assert set(listed_stacks(listed.stdout)) == ALL_STACKS
    assert (prod / ".terraform" / "terraform.tfstate").exists()


def test_cli_synth_hcl_is_refused_with_the_json_exit_path(cli_installed, tmp_path):
    out = tmp_path / "cdktf.out"
    result = cli("synth", "--hcl", "--output", str(out))
    assert result.returncode != 0
    assert "error: SYNTH_HCL_OUTPUT=true (cdktf synth --hcl): cdktf 0.21 writes HCL that Terraform cannot parse" in (
        result.stdout + result.stderr)
    assert not list(out.glob("stacks/*/cdk.tf"))


def test_cli_without_its_install_says_how_to_get_it(tmp_path):
    project = tmp_path / "clone"
    (project / "bin").mkdir(parents=True)
    (project / "bin" / "cdktf").write_bytes(CLI.read_bytes())
    (project / "bin" / "cdktf").chmod(0o755)
    result = subprocess.run([str(project / "bin" / "cdktf"), "list"], capture_output=True, text=True, timeout=30,
                            env={"PATH": os.pathsep.join(SYSTEM_PATH)})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: the cdktf CLI is not installed in {project}/.tools; fix: run `make cli` "
                                     "(or `make synth`) there first")
