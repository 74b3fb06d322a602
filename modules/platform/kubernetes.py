"""The in-cluster contract the platform's Helm releases share: namespaces, issuers, secret and CA names.

One place for names that more than one release must agree on (the Airflow release mounts what the
bootstrap chart's ExternalSecrets and Certificates create; Prometheus selects what the glue chart labels).
Plain data and pure functions only.
"""
from __future__ import annotations

from typing import Any

# Namespaces. The LB controller and Karpenter run in kube-system (modules/aws/identity.py WORKLOADS).
AIRFLOW_NAMESPACE = "airflow"
VAULT_NAMESPACE = "vault"
MONITORING_NAMESPACE = "monitoring"
CERT_MANAGER_NAMESPACE = "cert-manager"
EXTERNAL_SECRETS_NAMESPACE = "external-secrets"
KEDA_NAMESPACE = "keda"
# Where the one pod that may hold the RDS master password runs (modules/platform/database_roles.py): a namespace of
# its own, because any pod of a namespace can mount any Secret of it, and DAG authors start pods in `airflow`.
DATABASE_ADMIN_NAMESPACE = "airflow-db-admin"
APP_NAMESPACES = (AIRFLOW_NAMESPACE, VAULT_NAMESPACE, MONITORING_NAMESPACE, DATABASE_ADMIN_NAMESPACE)
# Pod Security Admission level each app namespace enforces (labels `pod-security.kubernetes.io/enforce`, pinned to the
# cluster's minor with `enforce-version`); every one also warns and audits at `restricted`. Airflow and Vault meet
# restricted (their values set the security contexts; task pods included). Monitoring cannot: node-exporter, a
# DaemonSet of that release, needs hostNetwork, hostPID and hostPath mounts of /, /proc and /sys, which baseline
# refuses. docs/platform-addons.md ("Pod Security") has the evidence; tests/test_helm_render.py re-checks it.
POD_SECURITY_ENFORCE = {AIRFLOW_NAMESPACE: "restricted", VAULT_NAMESPACE: "restricted",
                        MONITORING_NAMESPACE: "privileged", DATABASE_ADMIN_NAMESPACE: "restricted"}
POD_SECURITY_AUDIT = "restricted"               # the warn and audit level of every namespace the project labels

# Helm release names (service names derive from them: "<release>-api-server", "<release>-grafana", ...).
AIRFLOW_RELEASE = "airflow"
VAULT_RELEASE = "vault"
MONITORING_RELEASE = "kube-prometheus-stack"

# cert-manager: a self-signed issuer signs one platform root CA; the CA ClusterIssuer signs every in-cluster
# TLS certificate. Every Certificate's secret carries `ca.crt` (the root), which is how clients verify.
SELF_SIGNED_ISSUER = "selfsigned-bootstrap"
ROOT_CA_CERTIFICATE = "platform-root-ca"        # Certificate + Secret in CERT_MANAGER_NAMESPACE
CA_ISSUER = "platform-ca"                       # ClusterIssuer that every in-cluster certificate uses

# External Secrets Operator: one ClusterSecretStore reading AWS Secrets Manager with the operator's own
# Pod Identity role (no static keys), for these namespaces only. Not DATABASE_ADMIN_NAMESPACE: its SecretStore
# assumes a role of its own, the only one that may read the RDS master secret (modules/platform/database_roles.py).
SECRETS_MANAGER_STORE = "aws-secrets-manager"
SECRETS_MANAGER_STORE_NAMESPACES = (AIRFLOW_NAMESPACE, VAULT_NAMESPACE, MONITORING_NAMESPACE)

# Labels Prometheus (kube-prometheus-stack) selects ServiceMonitors and PrometheusRules by.
PROMETHEUS_SELECTOR_LABELS = {"release": MONITORING_RELEASE}

# API versions of the CRDs the bootstrap chart's objects use (charts pinned in modules/platform/addons.py).
CERT_MANAGER_API_VERSION = "cert-manager.io/v1"
EXTERNAL_SECRETS_API_VERSION = "external-secrets.io/v1"


def certificate(*, name: str, namespace: str, dns_names: list[str], ip_addresses: list[str] | None = None,
                usages: list[str] | None = None, duration: str = "2160h", renew_before: str = "360h") -> dict[str, Any]:
    """A whole cert-manager Certificate (for LocalChart.add_object) issued by the platform CA; its Secret
    (same name) holds tls.crt, tls.key and ca.crt."""
    spec: dict[str, Any] = {
        "secretName": name, "issuerRef": {"name": CA_ISSUER, "kind": "ClusterIssuer", "group": "cert-manager.io"},
        "commonName": dns_names[0], "dnsNames": dns_names, "duration": duration, "renewBefore": renew_before,
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "usages": usages or ["server auth", "digital signature", "key encipherment"]}
    if ip_addresses:
        spec["ipAddresses"] = ip_addresses
    return {"apiVersion": CERT_MANAGER_API_VERSION, "kind": "Certificate",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def external_secret(*, name: str, namespace: str, data: list[dict[str, Any]],
                    template: dict[str, str] | None = None, refresh_interval: str = "1h") -> dict[str, Any]:
    """A whole ExternalSecret (for LocalChart.add_object) from the Secrets Manager store into Secret `name`.
    `data`: [{"secretKey": k, "remoteRef": {"key": <secret name or ARN>, "property": <json key>}}];
    `template`: Secret keys rendered from them with ESO's template engine v2 (e.g. a connection URL)."""
    spec: dict[str, Any] = {
        "refreshInterval": refresh_interval,
        "secretStoreRef": {"name": SECRETS_MANAGER_STORE, "kind": "ClusterSecretStore"},
        "target": {"name": name, "creationPolicy": "Owner", "deletionPolicy": "Retain"},
        "data": data}
    if template:
        spec["target"]["template"] = {"engineVersion": "v2", "type": "Opaque", "data": template}
    return {"apiVersion": EXTERNAL_SECRETS_API_VERSION, "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


# EBS StorageClass for every persistent volume of the platform (Vault raft, Prometheus, Alertmanager, Grafana):
# gp3, encrypted with KMS, WaitForFirstConsumer. Created by the platform-bootstrap chart ([addons]).
STORAGE_CLASS = "gp3-encrypted"

# Vault: TLS listener on 8200 with a certificate from CA_ISSUER; clients address the active node through the
# chart's `<release>-active` Service. The certificate must cover VAULT_ADDRESS's host.
VAULT_PORT = 8200
VAULT_ADDRESS = f"https://{VAULT_RELEASE}-active.{VAULT_NAMESPACE}.svc:{VAULT_PORT}"
VAULT_TLS_SECRET = "vault-server-tls"             # Certificate/Secret in VAULT_NAMESPACE: tls.crt, tls.key, ca.crt
VAULT_KUBERNETES_AUTH_PATH = "kubernetes"         # auth/kubernetes
VAULT_AIRFLOW_MOUNT = "airflow"                   # KV v2 mount; Airflow reads <mount>/{connections,variables,config}
VAULT_AIRFLOW_PATHS = {"connections_path": "connections", "variables_path": "variables", "config_path": "config"}
# One Kubernetes auth role (and policy) per Airflow component, named like its workload in modules/aws/identity.py
# (`airflow-task` = KubernetesExecutor task pods): the Airflow release tells each component its role, the vault-config
# stack binds each role to that component's service account only.
VAULT_AIRFLOW_ROLES = {wid: wid for wid in ("airflow-scheduler", "airflow-api-server", "airflow-dag-processor",
                                            "airflow-triggerer", "airflow-worker", "airflow-task")}
VAULT_TASK_ROLE = "airflow-task"                  # the narrowest role: DAG paths only; the backend's default
# Every Kubernetes auth role requires this `aud` claim. Pods log in with a projected service account token minted
# for it (VAULT_TOKEN_FILE, rotated by the kubelet), never with their Kubernetes API token: a token Vault accepts
# is refused by the API server and the other way round.
VAULT_TOKEN_AUDIENCE = "vault"
VAULT_TOKEN_DIR = "/var/run/secrets/vault"
VAULT_TOKEN_FILE = f"{VAULT_TOKEN_DIR}/token"
VAULT_TOKEN_EXPIRATION_SECONDS = 600              # the API server's minimum; the kubelet refreshes at 80%
# Raft snapshots: a CronJob in VAULT_NAMESPACE logs in with this role (read on sys/storage/raft/snapshot only).
VAULT_SNAPSHOT_ROLE = "vault-snapshot"
# Vault's data and audit volumes: a StorageClass of their own on the customer-managed Vault data key (the shared
# STORAGE_CLASS stays on the account's EBS key; StorageClass parameters cannot change in place).
VAULT_STORAGE_CLASS = "gp3-vault-cmk"

# Where Airflow pods find the platform root CA (to verify Vault and in-cluster TLS) and the RDS CA bundle.
AIRFLOW_CERTS_DIR = "/opt/airflow/certs"
AIRFLOW_PLATFORM_CA_FILE = f"{AIRFLOW_CERTS_DIR}/platform-ca.crt"
AIRFLOW_RDS_CA_FILE = f"{AIRFLOW_CERTS_DIR}/rds-global-bundle.pem"


# Secrets Manager secrets the infra stack generates for in-cluster use (modules/aws/platform_secrets.py, [addons]);
# ExternalSecrets reference them by name. Values are JSON objects with the keys listed.
def airflow_keys_secret_name(prefix: str) -> str:
    """{"fernet-key", "jwt-secret", "api-secret-key"}: Airflow's Fernet, JWT signing and API secret keys."""
    return f"{prefix}/airflow/keys"


def airflow_api_server_secret_name(prefix: str) -> str:
    """{"flask-secret-key"}: the FAB app's Flask session key, the API server's alone (not `[api] secret_key`,
    which the workers' and triggerer's log servers hold too)."""
    return f"{prefix}/airflow/api-server"


def airflow_database_users_secret_name(prefix: str) -> str:
    """{"app-password", "monitor-password"}: the passwords of Airflow's own database roles
    (modules/platform/database_roles.py); the RDS master password stays in RDS's own secret."""
    return f"{prefix}/airflow/database-users"


def grafana_admin_secret_name(prefix: str) -> str:
    """{"admin-user", "admin-password"}: Grafana's admin login."""
    return f"{prefix}/grafana/admin"


def alert_receivers_secret_name(prefix: str) -> str:
    """{"slack-webhook-url", "pagerduty-routing-key"}: Alertmanager receivers; created with empty placeholders,
    the operator puts the real values (README) and Terraform ignores later changes."""
    return f"{prefix}/alertmanager/receivers"


# The system node group's taint (modules/aws/cluster.py: CriticalAddonsOnly=true, PreferNoSchedule): cluster add-ons
# tolerate it (modules/platform/addons.py); pods in the Airflow namespace may not (modules/platform/admission.py).
SYSTEM_NODE_TAINT_KEY = "CriticalAddonsOnly"

# Karpenter NodePool for Airflow workers (platform-bootstrap chart): its nodes carry WORKER_NODE_LABELS and the
# WORKER_TOLERATIONS' taint, so only pods that select and tolerate them (Celery workers, KubernetesExecutor task
# pods) land there. Spot and on-demand mixed: worker pods should also carry the `karpenter.sh/do-not-disrupt:
# "true"` annotation so consolidation never evicts a running task.
WORKER_NODE_POOL = "airflow-workers"
WORKER_NODE_LABELS = {"airflow-platform/node-pool": WORKER_NODE_POOL}
WORKER_TOLERATIONS = [{"key": "airflow-platform/node-pool", "operator": "Equal", "value": WORKER_NODE_POOL,
                       "effect": "NoSchedule"}]

# ---- [airflow] KEDA's postgresql scaler (the Airflow chart's Celery worker ScaledObject) runs in the KEDA operator
# and connects to Airflow's PgBouncer with sslmode=verify-full: the KEDA release must mount Secret
# KEDA_PLATFORM_CA_SECRET (KEDA_NAMESPACE; its ca.crt is the platform root, from a Certificate modules/platform/airflow.py adds
# to the bootstrap chart) so that ca.crt is at KEDA_PLATFORM_CA_FILE in the operator container.
KEDA_PLATFORM_CA_SECRET = "keda-platform-ca"
KEDA_PLATFORM_CA_FILE = "/etc/platform-ca/ca.crt"


# Airflow [metrics] options the monitoring rules rely on (modules/platform/monitoring.py): tags become Prometheus labels
# (InfluxDB tag syntax, parsed by the statsd exporter), and legacy per-pool names are off so each metric has one
# consistent label set. Set by the Airflow release (modules/platform/airflow.py).
AIRFLOW_METRICS_CONFIG = {"statsd_influxdb_enabled": "True", "legacy_names_on": "False"}
