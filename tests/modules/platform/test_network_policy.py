"""modules/platform/network_policy.py: the NetworkPolicies of each environment's platform-bootstrap chart, evaluated
with tests/network_policy_eval.py (whose own semantics are tested first, on textbook cases) against the pods the
charts render, labelled as their templates label them: every real flow is admitted, the flows the review named
(any pod -> Alertmanager, task pod -> Vault's raft port, Airflow -> Prometheus) and a few more are not."""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
import yaml

import environments
from modules.aws.edge import BACKENDS
from modules.core.validation import ConfigError
from modules.platform import kubernetes as k8s, network_policy as netpol
from modules.platform.monitoring import STATSD_SCRAPE_PORT, STATSD_SCRAPE_PORT_NAME, airflow_service_monitor
from modules.platform.network_policy import NetworkPolicyProps, policy_objects
from tests.network_policy_eval import External, Pod, admits, namespace_labels, selects
from tests.modules.platform.test_airflow import values as airflow_values
from tests.modules.platform.test_vault import values_for as vault_values

CHARTS = Path(__file__).resolve().parents[2] / "data" / "charts"

# ---- the evaluator itself -----------------------------------------------------------------------------------------

WEB = Pod("shop", {"app": "web", "tier": "front"}, "10.1.0.10", ports={"http": (8080, "TCP")})
API = Pod("shop", {"app": "api"}, "10.1.0.11")
OTHER_WEB = Pod("other", {"app": "web"}, "10.1.0.12")
ANYWHERE = External("203.0.113.7")


def np(namespace: str, pod_selector: dict, ingress: list | None = None, types: list | None = None) -> dict:
    spec: dict = {"podSelector": pod_selector}
    if ingress is not None:
        spec["ingress"] = ingress
    if types is not None:
        spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": namespace}, "spec": spec}


DENY_SHOP = np("shop", {}, types=["Ingress"])


def test_evaluator_a_pod_no_policy_selects_accepts_everything_and_default_deny_accepts_nothing():
    assert admits([], ANYWHERE, WEB, 8080) and admits([np("other", {})], API, WEB, 1)
    assert not admits([DENY_SHOP], API, WEB, 8080) and not admits([DENY_SHOP], ANYWHERE, WEB, 8080)
    # policyTypes absent and no egress rules: the policy is an ingress policy.
    assert not admits([np("shop", {})], API, WEB, 8080)
    # An egress-only policy does not isolate for ingress.
    assert admits([np("shop", {}, types=["Egress"])], API, WEB, 8080)


def test_evaluator_rules_add_up_and_an_empty_rule_admits_all():
    allow_api = np("shop", {"matchLabels": {"app": "web"}}, [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}]}])
    assert admits([DENY_SHOP, allow_api], API, WEB, 9999) and not admits([DENY_SHOP, allow_api], ANYWHERE, WEB, 80)
    assert admits([DENY_SHOP, np("shop", {}, [{}])], ANYWHERE, WEB, 1)


def test_evaluator_pod_selector_alone_means_the_policys_namespace():
    rule = [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]
    target = Pod("shop", {"app": "db"}, "10.1.0.20")
    assert admits([np("shop", {}, rule)], WEB, target, 5432)
    assert not admits([np("shop", {}, rule)], OTHER_WEB, target, 5432)


def test_evaluator_namespace_and_pod_selector_in_one_peer_is_and_in_two_peers_is_or():
    target = Pod("shop", {"app": "db"}, "10.1.0.20")
    ns_other = {"namespaceSelector": {"matchLabels": namespace_labels("other")}}
    web = {"podSelector": {"matchLabels": {"app": "web"}}}
    both = np("shop", {}, [{"from": [{**ns_other, **web}]}])
    either = np("shop", {}, [{"from": [ns_other, web]}])
    other_db = Pod("other", {"app": "db"}, "10.1.0.21")
    assert admits([both], OTHER_WEB, target, 1) and not admits([both], other_db, target, 1)
    assert not admits([both], WEB, target, 1)     # right labels, wrong namespace
    assert admits([either], other_db, target, 1) and admits([either], WEB, target, 1)
    assert admits([np("shop", {}, [{"from": [{"namespaceSelector": {}}]}])], OTHER_WEB, target, 1)


def test_evaluator_ip_block_with_except_and_pod_ips():
    policy = np("shop", {}, [{"from": [{"ipBlock": {"cidr": "10.1.0.0/16", "except": ["10.1.0.11/32"]}}]}])
    assert admits([policy], External("10.1.200.1"), WEB, 80) and admits([policy], OTHER_WEB, WEB, 80)
    assert not admits([policy], API, WEB, 80) and not admits([policy], ANYWHERE, WEB, 80)
    # Selectors never match a source that is not a pod.
    assert not admits([np("shop", {}, [{"from": [{"namespaceSelector": {}}]}])], ANYWHERE, WEB, 80)


def test_evaluator_ports_protocols_ranges_and_named_ports():
    def only(ports):
        return [np("shop", {}, [{"ports": ports}])]
    assert admits(only([{"port": 53, "protocol": "UDP"}]), API, WEB, 53, "UDP")
    assert not admits(only([{"port": 53, "protocol": "UDP"}]), API, WEB, 53, "TCP")
    assert admits(only([{"port": 53}]), API, WEB, 53, "TCP")                        # protocol defaults to TCP
    assert admits(only([{"protocol": "TCP"}]), API, WEB, 31337)                     # no port: every TCP port
    assert admits(only([{"port": 8000, "endPort": 8100}]), API, WEB, 8080)
    assert not admits(only([{"port": 8000, "endPort": 8100}]), API, WEB, 8101)
    assert admits(only([{"port": "http"}]), API, WEB, 8080) and not admits(only([{"port": "http"}]), API, WEB, 80)
    assert not admits(only([{"port": "http"}]), WEB, API, 8080)                     # API has no port named http


@pytest.mark.parametrize("expression, labels, expected", [
    ({"key": "app", "operator": "In", "values": ["web", "api"]}, {"app": "api"}, True),
    ({"key": "app", "operator": "In", "values": ["web"]}, {}, False),
    ({"key": "app", "operator": "NotIn", "values": ["web"]}, {"app": "api"}, True),
    ({"key": "app", "operator": "NotIn", "values": ["web"]}, {}, True),             # absent key: not in the set
    ({"key": "app", "operator": "NotIn", "values": ["web"]}, {"app": "web"}, False),
    ({"key": "app", "operator": "Exists"}, {"app": ""}, True),
    ({"key": "app", "operator": "DoesNotExist"}, {"app": "web"}, False),
    ({"key": "app", "operator": "DoesNotExist"}, {"other": "x"}, True),
])
def test_evaluator_match_expressions(expression, labels, expected):
    assert selects({"matchExpressions": [expression]}, labels) is expected
    assert selects({"matchLabels": {"tier": "x"}, "matchExpressions": [expression]}, labels) is False


# ---- the pods, as the charts label them ---------------------------------------------------------------------------

_AIRFLOW = {"tier": "airflow", "release": k8s.AIRFLOW_RELEASE}
_VAULT = {"helm.sh/chart": "vault-0.34.1", "app.kubernetes.io/name": "vault", "app.kubernetes.io/instance": "vault",
          "component": "server", "statefulset.kubernetes.io/pod-name": "vault-0"}
_KPS = k8s.MONITORING_RELEASE

# name -> (namespace, labels, container ports). The one table of pod labels the flows are tested with; each row says
# which template sets them (apache/airflow chart/ at helm-chart/1.21.0 unless noted; chart 1.18.0 templates agree).
PODS: dict[str, tuple[str, dict[str, str], dict[str, tuple[int, str]]]] = {
    # templates/api-server/api-server-deployment.yaml
    "api-server": ("airflow", {**_AIRFLOW, "component": "api-server"}, {"api-server": (8080, "TCP")}),
    # templates/scheduler/scheduler-deployment.yaml (no log server: CeleryExecutor,KubernetesExecutor is not local)
    "scheduler": ("airflow", {**_AIRFLOW, "component": "scheduler"}, {}),
    # templates/dag-processor/dag-processor-deployment.yaml
    "dag-processor": ("airflow", {**_AIRFLOW, "component": "dag-processor"}, {}),
    # templates/triggerer/triggerer-deployment.yaml
    "triggerer": ("airflow", {**_AIRFLOW, "component": "triggerer"}, {"triggerer-logs": (8794, "TCP")}),
    # templates/workers/worker-deployment.yaml (Celery)
    "worker": ("airflow", {**_AIRFLOW, "component": "worker"}, {"worker-logs": (8793, "TCP")}),
    # files/pod-template-file.kubernetes-helm-yaml (tier/component/release) plus what the KubernetesExecutor adds:
    # apache-airflow-providers-cncf-kubernetes PodGenerator.build_labels_for_k8s_executor_pod.
    "task": ("airflow", {**_AIRFLOW, "component": "worker", "kubernetes_executor": "True", "dag_id": "etl",
                         "task_id": "load", "try_number": "1", "airflow-worker": "42", "airflow_version": "3.3.2"}, {}),
    # ... and a task pod whose DAG's pod_override relabels it: it can change values, not drop the executor's keys.
    "task-relabelled": ("airflow", {**_AIRFLOW, "component": "scheduler", "kubernetes_executor": "False",
                                    "dag_id": "etl", "task_id": "load", "try_number": "1"}, {}),
    # templates/jobs/migrate-database-job.yaml
    "migrations": ("airflow", {**_AIRFLOW, "component": "run-airflow-migrations"}, {}),
    # templates/pgbouncer/pgbouncer-deployment.yaml (the metrics exporter is a sidecar on 9127)
    "pgbouncer": ("airflow", {**_AIRFLOW, "component": "pgbouncer"},
                  {"pgbouncer": (6543, "TCP"), "pgb-metrics": (9127, "TCP")}),
    # templates/statsd/statsd-deployment.yaml
    "statsd": ("airflow", {**_AIRFLOW, "component": "statsd"},
               {"statsd-ingest": (9125, "UDP"), STATSD_SCRAPE_PORT_NAME: (STATSD_SCRAPE_PORT, "TCP")}),
    # A pod DAG code creates itself (KubernetesPodOperator) with labels of its own.
    "dag-pod": ("airflow", {"app": "my-job"}, {}),
    # hashicorp/vault-helm v0.34.1 templates/server-statefulset.yaml
    "vault": ("vault", _VAULT, {"https": (8200, "TCP"), "https-internal": (8201, "TCP"), "http-rep": (8202, "TCP")}),
    # modules/platform/vault_snapshots.py (the CronJob's pod template labels)
    "vault-snapshot": ("vault", {"app.kubernetes.io/name": "vault-snapshot", "app.kubernetes.io/part-of": "vault"}, {}),
    # prometheus-operator (StatefulSet pod labels, as kube-prometheus-stack 88.5.3 templates/prometheus/service.yaml
    # selects them)
    "prometheus": ("monitoring", {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/managed-by":
                                  "prometheus-operator", "app.kubernetes.io/instance": f"{_KPS}-prometheus",
                                  "operator.prometheus.io/name": f"{_KPS}-prometheus", "prometheus": f"{_KPS}-prometheus",
                                  "operator.prometheus.io/shard": "0"},
                   {"http-web": (9090, "TCP"), "reloader-web": (8080, "TCP")}),
    # prometheus-operator (templates/alertmanager/service.yaml selects name + alertmanager)
    "alertmanager": ("monitoring", {"app.kubernetes.io/name": "alertmanager", "app.kubernetes.io/managed-by":
                                    "prometheus-operator", "app.kubernetes.io/instance": f"{_KPS}-alertmanager",
                                    "alertmanager": f"{_KPS}-alertmanager"},
                     {"http-web": (9093, "TCP"), "mesh-tcp": (9094, "TCP"), "mesh-udp": (9094, "UDP"),
                      "reloader-web": (8080, "TCP")}),
    # grafana-community/helm-charts grafana 12.11.1 `grafana.labels` (service port 80 -> targetPort 3000)
    "grafana": ("monitoring", {"helm.sh/chart": "grafana-12.11.1", "app.kubernetes.io/name": "grafana",
                               "app.kubernetes.io/instance": _KPS}, {"grafana": (3000, "TCP")}),
    # kube-prometheus-stack 88.5.3 templates/prometheus-operator/_prometheus-operator.tpl
    "operator": ("monitoring", {"app": f"{_KPS}-operator", "release": _KPS, "app.kubernetes.io/name":
                                f"{_KPS}-prometheus-operator", "app.kubernetes.io/component": "prometheus-operator",
                                "app.kubernetes.io/instance": _KPS}, {"https": (10250, "TCP")}),
    # prometheus-community kube-state-metrics 8.4.0 `kube-state-metrics.labels`
    "kube-state-metrics": ("monitoring", {"app.kubernetes.io/name": "kube-state-metrics",
                                          "app.kubernetes.io/instance": _KPS}, {"http": (8080, "TCP")}),
    # kedacore/charts v2.20.2 keda/templates/manager/deployment.yaml
    "keda-operator": ("keda", {"app": "keda-operator", "name": "keda-operator",
                               "app.kubernetes.io/name": "keda-operator", "app.kubernetes.io/component": "operator",
                               "app.kubernetes.io/instance": "keda"}, {}),
    # Any pod of another namespace (e.g. cert-manager's controller).
    "elsewhere": ("cert-manager", {"app.kubernetes.io/name": "cert-manager"}, {}),
}
AIRFLOW_CHART_PODS = ("api-server", "scheduler", "dag-processor", "triggerer", "worker", "task", "migrations",
                      "pgbouncer", "statsd")


class Cluster:
    """One environment's pods with IPs from its private subnets, its ALB and control-plane addresses, its policies."""

    def __init__(self, name: str, policies: list[dict]) -> None:
        subnets = environments.load(name).network.subnets
        hosts = ipaddress.ip_network(subnets["private"][0]).hosts()
        next(hosts)
        self.pods = {pod: Pod(ns, labels, str(next(hosts)), ports) for pod, (ns, labels, ports) in PODS.items()}
        self.alb = External(str(next(ipaddress.ip_network(subnets["public"][-1]).hosts())))
        self.control_plane = External(str(list(ipaddress.ip_network(subnets["private"][-1]).hosts())[-1]))
        self.policies = policies

    def source(self, name: str) -> Pod | External:
        return {"alb": self.alb, "control-plane": self.control_plane}.get(name) or self.pods[name]

    def admits(self, source: str, destination: str, port: int, protocol: str = "TCP") -> bool:
        return admits(self.policies, self.source(source), self.pods[destination], port, protocol)


def bootstrap_policies(stacks, name: str) -> list[dict]:
    (raw,) = stacks[f"airflow-{name}-platform"]["resource"]["helm_release"]["platform-bootstrap"]["values"]
    return [o for o in json.loads(raw)["objects"] if o["kind"] == "NetworkPolicy"]


@pytest.fixture(scope="module")
def clusters(stacks) -> dict[str, Cluster]:
    return {name: Cluster(name, bootstrap_policies(stacks, name)) for name in environments.NAMES}


# (source, destination, port, protocol): every flow the platform needs, as the flows' owners use them.
REAL_FLOWS = [
    ("alb", "api-server", 8080, "TCP"), ("worker", "api-server", 8080, "TCP"), ("task", "api-server", 8080, "TCP"),
    ("api-server", "worker", 8793, "TCP"), ("api-server", "triggerer", 8794, "TCP"),
    *((c, "pgbouncer", 6543, "TCP") for c in ("api-server", "scheduler", "dag-processor", "triggerer", "migrations")),
    ("keda-operator", "pgbouncer", 6543, "TCP"),
    *((c, "statsd", 9125, "UDP") for c in AIRFLOW_CHART_PODS if c != "statsd"),
    ("prometheus", "statsd", 9102, "TCP"),
    *((c, "vault", 8200, "TCP") for c in ("api-server", "scheduler", "dag-processor", "triggerer", "worker", "task",
                                          "migrations")),
    ("prometheus", "vault", 8200, "TCP"), ("vault", "vault", 8200, "TCP"), ("vault", "vault", 8201, "TCP"),
    ("vault-snapshot", "vault", 8200, "TCP"),
    ("alb", "grafana", 3000, "TCP"), ("prometheus", "grafana", 3000, "TCP"), ("grafana", "prometheus", 9090, "TCP"),
    ("prometheus", "prometheus", 9090, "TCP"), ("prometheus", "prometheus", 8080, "TCP"),
    ("prometheus", "alertmanager", 9093, "TCP"), ("prometheus", "alertmanager", 8080, "TCP"),
    ("grafana", "alertmanager", 9093, "TCP"), ("alertmanager", "alertmanager", 9094, "TCP"),
    ("alertmanager", "alertmanager", 9094, "UDP"), ("prometheus", "operator", 10250, "TCP"),
    ("control-plane", "operator", 10250, "TCP"), ("prometheus", "kube-state-metrics", 8080, "TCP"),
]

FORBIDDEN_FLOWS = [
    # The review: any pod could silence alerts, read Prometheus, reach Vault's raft port.
    *((c, "alertmanager", 9093, "TCP") for c in ("worker", "task", "api-server", "dag-pod", "keda-operator")),
    ("task", "vault", 8201, "TCP"), ("worker", "vault", 8201, "TCP"), ("prometheus", "vault", 8201, "TCP"),
    ("vault-snapshot", "vault", 8201, "TCP"),
    *((c, "prometheus", 9090, "TCP") for c in ("worker", "task", "scheduler", "api-server")),
    # Task pods reach the metadata only through the Execution API, even when pod_override relabels them.
    # Celery workers hold no database credential (results go to Redis), so they get no path to PgBouncer either.
    ("worker", "pgbouncer", 6543, "TCP"),
    ("task", "pgbouncer", 6543, "TCP"), ("task-relabelled", "pgbouncer", 6543, "TCP"),
    ("dag-pod", "pgbouncer", 6543, "TCP"), ("elsewhere", "pgbouncer", 6543, "TCP"),
    # Not a scraped port (no ServiceMonitor points at PgBouncer's exporter).
    ("prometheus", "pgbouncer", 9127, "TCP"),
    # Pods DAG code creates with its own labels are not Airflow pods, and nothing else reaches Vault.
    ("dag-pod", "vault", 8200, "TCP"), ("elsewhere", "vault", 8200, "TCP"), ("grafana", "vault", 8200, "TCP"),
    ("pgbouncer", "vault", 8200, "TCP"), ("statsd", "vault", 8200, "TCP"),
    ("alb", "vault", 8200, "TCP"),
    # The ALB reaches exactly its two targets' ports; pods reach Grafana only as Prometheus.
    ("alb", "api-server", 8793, "TCP"), ("alb", "worker", 8793, "TCP"), ("alb", "prometheus", 9090, "TCP"),
    ("alb", "alertmanager", 9093, "TCP"), ("worker", "grafana", 3000, "TCP"), ("dag-pod", "grafana", 3000, "TCP"),
    # Logs servers only for the API server; the API server only for workers and the ALB.
    ("task", "worker", 8793, "TCP"), ("dag-pod", "triggerer", 8794, "TCP"), ("dag-pod", "api-server", 8080, "TCP"),
    ("scheduler", "api-server", 8080, "TCP"), ("elsewhere", "api-server", 8080, "TCP"),
    # Nothing connects to the scheduler or the dag-processor.
    *((c, d, 8974, "TCP") for c in ("api-server", "worker", "alb") for d in ("scheduler", "dag-processor")),
    ("alertmanager", "prometheus", 9090, "TCP"), ("grafana", "alertmanager", 9094, "TCP"),
    ("worker", "kube-state-metrics", 8080, "TCP"), ("task", "statsd", 9102, "TCP"),
]


@pytest.mark.parametrize("name", environments.NAMES)
@pytest.mark.parametrize("source, destination, port, protocol", REAL_FLOWS)
def test_every_real_flow_is_admitted(clusters, name, source, destination, port, protocol):
    assert clusters[name].admits(source, destination, port, protocol)


@pytest.mark.parametrize("name", environments.NAMES)
@pytest.mark.parametrize("source, destination, port, protocol", FORBIDDEN_FLOWS)
def test_flows_nobody_needs_are_refused(clusters, name, source, destination, port, protocol):
    assert not clusters[name].admits(source, destination, port, protocol)


@pytest.mark.parametrize("name", environments.NAMES)
def test_every_pod_of_the_app_namespaces_is_isolated_and_no_other_namespace_is(clusters, name):
    cluster = clusters[name]
    deny = [p for p in cluster.policies if p["metadata"]["name"] == netpol.DEFAULT_DENY]
    assert sorted(p["metadata"]["namespace"] for p in deny) == sorted(k8s.APP_NAMESPACES)
    assert all(p["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]} for p in deny)
    # A port no flow names is closed on every app pod, from the ALB's subnets, the control plane and every pod.
    for destination, pod in cluster.pods.items():
        isolated = pod.namespace in k8s.APP_NAMESPACES
        for source in ("alb", "control-plane", *cluster.pods):
            assert cluster.admits(source, destination, 31337) is not isolated, (source, destination)


@pytest.mark.parametrize("name", environments.NAMES)
def test_each_allow_policy_is_one_ingress_rule_for_one_named_flow(clusters, name):
    allows = [p for p in clusters[name].policies if p["metadata"]["name"] != netpol.DEFAULT_DENY]
    assert len({(p["metadata"]["namespace"], p["metadata"]["name"]) for p in allows}) == len(allows) >= 20
    for policy in allows:
        meta, spec = policy["metadata"], policy["spec"]
        assert meta["name"].startswith("allow-") and meta["annotations"][netpol.FLOW_ANNOTATION].strip()
        # Ingress only: egress (DNS to kube-dns included) is not restricted, so no DNS rule is needed.
        assert spec["policyTypes"] == ["Ingress"] and "egress" not in spec
        (rule,) = spec["ingress"]
        assert rule["from"] and rule["ports"] and spec["podSelector"]["matchLabels"]
        for peer in rule["from"]:
            assert "ipBlock" in peer or set(peer) == {"namespaceSelector", "podSelector"}


@pytest.mark.parametrize("name", environments.NAMES)
def test_the_alb_reaches_each_target_group_bindings_pods_from_its_public_subnets_only(stacks, clusters, name):
    (raw,) = stacks[f"airflow-{name}-platform"]["resource"]["helm_release"]["platform-glue"]["values"]
    # Service -> (pod, service port -> container port): the Airflow chart's api-server Service (8080 -> 8080) and the
    # Grafana chart's Service (80 -> 3000), as helm/platform-glue's TargetGroupBindings name them.
    services = {"airflow-api-server": ("api-server", {8080: 8080}),
                "kube-prometheus-stack-grafana": ("grafana", {80: 3000})}
    backends = {b.port for b in BACKENDS}
    cluster = clusters[name]
    subnets = environments.load(name).network.subnets
    alb_policies = [p for p in cluster.policies if any("ipBlock" in peer for r in p["spec"].get("ingress", [])
                                                       for peer in r["from"])]
    for binding in json.loads(raw)["bindings"]:
        pod, ports = services[binding["serviceName"]]
        port = ports[binding["servicePort"]]
        assert port in backends and cluster.pods[pod].namespace == binding["namespace"]
        assert cluster.admits("alb", pod, port)
        for cidr in subnets["public"]:
            assert admits(cluster.policies, External(str(ipaddress.ip_network(cidr)[-2])), cluster.pods[pod], port)
    assert {p["metadata"]["name"]: [peer["ipBlock"]["cidr"] for peer in p["spec"]["ingress"][0]["from"]]
            for p in alb_policies} == {"allow-alb-to-api-server": list(subnets["public"]),
                                       "allow-alb-to-grafana": list(subnets["public"]),
                                       "allow-control-plane-to-operator": list(subnets["private"])}


def test_every_scraped_port_is_open_to_prometheus(clusters):
    """Each ServiceMonitor endpoint in play (the project's Airflow one, the Vault chart's, kube-prometheus-stack's
    defaults), resolved to its pod's container port."""
    vault_monitor = vault_values(3)["serverTelemetry"]["serviceMonitor"]
    statsd = airflow_service_monitor()
    assert vault_monitor["enabled"] is True
    targets = [("statsd", statsd["spec"]["endpoints"][0]["port"]), ("vault", "https"),
               ("prometheus", "http-web"), ("prometheus", "reloader-web"), ("alertmanager", "http-web"),
               ("alertmanager", "reloader-web"), ("operator", "https"), ("grafana", "grafana"),
               ("kube-state-metrics", "http")]
    for cluster in clusters.values():
        for pod, port_name in targets:
            port, protocol = cluster.pods[pod].ports[port_name]
            assert cluster.admits("prometheus", pod, port, protocol), (pod, port_name)


def test_ports_are_the_charts_defaults_which_the_values_keep():
    airflow_defaults = yaml.safe_load((CHARTS / "airflow" / "values.yaml").read_text())["ports"]
    assert "ports" not in airflow_values()
    assert (airflow_defaults["apiServer"], airflow_defaults["workerLogs"], airflow_defaults["triggererLogs"],
            airflow_defaults["statsdIngest"], airflow_defaults["statsdScrape"], airflow_defaults["pgbouncer"]) == (
        netpol.AIRFLOW_API_PORT, netpol.WORKER_LOG_PORT, netpol.TRIGGERER_LOG_PORT, netpol.STATSD_INGEST_PORT,
        STATSD_SCRAPE_PORT, 6543)
    kps = yaml.safe_load((CHARTS / "kube-prometheus-stack" / "values.yaml").read_text())
    assert (kps["prometheus"]["service"]["targetPort"], kps["prometheus"]["service"]["reloaderWebPort"],
            kps["alertmanager"]["service"]["targetPort"], kps["prometheusOperator"]["tls"]) == (
        netpol.PROMETHEUS_PORT, netpol.CONFIG_RELOADER_PORT, netpol.ALERTMANAGER_PORT,
        {"enabled": True, "tlsMinVersion": "VersionTLS13", "internalPort": netpol.OPERATOR_PORT})


def test_the_charts_own_network_policies_stay_off_so_there_is_one_list():
    assert "networkPolicies" not in airflow_values()       # Airflow chart default: networkPolicies.enabled false
    assert vault_values(3)["server"]["networkPolicy"] == {"enabled": False}


def test_selectors_pick_exactly_the_pods_the_table_says():
    pods = {name: (ns, labels) for name, (ns, labels, _) in PODS.items()}

    def picked(group: netpol.Pods) -> set[str]:
        return {n for n, (ns, labels) in pods.items() if ns == group.namespace and selects(group.selector(), labels)}
    assert picked(netpol.DATABASE_CLIENTS) == {"api-server", "scheduler", "dag-processor", "triggerer", "migrations"}
    assert picked(netpol.AIRFLOW_PODS) == {*AIRFLOW_CHART_PODS, "task-relabelled"}
    assert picked(netpol.VAULT_CLIENTS) == {*AIRFLOW_CHART_PODS, "task-relabelled"} - {"pgbouncer", "statsd"}
    assert picked(netpol.WORKERS) == {"worker", "task"}
    for group, pod in ((netpol.VAULT_SERVERS, "vault"), (netpol.PROMETHEUS, "prometheus"),
                       (netpol.ALERTMANAGER, "alertmanager"), (netpol.GRAFANA, "grafana"),
                       (netpol.PROMETHEUS_OPERATOR, "operator"), (netpol.KUBE_STATE_METRICS, "kube-state-metrics"),
                       (netpol.KEDA_OPERATOR, "keda-operator"), (netpol.API_SERVER, "api-server"),
                       (netpol.PGBOUNCER, "pgbouncer"), (netpol.STATSD, "statsd"), (netpol.TRIGGERER, "triggerer")):
        assert picked(group) == {pod}, group.name


@pytest.mark.parametrize("override, message", [
    (dict(alb_cidrs=()), r"alb_cidrs=\(\) names no subnet"),
    (dict(alb_cidrs=["10.0.128.0/22"]), r"alb_cidrs=\['10.0.128.0/22'\] names no subnet"),
    (dict(control_plane_cidrs=("0.0.0.0/0",)), r"control_plane_cidrs\[0\]='0.0.0.0/0' is wider than a VPC"),
    (dict(alb_cidrs=("10.0.128.1/22",)), r"alb_cidrs\[0\]='10.0.128.1/22'"),
])
def test_bad_props_fail_fast(override, message):
    with pytest.raises(ConfigError, match=message):
        NetworkPolicyProps(**{"alb_cidrs": ("10.0.128.0/22",), "control_plane_cidrs": ("10.0.0.0/19",), **override})


def test_the_platform_stack_puts_the_policies_in_the_bootstrap_chart_with_the_environments_subnets(stacks):
    for name in environments.NAMES:
        subnets = environments.load(name).network.subnets
        expected = policy_objects(NetworkPolicyProps(alb_cidrs=subnets["public"],
                                                     control_plane_cidrs=subnets["private"]))
        assert bootstrap_policies(stacks, name) == expected
