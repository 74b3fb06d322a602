"""Apache Airflow on EKS: the official Helm chart (1.21.0) with Airflow 3.3 (AIRFLOW_VERSION), and the secrets and certificates it
mounts and the admission policy its pods must pass, which this construct adds to the platform-bootstrap local chart
(installed before the release).

How the pieces connect (docs/airflow.md has the long form):
- Secrets reach pods as Kubernetes Secrets that External Secrets Operator renders from Secrets Manager (the
  passwords of Airflow's own database roles, the Redis AUTH token secret, the Airflow keys secret); the chart is
  only told their names (`data.metadataSecretName`, `data.brokerUrlSecretName`, `fernetKeySecretName`, ...). No
  secret value is in the values or in Terraform.
- Database access (modules/platform/database_roles.py): Airflow connects as its own role, never the RDS master user.
  Only the components that use the metadata database get its connection (scheduler, API server, DAG processor,
  triggerer, the migration job): Celery workers and KubernetesExecutor task pods hold no database credential
  (Airflow 3 tasks reach the metadata through the Execution API; Celery results go to Redis). KEDA counts Celery
  tasks as the read-only monitor role, through a TriggerAuthentication, not through the workers' environment.
- TLS chain: Airflow -> PgBouncer verifies PgBouncer's cert-manager certificate against the platform root CA
  (`sslmode=verify-full`, asyncpg `ssl=verify-full` + PGSSLROOTCERT); PgBouncer -> RDS verifies RDS against the
  RDS CA bundle (`server_tls_sslmode = verify-full`); Celery -> ElastiCache is `rediss://` with
  `ssl_cert_reqs=required` (ElastiCache serves publicly trusted certificates); Vault is verified against the
  platform CA. The API server serves HTTPS with a platform-CA certificate (API_SERVER_TLS_SECRET): the Execution
  API URL every worker, task pod, triggerer and dag-processor uses is https:// and verified against the platform
  CA only (`[api] ssl_ca_file`, `client_use_public_certs = False`); the ALB forwards to it over HTTPS too.
  What cannot be TLS here (the log servers) is in docs/tls.md.
- Identity: every component runs under the service account modules/aws/identity.py `workloads()` names, whose EKS
  Pod Identity association lives in the infra stack: remote logs, the S3 DAG bundle and the plugin sync use the
  boto3 default chain, never static keys.

Chart: https://airflow.apache.org (apache/airflow chart/ 1.21.0, appVersion 3.2.0; the same files as
tests/data/charts/airflow/, which the values are validated against).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from cdktf import ITerraformDependable
from cdktf_cdktf_provider_helm.release import Release
from constructs import Construct

from . import admission, database_roles, kubernetes as k8s
from ..aws.identity import TASK_LOG_PREFIX, workloads
from .airflow_auth import with_auth
from .local_chart import LocalChart
from .airflow_settings import IMAGE_REPOSITORY, AirflowSettings  # noqa: F401  (re-exported)
from ..aws.sso_settings import SsoSettings
from ..core.tokens import is_unresolved
from ..core.validation import require

CHART_REPOSITORY = "https://airflow.apache.org"
CHART = "airflow"
CHART_VERSION = "1.21.0"
EXECUTOR = "CeleryExecutor,KubernetesExecutor"      # Celery by default; tasks opt into their own pod
VAULT_BACKEND = "airflow.providers.hashicorp.secrets.vault.VaultBackend"
S3_DAG_BUNDLE = "airflow.providers.amazon.aws.bundles.s3.S3DagBundle"
DAG_BUNDLE_NAME = "s3-dags"

# Kubernetes Secrets (namespace AIRFLOW_NAMESPACE) rendered by ExternalSecrets in the bootstrap chart.
METADATA_SECRET = "airflow-metadata-db"         # connection (psycopg2), async-connection (asyncpg): APP_ROLE
# The sync driver, always named: under SQLAlchemy 2.1 (Airflow 3.3) a bare `postgresql://` means psycopg 3, which
# names server-side prepared statements. psycopg2 prepares none, so the sync path is safe through transaction pooling.
METADATA_SYNC_SCHEME = "postgresql+psycopg2"
METADATA_ASYNC_SCHEME = "postgresql+asyncpg"
BROKER_SECRET = "airflow-broker-url"            # connection
# Celery's result backend on Redis (database 1; the broker uses 0), not the metadata database, so that workers need
# no database credential.
RESULT_BACKEND_SECRET = "airflow-result-backend"  # connection
RESULT_BACKEND_REDIS_DB = 1
KEDA_DATABASE_SECRET = "airflow-keda-db"         # connection (libpq URL, MONITOR_ROLE), for KEDA only
KEDA_TRIGGER_AUTH = "airflow-keda-db"            # TriggerAuthentication handing it to KEDA's postgresql scaler
WORKER_SCALER = f"{k8s.AIRFLOW_RELEASE}-worker"  # ScaledObject, named like the Deployment it scales
KEYS_SECRET = "airflow-keys"                    # fernet-key, jwt-secret, api-secret-key, webserver-secret-key
API_SERVER_KEYS_SECRET = "airflow-api-server-keys"  # flask-secret-key: the API server's alone
FLASK_SECRET_ENV = "FAB_FLASK_SECRET_KEY"        # read by webserver_config.py (modules/platform/airflow_webserver_config.py)
PGBOUNCER_CONFIG_SECRET = "airflow-pgbouncer-config"   # pgbouncer.ini, users.txt
PGBOUNCER_STATS_SECRET = "airflow-pgbouncer-stats"     # connection (the metrics exporter's, MONITOR_ROLE)
PGBOUNCER_TLS_SECRET = "airflow-pgbouncer-tls"  # cert-manager Certificate: tls.crt, tls.key, ca.crt (platform root)
RDS_CA_SECRET = database_roles.RDS_CA_SECRET   # global-bundle.pem
RDS_CA_STORE = database_roles.RDS_CA_STORE     # SecretStore (webhook provider) serving the bundle
RDS_CA_BUNDLE_URL = database_roles.RDS_CA_BUNDLE_URL
KEDA_PLATFORM_CA_CERTIFICATE = k8s.KEDA_PLATFORM_CA_SECRET
KEDA_API_VERSION = "keda.sh/v1alpha1"
# The Secret keys the chart's KubernetesExecutor pod template hands a task pod, exactly (tests/test_helm_render.py
# compares them with the rendered template): the chart's built-in env (fernet, API and JWT keys, Celery broker and
# result backend: `standard_airflow_environment` gives them to every Airflow container) and the two CA files of the
# certs volume. Pods the scheduler and workers launch may take no other Secret or key (admission.launcher_rules).
TASK_POD_SECRETS: dict[str, frozenset[str]] = {
    BROKER_SECRET: frozenset({"connection"}), RESULT_BACKEND_SECRET: frozenset({"connection"}),
    PGBOUNCER_TLS_SECRET: frozenset({"ca.crt"}), RDS_CA_SECRET: frozenset({"global-bundle.pem"})}

PGBOUNCER_PORT = 6543                           # chart `ports.pgbouncer`
# The API server: HTTPS on the chart's `ports.apiServer`, a platform-CA certificate (cert-manager Certificate
# API_SERVER_TLS_SECRET) mounted into the API server pods only. Every Airflow process that runs tasks reaches the
# Execution API at EXECUTION_API_URL; the task SDK's client (airflow/sdk/api/client.py) verifies the server against
# `[api] ssl_ca_file` (the platform root) and, with `client_use_public_certs = False`, against nothing else.
API_SERVER_PORT = 8080                          # chart `ports.apiServer`
API_SERVER_SERVICE = f"{k8s.AIRFLOW_RELEASE}-api-server"
API_SERVER_HOST = f"{API_SERVER_SERVICE}.{k8s.AIRFLOW_NAMESPACE}.svc"
EXECUTION_API_URL = f"https://{API_SERVER_HOST}:{API_SERVER_PORT}/execution/"
API_SERVER_TLS_SECRET = "airflow-api-server-tls"   # cert-manager Certificate: tls.crt, tls.key, ca.crt
API_SERVER_TLS_DIR = "/opt/airflow/api-server-tls"
API_SERVER_TLS_VOLUME = "api-server-tls"
# `[api] ssl_cert`/`ssl_key` are read by `airflow api-server` (its --ssl-cert/--ssl-key defaults). Set as env on the
# API server only: the task SDK client also loads `[api] ssl_cert` as a trust anchor, and the file exists only there.
API_SERVER_TLS_ENV = {"AIRFLOW__API__SSL_CERT": f"{API_SERVER_TLS_DIR}/tls.crt",
                      "AIRFLOW__API__SSL_KEY": f"{API_SERVER_TLS_DIR}/tls.key"}
# Airflow configuration every process gets: where the Execution API is and what verifies it.
EXECUTION_API_CONFIG = {"core": {"execution_api_server_url": EXECUTION_API_URL},
                        "api": {"ssl_ca_file": k8s.AIRFLOW_PLATFORM_CA_FILE, "client_use_public_certs": "False"}}
PGBOUNCER_SERVICE = f"{k8s.AIRFLOW_RELEASE}-pgbouncer"
PGBOUNCER_HOST = f"{PGBOUNCER_SERVICE}.{k8s.AIRFLOW_NAMESPACE}.svc"
PGBOUNCER_DATABASE = f"{k8s.AIRFLOW_RELEASE}-metadata"   # the pool name clients connect to
PGBOUNCER_TLS_DIR = "/etc/pgbouncer/tls"
PLUGINS_DIR = "/opt/airflow/plugins"            # [core] plugins_folder default under AIRFLOW_HOME
CERTS_VOLUME = "airflow-certs"
PLUGINS_VOLUME = "plugins"
TMP_VOLUME = "tmp"
TMP_DIR = "/tmp"

# Pod Security `restricted` (the airflow namespace enforces it, modules/platform/kubernetes.py POD_SECURITY_ENFORCE),
# read-only root filesystems included. Every Airflow pod runs as the image's airflow user (uid 50000, group 0: the
# image makes AIRFLOW_HOME group-owned by 0); PgBouncer and the StatsD exporter as the chart's 65534 (nobody).
# What Airflow writes goes to volumes: /tmp (TMP_VOLUME: the S3 DAG bundle's checkouts under tempfile.gettempdir(),
# PgBouncer's unix socket), $AIRFLOW_HOME/logs (the chart's `logs` emptyDir in every component that writes logs),
# the plugins emptyDir. No process daemonizes, so none writes a pid file into AIRFLOW_HOME.
AIRFLOW_UID = 50000
NOBODY_UID = 65534
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True,
    "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def pod_security_context(uid: int, gid: int) -> dict[str, Any]:
    return {"runAsUser": uid, "runAsGroup": gid, "fsGroup": gid, "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _security_contexts(uid: int, gid: int) -> dict[str, Any]:
    """A chart component's `securityContexts` (pod and container)."""
    return {"pod": pod_security_context(uid, gid), "container": dict(CONTAINER_SECURITY_CONTEXT)}

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Runs in an init container of every Airflow pod with that pod's own Pod Identity (boto3 default chain): copies
# the plugins bucket into an emptyDir mounted at PLUGINS_DIR. Plugins load at process start, so a sync at start
# is exactly as fresh as a running process can use; publishing new plugins = upload + rollout restart.
PLUGIN_SYNC_SCRIPT = """\
import os, sys
import boto3
bucket, dest = sys.argv[1], os.path.realpath(sys.argv[2])
s3 = boto3.client("s3")
count = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    for obj in page.get("Contents", []):
        key = obj["Key"]
        if key.endswith("/"):
            continue
        path = os.path.realpath(os.path.join(dest, key))
        if not path.startswith(dest + os.sep):
            sys.exit(f"refusing object outside the plugins folder: {key}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file(bucket, key, path)
        count += 1
print(f"synced {count} plugin files from s3://{bucket}/ to {dest}")
"""


# ---- pure builders -------------------------------------------------------------------------------

# Chart component (service_accounts() keys) -> workload id (modules/aws/identity.py, k8s.VAULT_AIRFLOW_ROLES).
_WORKLOAD = {"scheduler": "airflow-scheduler", "dagProcessor": "airflow-dag-processor", "triggerer": "airflow-triggerer",
             "apiServer": "airflow-api-server", "celery": "airflow-worker", "kubernetes": "airflow-task"}


def service_accounts(release: str = k8s.AIRFLOW_RELEASE,
                     namespace: str = k8s.AIRFLOW_NAMESPACE) -> dict[str, str]:
    """Chart component -> service account name, exactly as modules/aws/identity.py associates them."""
    w = workloads(airflow_namespace=namespace, airflow_release=release)
    return {component: w[wid][1][0] for component, wid in _WORKLOAD.items()}


def vault_backend_kwargs() -> dict[str, Any]:
    """[secrets] backend_kwargs: Kubernetes auth with the pod's projected Vault token (audience
    k8s.VAULT_TOKEN_AUDIENCE, not the Kubernetes API token), TLS verified against the platform CA, KV v2 mount and
    paths shared with the vault-config stack (modules/platform/kubernetes.py). The role here is the narrowest one
    (task pods'); every other component names its own through VAULT_ROLE_ENV (vault_identity)."""
    return {"auth_type": "kubernetes", "auth_mount_point": k8s.VAULT_KUBERNETES_AUTH_PATH,
            "kubernetes_role": k8s.VAULT_TASK_ROLE, "kubernetes_jwt_path": k8s.VAULT_TOKEN_FILE,
            "mount_point": k8s.VAULT_AIRFLOW_MOUNT, "kv_engine_version": 2, **k8s.VAULT_AIRFLOW_PATHS,
            "url": k8s.VAULT_ADDRESS, "verify": k8s.AIRFLOW_PLATFORM_CA_FILE}


# Airflow 3.3 (AIRFLOW_VERSION) merges AIRFLOW__SECRETS__BACKEND_KWARG__<KEY> over [secrets] backend_kwargs, in server processes
# and in task/DAG-parsing/trigger processes alike ([workers] secrets_backend is unset, so they fall back to
# [secrets] and its per-key variables): one variable per pod names that pod's Vault role.
VAULT_ROLE_ENV = "AIRFLOW__SECRETS__BACKEND_KWARG__KUBERNETES_ROLE"
VAULT_TOKEN_VOLUME = "vault-token"


def vault_identity(component: dict[str, Any], *, role: str) -> dict[str, Any]:
    """A component's values plus its Vault login: the projected service account token for Vault's audience at
    k8s.VAULT_TOKEN_FILE (the kubelet rotates it) and the role it logs in with."""
    # No defaultMode: the kubelet then gives the token file to the pod's runAsUser (0600) when its containers share one.
    token = {"name": VAULT_TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
        "audience": k8s.VAULT_TOKEN_AUDIENCE, "expirationSeconds": k8s.VAULT_TOKEN_EXPIRATION_SECONDS,
        "path": k8s.VAULT_TOKEN_FILE.rsplit("/", 1)[1]}}]}}
    return {**component, "env": [*component.get("env", []), {"name": VAULT_ROLE_ENV, "value": role}],
            "extraVolumes": [*component.get("extraVolumes", []), token],
            "extraVolumeMounts": [*component.get("extraVolumeMounts", []),
                                  {"name": VAULT_TOKEN_VOLUME, "mountPath": k8s.VAULT_TOKEN_DIR, "readOnly": True}]}


def dag_bundle_config(*, dags_bucket: str, settings: AirflowSettings) -> list[dict[str, Any]]:
    """`dagProcessor.dagBundleConfigList`. aws_conn_id None: the boto3 default chain (Pod Identity). The bundle
    syncs the bucket's current objects; it does not pin S3 object versions per run."""
    return [{"name": DAG_BUNDLE_NAME, "classpath": S3_DAG_BUNDLE,
             "kwargs": {"bucket_name": dags_bucket, "prefix": settings.dag_bundle_prefix, "aws_conn_id": None,
                        "refresh_interval": settings.dag_bundle_refresh_interval}}]


def _pdb(replicas: int) -> dict[str, Any]:
    # One replica with a PDB would block every node drain; with two or more, one may go at a time.
    return {"enabled": replicas >= 2, "config": {"maxUnavailable": 1}}


def _plugin_sync(*, image: str, plugins_bucket: str, region: str) -> dict[str, Any]:
    return {"name": "sync-plugins", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["python", "-c", PLUGIN_SYNC_SCRIPT, plugins_bucket, PLUGINS_DIR],
            "env": [{"name": "AWS_DEFAULT_REGION", "value": region}, {"name": "AWS_REGION", "value": region}],
            "volumeMounts": [{"name": PLUGINS_VOLUME, "mountPath": PLUGINS_DIR},
                             {"name": TMP_VOLUME, "mountPath": TMP_DIR}],
            "securityContext": dict(CONTAINER_SECURITY_CONTEXT),
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}}


def _with_plugins(component: dict[str, Any], *, sync: dict[str, Any]) -> dict[str, Any]:
    return {**component, "extraInitContainers": [sync],
            "extraVolumes": [{"name": PLUGINS_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}],
            "extraVolumeMounts": [{"name": PLUGINS_VOLUME, "mountPath": PLUGINS_DIR, "readOnly": True}]}


def _serving_tls(component: dict[str, Any]) -> dict[str, Any]:
    """The API server's values plus HTTPS: its certificate and key (readable by group 0, the airflow user's group;
    mounted in no other pod), the env that turns TLS on, and probes that speak HTTPS."""
    volume = {"name": API_SERVER_TLS_VOLUME, "secret": {"secretName": API_SERVER_TLS_SECRET, "defaultMode": 0o440,
                                                        "items": [{"key": "tls.crt", "path": "tls.crt"},
                                                                  {"key": "tls.key", "path": "tls.key"}]}}
    probe = {"scheme": "HTTPS"}
    return {**component, "env": [*component.get("env", []),
                                 *({"name": k, "value": v} for k, v in API_SERVER_TLS_ENV.items())],
            "extraVolumes": [*component.get("extraVolumes", []), volume],
            "extraVolumeMounts": [*component.get("extraVolumeMounts", []),
                                  {"name": API_SERVER_TLS_VOLUME, "mountPath": API_SERVER_TLS_DIR, "readOnly": True}],
            "livenessProbe": dict(probe), "readinessProbe": dict(probe), "startupProbe": dict(probe)}


def api_server_dns_names(release: str = k8s.AIRFLOW_RELEASE, namespace: str = k8s.AIRFLOW_NAMESPACE) -> list[str]:
    """What the API server certificate covers: every name in-cluster clients use for the Service (the Execution
    API URL's host first), and localhost for in-pod checks. The ALB connects to pod IPs and verifies nothing."""
    service = f"{release}-api-server"
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local", f"{service}.{namespace}",
            service, "localhost"]


RESERVED_ENV = ("PGSSLROOTCERT", "AWS_DEFAULT_REGION", "AWS_REGION", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
                "AIRFLOW_CONN_AIRFLOW_DB")

# The metadata connection, given only to the components that use the database (DATABASE_COMPONENTS) and to the
# migration job; the chart's own wiring, which gives it to every Airflow container, is switched off.
DATABASE_COMPONENTS = ("scheduler", "apiServer", "dagProcessor", "triggerer")


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


DATABASE_ENV: tuple[dict[str, Any], ...] = (
    _secret_env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", METADATA_SECRET, "connection"),
    _secret_env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC", METADATA_SECRET, "async-connection"))


# Airflow's keys, per component (the chart's own wiring gives every key to every Airflow container, task pods too):
# - Fernet key: who reads connections and variables from the database (the database components, the migration job);
# - JWT secret: who signs or checks Airflow's tokens, the API server (users, Execution API) and the scheduler (the
#   executors sign each task's Execution API token); with it, a task could mint an Admin's token;
# - `[api] secret_key`: the API server signs log requests with it, the log servers (Celery workers, triggerer) check
#   them. FAB's Flask session key is not this one (FLASK_SECRET_ENV, the API server's alone).
FERNET_ENV = _secret_env("AIRFLOW__CORE__FERNET_KEY", KEYS_SECRET, "fernet-key")
JWT_SECRET_ENV = _secret_env("AIRFLOW__API_AUTH__JWT_SECRET", KEYS_SECRET, "jwt-secret")
API_SECRET_KEY_ENV = _secret_env("AIRFLOW__API__SECRET_KEY", KEYS_SECRET, "api-secret-key")
FLASK_KEY_ENV = _secret_env(FLASK_SECRET_ENV, API_SERVER_KEYS_SECRET, "flask-secret-key")
COMPONENT_KEYS: dict[str, tuple[dict[str, Any], ...]] = {
    "scheduler": (FERNET_ENV, JWT_SECRET_ENV),
    "apiServer": (FERNET_ENV, JWT_SECRET_ENV, API_SECRET_KEY_ENV, FLASK_KEY_ENV),
    "dagProcessor": (FERNET_ENV,),
    "triggerer": (FERNET_ENV, API_SECRET_KEY_ENV),
    "celery": (API_SECRET_KEY_ENV,),
    "kubernetes": (),
    "migrateDatabaseJob": (FERNET_ENV,),
}


def _with_keys(component: dict[str, Any], name: str) -> dict[str, Any]:
    return {**component, "env": [*component.get("env", []), *map(dict, COMPONENT_KEYS[name])]}


DATABASE_VOLUME = "metadata-db"
DATABASE_DIR = "/opt/airflow/secrets/metadata-db"


def _with_database(component: dict[str, Any]) -> dict[str, Any]:
    """A component that uses the metadata database: the connection in its container's environment, and for its
    wait-for-airflow-migrations init container (whose `env` takes plain values only) as a file that Airflow reads
    through `AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD`."""
    volume = {"name": DATABASE_VOLUME, "secret": {"secretName": METADATA_SECRET, "defaultMode": 0o440,
                                                  "items": [{"key": "connection", "path": "connection"}]}}
    return {**component, "env": [*component.get("env", []), *map(dict, DATABASE_ENV)],
            "extraVolumes": [*component.get("extraVolumes", []), volume],
            "extraVolumeMounts": [*component.get("extraVolumeMounts", []),
                                  {"name": DATABASE_VOLUME, "mountPath": DATABASE_DIR, "readOnly": True}],
            "waitForMigrations": {"enabled": True, "env": [
                {"name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", "value": f"cat {DATABASE_DIR}/connection"}]}}


def _check_extra_env(extra_env: dict[str, str]) -> None:
    for name, value in extra_env.items():
        require(isinstance(name, str) and _ENV_NAME.fullmatch(name) is not None, "extra_env", name,
                "is not an environment variable name", "use letters, digits and '_', not starting with a digit")
        require(name not in RESERVED_ENV and not name.startswith(("AIRFLOW__DATABASE__", "AIRFLOW__CELERY__BROKER",
                                                                  "AIRFLOW__CELERY__RESULT_BACKEND",
                                                                  "AIRFLOW__CORE__FERNET", "AIRFLOW__SECRETS__",
                                                                  "AIRFLOW__CORE__EXECUTION_API", "AIRFLOW__API__SSL_",
                                                                  "AIRFLOW__API__CLIENT_")),
                "extra_env", name, "would override a setting this construct owns",
                "change the construct's settings instead of overriding them through extra_env")
        require(isinstance(value, str), f"extra_env.{name}", value, "is not a string",
                "pass plain string values (secrets go to Vault, not to env)")


def airflow_values(*, settings: AirflowSettings, domain: str, region: str, dags_bucket: str, task_logs_bucket: str,
                   plugins_bucket: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Helm values for chart 1.21.0 (Python data; bucket names may be tokens). Secrets are named, never valued."""
    extra_env = dict(extra_env or {})
    _check_extra_env(extra_env)
    s = settings
    image = s.image_reference
    sa = service_accounts()
    sync = _plugin_sync(image=image, plugins_bucket=plugins_bucket, region=region)
    account = lambda name, **more: {"create": True, "name": name, **more}  # noqa: E731
    worker_pod = {
        # Never evicted mid-task: neither by Karpenter consolidation nor by the cluster autoscaler.
        "safeToEvict": False, "podAnnotations": {"karpenter.sh/do-not-disrupt": "true"},
        "nodeSelector": dict(k8s.WORKER_NODE_LABELS), "tolerations": [dict(t) for t in k8s.WORKER_TOLERATIONS],
        "resources": {"requests": {"cpu": s.worker_cpu, "memory": s.worker_memory},
                      "limits": {"memory": s.worker_memory}},
        "terminationGracePeriodSeconds": 3600}
    # The chart's own KEDA scaler reads its connection from the workers' environment (KEDA_DB_CONN, in every Airflow
    # container): off. worker_scaler() scales the workers instead, with a credential only KEDA gets.
    keda = {"enabled": False}
    roles = k8s.VAULT_AIRFLOW_ROLES
    # `replicas` is what a chart upgrade resets the Deployment to until KEDA's next poll: the floor, never more.
    # No wait-for-airflow-migrations init container: it would need the database connection.
    celery = vault_identity(_with_plugins({**worker_pod, "serviceAccount": account(sa["celery"]), "keda": keda,
                                           "replicas": s.worker_min_replicas, "waitForMigrations": {"enabled": False},
                                           "persistence": {"enabled": False}}, sync=sync), role=roles["airflow-worker"])
    celery = _with_keys(celery, "celery")
    kubernetes = vault_identity(_with_plugins({**worker_pod, "serviceAccount": account(sa["kubernetes"])}, sync=sync),
                                role=roles["airflow-task"])

    def component(name: str, replicas: int, **extra: Any) -> dict[str, Any]:
        values = vault_identity(_with_plugins({"replicas": replicas, "podDisruptionBudget": _pdb(replicas),
                                               "serviceAccount": account(sa[name]), **extra}, sync=sync),
                                role=roles[_WORKLOAD[name]])
        return _with_keys(_with_database(values) if name in DATABASE_COMPONENTS else values, name)

    env = [{"name": "PGSSLROOTCERT", "value": k8s.AIRFLOW_PLATFORM_CA_FILE},
           {"name": "AWS_DEFAULT_REGION", "value": region}, {"name": "AWS_REGION", "value": region},
           *({"name": k, "value": v} for k, v in sorted(extra_env.items()))]
    certs_volume = {"name": CERTS_VOLUME, "projected": {"defaultMode": 0o444, "sources": [
        {"secret": {"name": PGBOUNCER_TLS_SECRET, "items": [
            {"key": "ca.crt", "path": k8s.AIRFLOW_PLATFORM_CA_FILE.rsplit("/", 1)[1]}]}},
        {"secret": {"name": RDS_CA_SECRET, "items": [
            {"key": "global-bundle.pem", "path": k8s.AIRFLOW_RDS_CA_FILE.rsplit("/", 1)[1]}]}}]}}
    return {
        "executor": EXECUTOR,
        "defaultAirflowRepository": s.image_repository, "defaultAirflowTag": s.image_version_tag,
        "airflowVersion": s.airflow_version,     # plain version: the chart's semverCompare reads it
        "images": {"airflow": {"repository": s.image_repository, "tag": s.image_version_tag,
                               "pullPolicy": "IfNotPresent", **_digest(s)},
                   # Pinned here, not left to the chart default, so the version floor in the settings is what runs.
                   "pgbouncer": {"repository": s.pgbouncer_image_repository, "tag": s.pgbouncer_image_tag,
                                 "pullPolicy": "IfNotPresent"},
                   **_pod_template_image(s)},
        **({"defaultAirflowDigest": s.image_digest} if s.image_digest else {}),
        "data": {"metadataSecretName": METADATA_SECRET, "brokerUrlSecretName": BROKER_SECRET,
                 "resultBackendSecretName": RESULT_BACKEND_SECRET},
        # The chart would put the metadata connection into every Airflow container, workers and task pods included.
        # and every key into every container too: each component gets what it uses instead (COMPONENT_KEYS).
        "enableBuiltInSecretEnvVars": {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": False,
                                       "AIRFLOW_CONN_AIRFLOW_DB": False, "AIRFLOW__CORE__FERNET_KEY": False,
                                       "AIRFLOW__API_AUTH__JWT_SECRET": False, "AIRFLOW__API__SECRET_KEY": False,
                                       "AIRFLOW__WEBSERVER__SECRET_KEY": False},
        "fernetKeySecretName": KEYS_SECRET, "jwtSecretName": KEYS_SECRET, "apiSecretKeySecretName": KEYS_SECRET,
        "webserverSecretKeySecretName": KEYS_SECRET,
        "env": env,
        # Both CA files in every Airflow container and in PgBouncer (the chart mounts these there too), and a
        # writable /tmp under read-only root filesystems.
        "volumes": [certs_volume, {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}],
        "volumeMounts": [{"name": CERTS_VOLUME, "mountPath": k8s.AIRFLOW_CERTS_DIR, "readOnly": True},
                         {"name": TMP_VOLUME, "mountPath": TMP_DIR}],
        # Every Airflow pod and container (components, jobs, sidecars, KubernetesExecutor task pods) unless a
        # component says otherwise below.
        "securityContexts": {"pod": pod_security_context(AIRFLOW_UID, 0),
                             "containers": dict(CONTAINER_SECURITY_CONTEXT)},
        # DAGs come from the S3 bundle: no git-sync sidecar (chart 1.21's default, said here because the 1.18
        # templates the render tests use default it on).
        "dags": {"gitSync": {"enabled": False}},
        # Pods that never call the Kubernetes API get no token for it (the scheduler launches task pods, the API
        # server reads running task pods' logs, workers and the triggerer may run KubernetesPodOperator).
        "migrateDatabaseJob": {"serviceAccount": {"automountServiceAccountToken": False},
                               "env": [*map(dict, DATABASE_ENV), *map(dict, COMPONENT_KEYS["migrateDatabaseJob"])]},
        "redis": {"enabled": False},
        "postgresql": {"enabled": False},
        "createUserJob": {"enabled": False},          # no default admin user (the chart's is admin/admin)
        "statsd": {"enabled": True, "securityContexts": _security_contexts(NOBODY_UID, NOBODY_UID),
                   "serviceAccount": {"automountServiceAccountToken": False}},
        "scheduler": component("scheduler", s.scheduler_replicas),
        "apiServer": _serving_tls(component("apiServer", s.api_server_replicas)),
        "dagProcessor": component("dagProcessor", s.dag_processor_replicas,
                                  dagBundleConfigList=dag_bundle_config(dags_bucket=dags_bucket, settings=s),
                                  serviceAccount=account(sa["dagProcessor"], automountServiceAccountToken=False)),
        "triggerer": component("triggerer", s.triggerer_replicas, persistence={"enabled": False}),
        "workers": {
            # The deprecated top-level keys still drive parts of chart 1.21.0 (e.g. the KEDA env var): keep them
            # equal to the celery ones so both code paths agree.
            "keda": keda, "persistence": {"enabled": False}, "safeToEvict": False,
            "replicas": s.worker_min_replicas, "waitForMigrations": {"enabled": False},
            "celery": celery, "kubernetes": kubernetes},
        "pgbouncer": {
            "enabled": True, "replicas": s.pgbouncer_replicas, "podDisruptionBudget": _pdb(s.pgbouncer_replicas),
            "securityContexts": _security_contexts(NOBODY_UID, NOBODY_UID),
            "serviceAccount": {"automountServiceAccountToken": False},
            "configSecretName": PGBOUNCER_CONFIG_SECRET, "sslmode": "verify-full",
            "metadataPoolSize": s.pgbouncer_pool_size, "maxClientConn": s.pgbouncer_max_client_conn,
            "extraVolumes": [{"name": "pgbouncer-tls", "secret": {"secretName": PGBOUNCER_TLS_SECRET}}],
            "extraVolumeMounts": [{"name": "pgbouncer-tls", "mountPath": PGBOUNCER_TLS_DIR, "readOnly": True}],
            "metricsExporterSidecar": {
                "statsSecretName": PGBOUNCER_STATS_SECRET, "sslmode": "verify-full",
                "securityContexts": {"container": dict(CONTAINER_SECURITY_CONTEXT)},
                "extraVolumeMounts": [{"name": CERTS_VOLUME, "mountPath": k8s.AIRFLOW_CERTS_DIR, "readOnly": True}]}},
        "logs": {"persistence": {"enabled": False}},
        "config": {
            "core": dict(EXECUTION_API_CONFIG["core"]),
            "api": {"base_url": f"https://airflow.{domain}/", "dag_cache_size": s.dag_cache_size,
                    "dag_cache_ttl": s.dag_cache_ttl, **EXECUTION_API_CONFIG["api"]},
            "celery": {"worker_concurrency": s.worker_concurrency},
            "metrics": dict(k8s.AIRFLOW_METRICS_CONFIG),
            "logging": {"remote_logging": "True", "remote_base_log_folder": f"s3://{task_logs_bucket}/{TASK_LOG_PREFIX}",
                        "remote_log_conn_id": "", "delete_local_logs": "True"},
            "secrets": {"backend": VAULT_BACKEND, "backend_kwargs": json.dumps(vault_backend_kwargs(), sort_keys=True)},
            "dag_processor": {"refresh_interval": s.dag_bundle_refresh_interval,
                              "min_file_process_interval": s.min_file_process_interval,
                              "parsing_processes": s.parsing_processes},
            **_kubernetes_executor_image(s),
        },
    }


# ---- pinning the Airflow image by digest ----------------------------------------------------------------
# Chart 1.21.0 honours a digest only where its `airflow_image` / `default_airflow_image` helpers render the image
# (`images.airflow.digest`, `defaultAirflowDigest`: '<repo>@<digest>'): scheduler, API server, dag-processor,
# triggerer, Celery workers, migrations. Two places build '<repo>:<tag>' from tags alone: the KubernetesExecutor pod
# template (`images.pod_template`) and the executor's own image setting (`[kubernetes_executor]
# worker_container_tag`, which defaults to `images.airflow.tag`). For those the tag is given as '<tag>@<digest>',
# a reference the kubelet resolves by the digest. Without a digest none of this is set and the chart's defaults
# (the plain tag) apply.

def _digest(s: AirflowSettings) -> dict[str, str]:
    return {"digest": s.image_digest} if s.image_digest else {}


def _pod_template_image(s: AirflowSettings) -> dict[str, Any]:
    if not s.image_digest:
        return {}
    return {"pod_template": {"repository": s.image_repository, "tag": s.image_tag, "pullPolicy": "IfNotPresent"}}


def _kubernetes_executor_image(s: AirflowSettings) -> dict[str, Any]:
    if not s.image_digest:
        return {}
    return {"kubernetes_executor": {"worker_container_repository": s.image_repository,
                                    "worker_container_tag": s.image_tag}}


# ---- the secrets and certificates (bootstrap chart objects, pure) -------------------------------------

def _libpq_url(*, scheme: str, query: str, user: str = database_roles.APP_ROLE, host: str = PGBOUNCER_HOST,
               database: str = PGBOUNCER_DATABASE) -> str:
    # ESO template v2 (Go text/template + sprig): the password is filled in by the operator, in the cluster.
    return f"{scheme}://{user}:{{{{ .password | urlquery }}}}@{host}:{PGBOUNCER_PORT}/{database}?{query}"


def pgbouncer_ini(*, database_host: str, database_port: int, database_name: str, settings: AirflowSettings) -> str:
    """pgbouncer.ini: TLS verified towards RDS (RDS CA bundle) and required from clients (platform-CA cert)."""
    return "\n".join([
        "[databases]",
        f"{PGBOUNCER_DATABASE} = host={database_host} port={database_port} dbname={database_name} "
        f"pool_size={settings.pgbouncer_pool_size}",
        "",
        "[pgbouncer]",
        "pool_mode = transaction",
        f"listen_port = {PGBOUNCER_PORT}",
        "listen_addr = *",
        "auth_type = scram-sha-256",
        # The client's login is also PgBouncer's login to RDS: Airflow's role and the monitor role, never the master.
        "auth_file = /etc/pgbouncer/users.txt",
        f"stats_users = {database_roles.MONITOR_ROLE}",
        "ignore_startup_parameters = extra_float_digits",
        f"max_client_conn = {settings.pgbouncer_max_client_conn}",
        # Prepared statements need PgBouncer to track them in transaction pooling: asyncpg (the async URL) names
        # them __asyncpg_stmt_N__ per process and psycopg 3 (a bare postgresql:// URL) _pg3_N per connection, so two
        # clients sharing a server connection collide (DuplicatePreparedStatement). psycopg2, the sync URL's driver,
        # prepares none. Needs PgBouncer >= 1.21 (AirflowSettings.pgbouncer_image_tag).
        "max_prepared_statements = 200",
        "server_tls_sslmode = verify-full",
        f"server_tls_ca_file = {k8s.AIRFLOW_RDS_CA_FILE}",
        "server_tls_protocols = tlsv1.2,tlsv1.3",
        "client_tls_sslmode = require",
        f"client_tls_cert_file = {PGBOUNCER_TLS_DIR}/tls.crt",
        f"client_tls_key_file = {PGBOUNCER_TLS_DIR}/tls.key",
        "client_tls_protocols = tlsv1.2,tlsv1.3",
        "",
    ])


def worker_scaler(*, settings: AirflowSettings) -> list[dict[str, Any]]:
    """KEDA scales the Celery workers on the tasks queued or running (database_roles.celery_tasks_query), logging in
    as the monitor role through a TriggerAuthentication: the credential reaches the KEDA operator, not the workers'
    environment, which is where the chart's own scaler would read it from."""
    s, ns = settings, k8s.AIRFLOW_NAMESPACE
    auth = {"apiVersion": KEDA_API_VERSION, "kind": "TriggerAuthentication",
            "metadata": {"name": KEDA_TRIGGER_AUTH, "namespace": ns},
            "spec": {"secretTargetRef": [{"parameter": "connection", "name": KEDA_DATABASE_SECRET, "key": "connection"}]}}
    scaler = {"apiVersion": KEDA_API_VERSION, "kind": "ScaledObject",
              "metadata": {"name": WORKER_SCALER, "namespace": ns},
              "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKER_SCALER},
                       "pollingInterval": s.keda_polling_interval, "cooldownPeriod": s.keda_cooldown_period,
                       "minReplicaCount": s.worker_min_replicas, "maxReplicaCount": s.worker_max_replicas,
                       "triggers": [{"type": "postgresql", "authenticationRef": {"name": KEDA_TRIGGER_AUTH},
                                     "metadata": {"targetQueryValue": "1",
                                                  "query": database_roles.celery_tasks_query(s.worker_concurrency)}}]}}
    return [auth, scaler]


def bootstrap_objects(*, prefix: str, region: str, database_host: str, database_port: int, database_name: str,
                      database_master_secret_arn: str, database_admin_secrets_role_arn: str, cache_endpoint: str,
                      cache_port: int, cache_auth_token_secret_arn: str,
                      settings: AirflowSettings) -> list[dict[str, Any]]:
    """ExternalSecrets, the RDS CA SecretStore, the Certificates the release mounts, the worker scaler and the
    database-role Job. Only names/ARNs here. The master secret is named in the Job's namespace only."""
    ns = k8s.AIRFLOW_NAMESPACE
    users = k8s.airflow_database_users_secret_name(prefix)
    app = [{"secretKey": "password", "remoteRef": {"key": users, "property": "app-password"}}]
    monitor = [{"secretKey": "password", "remoteRef": {"key": users, "property": "monitor-password"}}]
    verified = f"sslmode=verify-full&sslrootcert={k8s.AIRFLOW_PLATFORM_CA_FILE}"
    metadata = k8s.external_secret(name=METADATA_SECRET, namespace=ns, data=app, template={
        "connection": _libpq_url(scheme=METADATA_SYNC_SCHEME, query=verified),
        # asyncpg rejects sslmode/sslrootcert: ssl=verify-full; the CA comes from PGSSLROOTCERT (docs/design.md §6).
        "async-connection": _libpq_url(scheme=METADATA_ASYNC_SCHEME, query="ssl=verify-full")})
    # KEDA's postgresql scaler runs in the KEDA operator, which mounts the platform CA at KEDA_PLATFORM_CA_FILE.
    keda_db = k8s.external_secret(name=KEDA_DATABASE_SECRET, namespace=ns, data=monitor, template={
        "connection": _libpq_url(scheme="postgresql", user=database_roles.MONITOR_ROLE,
                                 query=f"sslmode=verify-full&sslrootcert={k8s.KEDA_PLATFORM_CA_FILE}")})
    pgbouncer_config = k8s.external_secret(
        name=PGBOUNCER_CONFIG_SECRET, namespace=ns,
        data=[{"secretKey": "app", "remoteRef": {"key": users, "property": "app-password"}},
              {"secretKey": "monitor", "remoteRef": {"key": users, "property": "monitor-password"}}],
        template={"pgbouncer.ini": pgbouncer_ini(database_host=database_host, database_port=database_port,
                                                 database_name=database_name, settings=settings),
                  "users.txt": f'"{database_roles.APP_ROLE}" "{{{{ .app }}}}"\n'
                               f'"{database_roles.MONITOR_ROLE}" "{{{{ .monitor }}}}"\n'})
    stats = k8s.external_secret(name=PGBOUNCER_STATS_SECRET, namespace=ns, data=monitor, template={
        "connection": _libpq_url(scheme="postgresql", user=database_roles.MONITOR_ROLE, host="localhost",
                                 database="pgbouncer", query=verified)})
    token = [{"secretKey": "token", "remoteRef": {"key": cache_auth_token_secret_arn}}]   # a plain-string secret
    redis = lambda db: (f"rediss://:{{{{ .token | urlquery }}}}@{cache_endpoint}:{cache_port}/{db}"  # noqa: E731
                        "?ssl_cert_reqs=required")
    broker = k8s.external_secret(name=BROKER_SECRET, namespace=ns, data=token, template={"connection": redis(0)})
    result_backend = k8s.external_secret(name=RESULT_BACKEND_SECRET, namespace=ns, data=token,
                                         template={"connection": redis(RESULT_BACKEND_REDIS_DB)})
    keys_secret = k8s.airflow_keys_secret_name(prefix)
    keys = k8s.external_secret(name=KEYS_SECRET, namespace=ns, data=[
        {"secretKey": key, "remoteRef": {"key": keys_secret, "property": prop}}
        for key, prop in (("fernet-key", "fernet-key"), ("jwt-secret", "jwt-secret"),
                          ("api-secret-key", "api-secret-key"),
                          ("webserver-secret-key", "api-secret-key"))])   # the chart's Airflow 2 name; unused in 3
    api_server_keys = k8s.external_secret(name=API_SERVER_KEYS_SECRET, namespace=ns, data=[
        {"secretKey": "flask-secret-key", "remoteRef": {"key": k8s.airflow_api_server_secret_name(prefix),
                                                         "property": "flask-secret-key"}}])
    pgbouncer_dns = [PGBOUNCER_HOST, f"{PGBOUNCER_HOST}.cluster.local", f"{PGBOUNCER_SERVICE}.{ns}",
                     PGBOUNCER_SERVICE, "localhost"]
    return [
        metadata, keda_db, pgbouncer_config, stats, broker, result_backend, keys, api_server_keys,
        *database_roles.rds_ca_objects(ns),
        k8s.certificate(name=PGBOUNCER_TLS_SECRET, namespace=ns, dns_names=pgbouncer_dns, ip_addresses=["127.0.0.1"]),
        k8s.certificate(name=API_SERVER_TLS_SECRET, namespace=ns, dns_names=api_server_dns_names(),
                        ip_addresses=["127.0.0.1"]),
        # Only its ca.crt is used (the KEDA operator mounts it to verify PgBouncer): a client certificate that
        # nothing presents, because cert-manager hands out the CA only alongside a certificate.
        k8s.certificate(name=KEDA_PLATFORM_CA_CERTIFICATE, namespace=k8s.KEDA_NAMESPACE,
                        dns_names=[f"keda-operator.{k8s.KEDA_NAMESPACE}.svc"], usages=["client auth"]),
        *worker_scaler(settings=settings),
        *database_roles.role_setup_objects(
            database_host=database_host, database_port=database_port, database_name=database_name,
            master_secret_arn=database_master_secret_arn, users_secret_name=users, region=region,
            admin_secrets_role_arn=database_admin_secrets_role_arn, image=settings.image_reference,
            pod_security_context=pod_security_context(AIRFLOW_UID, 0),
            container_security_context=CONTAINER_SECURITY_CONTEXT),
    ]


# ---- the construct -------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class AirflowProps:
    settings: AirflowSettings
    prefix: str                                 # environment resource prefix (Secrets Manager names)
    domain: str                                 # the UI is https://airflow.<domain>/
    region: str
    database_host: str                          # RDS address (token)
    database_name: str
    database_master_secret_arn: str             # RDS-managed secret: JSON {"username", "password"}; the role Job only
    database_admin_secrets_role_arn: str        # the only role that may read it (the role Job's SecretStore assumes it)
    cache_endpoint: str                         # ElastiCache primary endpoint (token)
    cache_auth_token_secret_arn: str            # plain-string AUTH token secret
    dags_bucket: str
    task_logs_bucket: str
    plugins_bucket: str
    bootstrap: LocalChart                       # receives the ExternalSecrets / Certificates
    database_port: int = 5432
    cache_port: int = 6379
    extra_env: dict[str, str] = field(default_factory=dict)
    # Single sign-on (docs/access.md): the IdP settings and the ALB whose signed identity header the UI trusts.
    sso: SsoSettings | None = None
    alb_arn: str = ""
    depends_on: Sequence[ITerraformDependable] = ()
    timeout: int = 1200

    def __post_init__(self) -> None:
        require(isinstance(self.settings, AirflowSettings), "settings", type(self.settings).__name__,
                "is not AirflowSettings", "pass AirflowSettings (or the environment's AirflowConfig)")
        if not is_unresolved(self.domain):
            require(re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", self.domain or "") is not None and "." in
                    self.domain, "domain", self.domain, "is not a DNS name", "use e.g. 'data.example.com'")
        _check_extra_env(self.extra_env)
        require(self.sso is None or not self.sso.enabled or self.alb_arn != "", "alb_arn", self.alb_arn,
                "is empty while single sign-on is on", "pass the edge ALB's ARN (the signer Airflow checks)")
        require(60 <= self.timeout <= 3600, "timeout", self.timeout, "is outside 60-3600 seconds",
                "allow the migration job and rollouts enough time, e.g. 1200")


class Airflow(Construct):
    """The Airflow release; its secrets and certificates go into the bootstrap chart, installed first."""

    def __init__(self, scope: Construct, id_: str, *, props: AirflowProps) -> None:
        super().__init__(scope, id_)
        p = props
        for obj in bootstrap_objects(
                prefix=p.prefix, region=p.region, database_host=p.database_host, database_port=p.database_port,
                database_name=p.database_name, database_master_secret_arn=p.database_master_secret_arn,
                database_admin_secrets_role_arn=p.database_admin_secrets_role_arn,
                cache_endpoint=p.cache_endpoint, cache_port=p.cache_port,
                cache_auth_token_secret_arn=p.cache_auth_token_secret_arn, settings=p.settings):
            p.bootstrap.add_object(obj)
        # What the pods this release and its DAGs launch may ask of their node, and what the chart's pod launchers
        # (scheduler, Celery workers: its pod-launcher RoleBinding) may do to pods (modules/platform/admission.py).
        sa = service_accounts()
        for obj in admission.pod_admission_objects(k8s.AIRFLOW_NAMESPACE, launchers=(sa["scheduler"], sa["celery"]),
                                                   task_service_account=sa["kubernetes"],
                                                   task_secrets=TASK_POD_SECRETS):
            p.bootstrap.add_object(obj)
        self.values: dict[str, Any] = airflow_values(
            settings=p.settings, domain=p.domain, region=p.region, dags_bucket=p.dags_bucket,
            task_logs_bucket=p.task_logs_bucket, plugins_bucket=p.plugins_bucket, extra_env=p.extra_env)
        if p.sso is not None and p.sso.enabled:
            self.values = with_auth(self.values, sso=p.sso, alb_arn=p.alb_arn, region=p.region)
        self.release = Release(
            self, "release", name=k8s.AIRFLOW_RELEASE, namespace=k8s.AIRFLOW_NAMESPACE, repository=CHART_REPOSITORY,
            chart=CHART, version=CHART_VERSION, atomic=True, cleanup_on_fail=True, wait=True, timeout=p.timeout,
            values=[json.dumps(self.values, sort_keys=True)],
            depends_on=[p.bootstrap.release, *p.depends_on])
        self.release.override_logical_id(id_)     # `helm_release.airflow`
        self.service_accounts: dict[str, str] = service_accounts()
        self.base_url: str = self.values["config"]["api"]["base_url"]
