"""Airflow's own database roles, so that nothing Airflow runs ever holds the RDS master password.

- `airflow` (APP_ROLE) owns the metadata database: Airflow's migrations, scheduler, API server, DAG processor and
  triggerer connect as it (through PgBouncer). It is a plain login role: no CREATEROLE, no CREATEDB.
- `airflow_monitor` (MONITOR_ROLE) can do two things: run `monitor.celery_tasks()` (a SECURITY DEFINER function that
  counts the Celery tasks queued or running, for KEDA's worker scaler) and be PgBouncer's `stats_users` login (the
  metrics exporter). It cannot read a table: `public` is closed to it.
- The RDS master user is break-glass only. RDS rotating its password breaks nothing, because nothing long-running
  uses it: only the role-setup Job below reads it, at deploy time.

The Job runs in its own namespace (k8s.DATABASE_ADMIN_NAMESPACE), the only one whose ExternalSecret names the
master secret: a namespace's pods can mount any Secret of that namespace, and DAG authors start pods in `airflow`.
IAM enforces it too: that ExternalSecret reads through ADMIN_STORE, a SecretStore of this namespace that assumes a
role only External Secrets' role may assume and only this store names (modules/aws/secret_reader.py); the shared
ClusterSecretStore does not serve this namespace, and its identity cannot read the master secret.
It is a post-install/post-upgrade hook of the platform-bootstrap chart, so the roles exist, with the current
passwords, before the Airflow release (which depends on that chart) migrates or starts anything. ROLE_SETUP_SCRIPT
is idempotent and runs in one transaction, with search_path pg_catalog (nothing the application role plants in
`public` runs with the master's rights); the passwords go to PostgreSQL as SCRAM verifiers computed in the pod, so
no statement log can show them. tests/modules/platform/test_database_roles.py runs it against a real
PostgreSQL 15 as a non-superuser master with CREATEROLE and CREATEDB, the rights RDS's master has that matter here.
"""
from __future__ import annotations

from typing import Any

from . import kubernetes as k8s

APP_ROLE = "airflow"
MONITOR_ROLE = "airflow_monitor"
MONITOR_CONNECTION_LIMIT = 5        # KEDA's scaler and the PgBouncer exporter, with room for one operator session
MONITOR_SCHEMA = "monitor"
CELERY_TASKS_FUNCTION = f"{MONITOR_SCHEMA}.celery_tasks"

NAMESPACE = k8s.DATABASE_ADMIN_NAMESPACE
JOB = "airflow-db-roles"
SERVICE_ACCOUNT = JOB
ADMIN_SECRET = "airflow-db-admin"   # master-username, master-password, app-password, monitor-password
ADMIN_STORE = "db-admin-secrets"    # SecretStore (AWS Secrets Manager through the db-admin-secrets role)
SCRIPT_CONFIGMAP = "airflow-db-roles-script"
SCRIPT_DIR = "/opt/airflow-db-roles"
SECRETS_DIR = "/var/run/secrets/airflow-db-admin"
CERTS_DIR = "/etc/airflow-db-roles/certs"

# The RDS CA bundle: fetched by External Secrets Operator (which has egress) from AWS's trust store over verified
# HTTPS and refreshed daily, so CA rotations arrive without an image rebuild and no pod needs internet access.
RDS_CA_SECRET = "airflow-rds-ca-bundle"         # global-bundle.pem
RDS_CA_STORE = "rds-ca-bundle"                  # SecretStore (webhook provider) serving the bundle
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
RDS_CA_KEY = "global-bundle.pem"

# Runs as the master user, in one transaction (all or nothing), and is safe to run again: each run sets the
# passwords the Secrets Manager secret holds now and re-asserts every grant.
ROLE_SETUP_SCRIPT = r'''
import base64, hashlib, hmac, os, secrets
import psycopg2
from psycopg2 import sql


def read(name):
    with open(os.path.join(os.environ["DB_ADMIN_SECRETS"], name), encoding="utf-8") as f:
        return f.read()


def scram(password):
    """The SCRAM-SHA-256 verifier PostgreSQL stores (RFC 7677), made here: the password never reaches the server."""
    salt, iterations = secrets.token_bytes(16), 4096
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda raw: base64.b64encode(raw).decode()
    # %-formatting: the script travels inside Terraform JSON, where a dollar sign before a brace would interpolate.
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(hashlib.sha256(client_key).digest()),
                                          b64(server_key))


app, monitor, schema = os.environ["APP_ROLE"], os.environ["MONITOR_ROLE"], os.environ["MONITOR_SCHEMA"]
master = read("master-username")
I, L, Q = sql.Identifier, sql.Literal, sql.SQL
# search_path pg_catalog only: the application role owns `public` and could plant operators or functions there that
# unqualified names in these statements would otherwise resolve to, and run them with the master's rights.
conn = psycopg2.connect(user=master, password=read("master-password"), connect_timeout=10,
                        application_name="airflow-db-roles", options="-c search_path=pg_catalog,pg_temp")
with conn, conn.cursor() as cur:
    cur.execute("SELECT current_database()")
    (database,) = cur.fetchone()
    for role, password, limit in ((app, read("app-password"), -1),
                                  (monitor, read("monitor-password"), int(os.environ["MONITOR_CONNECTION_LIMIT"]))):
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(Q(verb + " ROLE {} WITH LOGIN NOCREATEDB NOCREATEROLE CONNECTION LIMIT {} PASSWORD {}").format(
            I(role), L(limit), L(scram(password))))
        print(f"{'updated' if verb == 'ALTER' else 'created'} role {role}")
    # The master hands the database to the application role, which needs membership in it (PostgreSQL 15).
    cur.execute(Q("GRANT {} TO {}").format(I(app), I(master)))
    cur.execute(Q("ALTER DATABASE {} OWNER TO {}").format(I(database), I(app)))
    cur.execute(Q("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(I(database)))
    cur.execute(Q("GRANT CONNECT ON DATABASE {} TO {}").format(I(database), I(monitor)))
    # Objects an earlier Airflow created as the master user move to the application role (tables first: their
    # owned sequences follow them), and so does `public` itself where an older PostgreSQL gave it to the master.
    cur.execute("SELECT n.nspowner = r.oid FROM pg_namespace n, pg_roles r WHERE n.nspname = 'public' AND "
                "r.rolname = %s", (master,))
    if cur.fetchone()[0]:
        cur.execute(Q("ALTER SCHEMA public OWNER TO {}").format(I(app)))
    moved = 0
    for kinds in ("rpvmf", "S"):
        cur.execute("SELECT c.relkind, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_roles r ON r.oid = c.relowner WHERE n.nspname = 'public' AND r.rolname = %s "
                    "AND c.relkind = ANY(%s)", (master, list(kinds)))
        for kind, name in cur.fetchall():
            keyword = {"v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE", "S": "SEQUENCE"}.get(kind, "TABLE")
            cur.execute(Q("ALTER " + keyword + " public.{} OWNER TO {}").format(I(name), I(app)))
            moved += 1
    cur.execute("SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_roles r "
                "ON r.oid = t.typowner WHERE n.nspname = 'public' AND r.rolname = %s AND t.typtype IN ('e', 'd')",
                (master,))
    for (name,) in cur.fetchall():
        cur.execute(Q("ALTER TYPE public.{} OWNER TO {}").format(I(name), I(app)))
        moved += 1
    cur.execute("SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "JOIN pg_roles r ON r.oid = p.proowner WHERE n.nspname = 'public' AND r.rolname = %s", (master,))
    for (signature,) in cur.fetchall():
        cur.execute(Q("ALTER ROUTINE " + signature + " OWNER TO {}").format(I(app)))
        moved += 1
    print(f"moved {moved} objects of {master} in public to {app}")
    cur.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    # KEDA's question, answered with the application role's rights and nothing else. plpgsql resolves the table
    # when it runs, so this works before the first migration too (and answers 0).
    cur.execute(Q("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(I(schema), I(app)))
    cur.execute(Q("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(I(schema)))
    cur.execute(Q("GRANT USAGE ON SCHEMA {} TO {}").format(I(schema), I(monitor)))
    cur.execute(Q("""CREATE OR REPLACE FUNCTION {}.celery_tasks() RETURNS bigint LANGUAGE plpgsql STABLE
        SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
        BEGIN
          RETURN (SELECT count(*) FROM public.task_instance WHERE state IN ('queued', 'running')
                  AND (executor IS NULL OR executor = 'CeleryExecutor'));
        EXCEPTION WHEN undefined_table OR undefined_column THEN
          RETURN 0;
        END $fn$""").format(I(schema)))
    cur.execute(Q("ALTER FUNCTION {}.celery_tasks() OWNER TO {}").format(I(schema), I(app)))
    cur.execute(Q("REVOKE ALL ON FUNCTION {}.celery_tasks() FROM PUBLIC").format(I(schema)))
    cur.execute(Q("GRANT EXECUTE ON FUNCTION {}.celery_tasks() TO {}").format(I(schema), I(monitor)))
conn.close()
print(f"database {database}: owned by {app}; {monitor} may run {schema}.celery_tasks() only")
'''


def script_env(*, secrets_dir: str = SECRETS_DIR) -> dict[str, str]:
    """What ROLE_SETUP_SCRIPT reads besides libpq's PG* variables."""
    return {"DB_ADMIN_SECRETS": secrets_dir, "APP_ROLE": APP_ROLE, "MONITOR_ROLE": MONITOR_ROLE,
            "MONITOR_SCHEMA": MONITOR_SCHEMA, "MONITOR_CONNECTION_LIMIT": str(MONITOR_CONNECTION_LIMIT)}


def celery_tasks_query(worker_concurrency: int) -> str:
    """KEDA's query: workers wanted = ceil(Celery tasks queued or running / slots per worker)."""
    return f"SELECT ceil({CELERY_TASKS_FUNCTION}()::decimal / {int(worker_concurrency)})"


def rds_ca_objects(namespace: str) -> list[dict[str, Any]]:
    """A SecretStore serving AWS's RDS CA bundle and the ExternalSecret that puts it into Secret RDS_CA_SECRET."""
    store = {"apiVersion": k8s.EXTERNAL_SECRETS_API_VERSION, "kind": "SecretStore",
             "metadata": {"name": RDS_CA_STORE, "namespace": namespace},
             "spec": {"provider": {"webhook": {"url": RDS_CA_BUNDLE_URL, "method": "GET", "timeout": "30s",
                                               "result": {}}}}}
    bundle = k8s.external_secret(name=RDS_CA_SECRET, namespace=namespace, refresh_interval="24h", data=[
        {"secretKey": RDS_CA_KEY, "remoteRef": {"key": "global-bundle"}}])
    bundle["spec"]["secretStoreRef"] = {"name": RDS_CA_STORE, "kind": "SecretStore"}
    return [store, bundle]


def admin_secret_store(*, region: str, role_arn: str) -> dict[str, Any]:
    """The namespace's own Secrets Manager store: External Secrets assumes `role_arn` (the only role that may read
    the master secret, and only External Secrets' role may assume it) for this namespace's ExternalSecrets."""
    return {"apiVersion": k8s.EXTERNAL_SECRETS_API_VERSION, "kind": "SecretStore",
            "metadata": {"name": ADMIN_STORE, "namespace": NAMESPACE},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": region, "role": role_arn}}}}


def role_setup_objects(*, database_host: str, database_port: int, database_name: str, master_secret_arn: str,
                       users_secret_name: str, region: str, admin_secrets_role_arn: str, image: str,
                       pod_security_context: dict[str, Any],
                       container_security_context: dict[str, Any]) -> list[dict[str, Any]]:
    """The Job (a post-install/post-upgrade hook of the bootstrap chart) and what it mounts, all in NAMESPACE."""
    store = admin_secret_store(region=region, role_arn=admin_secrets_role_arn)
    admin = k8s.external_secret(name=ADMIN_SECRET, namespace=NAMESPACE, data=[
        *({"secretKey": f"master-{key}", "remoteRef": {"key": master_secret_arn, "property": key}}
          for key in ("username", "password")),
        *({"secretKey": key, "remoteRef": {"key": users_secret_name, "property": key}}
          for key in ("app-password", "monitor-password"))])
    admin["spec"]["secretStoreRef"] = {"name": ADMIN_STORE, "kind": "SecretStore"}
    script = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": SCRIPT_CONFIGMAP, "namespace": NAMESPACE},
              "data": {"setup.py": ROLE_SETUP_SCRIPT.lstrip()}}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "automountServiceAccountToken": False,
               "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}}
    env = {**script_env(), "PGHOST": database_host, "PGPORT": str(database_port), "PGDATABASE": database_name,
           "PGSSLMODE": "verify-full", "PGSSLROOTCERT": f"{CERTS_DIR}/{RDS_CA_KEY}", "PYTHONDONTWRITEBYTECODE": "1"}
    labels = {"app.kubernetes.io/name": JOB, "app.kubernetes.io/part-of": "airflow"}
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": JOB, "namespace": NAMESPACE, "labels": labels, "annotations": {
            # After every install and upgrade of the bootstrap chart, before anything that depends on it; a failed
            # run stays for `kubectl logs`, a successful one is removed.
            "helm.sh/hook": "post-install,post-upgrade", "helm.sh/hook-weight": "0",
            "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}},
        "spec": {"backoffLimit": 4, "activeDeadlineSeconds": 900, "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never", "serviceAccountName": SERVICE_ACCOUNT,
                "automountServiceAccountToken": False, "securityContext": dict(pod_security_context),
                "containers": [{
                    "name": "db-roles", "image": image, "imagePullPolicy": "IfNotPresent",
                    # Not the image's entrypoint: it would wait for Airflow's own database connection, which this
                    # pod does not have.
                    "command": ["python", f"{SCRIPT_DIR}/setup.py"],
                    "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
                    "securityContext": dict(container_security_context),
                    "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                                  "limits": {"cpu": "500m", "memory": "256Mi"}},
                    "volumeMounts": [{"name": "admin", "mountPath": SECRETS_DIR, "readOnly": True},
                                     {"name": "script", "mountPath": SCRIPT_DIR, "readOnly": True},
                                     {"name": "certs", "mountPath": CERTS_DIR, "readOnly": True}]}],
                # 0440 with the pod's fsGroup: readable by its user's group only.
                "volumes": [{"name": "admin", "secret": {"secretName": ADMIN_SECRET, "defaultMode": 0o440}},
                            {"name": "script", "configMap": {"name": SCRIPT_CONFIGMAP, "defaultMode": 0o444}},
                            {"name": "certs", "secret": {"secretName": RDS_CA_SECRET, "defaultMode": 0o444}}]}}}}
    return [account, store, admin, script, *rds_ca_objects(NAMESPACE), job]
