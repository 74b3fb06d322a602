"""modules/platform/airflow.py: the Airflow release values and the secrets/certificates it adds to the bootstrap chart."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from modules.platform import kubernetes as k8s
from modules.platform.airflow_settings import AIRFLOW_VERSION
from modules.platform.airflow import (BROKER_SECRET, KEYS_SECRET, METADATA_SECRET, PGBOUNCER_CONFIG_SECRET, PGBOUNCER_HOST,
                             PGBOUNCER_TLS_SECRET, RESULT_BACKEND_SECRET, RDS_CA_BUNDLE_URL, RDS_CA_SECRET, Airflow, AirflowProps,
                             AirflowSettings, airflow_values, bootstrap_objects, service_accounts)
from modules.platform.airflow import API_SERVER_HOST, API_SERVER_TLS_DIR, API_SERVER_TLS_SECRET
from modules.aws.identity import workloads
from modules.platform.local_chart import LocalChart, LocalChartProps
from modules.core.validation import ConfigError
from tests.conftest import new_stack, synth
from tests.harness import helm_merge

CHART = Path(__file__).resolve().parents[2] / "data" / "charts" / "airflow"
BUCKETS = dict(dags_bucket="dags-b", task_logs_bucket="logs-b", plugins_bucket="plugins-b")
INFRA = dict(prefix="airflow-test", region="eu-west-1", database_host="db.example.internal", database_port=5432,
             database_name="airflow", database_master_secret_arn="arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds-db",
             database_admin_secrets_role_arn="arn:aws:iam::123456789012:role/airflow-test-db-admin-secrets",
             cache_endpoint="master.cache.example.internal", cache_port=6379,
             cache_auth_token_secret_arn="arn:aws:secretsmanager:eu-west-1:123456789012:secret:token")


def values(settings: AirflowSettings | None = None, **extra) -> dict:
    return airflow_values(settings=settings or AirflowSettings(), domain="data.example.com", region="eu-west-1",
                          **BUCKETS, **extra)




def schema_errors(generated: dict) -> list[str]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(helm_merge(defaults, generated))]


def by_name(objects: list[dict]) -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": o for o in objects}


def test_values_validate_against_the_chart_schema_and_a_broken_value_does_not():
    assert schema_errors(values()) == []
    broken = values()
    broken["scheduler"]["replicaz"] = 2
    assert any("replicaz" in e for e in schema_errors(broken))


def test_executor_brokers_and_chart_databases():
    v = values()
    assert v["executor"] == "CeleryExecutor,KubernetesExecutor"
    assert (v["redis"], v["postgresql"]) == ({"enabled": False}, {"enabled": False})
    assert v["data"] == {"metadataSecretName": METADATA_SECRET, "brokerUrlSecretName": BROKER_SECRET,
                         "resultBackendSecretName": RESULT_BACKEND_SECRET}
    assert (v["images"]["airflow"]["tag"], v["airflowVersion"]) == (f"{AIRFLOW_VERSION}-python3.11", AIRFLOW_VERSION)
    assert v["images"]["pgbouncer"]["tag"] == "airflow-pgbouncer-2025.03.05-1.23.1"   # PgBouncer 1.23.1 >= 1.21


DIGEST = "sha256:" + "0123456789abcdef" * 4        # a well-formed digest (a fixture, not a real image's)
PINNED_TAG = f"{AIRFLOW_VERSION}-python3.11@{DIGEST}"


def test_an_image_pinned_by_digest_reaches_every_image_the_chart_renders_and_validates():
    v = values(AirflowSettings(image_tag=PINNED_TAG))
    assert schema_errors(v) == []
    # airflow_image / default_airflow_image render '<repo>@<digest>' (scheduler, API server, workers, migrations)
    assert v["images"]["airflow"] == {"repository": "apache/airflow", "tag": f"{AIRFLOW_VERSION}-python3.11",
                                      "digest": DIGEST, "pullPolicy": "IfNotPresent"}
    assert (v["defaultAirflowTag"], v["defaultAirflowDigest"]) == (f"{AIRFLOW_VERSION}-python3.11", DIGEST)
    assert v["airflowVersion"] == AIRFLOW_VERSION                     # plain: the chart's semverCompare reads it
    # the places the chart builds '<repo>:<tag>' from tags alone get '<tag>@<digest>'
    assert v["images"]["pod_template"]["tag"] == PINNED_TAG
    assert v["config"]["kubernetes_executor"] == {"worker_container_repository": "apache/airflow",
                                                  "worker_container_tag": PINNED_TAG}
    assert {pod["extraInitContainers"][0]["image"] for pod in (v["scheduler"], v["workers"]["kubernetes"])} == {
        f"apache/airflow:{PINNED_TAG}"}


def test_without_a_digest_the_image_is_pulled_by_tag_and_nothing_else_changes():
    v = values()
    assert "digest" not in v["images"]["airflow"] and "defaultAirflowDigest" not in v
    assert "pod_template" not in v["images"] and "kubernetes_executor" not in v["config"]
    assert (AirflowSettings().image_digest, AirflowSettings(image_tag=PINNED_TAG).airflow_version) == (
        None, AIRFLOW_VERSION)


@pytest.mark.parametrize("tag", [
    f"{AIRFLOW_VERSION}-python3.11@sha256:abc",                       # too short
    f"{AIRFLOW_VERSION}-python3.11@{DIGEST.upper()}",                 # digests are lowercase hex
    f"{AIRFLOW_VERSION}-python3.11@sha512:" + "0" * 128,              # not what registries serve here
    f"{AIRFLOW_VERSION}-python3.11@",
    f"{AIRFLOW_VERSION}-python3.11@{DIGEST}@{DIGEST}",
])
def test_a_malformed_digest_is_refused_naming_the_field_and_the_form(tag):
    with pytest.raises(ConfigError, match=r"airflow\.image_tag=.* has a malformed digest after '@'.*; fix: use "
                                          rf"'{AIRFLOW_VERSION}-python3\.11@sha256:<64 hex>'"):
        AirflowSettings(image_tag=tag)


def test_a_digest_does_not_lift_the_tested_version_rule():
    with pytest.raises(ConfigError, match=r"airflow\.image_tag='3\.2\.2@sha256:.* is not the tested Airflow"):
        AirflowSettings(image_tag=f"3.2.2@{DIGEST}")


def test_keys_come_from_one_delivered_secret_and_there_is_no_default_user():
    v = values()
    assert {v[k] for k in ("fernetKeySecretName", "jwtSecretName", "apiSecretKeySecretName",
                           "webserverSecretKeySecretName")} == {KEYS_SECRET}
    assert v["createUserJob"] == {"enabled": False}
    for key in ("fernetKey", "jwtSecret", "apiSecretKey", "webserverSecretKey"):
        assert key not in v


def test_replicas_and_pdbs_follow_settings():
    one = values(AirflowSettings(scheduler_replicas=1, api_server_replicas=1, pgbouncer_replicas=1))
    three = values(AirflowSettings(scheduler_replicas=3, api_server_replicas=3))
    assert (one["scheduler"]["replicas"], one["scheduler"]["podDisruptionBudget"]["enabled"]) == (1, False)
    assert one["pgbouncer"]["podDisruptionBudget"]["enabled"] is False
    for component in ("scheduler", "apiServer"):
        assert three[component]["replicas"] == 3
        assert three[component]["podDisruptionBudget"] == {"enabled": True, "config": {"maxUnavailable": 1}}


def test_workers_scale_with_keda_are_not_evictable_and_land_on_the_worker_pool():
    settings = AirflowSettings(worker_concurrency=12, worker_min_replicas=2, worker_max_replicas=20)
    v = values(settings)
    assert v["config"]["celery"]["worker_concurrency"] == 12
    # The chart's scaler is off (it reads its connection from the workers' environment); ours scales the same
    # Deployment between the same bounds, and a chart upgrade resets the Deployment to the floor, never above.
    for workers in (v["workers"], v["workers"]["celery"]):
        assert (workers["keda"], workers["replicas"]) == ({"enabled": False}, 2)
    objs = by_name(bootstrap_objects(settings=settings, **INFRA))
    scaler = objs["ScaledObject/airflow/airflow-worker"]["spec"]
    assert scaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "airflow-worker"}
    assert (scaler["minReplicaCount"], scaler["maxReplicaCount"]) == (2, 20)
    (trigger,) = scaler["triggers"]
    assert trigger["type"] == "postgresql" and trigger["metadata"] == {
        "targetQueryValue": "1", "query": "SELECT ceil(monitor.celery_tasks()::decimal / 12)"}
    auth = objs[f"TriggerAuthentication/airflow/{trigger['authenticationRef']['name']}"]["spec"]
    (ref,) = auth["secretTargetRef"]
    assert (ref["parameter"], ref["key"]) == ("connection", "connection")
    keda_db = objs[f"ExternalSecret/airflow/{ref['name']}"]["spec"]
    assert keda_db["target"]["template"]["data"]["connection"] == (
        "postgresql://airflow_monitor:{{ .password | urlquery }}@" f"{PGBOUNCER_HOST}:6543/airflow-metadata"
        f"?sslmode=verify-full&sslrootcert={k8s.KEDA_PLATFORM_CA_FILE}")
    assert keda_db["data"] == [{"secretKey": "password", "remoteRef": {"key": "airflow-test/airflow/database-users",
                                                                       "property": "monitor-password"}}]
    for pod in (v["workers"]["celery"], v["workers"]["kubernetes"]):
        assert pod["safeToEvict"] is False and pod["podAnnotations"] == {"karpenter.sh/do-not-disrupt": "true"}
        assert pod["nodeSelector"] == k8s.WORKER_NODE_LABELS and pod["tolerations"] == k8s.WORKER_TOLERATIONS


def test_every_pod_runs_restricted_with_a_read_only_root_and_a_writable_tmp():
    v = values()
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True,
                  "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert v["securityContexts"] == {"containers": restricted, "pod": {
        "runAsUser": 50000, "runAsGroup": 0, "fsGroup": 0, "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"}}}
    for chart_component in (v["pgbouncer"], v["statsd"]):
        assert chart_component["securityContexts"]["container"] == restricted
        assert chart_component["securityContexts"]["pod"]["runAsUser"] == 65534
    assert v["pgbouncer"]["metricsExporterSidecar"]["securityContexts"] == {"container": restricted}
    for component in ("scheduler", "apiServer", "dagProcessor", "triggerer"):
        (sync,) = v[component]["extraInitContainers"]
        assert sync["securityContext"] == restricted and {"name": "tmp", "mountPath": "/tmp"} in sync["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}} in v["volumes"]
    assert {"name": "tmp", "mountPath": "/tmp"} in v["volumeMounts"]
    assert v["dags"]["gitSync"]["enabled"] is False


def test_only_pods_that_call_the_kubernetes_api_get_a_token_for_it():
    v = values()
    off = {name: v[name]["serviceAccount"].get("automountServiceAccountToken", True)
           for name in ("pgbouncer", "statsd", "migrateDatabaseJob", "dagProcessor", "scheduler", "apiServer",
                        "triggerer")}
    assert off == {"pgbouncer": False, "statsd": False, "migrateDatabaseJob": False, "dagProcessor": False,
                   "scheduler": True, "apiServer": True, "triggerer": True}


def test_service_accounts_are_the_ones_identity_associates():
    v, w = values(), workloads()
    expected = {"scheduler": "airflow-scheduler", "dagProcessor": "airflow-dag-processor",
                "triggerer": "airflow-triggerer", "apiServer": "airflow-api-server"}
    for component, wid in expected.items():
        assert {k: v[component]["serviceAccount"][k] for k in ("create", "name")} == {"create": True,
                                                                                     "name": w[wid][1][0]}
    assert v["workers"]["celery"]["serviceAccount"] == {"create": True, "name": w["airflow-worker"][1][0]}
    assert v["workers"]["kubernetes"]["serviceAccount"] == {"create": True, "name": w["airflow-task"][1][0]}
    assert set(service_accounts().values()) == {sas[0] for wid, (_, sas) in w.items() if wid.startswith("airflow-")}


def test_remote_logs_bundle_vault_and_base_url():
    v = values()
    c = v["config"]
    assert c["logging"] == {"remote_logging": "True", "remote_base_log_folder": "s3://logs-b/task-logs",
                            "remote_log_conn_id": "", "delete_local_logs": "True"}
    assert c["api"]["base_url"] == "https://airflow.data.example.com/"
    (bundle,) = v["dagProcessor"]["dagBundleConfigList"]
    assert bundle["classpath"] == "airflow.providers.amazon.aws.bundles.s3.S3DagBundle"
    assert bundle["kwargs"] == {"bucket_name": "dags-b", "prefix": "", "aws_conn_id": None, "refresh_interval": 300}
    kwargs = json.loads(c["secrets"]["backend_kwargs"])
    assert c["secrets"]["backend"] == "airflow.providers.hashicorp.secrets.vault.VaultBackend"
    # The default role is the narrowest (task pods'); the token is the projected one for Vault's audience.
    assert kwargs == {"auth_type": "kubernetes", "auth_mount_point": "kubernetes", "kubernetes_role": "airflow-task",
                      "kubernetes_jwt_path": "/var/run/secrets/vault/token",
                      "mount_point": "airflow", "kv_engine_version": 2, "connections_path": "connections",
                      "variables_path": "variables", "config_path": "config", "url": k8s.VAULT_ADDRESS,
                      "verify": k8s.AIRFLOW_PLATFORM_CA_FILE}


COMPONENT_VALUES = {"airflow-scheduler": ("scheduler",), "airflow-api-server": ("apiServer",),
                    "airflow-dag-processor": ("dagProcessor",), "airflow-triggerer": ("triggerer",),
                    "airflow-worker": ("workers", "celery"), "airflow-task": ("workers", "kubernetes")}


def test_each_component_logs_in_to_vault_with_its_own_role_and_a_token_for_vaults_audience():
    v = values()
    for wid, keys in COMPONENT_VALUES.items():
        component = v
        for key in keys:
            component = component[key]
        (role,) = [e["value"] for e in component["env"] if e["name"] == "AIRFLOW__SECRETS__BACKEND_KWARG__KUBERNETES_ROLE"]
        assert role == k8s.VAULT_AIRFLOW_ROLES[wid] == wid
        (volume,) = [vol for vol in component["extraVolumes"] if vol["name"] == "vault-token"]
        assert volume == {"name": "vault-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": "vault", "expirationSeconds": 600, "path": "token"}}]}}, wid
        assert {"name": "vault-token", "mountPath": "/var/run/secrets/vault", "readOnly": True} in \
            component["extraVolumeMounts"], wid
    # the Vault token is not in the pods' global volumes (PgBouncer and the jobs do not log in to Vault)
    assert not [vol for vol in v["volumes"] if vol["name"] == "vault-token"]


def test_ca_files_are_mounted_and_async_url_comes_from_the_secret():
    v = values()
    (volume,) = [vol for vol in v["volumes"] if "projected" in vol]
    sources = {s["secret"]["name"]: s["secret"]["items"][0] for s in volume["projected"]["sources"]}
    assert sources == {PGBOUNCER_TLS_SECRET: {"key": "ca.crt", "path": "platform-ca.crt"},
                       RDS_CA_SECRET: {"key": "global-bundle.pem", "path": "rds-global-bundle.pem"}}
    assert {"name": volume["name"], "mountPath": k8s.AIRFLOW_CERTS_DIR, "readOnly": True} in v["volumeMounts"]
    assert {"name": "PGSSLROOTCERT", "value": k8s.AIRFLOW_PLATFORM_CA_FILE} in v["env"]
    assert "secret" not in v            # the chart's `secret:` reaches every container, workers and task pods too


def test_only_the_components_that_use_the_database_get_its_connection():
    v = values()
    assert {k: v["enableBuiltInSecretEnvVars"][k] for k in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                                                            "AIRFLOW_CONN_AIRFLOW_DB")} == {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": False, "AIRFLOW_CONN_AIRFLOW_DB": False}
    wanted = [{"name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
               "valueFrom": {"secretKeyRef": {"name": METADATA_SECRET, "key": "connection"}}},
              {"name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
               "valueFrom": {"secretKeyRef": {"name": METADATA_SECRET, "key": "async-connection"}}}]
    for name in ("scheduler", "apiServer", "dagProcessor", "triggerer"):
        component = v[name]
        assert [e for e in component["env"] if e["name"].startswith("AIRFLOW__DATABASE__")] == wanted, name
        # wait-for-airflow-migrations takes plain values only: it reads the same Secret as a file
        (volume,) = [vol for vol in component["extraVolumes"] if vol.get("secret", {}).get("secretName") == METADATA_SECRET]
        (mount,) = [m for m in component["extraVolumeMounts"] if m["name"] == volume["name"]]
        assert component["waitForMigrations"] == {"enabled": True, "env": [
            {"name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", "value": f"cat {mount['mountPath']}/connection"}]}
    assert [e["name"] for e in v["migrateDatabaseJob"]["env"]][:2] == [e["name"] for e in wanted]
    # Celery workers and KubernetesExecutor task pods: no connection, no Secret, no migration wait
    text = json.dumps([v["workers"], v["env"], v.get("volumes")])
    assert METADATA_SECRET not in text and "SQL_ALCHEMY" not in text
    assert v["workers"]["celery"]["waitForMigrations"] == v["workers"]["waitForMigrations"] == {"enabled": False}


def test_plugins_are_synced_into_every_component_with_its_own_identity():
    v = values()
    for pod in (v["scheduler"], v["apiServer"], v["dagProcessor"], v["triggerer"], v["workers"]["celery"],
                v["workers"]["kubernetes"]):
        (init,) = pod["extraInitContainers"]
        assert init["command"][:2] == ["python", "-c"] and init["command"][-2:] == ["plugins-b", "/opt/airflow/plugins"]
        assert {"name": "plugins", "mountPath": "/opt/airflow/plugins", "readOnly": True} in pod["extraVolumeMounts"]
        assert not any(e["name"].startswith("AWS_ACCESS") for e in init["env"])


def test_extra_env_is_plain_and_cannot_override_owned_settings():
    v = values(extra_env={"EVENTS_QUEUE_URL": "https://sqs.example/q"})
    assert {"name": "EVENTS_QUEUE_URL", "value": "https://sqs.example/q"} in v["env"]
    with pytest.raises(ConfigError, match=r"extra_env='PGSSLROOTCERT' would override"):
        values(extra_env={"PGSSLROOTCERT": "/tmp/x"})
    with pytest.raises(ConfigError, match=r"extra_env='1BAD' is not an environment variable name"):
        values(extra_env={"1BAD": "x"})


def test_bootstrap_objects_deliver_secrets_by_reference_with_verified_tls():
    objs = by_name(bootstrap_objects(settings=AirflowSettings(), **INFRA))
    meta = objs[f"ExternalSecret/airflow/{METADATA_SECRET}"]["spec"]
    assert meta["data"] == [{"secretKey": "password", "remoteRef": {"key": "airflow-test/airflow/database-users",
                                                                    "property": "app-password"}}]
    t = meta["target"]["template"]["data"]
    # The driver is named: a bare postgresql:// is psycopg 3 under SQLAlchemy 2.1 (prepared statements, see the ini).
    # Airflow's own role, never the master user.
    assert t["connection"].startswith("postgresql+psycopg2://airflow:{{ .password | urlquery }}@"
                                      f"{PGBOUNCER_HOST}:6543/airflow-metadata?")
    assert t["connection"].endswith(f"sslmode=verify-full&sslrootcert={k8s.AIRFLOW_PLATFORM_CA_FILE}")
    assert t["async-connection"].startswith("postgresql+asyncpg://") and t["async-connection"].endswith(
        "?ssl=verify-full")
    assert set(t) == {"connection", "async-connection"}
    broker = objs[f"ExternalSecret/airflow/{BROKER_SECRET}"]["spec"]
    assert broker["data"] == [{"secretKey": "token", "remoteRef": {"key": INFRA["cache_auth_token_secret_arn"]}}]
    assert broker["target"]["template"]["data"]["connection"] == (
        "rediss://:{{ .token | urlquery }}@master.cache.example.internal:6379/0?ssl_cert_reqs=required")
    results = objs[f"ExternalSecret/airflow/{RESULT_BACKEND_SECRET}"]["spec"]
    assert results["data"] == broker["data"] and results["target"]["template"]["data"]["connection"] == (
        "rediss://:{{ .token | urlquery }}@master.cache.example.internal:6379/1?ssl_cert_reqs=required")
    pgbouncer = objs[f"ExternalSecret/airflow/{PGBOUNCER_CONFIG_SECRET}"]["spec"]
    assert pgbouncer["target"]["template"]["data"]["users.txt"] == (
        '"airflow" "{{ .app }}"\n"airflow_monitor" "{{ .monitor }}"\n')
    assert {d["remoteRef"]["key"] for d in pgbouncer["data"]} == {"airflow-test/airflow/database-users"}
    ini = objs[f"ExternalSecret/airflow/{PGBOUNCER_CONFIG_SECRET}"]["spec"]["target"]["template"]["data"]["pgbouncer.ini"]
    for line in ("server_tls_sslmode = verify-full", f"server_tls_ca_file = {k8s.AIRFLOW_RDS_CA_FILE}",
                 "client_tls_sslmode = require", "airflow-metadata = host=db.example.internal port=5432 dbname=airflow",
                 "stats_users = airflow_monitor"):
        assert line in ini
    keys = objs[f"ExternalSecret/airflow/{KEYS_SECRET}"]["spec"]["data"]
    assert {d["remoteRef"]["key"] for d in keys} == {"airflow-test/airflow/keys"}
    store = objs["SecretStore/airflow/rds-ca-bundle"]["spec"]["provider"]["webhook"]
    assert store["url"] == RDS_CA_BUNDLE_URL and RDS_CA_BUNDLE_URL.startswith("https://")
    tls = objs[f"Certificate/airflow/{PGBOUNCER_TLS_SECRET}"]["spec"]
    assert PGBOUNCER_HOST in tls["dnsNames"] and tls["issuerRef"]["name"] == k8s.CA_ISSUER
    assert f"Certificate/{k8s.KEDA_NAMESPACE}/{k8s.KEDA_PLATFORM_CA_SECRET}" in objs


def test_construct_adds_objects_to_bootstrap_and_installs_after_it():
    stack = new_stack()
    bootstrap = LocalChart(stack, "platform-bootstrap", props=LocalChartProps(chart="platform-glue",
                                                                              namespace="kube-system"))
    airflow = Airflow(stack, "airflow", props=AirflowProps(settings=AirflowSettings(), domain="data.example.com",
                                                            bootstrap=bootstrap, **BUCKETS, **INFRA))
    res = synth(stack)["resource"]["helm_release"]
    rel = res["airflow"]
    assert (rel["chart"], rel["version"], rel["repository"], rel["namespace"], rel["name"]) == (
        "airflow", "1.21.0", "https://airflow.apache.org", "airflow", "airflow")
    assert rel["depends_on"] == ["helm_release.platform-bootstrap"]
    assert json.loads(rel["values"][0]) == airflow.values
    objects = json.loads(res["platform-bootstrap"]["values"][0])["objects"]
    assert f"ExternalSecret/airflow/{METADATA_SECRET}" in by_name(objects)
    # The pod admission policy (modules/platform/admission.py) is there before the release's first pod.
    assert {"ValidatingAdmissionPolicy//airflow-pod-restrictions",
            "ValidatingAdmissionPolicyBinding//airflow-pod-restrictions",
            "ValidatingAdmissionPolicy//airflow-pod-launchers",
            "ValidatingAdmissionPolicyBinding//airflow-pod-launchers"} <= set(by_name(objects))


@pytest.mark.parametrize("field,value,message", [
    ("image_tag", "2.10.5", r"is not the tested Airflow 3\.3\.2"),
    ("image_tag", "3.2.2", r"is not the tested Airflow 3\.3\.2"),      # tested = deployed
    ("image_tag", "3.3.2", r"is not the tested Airflow 3\.3\.2 on Python 3\.11"),   # the image's default Python
    ("image_tag", "3.3.2-python3.12", r"is not the tested Airflow 3\.3\.2 on Python 3\.11"),
    ("pgbouncer_image_tag", "airflow-pgbouncer-2023.02.24-1.18.0", r"is PgBouncer 1\.18\.0, older than 1\.21\.0"),
    ("pgbouncer_image_tag", "latest", "does not end in a PgBouncer version"),
    ("worker_max_replicas", 0, "is outside 1-500"),
    ("scheduler_replicas", 0, "is outside 1-10"),
    ("worker_memory", "4GB", "is not a memory quantity"),
    ("dag_bundle_prefix", "/dags/", "is not an S3 key prefix"),
])
def test_settings_fail_fast_naming_the_field(field, value, message):
    with pytest.raises(ConfigError, match=rf"airflow\.{field}=.* {message}"):
        AirflowSettings(**{field: value})


def test_worker_max_below_min_is_refused():
    with pytest.raises(ConfigError, match=r"airflow.worker_max_replicas=2 is below worker_min_replicas=3"):
        AirflowSettings(worker_min_replicas=3, worker_max_replicas=2)


# ---- the API server over HTTPS (docs/tls.md) ----------------------------------------------------------------------

def test_the_api_server_alone_serves_https_with_its_platform_ca_certificate():
    v = values()
    api = v["apiServer"]
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert (env["AIRFLOW__API__SSL_CERT"], env["AIRFLOW__API__SSL_KEY"]) == (
        f"{API_SERVER_TLS_DIR}/tls.crt", f"{API_SERVER_TLS_DIR}/tls.key")
    (volume,) = [vol for vol in api["extraVolumes"] if vol.get("secret", {}).get("secretName") == API_SERVER_TLS_SECRET]
    assert volume["secret"]["defaultMode"] == 0o440      # group 0 (the airflow user's) reads it; nobody else
    assert {"name": volume["name"], "mountPath": API_SERVER_TLS_DIR, "readOnly": True} in api["extraVolumeMounts"]
    assert {api[p]["scheme"] for p in ("livenessProbe", "readinessProbe", "startupProbe")} == {"HTTPS"}
    # the key is in no other component and no global setting
    others = json.dumps({k: w for k, w in v.items() if k != "apiServer"})
    assert API_SERVER_TLS_SECRET not in others and "AIRFLOW__API__SSL_KEY" not in others
    assert schema_errors(v) == []


def test_every_process_reaches_the_execution_api_over_https_verified_by_the_platform_ca_only():
    config = values()["config"]
    assert config["core"]["execution_api_server_url"] == "https://airflow-api-server.airflow.svc:8080/execution/"
    assert (config["api"]["ssl_ca_file"], config["api"]["client_use_public_certs"]) == (
        k8s.AIRFLOW_PLATFORM_CA_FILE, "False")


def test_the_api_server_certificate_covers_the_execution_api_host_and_localhost():
    cert = by_name(bootstrap_objects(settings=AirflowSettings(), **INFRA))[f"Certificate/airflow/{API_SERVER_TLS_SECRET}"]
    spec = cert["spec"]
    assert (spec["secretName"], spec["issuerRef"]["name"], spec["commonName"]) == (
        API_SERVER_TLS_SECRET, k8s.CA_ISSUER, API_SERVER_HOST)
    assert spec["dnsNames"] == ["airflow-api-server.airflow.svc", "airflow-api-server.airflow.svc.cluster.local",
                                "airflow-api-server.airflow", "airflow-api-server", "localhost"]
    assert spec["ipAddresses"] == ["127.0.0.1"] and spec["usages"][0] == "server auth"


@pytest.mark.parametrize("name", ["AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__API__SSL_CA_FILE",
                                  "AIRFLOW__API__SSL_CERT", "AIRFLOW__API__CLIENT_USE_PUBLIC_CERTS"])
def test_extra_env_cannot_turn_the_execution_api_tls_off(name):
    with pytest.raises(ConfigError, match=rf"extra_env='{name}' would override a setting this construct owns"):
        values(extra_env={name: "x"})


def test_each_component_gets_only_the_keys_it_uses_and_task_pods_none():
    """Security review H3: the chart's wiring gave the JWT secret and [api] secret_key to every container, task pods
    included; with the JWT secret a task could mint an Admin's token, with FAB's Flask key sign a session."""
    v = values()
    assert {k: v["enableBuiltInSecretEnvVars"][k] for k in (
        "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__WEBSERVER__SECRET_KEY")} == dict.fromkeys((
            "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY",
            "AIRFLOW__WEBSERVER__SECRET_KEY"), False)

    def keys(part):
        return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                for e in part.get("env", []) if "valueFrom" in e and "SQL_ALCHEMY" not in e["name"]}
    jwt = ("airflow-keys", "jwt-secret")
    assert keys(v["apiServer"]) == {"AIRFLOW__CORE__FERNET_KEY": ("airflow-keys", "fernet-key"),
                                    "AIRFLOW__API_AUTH__JWT_SECRET": jwt,
                                    "AIRFLOW__API__SECRET_KEY": ("airflow-keys", "api-secret-key"),
                                    "FAB_FLASK_SECRET_KEY": ("airflow-api-server-keys", "flask-secret-key")}
    assert keys(v["scheduler"])["AIRFLOW__API_AUTH__JWT_SECRET"] == jwt
    for name in ("dagProcessor", "triggerer"):
        assert "AIRFLOW__API_AUTH__JWT_SECRET" not in keys(v[name]), name
    assert keys(v["workers"]["celery"]) == {"AIRFLOW__API__SECRET_KEY": ("airflow-keys", "api-secret-key")}
    assert keys(v["workers"]["kubernetes"]) == {}
    # the Flask key reaches the API server only
    assert [name for name, part in v.items() if "airflow-api-server-keys" in json.dumps(part)] == ["apiServer"]
