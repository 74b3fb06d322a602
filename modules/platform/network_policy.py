"""Who may open a connection to the pods of the app namespaces (airflow, vault, monitoring): a default-deny-ingress
NetworkPolicy in each, and one allow NetworkPolicy per real flow (FLOWS), all in the platform-bootstrap chart so they
exist before any app pod starts. The VPC CNI's network policy agent enforces them (modules/aws/settings.py
ADDON_CONFIGURATION); docs/platform-addons.md has the table of allowed flows.

Why: without it any pod of the cluster reaches Alertmanager (and can silence alerts), Prometheus, PgBouncer and
Vault's raft port; a DAG's task pod is any pod.

- Ingress only. Egress stays open (tasks call the internet, AWS APIs, RDS, ElastiCache), so DNS to kube-dns is not
  affected and needs no rule. Traffic to ElastiCache (Celery's broker) and RDS leaves the cluster: security groups
  guard those, not NetworkPolicy.
- Node to pod traffic (kubelet probes) is always admitted: the agent adds the node's own IP to every pod's allowed
  ingress (aws/aws-network-policy-agent#65, VPC CNI 1.15.1 and later), so no probe rule is needed.
- Selectors use the labels the charts put on pods (each selector below names its template) and namespaces by their
  `kubernetes.io/metadata.name` label. Ports are container ports, as numbers: ingress rules see the pod's port after
  the Service translated it (the ALB targets pod IPs directly).
- Sources outside the cluster are CIDRs: the ALB's public subnets; the EKS control plane's ENIs, which sit in the
  private subnets with the nodes and pods, so that rule admits any pod as well (it opens only the Prometheus
  operator's webhook port).

Pure data plus one small construct that adds the objects to the bootstrap chart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from constructs import Construct

from . import kubernetes as k8s
from ..aws.edge import BACKENDS
from ..core import validation
from ..core.validation import require
from .airflow import PGBOUNCER_PORT
from .local_chart import LocalChart
from .monitoring import STATSD_SCRAPE_PORT
from .vault import CHART as VAULT_CHART, CLUSTER_PORT as VAULT_CLUSTER_PORT
from .vault_snapshots import NAME as VAULT_SNAPSHOT_NAME

API_VERSION = "networking.k8s.io/v1"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"   # set by the API server on every namespace (>= 1.22)
FLOW_ANNOTATION = "airflow-platform/flow"               # on each allow policy: the flow it admits, in words
DEFAULT_DENY = "default-deny-ingress"

# Container ports (chart defaults this project does not override; tests compare them with the charts' values.yaml).
AIRFLOW_API_PORT = {b.host: b.port for b in BACKENDS}["airflow"]    # Airflow chart `ports.apiServer`
GRAFANA_PORT = {b.host: b.port for b in BACKENDS}["grafana"]         # Grafana chart `service.targetPort`
WORKER_LOG_PORT = 8793            # Airflow chart `ports.workerLogs`: a Celery worker's log server
TRIGGERER_LOG_PORT = 8794         # Airflow chart `ports.triggererLogs`
STATSD_INGEST_PORT = 9125         # Airflow chart `ports.statsdIngest` (UDP)
PROMETHEUS_PORT = 9090            # kube-prometheus-stack `prometheus.service.targetPort`
ALERTMANAGER_PORT = 9093          # kube-prometheus-stack `alertmanager.service.targetPort`
ALERTMANAGER_MESH_PORT = 9094     # prometheus-operator's --cluster.listen-address for replicas > 1 (TCP and UDP)
CONFIG_RELOADER_PORT = 8080       # `reloader-web`: the operator's config-reloader sidecar in both StatefulSets
OPERATOR_PORT = 10250             # kube-prometheus-stack `prometheusOperator.tls.internalPort`: metrics + webhooks
KUBE_STATE_METRICS_PORT = 8080    # kube-state-metrics chart `service.port` (`http`)


@dataclass(frozen=True)
class Pods:
    """The pods of one namespace that a label selector picks."""
    namespace: str
    labels: Mapping[str, str]
    expressions: tuple[Mapping[str, Any], ...] = ()    # matchExpressions, e.g. {"key", "operator", "values"}
    name: str = ""                                     # for descriptions and the docs table

    def selector(self) -> dict[str, Any]:
        out: dict[str, Any] = {"matchLabels": dict(self.labels)}
        if self.expressions:
            out["matchExpressions"] = [dict(e) for e in self.expressions]
        return out

    def peers(self) -> list[dict[str, Any]]:
        # Namespace always named, even for the policy's own: a podSelector alone would mean "this namespace".
        return [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: self.namespace}},
                 "podSelector": self.selector()}]


@dataclass(frozen=True)
class Cidrs:
    """Addresses outside the cluster's pods (load balancer nodes, control-plane ENIs)."""
    cidrs: tuple[str, ...]
    name: str

    def peers(self) -> list[dict[str, Any]]:
        return [{"ipBlock": {"cidr": cidr}} for cidr in self.cidrs]


@dataclass(frozen=True)
class Port:
    number: int
    protocol: str = "TCP"

    def manifest(self) -> dict[str, Any]:
        return {"port": self.number, "protocol": self.protocol}


@dataclass(frozen=True)
class Flow:
    """One real flow: `source` may open `ports` on `destination`. Becomes the NetworkPolicy `allow-<name>` in the
    destination's namespace."""
    name: str
    description: str
    source: Pods | Cidrs
    destination: Pods
    ports: tuple[Port, ...]

    @property
    def policy_name(self) -> str:
        return f"allow-{self.name}"

    def manifest(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": "NetworkPolicy",
                "metadata": {"name": self.policy_name, "namespace": self.destination.namespace,
                             "annotations": {FLOW_ANNOTATION: self.description}},
                "spec": {"podSelector": self.destination.selector(), "policyTypes": ["Ingress"],
                         "ingress": [{"from": self.source.peers(), "ports": [p.manifest() for p in self.ports]}]}}


# ---- the pods (labels as the charts' templates set them) ------------------------------------------------------------

_AIRFLOW = {"tier": "airflow", "release": k8s.AIRFLOW_RELEASE}


def airflow_component(component: str) -> Pods:
    """apache-airflow chart: every pod template (templates/<component>/*-deployment.yaml, the migration Job, and
    files/pod-template-file.kubernetes-helm-yaml for KubernetesExecutor task pods) sets tier/component/release."""
    return Pods(k8s.AIRFLOW_NAMESPACE, {**_AIRFLOW, "component": component}, name=f"Airflow {component}")


# Every pod the Airflow chart renders, task pods included (not pods DAG code creates itself with its own labels).
AIRFLOW_PODS = Pods(k8s.AIRFLOW_NAMESPACE, dict(_AIRFLOW), name="Airflow pods")
API_SERVER = airflow_component("api-server")
# Celery workers and KubernetesExecutor task pods: the pod template file labels task pods `component: worker` too.
WORKERS = Pods(k8s.AIRFLOW_NAMESPACE, {**_AIRFLOW, "component": "worker"}, name="Airflow workers and task pods")
TRIGGERER = airflow_component("triggerer")
PGBOUNCER = airflow_component("pgbouncer")
STATSD = airflow_component("statsd")
# The pods that run Airflow itself: the long-running components, the migration Job (which the others wait for) and,
# as `worker`, Celery workers and task pods. Not PgBouncer or the StatsD exporter.
AIRFLOW_COMPONENTS = ("api-server", "dag-processor", "run-airflow-migrations", "scheduler", "triggerer", "worker")
_IS_COMPONENT = {"key": "component", "operator": "In", "values": list(AIRFLOW_COMPONENTS)}
# Every one reads connections and variables from Vault (VaultBackend), task pods included.
VAULT_CLIENTS = Pods(k8s.AIRFLOW_NAMESPACE, dict(_AIRFLOW), expressions=(_IS_COMPONENT,),
                     name="Airflow components and task pods")
# What connects to the metadata database: the components that hold its connection (modules/platform/airflow.py
# DATABASE_COMPONENTS and the migration job), not Celery workers (which hold none: Celery results go to Redis) and not
# KubernetesExecutor task pods, which share the workers' `component: worker` label. Airflow 3 tasks reach the metadata
# only through the API server's Execution API. The executor also labels each task pod `kubernetes_executor: "True"`
# after the pod template and before a DAG's pod_override, which can change the value but not remove the key
# (cncf.kubernetes PodGenerator): excluded too, whatever component a pod_override claims.
DATABASE_COMPONENTS = ("api-server", "dag-processor", "run-airflow-migrations", "scheduler", "triggerer")
DATABASE_CLIENTS = Pods(k8s.AIRFLOW_NAMESPACE, dict(_AIRFLOW), expressions=(
    {"key": "component", "operator": "In", "values": list(DATABASE_COMPONENTS)},
    {"key": "kubernetes_executor", "operator": "DoesNotExist"}),
    name="Airflow components that use the database (not workers, not task pods)")
# kedacore/charts keda/templates/manager/deployment.yaml: `app: <operator.name>` (keda-operator).
KEDA_OPERATOR = Pods(k8s.KEDA_NAMESPACE, {"app": "keda-operator"}, name="KEDA operator")
# hashicorp/vault-helm templates/server-statefulset.yaml (the chart's own NetworkPolicy selects name + instance).
VAULT_SERVERS = Pods(k8s.VAULT_NAMESPACE, {"app.kubernetes.io/name": VAULT_CHART,
                                           "app.kubernetes.io/instance": k8s.VAULT_RELEASE, "component": "server"},
                     name="Vault servers")
# modules/platform/vault_snapshots.py: the raft snapshot CronJob's pods (in the vault namespace, which no DAG writes to).
VAULT_SNAPSHOT = Pods(k8s.VAULT_NAMESPACE, {"app.kubernetes.io/name": VAULT_SNAPSHOT_NAME}, name="Vault snapshot job")
# kube-prometheus-stack: the prometheus-operator labels the StatefulSets' pods; the chart's Services select them by
# these (templates/prometheus/service.yaml, templates/alertmanager/service.yaml).
PROMETHEUS = Pods(k8s.MONITORING_NAMESPACE, {"app.kubernetes.io/name": "prometheus",
                                             "operator.prometheus.io/name": f"{k8s.MONITORING_RELEASE}-prometheus"},
                  name="Prometheus")
ALERTMANAGER = Pods(k8s.MONITORING_NAMESPACE, {"app.kubernetes.io/name": "alertmanager",
                                               "alertmanager": f"{k8s.MONITORING_RELEASE}-alertmanager"},
                    name="Alertmanager")
# grafana-community/helm-charts grafana `grafana.selectorLabels` (the subchart's release is the parent's).
GRAFANA = Pods(k8s.MONITORING_NAMESPACE, {"app.kubernetes.io/name": "grafana",
                                          "app.kubernetes.io/instance": k8s.MONITORING_RELEASE}, name="Grafana")
# kube-prometheus-stack templates/prometheus-operator/_prometheus-operator.tpl (its own NetworkPolicy's selector).
PROMETHEUS_OPERATOR = Pods(k8s.MONITORING_NAMESPACE, {"app": f"{k8s.MONITORING_RELEASE}-operator",
                                                      "release": k8s.MONITORING_RELEASE},
                           name="Prometheus operator")
# prometheus-community kube-state-metrics chart `kube-state-metrics.selectorLabels`.
KUBE_STATE_METRICS = Pods(k8s.MONITORING_NAMESPACE, {"app.kubernetes.io/name": "kube-state-metrics",
                                                     "app.kubernetes.io/instance": k8s.MONITORING_RELEASE},
                          name="kube-state-metrics")


# ---- props and the flows ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class NetworkPolicyProps:
    """Where the traffic from outside the pods comes from (literal CIDRs: NetworkPolicy cannot take a token)."""
    alb_cidrs: tuple[str, ...]               # the ALB's subnets (public): UI and health checks to target pods
    control_plane_cidrs: tuple[str, ...]     # the EKS cluster's subnets (private): API server -> webhooks

    def __post_init__(self) -> None:
        for attr in ("alb_cidrs", "control_plane_cidrs"):
            cidrs = getattr(self, attr)
            require(isinstance(cidrs, tuple) and len(cidrs) >= 1, attr, cidrs, "names no subnet",
                    "pass the subnets' IPv4 CIDRs, e.g. config.network.subnets['public']")
            for i, cidr in enumerate(cidrs):
                network = validation.ipv4_network(f"{attr}[{i}]", cidr)
                require(network.prefixlen >= 16, f"{attr}[{i}]", cidr, "is wider than a VPC",
                        "pass subnet CIDRs, not 0.0.0.0/0 or a supernet of the VPC")


def flows(props: NetworkPolicyProps) -> tuple[Flow, ...]:
    """Every flow into the app namespaces' pods. Adding a component that listens means adding its flow here."""
    alb = Cidrs(tuple(props.alb_cidrs), "ALB (public subnets)")
    control_plane = Cidrs(tuple(props.control_plane_cidrs), "EKS control plane (private subnets)")
    tcp = lambda *ports: tuple(Port(p) for p in ports)  # noqa: E731
    return (
        # ---- airflow
        Flow("alb-to-api-server", "ALB -> Airflow API server: the UI and REST API (TargetGroupBinding, ip targets) "
             "and the target group's health checks", alb, API_SERVER, tcp(AIRFLOW_API_PORT)),
        Flow("workers-to-api-server", "Celery workers and KubernetesExecutor task pods -> API server: the Execution "
             "API, through which Airflow 3 tasks reach the metadata", WORKERS, API_SERVER, tcp(AIRFLOW_API_PORT)),
        Flow("api-server-to-worker-logs", "API server -> Celery workers' log server: live logs of running tasks",
             API_SERVER, WORKERS, tcp(WORKER_LOG_PORT)),
        Flow("api-server-to-triggerer-logs", "API server -> triggerer's log server: live logs of deferred tasks",
             API_SERVER, TRIGGERER, tcp(TRIGGERER_LOG_PORT)),
        Flow("airflow-to-pgbouncer", "Airflow components (scheduler, API server, dag-processor, triggerer, the "
             "migration job; not Celery workers, not task pods) -> PgBouncer: the metadata database",
             DATABASE_CLIENTS, PGBOUNCER, tcp(PGBOUNCER_PORT)),
        Flow("keda-to-pgbouncer", "KEDA operator -> PgBouncer: the Celery worker scaler's queued-task query",
             KEDA_OPERATOR, PGBOUNCER, tcp(PGBOUNCER_PORT)),
        Flow("airflow-to-statsd", "Airflow pods -> StatsD exporter: metrics (UDP)", AIRFLOW_PODS, STATSD,
             (Port(STATSD_INGEST_PORT, "UDP"),)),
        Flow("prometheus-to-statsd", "Prometheus -> StatsD exporter: scrape (ServiceMonitor airflow-statsd)",
             PROMETHEUS, STATSD, tcp(STATSD_SCRAPE_PORT)),
        # ---- vault
        Flow("airflow-to-vault", "Airflow components, task pods included -> Vault API: connections and variables "
             "(VaultBackend, Kubernetes auth)", VAULT_CLIENTS, VAULT_SERVERS, tcp(k8s.VAULT_PORT)),
        Flow("prometheus-to-vault", "Prometheus -> Vault: scrape of /v1/sys/metrics (the Vault chart's "
             "ServiceMonitor)", PROMETHEUS, VAULT_SERVERS, tcp(k8s.VAULT_PORT)),
        Flow("snapshot-to-vault", "Vault snapshot job -> Vault API: Kubernetes auth login and the raft snapshot "
             "(modules/platform/vault_snapshots.py)", VAULT_SNAPSHOT, VAULT_SERVERS, tcp(k8s.VAULT_PORT)),
        Flow("vault-peers", "Vault servers -> Vault servers: raft retry_join (API port) and raft/request forwarding "
             "(cluster port)", VAULT_SERVERS, VAULT_SERVERS, tcp(k8s.VAULT_PORT, VAULT_CLUSTER_PORT)),
        # ---- monitoring
        Flow("alb-to-grafana", "ALB -> Grafana: the UI (TargetGroupBinding, ip targets) and health checks", alb,
             GRAFANA, tcp(GRAFANA_PORT)),
        Flow("prometheus-to-grafana", "Prometheus -> Grafana: scrape (Grafana's ServiceMonitor)", PROMETHEUS,
             GRAFANA, tcp(GRAFANA_PORT)),
        Flow("grafana-to-prometheus", "Grafana -> Prometheus: the default datasource", GRAFANA, PROMETHEUS,
             tcp(PROMETHEUS_PORT)),
        Flow("prometheus-to-prometheus", "Prometheus -> Prometheus: self-scrape (server and config reloader)",
             PROMETHEUS, PROMETHEUS, tcp(PROMETHEUS_PORT, CONFIG_RELOADER_PORT)),
        Flow("prometheus-to-alertmanager", "Prometheus -> Alertmanager: alerts, and scrape (server and config "
             "reloader)", PROMETHEUS, ALERTMANAGER, tcp(ALERTMANAGER_PORT, CONFIG_RELOADER_PORT)),
        Flow("grafana-to-alertmanager", "Grafana -> Alertmanager: the Alertmanager datasource (alerts and silences, "
             "behind Grafana's login)", GRAFANA, ALERTMANAGER, tcp(ALERTMANAGER_PORT)),
        Flow("alertmanager-peers", "Alertmanager -> Alertmanager: cluster gossip between replicas", ALERTMANAGER,
             ALERTMANAGER, (Port(ALERTMANAGER_MESH_PORT), Port(ALERTMANAGER_MESH_PORT, "UDP"))),
        Flow("prometheus-to-operator", "Prometheus -> Prometheus operator: scrape", PROMETHEUS, PROMETHEUS_OPERATOR,
             tcp(OPERATOR_PORT)),
        Flow("control-plane-to-operator", "EKS API server -> Prometheus operator: admission webhooks that validate "
             "PrometheusRules (the control plane's ENIs share the private subnets with every pod)", control_plane,
             PROMETHEUS_OPERATOR, tcp(OPERATOR_PORT)),
        Flow("prometheus-to-kube-state-metrics", "Prometheus -> kube-state-metrics: scrape", PROMETHEUS,
             KUBE_STATE_METRICS, tcp(KUBE_STATE_METRICS_PORT)),
    )


def default_deny(namespace: str) -> dict[str, Any]:
    """Selects every pod of `namespace` for ingress and admits nothing: what no allow policy names is refused."""
    return {"apiVersion": API_VERSION, "kind": "NetworkPolicy",
            "metadata": {"name": DEFAULT_DENY, "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}


def policy_objects(props: NetworkPolicyProps) -> list[dict[str, Any]]:
    """The default-deny policy of each app namespace, then one allow policy per flow."""
    return [*(default_deny(ns) for ns in k8s.APP_NAMESPACES), *(f.manifest() for f in flows(props))]


class NetworkIsolation(Construct):
    """Adds the policies to the platform-bootstrap chart (installed before Vault, monitoring and Airflow)."""

    def __init__(self, scope: Construct, id_: str, *, props: NetworkPolicyProps, bootstrap: LocalChart) -> None:
        super().__init__(scope, id_)
        self.flows: tuple[Flow, ...] = flows(props)
        self.policies: tuple[dict[str, Any], ...] = tuple(policy_objects(props))
        for manifest in self.policies:
            bootstrap.add_object(manifest)
