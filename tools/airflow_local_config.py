"""What `make rehearse-airflow` runs Airflow with: the synthesized dev stacks' own configuration, turned into
process environments and files on loopback, with every change from what the cluster would get named.

Nothing here writes Airflow configuration by hand. The inputs are the synthesized JSON that `terraform apply` would
receive: the platform stack's `helm_release.airflow` values and the bootstrap chart's ExternalSecret templates
(modules/platform/airflow.py `airflow_values()` / `bootstrap_objects()`), the infra stack's buckets, event rule and
queues, and the vault-config stack's mount and task-pod read policy. The rehearsal plays the parts that are not
Airflow's: External Secrets Operator (renders the templates with the rehearsal's credentials), the chart (its airflow.cfg
defaults and the env it wires from the named Secrets), Kubernetes (file paths instead of mounts) and AWS (moto).

Pure and stdlib-only: unit-tested in tests/test_rehearse_airflow.py without starting anything."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import quote_plus

from modules.platform import airflow as af
from modules.platform import database_roles as dbr
from modules.platform import kubernetes as k8s

# The chart's airflow.cfg defaults (values.yaml `config:` of chart 1.21.0, tests/data/charts/airflow/values.yaml)
# that apply to this deployment, as the chart's templates resolve them for these values. Sections for features the
# values leave off (elasticsearch, opensearch, kerberos, flower ingress) are not rendered into anything that runs.
CHART_CONFIG_DEFAULTS: dict[str, dict[str, str]] = {
    "core": {"load_examples": "False",
             "auth_manager": "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"},
    "logging": {"colored_console_log": "False"},
    "metrics": {"statsd_on": "True", "statsd_port": "9125", "statsd_prefix": "airflow"},
    "fab": {"enable_proxy_fix": "True"},
    "webserver": {"enable_proxy_fix": "True"},
    "scheduler": {"standalone_dag_processor": "True"},     # semverCompare ">=3.0.0" airflowVersion
}

_TEMPLATE = re.compile(r"\{\{\s*\.(\w+)\s*(?:\|\s*(\w+)\s*)?\}\}")
_TOKEN = re.compile(r"\$\{([^}]*)\}")
_REMOTE = re.compile(r"data\.terraform_remote_state\.[\w-]+\.outputs\.([\w-]+)")
_RESOURCE = re.compile(r"(aws_[a-z0-9_]+)\.([\w-]+)\.(\w+)")


class RehearsalConfigError(Exception):
    """The synthesized stacks hold something the rehearsal cannot map to loopback: the message names it."""


def render_eso_template(template: str, data: Mapping[str, str]) -> str:
    """External Secrets Operator template v2 as the generated templates use it: `{{ .key }}` and
    `{{ .key | urlquery }}` (Go's url.QueryEscape == quote_plus with nothing safe). Anything else is refused."""
    def substitute(match: re.Match[str]) -> str:
        key, function = match.group(1), match.group(2)
        if key not in data:
            raise RehearsalConfigError(f"template needs .{key}, which the rehearsal's secrets do not have")
        if function not in (None, "urlquery"):
            raise RehearsalConfigError(f"template function {function!r} is not supported by the rehearsal")
        return quote_plus(data[key], safe="") if function else data[key]
    rendered = _TEMPLATE.sub(substitute, template)
    if "{{" in rendered:
        raise RehearsalConfigError(f"unrendered template left: {rendered[rendered.index('{{'):][:60]!r}")
    return rendered


@dataclass
class Adaptations:
    """Every difference between what runs here and what the cluster would run, printed by the rehearsal."""
    lines: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        if line not in self.lines:
            self.lines.append(line)


@dataclass(frozen=True)
class Stacks:
    """The three synthesized dev stacks the rehearsal reads (parsed cdk.tf.json)."""
    infra: dict[str, Any]
    platform: dict[str, Any]
    vault_config: dict[str, Any]

    @classmethod
    def load(cls, out: Path, environment: str = "dev") -> "Stacks":
        def read(kind: str) -> dict[str, Any]:
            return json.loads((out / "stacks" / f"airflow-{environment}-{kind}" / "cdk.tf.json").read_text())
        return cls(read("infra"), read("platform"), read("vault-config"))

    def resources(self, rtype: str) -> dict[str, dict[str, Any]]:
        return self.infra.get("resource", {}).get(rtype, {})

    def airflow_values(self) -> dict[str, Any]:
        return json.loads(self.platform["resource"]["helm_release"]["airflow"]["values"][0])

    def bootstrap_objects(self) -> list[dict[str, Any]]:
        return json.loads(self.platform["resource"]["helm_release"]["platform-bootstrap"]["values"][0])["objects"]

    def external_secret(self, name: str) -> dict[str, str]:
        return self.bootstrap_object("ExternalSecret", name)["spec"]["target"]["template"]["data"]

    def bootstrap_object(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.bootstrap_objects():
            if obj.get("kind") == kind and obj["metadata"]["name"] == name:
                return obj
        raise RehearsalConfigError(f"the platform stack has no {kind} {name}")

    def vault_read_policy(self) -> str:
        """The task pods' policy (the narrowest Airflow role, the backend's default): the rehearsal's one token
        holds it, so the DAG's Variable and Connection reads prove what task pods may read."""
        (policy,) = [p for p in self.vault_config["resource"]["vault_policy"].values() if p["name"] == k8s.VAULT_TASK_ROLE]
        return policy["policy"]

    def resolve(self, text: str, computed: Callable[[str, str], str]) -> str:
        """Replace cross-stack references by the infra stack's literal attribute (bucket names) or, for attributes
        only AWS knows (endpoints, ARNs), by `computed(resource type, attribute)`."""
        outputs = self.infra.get("output", {})

        def substitute(match: re.Match[str]) -> str:
            remote = _REMOTE.fullmatch(match.group(1))
            if remote is None or remote.group(1) not in outputs:
                raise RehearsalConfigError(f"unknown reference {match.group(0)}")
            inner = _TOKEN.fullmatch(outputs[remote.group(1)]["value"])
            resource = _RESOURCE.match(inner.group(1)) if inner else None
            if resource is None:
                raise RehearsalConfigError(f"output {remote.group(1)} is not a resource attribute")
            rtype, name, attribute = resource.groups()
            literal = self.infra["resource"][rtype][name].get(attribute)
            return literal if isinstance(literal, str) and "${" not in literal else computed(rtype, attribute)
        return _TOKEN.sub(substitute, text)


@dataclass(frozen=True)
class Endpoints:
    """What the rehearsal started, on loopback."""
    workdir: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    postgres_port: int
    pgbouncer_port: int
    redis_port: int
    vault_port: int
    vault_token: str
    moto_endpoint: str
    api_port: int
    statsd_port: int
    trust_bundle: Path              # the system's CA bundle + the rehearsal CA
    worker_log_port: int
    trigger_log_port: int


@dataclass(frozen=True)
class Credentials:
    """What Secrets Manager would hold (the RDS master secret, Airflow's database-role passwords, the AUTH token,
    the Airflow keys)."""
    db_username: str                # the master user: only the role Job logs in with it
    db_password: str
    app_password: str
    monitor_password: str
    redis_token: str
    fernet_key: str
    jwt_secret: str
    api_secret_key: str
    flask_secret_key: str


@dataclass
class RoleJob:
    """The database-role Job (modules/platform/database_roles.py) as the bootstrap chart would run it."""
    script: str
    env: dict[str, str]
    secrets_dir: Path


@dataclass
class LocalAirflow:
    """The result: files to write, the environment every Airflow process gets, and what only the components that
    use the metadata database get on top (the migration job, scheduler, API server, DAG processor, triggerer)."""
    env: dict[str, str]
    database_env: dict[str, str]
    component_env: dict[str, dict[str, str]]   # per chart component: what its env takes from Secrets
    api_server_env: dict[str, str]  # the API server's TLS certificate and key
    files: dict[Path, str]
    role_job: RoleJob
    keda_connection: str            # the KEDA scaler's libpq URL (monitor role), adapted
    keda_query: str
    buckets: dict[str, str]             # dags / task-logs / landing -> name
    dag_bundle_prefix: str
    database_name: str
    adaptations: Adaptations


def _paths(e: Endpoints) -> dict[str, str]:
    # Kubernetes mounts -> files in the work directory. The rehearsal CA stands in for both the platform CA and the
    # RDS CA bundle, and one server certificate serves PostgreSQL, PgBouncer, Redis and OpenBao.
    return {k8s.AIRFLOW_PLATFORM_CA_FILE: str(e.ca_cert), k8s.AIRFLOW_RDS_CA_FILE: str(e.ca_cert),
            f"{af.PGBOUNCER_TLS_DIR}/tls.crt": str(e.server_cert), f"{af.PGBOUNCER_TLS_DIR}/tls.key": str(e.server_key),
            "/etc/pgbouncer/users.txt": str(e.workdir / "pgbouncer" / "users.txt")}


def _replace_all(text: str, replacements: Mapping[str, str]) -> str:
    for old in sorted(replacements, key=len, reverse=True):
        text = text.replace(old, replacements[old])
    return text


def build(stacks: Stacks, e: Endpoints, c: Credentials) -> LocalAirflow:
    """Airflow's environment and PgBouncer's files from the synthesized stacks, adapted to loopback."""
    notes = Adaptations()
    values = stacks.airflow_values()

    def computed(rtype: str, attribute: str) -> str:
        if attribute in ("address", "primary_endpoint_address"):
            notes.note(f"endpoint: {rtype}.{attribute} -> localhost (loopback)")
            return "localhost"
        if attribute.endswith("arn") or attribute == "name":
            return f"rehearsal:{rtype}.{attribute}"      # only named, never dereferenced here
        raise RehearsalConfigError(f"no loopback stand-in for {rtype}.{attribute}")

    paths = _paths(e)
    notes.note("files: Kubernetes mounts (" + ", ".join(sorted(paths)) + ") -> files under the work directory; "
               "the rehearsal's CA stands in for the platform CA and the RDS CA bundle")
    pgbouncer_host = f"{af.PGBOUNCER_HOST}:{af.PGBOUNCER_PORT}"
    endpoints = {pgbouncer_host: f"localhost:{e.pgbouncer_port}"}
    notes.note(f"endpoint: PgBouncer {pgbouncer_host} -> localhost:{e.pgbouncer_port}")

    # ---- External Secrets Operator's part: render the generated templates with the rehearsal's secrets.
    def rendered(secret: str, data: Mapping[str, str]) -> dict[str, str]:
        return {key: stacks.resolve(render_eso_template(tpl, data), computed)
                for key, tpl in stacks.external_secret(secret).items()}
    metadata = rendered(af.METADATA_SECRET, {"password": c.app_password})
    pgbouncer_files = rendered(af.PGBOUNCER_CONFIG_SECRET, {"app": c.app_password, "monitor": c.monitor_password})
    keda = rendered(af.KEDA_DATABASE_SECRET, {"password": c.monitor_password})["connection"]
    broker = rendered(af.BROKER_SECRET, {"token": c.redis_token})["connection"]
    result_backend = rendered(af.RESULT_BACKEND_SECRET, {"token": c.redis_token})["connection"]

    ini = pgbouncer_files["pgbouncer.ini"]
    database = re.search(r"^\S+ = host=(\S+) port=(\d+) dbname=(\S+)", ini, re.MULTILINE)
    if database is None:
        raise RehearsalConfigError("pgbouncer.ini has no [databases] entry")
    ini = _replace_all(ini, {**paths, f"host={database.group(1)} port={database.group(2)} ":
                             f"host={database.group(1)} port={e.postgres_port} ",
                             f"listen_port = {af.PGBOUNCER_PORT}": f"listen_port = {e.pgbouncer_port}",
                             "listen_addr = *": "listen_addr = 127.0.0.1"})
    notes.note(f"endpoint: PostgreSQL port {database.group(2)} -> {e.postgres_port}; PgBouncer listens on "
               f"127.0.0.1:{e.pgbouncer_port} (not *)")
    cache_port = re.search(r"@[^:/]+:(\d+)/", broker)
    if cache_port:
        broker, result_backend = (url.replace(f":{cache_port.group(1)}/", f":{e.redis_port}/")
                                  for url in (broker, result_backend))
    notes.note(f"endpoint: Redis port {cache_port.group(1) if cache_port else '?'} -> {e.redis_port}")

    # ---- The chart's part: airflow.cfg = chart defaults + the values' config; env wired from the named Secrets.
    config: dict[str, dict[str, str]] = {s: dict(o) for s, o in CHART_CONFIG_DEFAULTS.items()}
    for section, options in values["config"].items():
        config.setdefault(section, {}).update({k: str(v) for k, v in options.items()})
    config["core"]["executor"] = "CeleryExecutor"
    notes.note(f"executor: {values['executor']} -> CeleryExecutor (no Kubernetes API here)")
    config["core"]["dags_folder"] = str(e.workdir / "dags-folder")
    config["dag_processor"]["dag_bundle_config_list"] = json.dumps(values["dagProcessor"]["dagBundleConfigList"])
    config["metrics"]["statsd_host"] = "127.0.0.1"
    config["metrics"]["statsd_port"] = str(e.statsd_port)
    notes.note(f"endpoint: StatsD airflow-statsd:9125 -> 127.0.0.1:{e.statsd_port} (UDP, nothing listens)")
    # The API server serves HTTPS as in the cluster (its own env below); only the host and port differ. The
    # generated [api] ssl_ca_file names the platform CA, which the file mapping makes the rehearsal's.
    api = f"https://localhost:{e.api_port}"
    config["api"]["base_url"] = f"{api}/"
    execution_api = config["core"].get("execution_api_server_url", "the chart's default")
    config["core"]["execution_api_server_url"] = f"{api}/execution/"
    notes.note(f"endpoint: [api] base_url {values['config']['api']['base_url']} and execution_api_server_url "
               f"{execution_api} -> {api}/ (the API server on loopback, no ALB; HTTPS with the rehearsal's "
               "certificate for localhost, verified against the rehearsal CA)")
    backend = json.loads(config["secrets"]["backend_kwargs"])
    vault_url = backend["url"]
    backend.update(url=f"https://localhost:{e.vault_port}", auth_type="token", token=e.vault_token)
    for key in ("kubernetes_role", "auth_mount_point"):
        backend.pop(key, None)
    config["secrets"]["backend_kwargs"] = json.dumps(backend, sort_keys=True)
    notes.note(f"vault: {vault_url} -> https://localhost:{e.vault_port} (OpenBao); Kubernetes auth -> a token "
               "holding the vault-config stack's task-pod policy (the backend's default role, the narrowest)")
    config["logging"]["base_log_folder"] = str(e.workdir / "logs")
    # The chart's log servers (ports.workerLogs 8793, ports.triggererLogs 8794) on free loopback ports instead.
    config["logging"]["worker_log_server_port"] = str(e.worker_log_port)
    config["logging"]["trigger_log_server_port"] = str(e.trigger_log_port)
    notes.note(f"endpoint: log servers 8793 (worker) and 8794 (triggerer) -> {e.worker_log_port} and "
               f"{e.trigger_log_port}")
    notes.note("files: dags_folder, base_log_folder and AIRFLOW_HOME in the work directory (the image's /opt/airflow)")

    env: dict[str, str] = {}
    for section, options in config.items():
        for key, value in options.items():
            env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = _replace_all(
                stacks.resolve(value, computed), {**paths, **endpoints})
    env.update({
        "AIRFLOW__CELERY__BROKER_URL": broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
    })
    if values.get("secret"):
        raise RehearsalConfigError("the values' `secret:` list reaches every Airflow container; the rehearsal "
                                   "expects database connections per component only")
    # What each component's env takes from Secrets (the chart's own all-container wiring of the metadata connection
    # and the keys is off): the metadata connection, Airflow's keys, the API server's Flask key.
    secrets_data = {af.METADATA_SECRET: metadata,
                    af.KEYS_SECRET: {"fernet-key": c.fernet_key, "jwt-secret": c.jwt_secret,
                                     "api-secret-key": c.api_secret_key},
                    af.API_SERVER_KEYS_SECRET: {"flask-secret-key": c.flask_secret_key}}
    component_env: dict[str, dict[str, str]] = {}
    for component, part in (*((n, values[n]) for n in (*af.DATABASE_COMPONENTS, "migrateDatabaseJob")),
                            ("celery", values["workers"]["celery"]), ("kubernetes", values["workers"]["kubernetes"])):
        wired = {}
        for item in part.get("env", []):
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                if ref["name"] not in secrets_data:
                    raise RehearsalConfigError(f"{component} takes Secret {ref['name']}, which the rehearsal lacks")
                wired[item["name"]] = _replace_all(secrets_data[ref["name"]][ref["key"]], {**paths, **endpoints})
        component_env[component] = wired
    # The metadata connection must be the same in every database component: one value stands in for all here.
    database_env: dict[str, str] = {}
    for component in af.DATABASE_COMPONENTS:
        wired = {k: v for k, v in component_env[component].items() if k.startswith("AIRFLOW__DATABASE__")}
        if database_env and wired != database_env:
            raise RehearsalConfigError(f"{component}'s database environment differs from the others'")
        database_env = wired
    for name, value in (kv for wired in component_env.values() for kv in wired.items()):
        if "${" in value or "{{" in value:
            raise RehearsalConfigError(f"{name} still holds an unresolved reference: {value[:80]!r}")
    for item in values["env"]:
        env[item["name"]] = _replace_all(stacks.resolve(item["value"], computed), paths)
    env.update(AWS_ENDPOINT_URL=e.moto_endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_EC2_METADATA_DISABLED="true")
    notes.note(f"aws: {e.moto_endpoint} (moto) with test keys instead of EKS Pod Identity")
    # Celery verifies the broker against the default trust store (ElastiCache's certificate is publicly trusted):
    # the rehearsal CA joins that store instead, nothing about the verification changes.
    env["SSL_CERT_FILE"] = str(e.trust_bundle)
    notes.note("trust store: the system CA bundle + the rehearsal CA (SSL_CERT_FILE), standing in for the public "
               "CA that signs ElastiCache's certificate")

    for name, value in env.items():
        if "${" in value or "{{" in value:
            raise RehearsalConfigError(f"{name} still holds an unresolved reference: {value[:80]!r}")
    if not execution_api.startswith("https://"):
        raise RehearsalConfigError(f"execution_api_server_url {execution_api} is not https")
    # What the API server alone gets: its plain env entries (the TLS certificate and key), files mapped.
    api_tls = {f"{af.API_SERVER_TLS_DIR}/tls.crt": str(e.server_cert), f"{af.API_SERVER_TLS_DIR}/tls.key": str(e.server_key)}
    api_server_env = {item["name"]: _replace_all(item["value"], api_tls) for item in values["apiServer"]["env"]
                      if "value" in item and item["name"] in af.API_SERVER_TLS_ENV}
    if set(api_server_env) != set(af.API_SERVER_TLS_ENV):
        raise RehearsalConfigError(f"the apiServer values set {sorted(api_server_env)}, not {sorted(af.API_SERVER_TLS_ENV)}")
    notes.note("files: the API server certificate (cert-manager's airflow-api-server-tls) -> the rehearsal's server "
               "certificate")

    buckets = {}
    for key, rtype_name in (("dags", "storage_dags_bucket"), ("task-logs", "storage_task-logs_bucket"),
                            ("landing", "events_landing_bucket")):
        (name,) = [r["bucket"] for logical, r in stacks.resources("aws_s3_bucket").items()
                   if logical.startswith(rtype_name + "_")]
        buckets[key] = name
    bundle = values["dagProcessor"]["dagBundleConfigList"][0]["kwargs"]
    pg_dir = e.workdir / "pgbouncer"
    role_job, role_files = _role_job(stacks, e, c, computed, notes)
    keda = _replace_all(keda, {**endpoints, k8s.KEDA_PLATFORM_CA_FILE: str(e.ca_cert)})
    (scaler,) = [o for o in stacks.bootstrap_objects() if o["kind"] == "ScaledObject"]
    (trigger,) = scaler["spec"]["triggers"]
    return LocalAirflow(env=env, database_env=database_env, component_env=component_env, api_server_env=api_server_env,
                        files={pg_dir / "pgbouncer.ini": ini, pg_dir / "users.txt": pgbouncer_files["users.txt"],
                               **role_files},
                        role_job=role_job, keda_connection=keda, keda_query=trigger["metadata"]["query"],
                        buckets=buckets, dag_bundle_prefix=bundle["prefix"], database_name=database.group(3),
                        adaptations=notes)


def _role_job(stacks: Stacks, e: Endpoints, c: Credentials, computed: Callable[[str, str], str],
              notes: Adaptations) -> tuple[RoleJob, dict[Path, str]]:
    """The role Job's script and environment from the bootstrap chart, its mounted Secret as files."""
    job = stacks.bootstrap_object("Job", dbr.JOB)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] if item["name"] == "PGPORT" else stacks.resolve(item["value"], computed)
           for item in container["env"]}
    secrets_dir = e.workdir / "db-admin"
    env.update(DB_ADMIN_SECRETS=str(secrets_dir), PGHOSTADDR="127.0.0.1", PGPORT=str(e.postgres_port),
               PGSSLROOTCERT=str(e.ca_cert))
    notes.note(f"role job: PGPORT -> {e.postgres_port} (PGHOSTADDR 127.0.0.1), the RDS CA -> the rehearsal CA, its "
               "Secret -> files; the master user has CREATEROLE and CREATEDB and owns the database, not superuser")
    # Secret keys as the ExternalSecret maps them: master-* from RDS's secret, the rest from database-users.
    values = {"username": c.db_username, "password": c.db_password, "app-password": c.app_password,
              "monitor-password": c.monitor_password}
    admin = stacks.bootstrap_object("ExternalSecret", dbr.ADMIN_SECRET)
    files = {secrets_dir / d["secretKey"]: values[d["remoteRef"]["property"]] for d in admin["spec"]["data"]}
    script = stacks.bootstrap_object("ConfigMap", dbr.SCRIPT_CONFIGMAP)["data"]["setup.py"]
    return RoleJob(script=script, env=env, secrets_dir=secrets_dir), files
