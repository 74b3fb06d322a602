"""Real-tool checks on synthesized output: terraform validate with the provider mirror, and Checkov."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AWS_PROVIDER = "registry.terraform.io/hashicorp/aws"
MIRROR_CANDIDATES = ("/opt/tf-plugins", "/usr/share/terraform/plugins", "/usr/local/share/terraform/plugins",
                     str(Path.home() / ".terraform.d/plugins"))


def find_provider_mirror() -> Path | None:
    """The filesystem mirror holding hashicorp/aws 5.100.0: $TF_PROVIDER_MIRROR, else the known locations."""
    candidates = [os.environ["TF_PROVIDER_MIRROR"]] if os.environ.get("TF_PROVIDER_MIRROR") else list(MIRROR_CANDIDATES)
    for candidate in candidates:
        if list(Path(candidate).glob(f"{AWS_PROVIDER}/5.100.0/*/terraform-provider-aws*")):
            return Path(candidate)
    return None


def terraform_cli_config(mirror: Path, directory: Path) -> Path:
    config = directory / "terraformrc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{mirror}"\n    include = ["{AWS_PROVIDER}"]\n  }}\n'
        f'  direct {{\n    exclude = ["{AWS_PROVIDER}"]\n  }}\n'
        "}\n")
    return config


def terraform_validate(stack_json: Path, workdir: Path, cli_config: Path, plugin_cache: Path) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(stack_json, workdir / "cdk.tf.json")
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(cli_config), "TF_PLUGIN_CACHE_DIR": str(plugin_cache),
           "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    init = subprocess.run(["terraform", "init", "-backend=false", "-input=false", "-no-color"], cwd=workdir, env=env,
                          capture_output=True, text=True)
    if init.returncode != 0:
        return init
    return subprocess.run(["terraform", "validate", "-no-color", "-json"], cwd=workdir, env=env, capture_output=True,
                          text=True)


def checkov_config(stack_name: str) -> Path:
    """dev's stacks use .checkov.dev.yaml (the shared skips plus dev's deliberate cost choices)."""
    return ROOT / (".checkov.dev.yaml" if "-dev-" in stack_name else ".checkov.yaml")


def checkov(paths: list[Path], config: Path) -> list[dict]:
    """Failed Checkov checks over the given stack files, with the given skip file."""
    checkov_bin = Path(sys.executable).with_name("checkov")
    files = [arg for path in paths for arg in ("-f", str(path))]
    result = subprocess.run([str(checkov_bin), *files, "--config-file", str(config), "-o", "json"],
                            capture_output=True, text=True)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert reports and all("results" in r for r in reports), f"checkov produced no report: {result.stderr[-2000:]}"
    return [failure for report in reports for failure in report["results"]["failed_checks"]]


AIRFLOW_VENV = ROOT / ".venv-airflow"


def airflow_python() -> Path:
    """The interpreter of the real-Airflow virtualenv (requirements/airflow.txt), made by `make install`.
    Tests that check generated Airflow config or parse DAGs run their checks in it as a subprocess."""
    python = AIRFLOW_VENV / "bin" / "python"
    assert python.exists(), f"{python} is missing: run `make install` (it builds .venv-airflow)"
    return python


def run_in_airflow(script: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a checker script with real Airflow; AIRFLOW_HOME is a throwaway directory so nothing leaks."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(AIRFLOW_HOME=home, AIRFLOW__CORE__LOAD_EXAMPLES="False", PYTHONDONTWRITEBYTECODE="1")
        return subprocess.run([str(airflow_python()), str(script), *args], capture_output=True, text=True,
                              env=env, timeout=timeout, cwd=str(ROOT))


def helm_merge(base: dict, override: dict) -> dict:
    """Helm's coalescing of user values over chart defaults: maps merge recursively, null deletes a key,
    anything else replaces. Used to validate generated values against a chart's values.schema.json."""
    import copy

    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
