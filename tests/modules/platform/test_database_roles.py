"""modules/platform/database_roles.py: the role-setup Job's objects, and its script run for real against PostgreSQL 15
(TLS, verify-full) as a master user with the rights RDS's master has that matter here: CREATEROLE and CREATEDB, not
superuser, owner of the database it created."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from modules.platform import database_roles as dbr
from modules.platform import kubernetes as k8s
from modules.platform.airflow import CONTAINER_SECURITY_CONTEXT, AirflowSettings, bootstrap_objects, pod_security_context
from tests.modules.platform.test_airflow import INFRA, by_name
from tools import local_services as ls

ROOT = Path(__file__).resolve().parents[3]
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"      # has psycopg2, as the Airflow image does
SUPERUSER, SUPER_PASSWORD = "postgres", "super-secret-pw"
MASTER, MASTER_PASSWORD = "airflow_admin", "master-pw-0123456789"
DATABASE = "airflow"


# ---- the objects ----------------------------------------------------------------------------------------------

def objects() -> dict[str, dict]:
    return by_name(bootstrap_objects(settings=AirflowSettings(), **INFRA))


def test_the_master_secret_is_named_only_in_the_job_namespace_and_mounted_only_by_the_job():
    objs = objects()
    master_refs = [name for name, o in objs.items() if o["kind"] == "ExternalSecret" and any(
        d["remoteRef"]["key"] == INFRA["database_master_secret_arn"] for d in o["spec"]["data"])]
    assert master_refs == [f"ExternalSecret/{dbr.NAMESPACE}/{dbr.ADMIN_SECRET}"]
    admin = objs[master_refs[0]]["spec"]["data"]
    assert {d["secretKey"]: (d["remoteRef"]["key"], d["remoteRef"].get("property")) for d in admin} == {
        "master-username": (INFRA["database_master_secret_arn"], "username"),
        "master-password": (INFRA["database_master_secret_arn"], "password"),
        "app-password": ("airflow-test/airflow/database-users", "app-password"),
        "monitor-password": ("airflow-test/airflow/database-users", "monitor-password")}
    # ... through the namespace's own store, which assumes the one role that may read it (modules/aws/secret_reader.py)
    assert objs[master_refs[0]]["spec"]["secretStoreRef"] == {"name": dbr.ADMIN_STORE, "kind": "SecretStore"}
    store = objs[f"SecretStore/{dbr.NAMESPACE}/{dbr.ADMIN_STORE}"]
    assert store["spec"] == {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1",
                                                  "role": INFRA["database_admin_secrets_role_arn"]}}}
    assert [n for n, o in objs.items() if o["kind"] == "SecretStore" and "aws" in o["spec"]["provider"]] == [
        f"SecretStore/{dbr.NAMESPACE}/{dbr.ADMIN_STORE}"]
    pods = [o for o in objs.values() if o["kind"] in ("Job", "Deployment", "CronJob")]
    mounting = [p["metadata"]["name"] for p in pods for vol in p["spec"]["template"]["spec"].get("volumes", [])
                if vol.get("secret", {}).get("secretName") == dbr.ADMIN_SECRET]
    assert mounting == [dbr.JOB] and objs[f"Job/{dbr.NAMESPACE}/{dbr.JOB}"]["metadata"]["namespace"] == \
        k8s.DATABASE_ADMIN_NAMESPACE != k8s.AIRFLOW_NAMESPACE


def test_the_job_runs_after_every_bootstrap_install_and_upgrade_restricted_and_verifying_rds():
    job = objects()[f"Job/{dbr.NAMESPACE}/{dbr.JOB}"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert "hook-succeeded" in job["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["PGSSLMODE"], env["PGHOST"], env["PGDATABASE"]) == ("verify-full", "db.example.internal", "airflow")
    assert env["PGSSLROOTCERT"] == f"{dbr.CERTS_DIR}/{dbr.RDS_CA_KEY}"
    assert container["securityContext"] == CONTAINER_SECURITY_CONTEXT
    assert spec["securityContext"] == pod_security_context(50000, 0) and spec["automountServiceAccountToken"] is False
    assert container["image"] == AirflowSettings().image_reference
    assert job["spec"]["activeDeadlineSeconds"] <= 900 and job["spec"]["backoffLimit"] <= 5
    script = objects()[f"ConfigMap/{dbr.NAMESPACE}/{dbr.SCRIPT_CONFIGMAP}"]["data"]["setup.py"]
    assert container["command"] == ["python", f"{dbr.SCRIPT_DIR}/setup.py"] and script == dbr.ROLE_SETUP_SCRIPT.lstrip()
    assert "${" not in script and "%{" not in script     # it travels through Terraform JSON as a literal
    assert f"SecretStore/{dbr.NAMESPACE}/{dbr.RDS_CA_STORE}" in objects()


# ---- the script, for real ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    if not AIRFLOW_PYTHON.exists():
        pytest.fail(f"{AIRFLOW_PYTHON} is missing: run `make install`")
    work = tmp_path_factory.mktemp("db-roles")
    tls = ls.make_ca(work / "tls")
    service = ls.start_postgres(work, tls=tls, superuser=SUPERUSER, password=SUPER_PASSWORD)
    try:
        sql = lambda q: ls.psql(service.port, q, tls=tls, user=SUPERUSER, password=SUPER_PASSWORD)  # noqa: E731
        # RDS's master: CREATEROLE and CREATEDB, not superuser; it creates and owns the database.
        sql(f"CREATE ROLE {MASTER} LOGIN CREATEROLE CREATEDB PASSWORD '{MASTER_PASSWORD}'")
        sql("ALTER SYSTEM SET log_statement = 'all'")      # so the test can show what the server log would hold
        sql("SELECT pg_reload_conf()")
        ls.psql(service.port, f"CREATE DATABASE {DATABASE}", tls=tls, user=MASTER, password=MASTER_PASSWORD)
        yield service, tls, work
    finally:
        service.stop()


def as_user(postgres, user: str, password: str, query: str) -> str:
    service, tls, _ = postgres
    return ls.psql(service.port, query, tls=tls, user=user, password=password, database=DATABASE)


def run_script(postgres, *, app_password: str, monitor_password: str, master_password: str = MASTER_PASSWORD):
    service, tls, work = postgres
    secrets = work / "secrets"
    secrets.mkdir(exist_ok=True)
    for name, value in (("master-username", MASTER), ("master-password", master_password),
                        ("app-password", app_password), ("monitor-password", monitor_password)):
        (secrets / name).write_text(value)                  # no newline: ESO writes the bare value
    script = work / "setup.py"
    script.write_text(dbr.ROLE_SETUP_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(dbr.script_env(secrets_dir=str(secrets)), PGHOST=tls.hostname, PGHOSTADDR="127.0.0.1",
               PGPORT=str(service.port), PGDATABASE=DATABASE, PGSSLMODE="verify-full", PGSSLROOTCERT=str(tls.ca_cert))
    return subprocess.run([str(AIRFLOW_PYTHON), str(script)], env=env, capture_output=True, text=True, timeout=60)


def test_the_script_hands_the_database_to_airflows_role_and_gives_the_monitor_one_function(postgres):
    # What an Airflow that ran as the master user would have left behind: its tables belong to the master.
    as_user(postgres, MASTER, MASTER_PASSWORD,
            "CREATE TABLE task_instance (id serial PRIMARY KEY, state text, executor text); "
            "INSERT INTO task_instance (state, executor) VALUES ('queued', NULL), ('running', 'CeleryExecutor'), "
            "('running', 'KubernetesExecutor'), ('success', NULL), ('queued', NULL)")
    result = run_script(postgres, app_password="AppPassword0123456789", monitor_password="MonPassword0123456789")
    assert result.returncode == 0, result.stderr
    assert "moved 1 objects of airflow_admin in public to airflow" in result.stdout    # the table (its sequence follows)

    app = lambda q: as_user(postgres, dbr.APP_ROLE, "AppPassword0123456789", q)  # noqa: E731
    monitor = lambda q: as_user(postgres, dbr.MONITOR_ROLE, "MonPassword0123456789", q)  # noqa: E731
    # Airflow's role owns the database and what is in it, can migrate (create), and is nothing more.
    assert app("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()") == "airflow"
    assert app("SELECT tableowner FROM pg_tables WHERE tablename = 'task_instance'") == "airflow"
    assert app("SELECT sequenceowner FROM pg_sequences WHERE sequencename = 'task_instance_id_seq'") == "airflow"
    app("CREATE TABLE migration_probe (x int); INSERT INTO task_instance (state) VALUES ('running'); "
        "DROP TABLE migration_probe")
    assert app("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user") == "f|f|f"
    # The monitor counts Celery tasks queued or running (not KubernetesExecutor's, not finished ones) ...
    assert monitor(dbr.celery_tasks_query(2)) == "2"           # ceil(4 / 2)
    assert monitor(f"SELECT {dbr.CELERY_TASKS_FUNCTION}()") == "4"
    # ... and can read nothing else, nor create anything.
    for query in ("SELECT count(*) FROM public.task_instance", "CREATE TABLE public.x (y int)",
                  "CREATE TABLE monitor.x (y int)"):
        with pytest.raises(ls.ServiceError, match="permission denied"):
            monitor(query)
    limit = app(f"SELECT rolconnlimit FROM pg_roles WHERE rolname = '{dbr.MONITOR_ROLE}'")
    assert limit == str(dbr.MONITOR_CONNECTION_LIMIT)


def test_a_second_run_rotates_the_passwords_and_no_password_reaches_the_server(postgres):
    first = run_script(postgres, app_password="AppPassword0123456789", monitor_password="MonPassword0123456789")
    second = run_script(postgres, app_password="RotatedApp9876543210", monitor_password="RotatedMon9876543210")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "updated role airflow" in second.stdout
    assert as_user(postgres, dbr.APP_ROLE, "RotatedApp9876543210", "SELECT current_user") == "airflow"
    with pytest.raises(ls.ServiceError, match="password authentication failed"):
        as_user(postgres, dbr.APP_ROLE, "AppPassword0123456789", "SELECT 1")
    service, tls, work = postgres
    stored = ls.psql(service.port, "SELECT rolname, rolpassword FROM pg_authid WHERE rolname LIKE 'airflow%' "
                     "AND rolname <> 'airflow_admin'", tls=tls, user=SUPERUSER, password=SUPER_PASSWORD)
    assert [row.split("|")[1].split("$")[0] for row in stored.splitlines()] == ["SCRAM-SHA-256"] * 2
    time.sleep(0.5)                                            # the log is written by the server process
    log = (work / "postgres.log").read_text(errors="replace")
    assert "ALTER ROLE" in log                                 # statements are logged ...
    for password in ("AppPassword0123456789", "MonPassword0123456789", "RotatedApp9876543210"):
        assert password not in log                             # ... yet no password is in them


def test_what_the_application_role_plants_in_public_never_runs_with_the_masters_rights(postgres):
    """The application role owns `public`. An operator it plants there for a comparison the script makes
    (`"char" = text` has no exact operator in pg_catalog, so PostgreSQL would pick the planted one) must not run
    when the master runs the script again (security review H2)."""
    app_password, monitor_password = "AppPassword0123456789", "MonPassword0123456789"
    assert run_script(postgres, app_password=app_password, monitor_password=monitor_password).returncode == 0
    as_user(postgres, dbr.APP_ROLE, app_password, """
      CREATE TABLE public.planted_ran (who text);
      GRANT ALL ON public.planted_ran TO PUBLIC;
      CREATE FUNCTION public.planted("char", text) RETURNS bool LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO public.planted_ran VALUES (current_user);
          BEGIN EXECUTE 'ALTER ROLE airflow CREATEROLE'; EXCEPTION WHEN others THEN NULL; END;
          RETURN $1::text = $2;
        END $$;
      CREATE OPERATOR public.= (LEFTARG = "char", RIGHTARG = text, FUNCTION = public.planted);""")
    # The planted operator is live for any session that searches public ...
    assert as_user(postgres, dbr.APP_ROLE, app_password, "SELECT 'r'::\"char\" = 'r'::text") == "t"
    assert as_user(postgres, dbr.APP_ROLE, app_password, "SELECT count(*) FROM public.planted_ran") == "1"
    # ... but not for the role script, run as the master.
    result = run_script(postgres, app_password=app_password, monitor_password=monitor_password)
    assert result.returncode == 0, result.stderr
    assert as_user(postgres, dbr.APP_ROLE, app_password, "SELECT string_agg(who, ',') FROM public.planted_ran") == "airflow"
    assert as_user(postgres, dbr.APP_ROLE, app_password,
                   "SELECT rolcreaterole FROM pg_roles WHERE rolname = 'airflow'") == "f"
    as_user(postgres, dbr.APP_ROLE, app_password, "DROP OPERATOR public.= (\"char\", text); DROP FUNCTION "
            "public.planted(\"char\", text); DROP TABLE public.planted_ran")


def test_a_wrong_master_password_fails_the_job_and_changes_nothing(postgres):
    result = run_script(postgres, app_password="NeverSet0123456789", monitor_password="NeverSet0123456789",
                        master_password="wrong")
    assert result.returncode != 0 and "password authentication failed" in result.stderr
    with pytest.raises(ls.ServiceError, match="password authentication failed"):
        as_user(postgres, dbr.APP_ROLE, "NeverSet0123456789", "SELECT 1")
