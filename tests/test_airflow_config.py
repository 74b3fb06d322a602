"""The synthesized Airflow values of every environment, checked by real Airflow (tests/airflow_checks/config_check.py
run in .venv-airflow): config options exist and parse, class paths import, VaultBackend constructs from the generated
backend_kwargs, the DAG bundle config loads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import environments
from tests.harness import run_in_airflow

CHECK = Path(__file__).resolve().parent / "airflow_checks" / "config_check.py"
DRIVERS = CHECK.with_name("driver_check.py")
ROOT = CHECK.parents[2]


def airflow_values(stacks, name: str) -> dict:
    (raw,) = stacks[f"airflow-{name}-platform"]["resource"]["helm_release"]["airflow"]["values"]
    return json.loads(raw)


@pytest.fixture(scope="module")
def checked(stacks, tmp_path_factory):
    directory = tmp_path_factory.mktemp("airflow-values")
    paths = []
    for name in environments.NAMES:
        path = directory / f"{name}.json"
        path.write_text(json.dumps(airflow_values(stacks, name)))
        paths.append(str(path))
    result = run_in_airflow(CHECK, *paths)
    return result, result.stdout.splitlines()


def errors(lines: list[str], *, executor: bool) -> list[str]:
    return [line for line in lines if line.startswith("ERROR") and ("executor" in line) == executor]


def test_every_option_exists_and_every_class_loads_in_real_airflow(checked):
    result, lines = checked
    assert errors(lines, executor=False) == [], result.stdout[-4000:] + result.stderr[-4000:]
    for name in environments.NAMES:
        ok = {line.split(": ", 1)[1] for line in lines if line.startswith(f"OK {name}.json: ")}
        assert {"[api] base_url", "[database] sql_alchemy_conn_async", "[logging] remote_log_conn_id",
                "[secrets] backend_kwargs", "[celery] worker_concurrency", "[dag_processor] refresh_interval"} <= ok
        assert "secrets backend airflow.providers.hashicorp.secrets.vault.VaultBackend constructs (VaultBackend)" in ok
        # wait-for-airflow-migrations reads the connection through _CMD, which Airflow honours for sensitive options
        assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD -> [database] sql_alchemy_conn" in ok
        assert "dag bundle s3-dags -> airflow.providers.amazon.aws.bundles.s3.S3DagBundle" in ok
        assert "task handler airflow.providers.amazon.aws.log.s3_task_handler.S3TaskHandler" in ok


def test_both_executors_import_in_real_airflow(checked):
    result, lines = checked
    assert result.returncode == 0 and errors(lines, executor=True) == [], result.stdout[-3000:]
    assert sum("executor CeleryExecutor -> " in line for line in lines) == len(environments.NAMES)
    assert sum("executor KubernetesExecutor -> " in line for line in lines) == len(environments.NAMES)


def test_checker_fails_on_a_misspelled_option_a_bad_type_and_bad_backend_kwargs(stacks, tmp_path):
    values = airflow_values(stacks, "dev")
    values["config"]["dag_processor"]["refresh_intervall"] = 60             # misspelled option
    values["config"]["api"]["dag_cache_size"] = "sixty-four"               # not an integer
    values["env"].append({"name": "AIRFLOW__API__BASE_URLL", "value": "https://x/"})
    kwargs = json.loads(values["config"]["secrets"]["backend_kwargs"])
    values["config"]["secrets"]["backend_kwargs"] = json.dumps({**kwargs, "kubernetes_rol": "airflow"})
    values["dagProcessor"]["dagBundleConfigList"][0]["kwargs"]["bucket"] = "x"   # S3DagBundle has no `bucket`
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(values))
    result = run_in_airflow(CHECK, str(path))
    assert result.returncode == 1
    found = "\n".join(errors(result.stdout.splitlines(), executor=False))
    assert "[dag_processor] refresh_intervall is not an option" in found
    assert "[api] base_urll is not an option" in found
    assert "[api] dag_cache_size='sixty-four' does not read as integer" in found
    assert "['kubernetes_rol'] are not parameters of VaultBackend or its client" in found
    assert "dag_bundle_config_list does not load" in found


def test_metadata_urls_name_the_driver_real_airflow_loads(stacks):
    """A bare postgresql:// is psycopg 3 under SQLAlchemy 2.1 (named prepared statements through PgBouncer's
    transaction pooling); the generated sync URL names psycopg2, the async one asyncpg, and both load here."""
    objects = json.loads(stacks["airflow-dev-platform"]["resource"]["helm_release"]["platform-bootstrap"]["values"][0])
    (metadata,) = [o for o in objects["objects"] if o["kind"] == "ExternalSecret"
                   and o["metadata"]["name"] == "airflow-metadata-db"]
    urls = metadata["spec"]["target"]["template"]["data"]
    sample = lambda url: url.replace("{{ .username | urlquery }}", "u").replace("{{ .password | urlquery }}", "p")  # noqa: E731
    result = run_in_airflow(DRIVERS, sample(urls["connection"]), sample(urls["async-connection"]),
                            "postgresql://u:p@h/db")
    assert result.stdout.splitlines() == ["postgresql+psycopg2 -> psycopg2 (psycopg2)",
                                          "postgresql+asyncpg -> asyncpg (asyncpg)",
                                          "postgresql -> psycopg (psycopg)"], result.stdout + result.stderr


def test_the_image_runs_the_airflow_the_tests_install():
    """Tested = deployed: requirements/airflow.txt pins the Airflow of the default image tag."""
    from modules.platform.airflow_settings import AIRFLOW_VERSION, PYTHON_VERSION, AirflowSettings

    pins = dict(line.split("==", 1) for line in (ROOT / "requirements" / "airflow.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert (pins["apache-airflow"], pins["apache-airflow-core"]) == (AIRFLOW_VERSION, AIRFLOW_VERSION)
    assert AirflowSettings().image_tag == f"{AIRFLOW_VERSION}-python{PYTHON_VERSION}"
    for name in environments.NAMES:
        assert environments.load(name).airflow.airflow_version == AIRFLOW_VERSION
    import subprocess
    from tests.harness import airflow_python
    version = subprocess.run([str(airflow_python()), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == PYTHON_VERSION            # the image's Python minor is the one the tests run on
