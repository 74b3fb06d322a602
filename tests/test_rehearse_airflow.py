"""`make rehearse-airflow` (tools/rehearse_airflow.py): the Airflow data path run for real, and the derivation of its
configuration from the synthesized stacks (tools/airflow_local_config.py), whose adaptations must stay the
allowed ones: loopback endpoints, the rehearsal's CA and files, test AWS keys, Vault token auth, CeleryExecutor."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import environments

from tools.airflow_local_config import (Credentials, Endpoints, RehearsalConfigError, Stacks, build,
                                        render_eso_template)
from tools.rehearse_airflow import LOCK, percentile

ROOT = Path(__file__).resolve().parent.parent
WORK = Path("/rehearsal")
ENDPOINTS = Endpoints(workdir=WORK, ca_cert=WORK / "certs/ca.crt", server_cert=WORK / "certs/server.crt",
                      server_key=WORK / "certs/server.key", postgres_port=15432, pgbouncer_port=16543,
                      redis_port=16379, vault_port=18200, vault_token="s.token", moto_endpoint="http://127.0.0.1:15000",
                      api_port=18080, statsd_port=19125, trust_bundle=WORK / "certs/trust-bundle.pem",
                      worker_log_port=18793, trigger_log_port=18794)
CREDS = Credentials(db_username="airflow_admin", db_password="p%w/d@+x", app_password="App0123456789",
                    monitor_password="Mon0123456789", flask_secret_key="fl", redis_token="t/k%+n", fernet_key="f",
                    jwt_secret="j", api_secret_key="a")


@pytest.fixture(scope="module")
def dev_stacks(stacks) -> Stacks:
    return Stacks(stacks["airflow-dev-infra"], stacks["airflow-dev-platform"], stacks["airflow-dev-vault-config"])


@pytest.fixture(scope="module")
def local(dev_stacks):
    return build(dev_stacks, ENDPOINTS, CREDS)


def test_templates_render_like_external_secrets_urlquery():
    assert render_eso_template("x://{{ .password | urlquery }}@h", {"password": "p%w/d@+ x"}) == "x://p%25w%2Fd%40%2B+x@h"
    assert render_eso_template('"{{ .username }}"', {"username": "u"}) == '"u"'
    with pytest.raises(RehearsalConfigError, match=r"needs \.token"):
        render_eso_template("{{ .token }}", {})
    with pytest.raises(RehearsalConfigError, match="'b64enc' is not supported"):
        render_eso_template("{{ .password | b64enc }}", {"password": "p"})


def test_every_synthesized_airflow_option_reaches_airflow_unchanged_but_the_named_adaptations(dev_stacks, local):
    values = dev_stacks.airflow_values()
    adapted = {("api", "base_url"), ("secrets", "backend_kwargs"), ("core", "execution_api_server_url")}
    for section, options in values["config"].items():
        for key, value in options.items():
            name = f"AIRFLOW__{section.upper()}__{key.upper()}"
            if (section, key) in adapted:
                continue
            if "${" in str(value):      # the task-logs bucket's name, from the infra stack
                bucket = environments.load("dev").bucket_name("task-logs")
                assert local.env[name] == re.sub(r"\$\{[^}]*\}", bucket, str(value))
                continue
            # file paths are mapped to the rehearsal's files (the platform CA -> the rehearsal CA)
            assert local.env[name] == str(value).replace("/opt/airflow/certs/platform-ca.crt",
                                                         str(ENDPOINTS.ca_cert)), name
    # HTTPS as in the cluster, verified against the rehearsal CA only; the API server alone gets the certificate.
    assert local.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "https://localhost:18080/execution/"
    assert (local.env["AIRFLOW__API__SSL_CA_FILE"], local.env["AIRFLOW__API__CLIENT_USE_PUBLIC_CERTS"]) == (
        str(ENDPOINTS.ca_cert), "False")
    assert local.api_server_env == {"AIRFLOW__API__SSL_CERT": str(ENDPOINTS.server_cert),
                                    "AIRFLOW__API__SSL_KEY": str(ENDPOINTS.server_key)}
    assert not [name for name in local.env if name.startswith("AIRFLOW__API__SSL_CERT")]
    backend = json.loads(values["config"]["secrets"]["backend_kwargs"])
    rehearsed = json.loads(local.env["AIRFLOW__SECRETS__BACKEND_KWARGS"])
    # Only where Vault is and how the pod logs in differ; the mount, paths, KV version and CA verification do not.
    kept = {k: v for k, v in backend.items() if k not in ("url", "auth_type", "kubernetes_role", "auth_mount_point",
                                                          "verify")}
    assert {k: rehearsed[k] for k in kept} == kept
    assert (rehearsed["auth_type"], rehearsed["url"], rehearsed["verify"]) == (
        "token", "https://localhost:18200", str(ENDPOINTS.ca_cert))
    assert local.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for item in values["env"]:
        assert local.env[item["name"]] == item["value"].replace("/opt/airflow/certs/platform-ca.crt",
                                                               str(ENDPOINTS.ca_cert))


def test_airflow_gets_nothing_but_the_synthesized_config_the_chart_wiring_and_named_additions(dev_stacks, local):
    """Every variable Airflow receives is a synthesized option, an env entry of the values, a Secret the chart wires,
    a chart default, or one of the rehearsal's named additions: nothing tunes Airflow behind the report's back."""
    from tools.airflow_local_config import CHART_CONFIG_DEFAULTS

    values = dev_stacks.airflow_values()
    option = lambda section, key: f"AIRFLOW__{section.upper()}__{key.upper()}"  # noqa: E731
    synthesized = {option(s, k) for s, options in values["config"].items() for k in options}
    synthesized |= {item["name"] for item in values["env"]}
    chart = {option(s, k) for s, options in CHART_CONFIG_DEFAULTS.items() for k in options} | {
        "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__WEBSERVER__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__METRICS__STATSD_HOST"}
    additions = {"AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
                 "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
                 "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED",
                 "SSL_CERT_FILE"}
    assert set(local.env) - synthesized - chart == additions
    # The database components' additions are exactly what their values take from the metadata Secret.
    assert set(local.database_env) == {e["name"] for e in values["scheduler"]["env"] if "valueFrom" in e
                                       and e["name"].startswith("AIRFLOW__DATABASE__")} == {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"}
    printed = "\n".join(local.adaptations.lines)
    for words in ("log servers", "dags_folder", "moto", "SSL_CERT_FILE", "CeleryExecutor", "OpenBao"):
        assert words in printed, words


def test_connections_are_the_generated_templates_with_tls_verified_and_secrets_escaped(dev_stacks, local):
    env, database = local.env, local.database_env
    # Airflow's own role, never the master; only for the components that use the database.
    assert database["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://airflow:App0123456789@localhost:16543/airflow-metadata"
        f"?sslmode=verify-full&sslrootcert={ENDPOINTS.ca_cert}")
    assert database["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == (
        "postgresql+asyncpg://airflow:App0123456789@localhost:16543/airflow-metadata?ssl=verify-full")
    assert not [name for name in env if "SQL_ALCHEMY" in name or name == "AIRFLOW_CONN_AIRFLOW_DB"]
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "rediss://:t%2Fk%25%2Bn@localhost:16379/0?ssl_cert_reqs=required"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "rediss://:t%2Fk%25%2Bn@localhost:16379/1?ssl_cert_reqs=required"
    assert local.keda_connection == ("postgresql://airflow_monitor:Mon0123456789@localhost:16543/airflow-metadata"
                                     f"?sslmode=verify-full&sslrootcert={ENDPOINTS.ca_cert}")
    concurrency = dev_stacks.airflow_values()["config"]["celery"]["worker_concurrency"]
    assert local.keda_query == f"SELECT ceil(monitor.celery_tasks()::decimal / {concurrency})"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_ENDPOINT_URL"]) == ("testing", "http://127.0.0.1:15000")
    assert not [name for name, value in env.items() if "${" in value or "{{" in value]


def test_pgbouncer_ini_keeps_every_generated_directive_but_endpoints_and_paths(dev_stacks, local):
    generated = dev_stacks.external_secret("airflow-pgbouncer-config")["pgbouncer.ini"].splitlines()
    rehearsed = local.files[WORK / "pgbouncer" / "pgbouncer.ini"].splitlines()
    changed = [line for line in generated if line not in rehearsed]
    assert sorted(line.split(" = ")[0] for line in changed) == sorted([
        "airflow-metadata", "auth_file", "client_tls_cert_file", "client_tls_key_file", "listen_addr", "listen_port",
        "server_tls_ca_file"])
    assert "max_prepared_statements = 200" in rehearsed and "server_tls_sslmode = verify-full" in rehearsed
    assert "airflow-metadata = host=localhost port=15432 dbname=airflow pool_size=10" in rehearsed
    assert local.files[WORK / "pgbouncer" / "users.txt"] == '"airflow" "App0123456789"\n"airflow_monitor" "Mon0123456789"\n'
    assert "stats_users = airflow_monitor" in rehearsed


def test_the_role_job_runs_its_synthesized_script_as_the_master_with_only_endpoints_adapted(dev_stacks, local):
    from modules.platform import database_roles as dbr
    job = local.role_job
    assert job.script == dbr.ROLE_SETUP_SCRIPT.lstrip()
    assert (job.env["PGHOST"], job.env["PGHOSTADDR"], job.env["PGPORT"]) == ("localhost", "127.0.0.1", "15432")
    assert (job.env["PGSSLMODE"], job.env["PGSSLROOTCERT"]) == ("verify-full", str(ENDPOINTS.ca_cert))
    assert {k: job.env[k] for k in dbr.script_env()} == dbr.script_env(secrets_dir=str(WORK / "db-admin"))
    files = {path.name: text for path, text in local.files.items() if path.parent == WORK / "db-admin"}
    assert files == {"master-username": "airflow_admin", "master-password": "p%w/d@+x",
                     "app-password": "App0123456789", "monitor-password": "Mon0123456789"}


def test_a_reference_the_rehearsal_cannot_place_is_refused(dev_stacks):
    platform = json.loads(json.dumps(dev_stacks.platform))
    release = platform["resource"]["helm_release"]["airflow"]
    values = json.loads(release["values"][0])
    values["config"]["core"] = {"mystery": "${data.terraform_remote_state.x.outputs.not-an-output}"}
    release["values"] = [json.dumps(values)]
    with pytest.raises(RehearsalConfigError, match="unknown reference"):
        build(Stacks(dev_stacks.infra, platform, dev_stacks.vault_config), ENDPOINTS, CREDS)


def test_percentile_is_nearest_rank():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == 5.0
    assert percentile([3.0, 1.0, 2.0, 4.0, 5.0], 50) == 3.0


def _leftovers(marker: str, pids: list[int]) -> list[str]:
    """Processes still running that the rehearsal started: the Airflow components it named, or anything whose
    command line, working directory or AIRFLOW_HOME is under its work directory (services, task processes)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue                                    # a zombie is stopped, waiting to be reaped
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if int(proc.name) in pids or marker in cmdline or marker in cwd or f"AIRFLOW_HOME=/tmp/{marker}" in environ:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def test_the_data_path_runs_end_to_end_and_a_second_run_is_refused():
    """The whole rehearsal, as `make rehearse-airflow` runs it. A second run started while the first holds the lock
    is refused (exit 2, one line) and the first still passes; nothing it started is left running."""
    command = [sys.executable, "-m", "tools.rehearse_airflow"]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (LOCK.exists() and LOCK.read_text().strip() == str(first.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        output, _ = first.communicate(timeout=900)
    finally:
        if first.poll() is None:
            first.terminate()                  # the rehearsal stops what it started on SIGTERM
            try:
                first.wait(timeout=90)
            except subprocess.TimeoutExpired:
                first.kill()
    assert second.returncode == 2, second.stdout + second.stderr
    assert second.stderr.strip() == (f"rehearse-airflow: another rehearsal is running (pid {first.pid}); "
                                     "wait for it to finish, or stop it")
    lines = output.splitlines()
    assert first.returncode == 0, output[-6000:]
    assert not [line for line in lines if line.startswith("FAIL")], output[-6000:]
    passed = [line for line in lines if line.startswith("PASS ")]
    for step in ("airflow db migrate through PgBouncer", "api-server health endpoint the ALB checks",
                 "DAGs load from the S3 DAG bundle", "the Celery worker ran it over the TLS broker",
                 "the task log lands in the task-logs bucket and the REST API serves it",
                 "a task reads a Variable and a Connection from Vault through VaultBackend"):
        assert any(line.startswith(f"PASS {step}") for line in passed), step
    assert sum(line.startswith("PASS event ") for line in passed) >= 5
    assert re.fullmatch(r"event latency over \d+ events \(idle \d+-\d+ s before each\): object landed -> DAG run "
                        r"created p50 [\d.]+ s p95 [\d.]+ s; "
                        r"-> task succeeded p50 [\d.]+ s p95 [\d.]+ s", lines[-1]), lines[-1]
    assert "  - executor: CeleryExecutor,KubernetesExecutor -> CeleryExecutor (no Kubernetes API here)" in lines
    start = lines.index("adaptations (everything else is the synthesized configuration):") + 1
    adaptations = [line for line in lines[start:] if line.startswith("  - ")]
    allowed = ("endpoint:", "files:", "executor:", "vault:", "aws:", "trust store:", "substitute:", "api-server runs",
               "role job:")
    assert adaptations and all(line[4:].startswith(allowed) for line in adaptations), adaptations
    (stopped,) = [line for line in lines if line.startswith("stopped ")]
    pids = [int(pid) for pid in re.search(r"Airflow pids ([\d ]+)\)", stopped).group(1).split()]
    assert len(pids) == 5
    assert _leftovers("rehearse-airflow-", pids) == []


def _pgbouncer_ini_with(ini: str, prepared: int | None) -> str:
    return ini if prepared is None else re.sub(r"(?m)^max_prepared_statements = \d+$",
                                               f"max_prepared_statements = {prepared}", ini)


def test_the_generated_pgbouncer_ini_lets_preparing_drivers_share_the_transaction_pool(local, tmp_path):
    """Why the ini sets max_prepared_statements: asyncpg (the async URL) names its prepared statements per process
    (__asyncpg_stmt_1__, ...) and psycopg 3 (a bare postgresql:// URL) per connection (_pg3_0, ...), so in
    transaction pooling two clients meet on one server connection with the same name. With the generated ini both
    work through real PgBouncer; with the setting at 0 both fail, psycopg 3 as the dag-processor did."""
    from tools import local_services as services
    from tests.harness import airflow_python

    tls = services.make_ca(tmp_path / "certs")
    endpoints = Endpoints(**{**ENDPOINTS.__dict__, "workdir": tmp_path, "ca_cert": tls.ca_cert,
                             "server_cert": tls.server_cert, "server_key": tls.server_key,
                             "pgbouncer_port": services.free_port()})
    outcomes = {}
    with services.start_postgres(tmp_path / "pg", tls=tls, superuser=CREDS.db_username,
                                 password=CREDS.db_password) as pg:
        services.create_database(pg, tls=tls, superuser=CREDS.db_username, password=CREDS.db_password,
                                 database=local.database_name)
        services.create_role(pg, tls=tls, superuser=CREDS.db_username, password=CREDS.db_password,
                             role="airflow", role_password=CREDS.app_password)       # Airflow's own role
        for prepared in (None, 0):
            directory = tmp_path / f"pgbouncer-{prepared}"
            directory.mkdir()
            ini = local.files[WORK / "pgbouncer" / "pgbouncer.ini"]
            ini = ini.replace(f"port={ENDPOINTS.postgres_port} ", f"port={pg.port} ").replace(
                f"listen_port = {ENDPOINTS.pgbouncer_port}", f"listen_port = {endpoints.pgbouncer_port}")
            ini = ini.replace(str(ENDPOINTS.ca_cert), str(tls.ca_cert)).replace(
                str(ENDPOINTS.server_cert), str(tls.server_cert)).replace(str(ENDPOINTS.server_key), str(tls.server_key))
            ini = ini.replace(str(WORK / "pgbouncer" / "users.txt"), str(directory / "users.txt"))
            (directory / "pgbouncer.ini").write_text(_pgbouncer_ini_with(ini, prepared))
            (directory / "users.txt").write_text(local.files[WORK / "pgbouncer" / "users.txt"])
            with services.start_pgbouncer(directory, ini=directory / "pgbouncer.ini") as pgb:
                result = subprocess.run(
                    [str(airflow_python()), str(ROOT / "tests" / "airflow_checks" / "prepared_statements.py"),
                     "localhost", str(pgb.port), "airflow-metadata", "airflow", CREDS.app_password],
                    capture_output=True, text=True, timeout=120, env={**os.environ, "PGSSLROOTCERT": str(tls.ca_cert)})
            outcomes[prepared] = result.stdout.splitlines() or [result.stderr[-2000:]]
    assert outcomes[None] == ["psycopg ok", "asyncpg ok"], outcomes
    # Without the tracking, psycopg 3's second client meets the first one's _pg3_0 on the shared server connection
    # (what the dag-processor hit with a bare postgresql:// URL), and asyncpg's client in a second process meets
    # the first process's __asyncpg_stmt_1__.
    assert outcomes[0][0] == 'psycopg ERROR DuplicatePreparedStatement: prepared statement "_pg3_0" already exists', \
        outcomes
    assert outcomes[0][1].startswith("asyncpg ERROR") and "__asyncpg_stmt_" in outcomes[0][1], outcomes


def test_each_process_gets_the_secrets_its_component_takes_and_the_worker_none_of_the_keys(local):
    ce = local.component_env
    assert ce["celery"] == {"AIRFLOW__API__SECRET_KEY": "a"} and ce["kubernetes"] == {}
    assert ce["scheduler"]["AIRFLOW__API_AUTH__JWT_SECRET"] == "j" and ce["apiServer"]["FAB_FLASK_SECRET_KEY"] == "fl"
    assert "AIRFLOW__API_AUTH__JWT_SECRET" not in ce["dagProcessor"] and "AIRFLOW__API_AUTH__JWT_SECRET" not in ce["triggerer"]
    assert not [n for n in local.env if "FERNET" in n or "JWT_SECRET" in n or n.endswith("__SECRET_KEY")]
