"""kube-prometheus-stack in MONITORING_NAMESPACE (Prometheus, Alertmanager, Grafana), and the objects that make
Airflow and Vault observable through it: a ServiceMonitor for Airflow's StatsD exporter, PrometheusRules for
Airflow and Vault, and (rendered by the platform-glue chart's templates/dashboards.yaml) an Airflow dashboard.

No secret is in the values: Grafana's admin login and Alertmanager's Slack webhook / PagerDuty routing key live in
Secrets Manager, reach the namespace as Kubernetes Secrets through ExternalSecrets in the platform-bootstrap chart,
and are read from the mounted Secret (Grafana `admin.existingSecret`; Alertmanager `*_file` receiver fields).

Metric names follow what Airflow 3 (3.2+/3.3) emits through the Airflow chart's StatsD exporter when the Airflow
release sets AIRFLOW_METRICS_CONFIG (`[metrics]` options): tags become Prometheus labels (InfluxDB tag syntax,
parsed by statsd_exporter), and the legacy per-pool names are off so every metric has one consistent label set.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any


from cdktf_cdktf_provider_helm.release import Release
from constructs import Construct

from . import kubernetes as k8s
from ..core import validation
from .local_chart import LocalChart
from ..aws.sso_settings import SsoSettings
from ..core.validation import require
from .monitoring_settings import MonitoringSettings  # noqa: F401  (re-exported)

# https://github.com/prometheus-community/helm-charts/tree/kube-prometheus-stack-88.5.3/charts/kube-prometheus-stack
# (defaults: tests/data/charts/kube-prometheus-stack/values.yaml; Grafana subchart 12.11.1 from grafana-community).
CHART = "kube-prometheus-stack"
CHART_VERSION = "88.5.3"
REPOSITORY = "https://prometheus-community.github.io/helm-charts"

# Kubernetes Secrets in MONITORING_NAMESPACE, delivered by ExternalSecrets from Secrets Manager.
GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_ADMIN_KEYS = ("admin-user", "admin-password")       # = k8s.grafana_admin_secret_name JSON keys
ALERT_RECEIVERS_SECRET = "alertmanager-receivers"
SLACK_WEBHOOK_KEY = "slack-webhook-url"                     # = k8s.alert_receivers_secret_name JSON keys
PAGERDUTY_ROUTING_KEY = "pagerduty-routing-key"
# The Prometheus operator mounts each `alertmanagerSpec.secrets` entry at /etc/alertmanager/secrets/<name>/.
ALERTMANAGER_SECRETS_DIR = "/etc/alertmanager/secrets"
SLACK_WEBHOOK_FILE = f"{ALERTMANAGER_SECRETS_DIR}/{ALERT_RECEIVERS_SECRET}/{SLACK_WEBHOOK_KEY}"
PAGERDUTY_ROUTING_KEY_FILE = f"{ALERTMANAGER_SECRETS_DIR}/{ALERT_RECEIVERS_SECRET}/{PAGERDUTY_ROUTING_KEY}"

# Grafana serves HTTPS on GRAFANA_PORT with a platform-CA certificate (cert-manager Certificate GRAFANA_TLS_SECRET in
# the bootstrap chart): the ALB's HTTPS target group (modules/aws/edge.py) and Prometheus's scrape reach it over TLS.
#
# No sidecar calls Grafana's reload API: k8s-sidecar can only log in with basic auth, which is off wherever
# sso.local_login is (production). Dashboards need no call: Grafana re-reads the dashboard provider's folder every
# GRAFANA_DASHBOARD_RESCAN_SECONDS. Datasources are read only at Grafana's start: an init container writes them before
# Grafana starts, and the pod's checksum/datasources annotation (hash of what the datasource ConfigMap is made of)
# rolls Grafana when they change.
GRAFANA_PORT = 3000                                         # the Grafana chart's container port (`grafana`)
GRAFANA_SERVICE = f"{k8s.MONITORING_RELEASE}-grafana"
GRAFANA_TLS_SECRET = "grafana-tls"                          # tls.crt, tls.key, ca.crt (platform root)
GRAFANA_TLS_DIR = "/etc/grafana/tls"


def grafana_dns_names(namespace: str = k8s.MONITORING_NAMESPACE) -> list[str]:
    """What Grafana's certificate covers: the Service's in-cluster names (Prometheus's scrape verifies the first)
    and localhost (a break-glass port-forward verifies it, docs/access.md). The ALB connects to pod IPs and verifies
    no target certificate."""
    return [f"{GRAFANA_SERVICE}.{namespace}.svc", f"{GRAFANA_SERVICE}.{namespace}.svc.cluster.local",
            f"{GRAFANA_SERVICE}.{namespace}", GRAFANA_SERVICE, "localhost"]


def grafana_tls_values() -> dict[str, Any]:
    """The Grafana subchart's values that make it serve HTTPS and everything that calls it speak HTTPS."""
    mount = {"name": GRAFANA_TLS_SECRET, "mountPath": GRAFANA_TLS_DIR, "readOnly": True}
    return {
        # 0440: Grafana reads it through the pod's fsGroup; no other user in the pod.
        "extraSecretMounts": [{**mount, "secretName": GRAFANA_TLS_SECRET, "defaultMode": 0o440}],
        "readinessProbe": {"httpGet": {"scheme": "HTTPS"}}, "livenessProbe": {"httpGet": {"scheme": "HTTPS"}},
        "serviceMonitor": {"scheme": "https", "tlsConfig": {
            "ca": {"secret": {"name": GRAFANA_TLS_SECRET, "key": "ca.crt"}},
            "serverName": grafana_dns_names()[0]}},
        "server": {"protocol": "https", "cert_file": f"{GRAFANA_TLS_DIR}/tls.crt",
                   "cert_key": f"{GRAFANA_TLS_DIR}/tls.key", "min_tls_version": "TLS1.2"},
    }


GRAFANA_DASHBOARD_RESCAN_SECONDS = 30


def grafana_sidecar_values() -> dict[str, Any]:
    """The sidecars load files and never call Grafana (see GRAFANA_PORT's comment): reloads work with basic auth off."""
    return {"dashboards": {"skipReload": True,
                           "provider": {"updateIntervalSeconds": GRAFANA_DASHBOARD_RESCAN_SECONDS}},
            "datasources": {"skipReload": True, "initDatasources": True}}


def datasources_checksum(values: dict[str, Any]) -> str:
    """Hash of the kube-prometheus-stack values its datasource ConfigMap is rendered from (the Grafana sidecar's
    datasource settings, Prometheus's spec and service) and the chart version: a change rolls the Grafana pod."""
    source = {"chart": CHART_VERSION, "datasources": values["grafana"]["sidecar"]["datasources"],
              "prometheus": values["prometheus"]}
    return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()


# Grafana's dashboard sidecar picks ConfigMaps with this label (the glue chart's dashboards.yaml sets it).
DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_LABEL_VALUE = "1"
DATASOURCE_UID = "prometheus"                               # the chart's default Prometheus datasource uid

# Airflow chart 1.21.0 StatsD Service (templates/statsd/statsd-service.yaml): labels tier/component/release,
# TCP port `statsd-scrape` (ports.statsdScrape = 9102) serving /metrics.
STATSD_SCRAPE_PORT = 9102
STATSD_SCRAPE_PORT_NAME = "statsd-scrape"

# `[metrics]` options the Airflow release must set for the rules below to select per-pool / per-executor series:
# tags as InfluxDB-style labels, no legacy names (which would register a second label set under the same metric
# name in statsd_exporter, and statsd_exporter drops the conflicting one).
AIRFLOW_METRICS_CONFIG = k8s.AIRFLOW_METRICS_CONFIG   # the release sets these (modules/platform/airflow.py)

# Every metric the rules and the dashboard use -> where it comes from. Airflow: the StatsD stat (without the
# `airflow.` prefix) in Airflow's metrics registry; statsd_exporter turns `a.b` into `airflow_a_b`, except where the
# Airflow chart's statsd-mappings.yml maps a name (noted). Vault: its telemetry (Prometheus sink).
KNOWN_METRICS: dict[str, str] = {
    "airflow_scheduler_heartbeat": "airflow:scheduler_heartbeat",
    "airflow_triggerer_heartbeat": "airflow:triggerer_heartbeat",
    "airflow_dag_processor_heartbeat": "airflow:dag_processor_heartbeat",
    "airflow_dag_processing_import_errors": "airflow:dag_processing.import_errors",
    "airflow_dag_processing_total_parse_time": "airflow:dag_processing.total_parse_time",
    "airflow_ti_failures": "airflow:ti_failures",
    "airflow_ti_successes": "airflow:ti_successes",
    # executor.queued_tasks.<Executor> (multi-executor) -> chart mapping `airflow.executor.queued_tasks.*`
    "airflow_executor_queued_tasks": "airflow:executor.queued_tasks",
    "airflow_executor_running_tasks": "airflow:executor.running_tasks",
    "airflow_executor_open_slots": "airflow:executor.open_slots",
    "airflow_pool_open_slots": "airflow:pool.open_slots",
    "airflow_pool_queued_slots": "airflow:pool.queued_slots",
    "airflow_pool_running_slots": "airflow:pool.running_slots",
    "airflow_pool_scheduled_slots": "airflow:pool.scheduled_slots",
    "airflow_triggers_running": "airflow:triggers.running",
    "vault_core_unsealed": "vault:vault.core.unsealed",
    "vault_core_active": "vault:vault.core.active",
    "vault_core_leadership_lost_count": "vault:vault.core.leadership_lost",
}

@dataclass(frozen=True, kw_only=True)
class MonitoringProps:
    """What the release needs: the environment's settings, whole, and the environment's names."""
    settings: MonitoringSettings = MonitoringSettings()
    domain: str                           # Grafana is https://grafana.<domain>/ (the ALB's host rule)
    secret_prefix: str                    # Secrets Manager names: k8s.grafana_admin_secret_name(prefix), ...
    sso: SsoSettings | None = None        # Grafana signs users in at the IdP (generic OAuth), docs/access.md

    def __post_init__(self) -> None:
        validation.dns_name("domain", self.domain)
        require(isinstance(self.secret_prefix, str) and re.fullmatch(r"[A-Za-z0-9/_+=.@-]+", self.secret_prefix)
                is not None, "secret_prefix", self.secret_prefix, "is not a Secrets Manager name prefix",
                "use letters, digits and /_+=.@-, e.g. 'airflow-dev'")
        require(isinstance(self.settings, MonitoringSettings), "settings", type(self.settings).__name__,
                "is not MonitoringSettings", "pass MonitoringSettings (or the environment's MonitoringConfig)")

    @property
    def grafana_url(self) -> str:
        return f"https://grafana.{self.domain}/"


def _volume(storage_class: str, gib: int) -> dict[str, Any]:
    return {"volumeClaimTemplate": {"spec": {
        "storageClassName": storage_class, "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{gib}Gi"}}}}}


def alertmanager_config() -> dict[str, Any]:
    """Alertmanager routing: critical -> PagerDuty and Slack, warning -> Slack. Receiver credentials are files of
    the mounted ALERT_RECEIVERS_SECRET, never values."""
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "null", "group_by": ["alertname", "namespace"], "group_wait": "30s", "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                # The chart's always-firing Watchdog and InfoInhibitor exist to prove the pipeline works, not to page.
                {"receiver": "null", "matchers": ['alertname =~ "Watchdog|InfoInhibitor"']},
                {"receiver": "pagerduty", "matchers": ['severity = "critical"'], "continue": True},
                {"receiver": "slack", "matchers": ['severity =~ "critical|warning"']},
            ]},
        "receivers": [
            {"name": "null"},
            {"name": "slack", "slack_configs": [{
                "api_url_file": SLACK_WEBHOOK_FILE, "send_resolved": True,
                "title": '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}',
                "text": '{{ range .Alerts }}*{{ .Annotations.summary }}*\n{{ .Annotations.description }}\n{{ end }}'}]},
            {"name": "pagerduty", "pagerduty_configs": [{
                "routing_key_file": PAGERDUTY_ROUTING_KEY_FILE, "send_resolved": True,
                "description": '{{ .CommonLabels.alertname }}: {{ .CommonAnnotations.summary }}'}]},
        ],
        # The chart's defaults: a critical alert silences the warning/info of the same name and namespace.
        "inhibit_rules": [
            {"source_matchers": ["severity = critical"], "target_matchers": ["severity =~ warning|info"],
             "equal": ["namespace", "alertname"]},
            {"source_matchers": ["severity = warning"], "target_matchers": ["severity = info"],
             "equal": ["namespace", "alertname"]},
            {"source_matchers": ["alertname = InfoInhibitor"], "target_matchers": ["severity = info"],
             "equal": ["namespace"]},
            {"target_matchers": ["alertname = InfoInhibitor"]},
        ],
        "templates": ["/etc/alertmanager/config/*.tmpl"],
    }


def monitoring_values(props: MonitoringProps) -> dict[str, Any]:
    """Values for kube-prometheus-stack 88.5.3 (pure). Every key exists in the chart's (or its Grafana
    subchart's) values.yaml; tests/test_platform_monitoring.py walks them."""
    p, s = props, props.settings
    selector = {"matchLabels": dict(k8s.PROMETHEUS_SELECTOR_LABELS)}
    selectors: dict[str, Any] = {}
    # Explicit selectors (not the chart's *NilUsesHelmValues defaults): anything labelled like the glue chart's
    # objects and the charts' own monitors, in any namespace (Airflow's ServiceMonitor lives in `airflow`).
    for kind in ("serviceMonitor", "podMonitor", "rule", "probe"):
        selectors.update({f"{kind}SelectorNilUsesHelmValues": False, f"{kind}Selector": selector,
                          f"{kind}NamespaceSelector": {}})
    grafana_host = f"grafana.{p.domain}"
    tls = grafana_tls_values()
    sidecars = grafana_sidecar_values()
    values = {
        "prometheus": {"prometheusSpec": {
            "replicas": s.prometheus_replicas, "retention": s.prometheus_retention,
            "retentionSize": s.prometheus_retention_size,
            "storageSpec": _volume(k8s.STORAGE_CLASS, s.prometheus_storage_gib), **selectors}},
        "alertmanager": {
            "config": alertmanager_config(),
            "alertmanagerSpec": {
                "replicas": s.alertmanager_replicas, "retention": s.alertmanager_retention,
                "storage": _volume(k8s.STORAGE_CLASS, s.alertmanager_storage_gib),
                "secrets": [ALERT_RECEIVERS_SECRET]}},
        "grafana": {
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": GRAFANA_ADMIN_KEYS[0],
                      "passwordKey": GRAFANA_ADMIN_KEYS[1]},
            "persistence": {"enabled": True, "type": "pvc", "storageClassName": k8s.STORAGE_CLASS,
                            "accessModes": ["ReadWriteOnce"], "size": f"{s.grafana_storage_gib}Gi"},
            # One ReadWriteOnce volume: the old pod must release it before the new one starts.
            "deploymentStrategy": {"type": "Recreate"},
            "ingress": {"enabled": False},          # reached through the ALB (TargetGroupBinding), not an Ingress
            "serviceMonitor": {"labels": dict(k8s.PROMETHEUS_SELECTOR_LABELS), **tls["serviceMonitor"]},
            "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": DASHBOARD_LABEL_VALUE,
                                       "searchNamespace": k8s.MONITORING_NAMESPACE, **sidecars["dashboards"]},
                        "datasources": sidecars["datasources"]},
            "extraSecretMounts": tls["extraSecretMounts"],
            "readinessProbe": tls["readinessProbe"], "livenessProbe": tls["livenessProbe"],
            "grafana.ini": {
                "server": {"domain": grafana_host, "root_url": p.grafana_url, **tls["server"]},
                "security": {"cookie_secure": True},       # browsers only ever reach Grafana over HTTPS (ALB)
                "analytics": {"reporting_enabled": False, "check_for_updates": False},
                **grafana_sso_ini(p.sso)},
            **({"envValueFrom": {GRAFANA_SSO_SECRET_ENV: {"secretKeyRef": {
                "name": GRAFANA_SSO_SECRET, "key": GRAFANA_SSO_SECRET_KEY}}}} if p.sso and p.sso.enabled else {}),
        },
    }
    values["grafana"]["podAnnotations"] = {"checksum/datasources": datasources_checksum(values)}
    return values


# The IdP client secret reaches Grafana only as this environment variable, from a Secret External Secrets renders
# from Secrets Manager (sso.client_secret_name): never in values. Grafana reads GF_<SECTION>_<KEY> over grafana.ini.
GRAFANA_SSO_SECRET = "grafana-sso"
GRAFANA_SSO_SECRET_KEY = "client-secret"
GRAFANA_SSO_SECRET_ENV = "GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET"
_GRAFANA_ROLE_ORDER = ("Admin", "Editor", "Viewer")     # the first matching group wins: most privileged first


def grafana_role_path(sso: SsoSettings) -> str:
    """JMESPath from the IdP's userinfo to a Grafana role; no mapped group yields null, which role_attribute_strict
    turns into a refused login."""
    def literal(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    claim = sso.groups_claim if sso.groups_claim.isidentifier() else f'"{sso.groups_claim}"'
    ranked = sorted(sso.grafana_roles.items(), key=lambda item: (_GRAFANA_ROLE_ORDER.index(item[1]), item[0]))
    return " || ".join(f"contains({claim}[*], {literal(group)}) && {literal(role)}" for group, role in ranked)


def grafana_sso_ini(sso: SsoSettings | None) -> dict[str, dict[str, Any]]:
    """grafana.ini sections for generic OAuth against the IdP (authorization code with PKCE). Password login (form and
    basic auth) exists only while `sso.local_login` is on: break-glass, docs/access.md."""
    if sso is None or not sso.enabled:
        return {}
    return {
        "auth": {"disable_login_form": not sso.local_login},
        "auth.basic": {"enabled": sso.local_login},
        "auth.generic_oauth": {
            "enabled": True, "name": "Single sign-on", "client_id": sso.client_id, "scopes": " ".join(sso.scopes),
            "auth_url": sso.authorization_endpoint, "token_url": sso.token_endpoint, "api_url": sso.user_info_endpoint,
            "use_pkce": True, "use_refresh_token": True, "allow_sign_up": True,
            # Straight to the IdP (already signed in at the ALB): no Grafana login page, unless break-glass is on.
            "auto_login": not sso.local_login,
            "login_attribute_path": sso.username_claim, "email_attribute_path": "email",
            "groups_attribute_path": sso.groups_claim,
            "role_attribute_path": grafana_role_path(sso), "role_attribute_strict": True,
            "allow_assign_grafana_admin": False, "skip_org_role_sync": False}}


# ---- glue objects (platform-glue chart) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    for_: str
    severity: str            # "critical" pages (PagerDuty + Slack); "warning" goes to Slack
    summary: str
    description: str

    def manifest(self) -> dict[str, Any]:
        return {"alert": self.alert, "expr": self.expr, "for": self.for_, "labels": {"severity": self.severity},
                "annotations": {"summary": self.summary, "description": self.description}}


def airflow_alert_rules(*, queued_tasks_threshold: int, task_failure_ratio: float) -> tuple[AlertRule, ...]:
    failures = "sum(rate(airflow_ti_failures[15m]))"
    finished = f"({failures} + (sum(rate(airflow_ti_successes[15m])) or vector(0)))"
    return (
        AlertRule("AirflowSchedulerHeartbeatMissing",
                  "sum(rate(airflow_scheduler_heartbeat[5m])) == 0 or absent(airflow_scheduler_heartbeat)", "5m",
                  "critical", "No Airflow scheduler is heartbeating",
                  "No scheduler_heartbeat for 5 minutes: no scheduler is running, so no task gets scheduled."),
        AlertRule("AirflowDagImportErrors", "max(airflow_dag_processing_import_errors) > 0", "10m", "warning",
                  "DAG files fail to import",
                  "{{ $value }} DAG file(s) fail to parse; see Browse > DAG Import Errors in the Airflow UI."),
        AlertRule("AirflowTaskFailureRateHigh",
                  f"{failures} / {finished} > {task_failure_ratio:g} and sum(increase(airflow_ti_failures[15m])) >= 3",
                  "15m", "warning", "Many Airflow task instances fail",
                  "{{ $value | humanizePercentage }} of the task instances finished in the last 15 minutes failed."),
        AlertRule("AirflowQueuedTasksPilingUp",
                  f"sum by (executor) (airflow_executor_queued_tasks) > {queued_tasks_threshold}", "15m", "warning",
                  "Queued Airflow tasks are piling up",
                  "{{ $value }} tasks have been queued on {{ $labels.executor }} for 15 minutes: workers or nodes "
                  "do not scale, or the executor cannot launch them."),
        AlertRule("AirflowTriggererDown",
                  "sum(rate(airflow_triggerer_heartbeat[5m])) == 0 or absent(airflow_triggerer_heartbeat)", "5m",
                  "critical", "No Airflow triggerer is heartbeating",
                  "No triggerer_heartbeat for 5 minutes: deferred tasks and event-driven (AssetWatcher) DAGs stall."),
        AlertRule("AirflowPoolNoOpenSlots",
                  "max by (pool_name) (airflow_pool_open_slots) <= 0 and on (pool_name) "
                  "max by (pool_name) (airflow_pool_scheduled_slots) > 0", "15m", "warning",
                  "An Airflow pool has no open slots",
                  "Pool {{ $labels.pool_name }} has had no open slot for 15 minutes while tasks wait for it."),
    )


def vault_alert_rules() -> tuple[AlertRule, ...]:
    return (
        AlertRule("VaultSealed", "vault_core_unsealed == 0", "1m", "critical", "A Vault node is sealed",
                  "Vault pod {{ $labels.pod }} is sealed: it serves no secrets until KMS auto-unseal succeeds."),
        AlertRule("VaultLeaderLost", "(max(vault_core_active) or on() vector(0)) < 1", "2m", "critical",
                  "Vault has no active node",
                  "No Vault node reports itself active: the raft cluster lost its leader (or quorum), so Airflow "
                  "cannot read connections and variables."),
        AlertRule("VaultLeadershipFlapping", "sum(increase(vault_core_leadership_lost_count[1h])) > 3", "1m",
                  "warning", "Vault leadership changes often",
                  "Vault lost leadership {{ $value }} times in the last hour; check node health and raft latency."),
    )


def prometheus_rule(name: str, group: str, rules: tuple[AlertRule, ...]) -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": name, "namespace": k8s.MONITORING_NAMESPACE,
                         "labels": dict(k8s.PROMETHEUS_SELECTOR_LABELS)},
            "spec": {"groups": [{"name": group, "rules": [r.manifest() for r in rules]}]}}


def airflow_service_monitor(*, airflow_release: str = k8s.AIRFLOW_RELEASE) -> dict[str, Any]:
    """Scrapes the Airflow chart's StatsD exporter Service (the chart 1.21.0 ships no ServiceMonitor of its own)."""
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": f"{airflow_release}-statsd", "namespace": k8s.AIRFLOW_NAMESPACE,
                         "labels": dict(k8s.PROMETHEUS_SELECTOR_LABELS)},
            "spec": {"selector": {"matchLabels": {"tier": "airflow", "component": "statsd",
                                                  "release": airflow_release}},
                     "namespaceSelector": {"matchNames": [k8s.AIRFLOW_NAMESPACE]},
                     "endpoints": [{"port": STATSD_SCRAPE_PORT_NAME, "path": "/metrics", "interval": "30s",
                                    # statsd_exporter's own labels (pool_name, executor, ...) are the data.
                                    "honorLabels": True}]}}


def dashboard_values() -> dict[str, Any]:
    """The platform-glue chart's `dashboards` values: templates/dashboards.yaml renders one ConfigMap per
    dashboards/*.json file, labelled for Grafana's sidecar, in the monitoring namespace."""
    return {"namespace": k8s.MONITORING_NAMESPACE, "labelKey": DASHBOARD_LABEL, "labelValue": DASHBOARD_LABEL_VALUE}


class Monitoring(Construct):
    """The kube-prometheus-stack release. Its namespace and Secrets come from the platform-bootstrap chart (the
    namespace, and ExternalSecrets added here), so the release depends on that chart's release."""

    def __init__(self, scope: Construct, id_: str, *, props: MonitoringProps, bootstrap: LocalChart,
                 timeout: int = 900) -> None:
        super().__init__(scope, id_)
        self.props = p = props
        self.grafana_url: str = p.grafana_url
        for secret, remote, keys in ((GRAFANA_ADMIN_SECRET, k8s.grafana_admin_secret_name(p.secret_prefix),
                                      GRAFANA_ADMIN_KEYS),
                                     (ALERT_RECEIVERS_SECRET, k8s.alert_receivers_secret_name(p.secret_prefix),
                                      (SLACK_WEBHOOK_KEY, PAGERDUTY_ROUTING_KEY))):
            bootstrap.add_object(k8s.external_secret(
                name=secret, namespace=k8s.MONITORING_NAMESPACE,
                data=[{"secretKey": key, "remoteRef": {"key": remote, "property": key}} for key in keys]))
        bootstrap.add_object(k8s.certificate(name=GRAFANA_TLS_SECRET, namespace=k8s.MONITORING_NAMESPACE,
                                             dns_names=grafana_dns_names()))
        if p.sso is not None and p.sso.enabled:
            bootstrap.add_object(k8s.external_secret(          # a plain-string secret: no property
                name=GRAFANA_SSO_SECRET, namespace=k8s.MONITORING_NAMESPACE,
                data=[{"secretKey": GRAFANA_SSO_SECRET_KEY, "remoteRef": {"key": p.sso.client_secret_name}}]))
        values = monitoring_values(p)
        self.release = Release(
            self, "release", name=k8s.MONITORING_RELEASE, namespace=k8s.MONITORING_NAMESPACE, repository=REPOSITORY,
            chart=CHART, version=CHART_VERSION, atomic=True, cleanup_on_fail=True, wait=True,
            timeout=timeout, values=[json.dumps(values, sort_keys=True)], depends_on=[bootstrap.release])
        self.release.override_logical_id(CHART)     # `helm_release.kube-prometheus-stack`: a stable plan address

    def add_glue_objects(self, glue: LocalChart, *, airflow_release: str = k8s.AIRFLOW_RELEASE) -> None:
        """Add the Airflow ServiceMonitor and the Airflow/Vault PrometheusRules to the glue chart (which must
        depend on self.release: the monitoring.coreos.com CRDs come with it)."""
        s = self.props.settings
        glue.add_object(airflow_service_monitor(airflow_release=airflow_release))
        glue.add_object(prometheus_rule("airflow-alerts", "airflow", airflow_alert_rules(
            queued_tasks_threshold=s.queued_tasks_threshold, task_failure_ratio=s.task_failure_ratio)))
        glue.add_object(prometheus_rule("vault-alerts", "vault", vault_alert_rules()))
