"""kube-prometheus-stack construct: pinned release after the bootstrap chart, secrets by reference only, per-setting
storage/retention, explicit selectors; the glue objects (ServiceMonitor, PrometheusRules) and the dashboard."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from modules.platform import kubernetes as k8s
from modules.platform.local_chart import LocalChart, LocalChartProps
from modules.platform.monitoring import (AIRFLOW_METRICS_CONFIG, KNOWN_METRICS, Monitoring, MonitoringProps,
                                         MonitoringSettings, datasources_checksum,
                                airflow_alert_rules, dashboard_values, monitoring_values, vault_alert_rules)
from modules.core.validation import ConfigError
from tests.conftest import looks_like_secret, strings, synth
from tests.harness import run_in_airflow

ROOT = Path(__file__).resolve().parents[3]
GLUE = ROOT / "helm" / "platform-glue"
BASE = dict(domain="dev.data.example.com", secret_prefix="airflow-dev")
REQUIRED_ALERTS = {
    "AirflowSchedulerHeartbeatMissing": "critical", "AirflowDagImportErrors": "warning",
    "AirflowTaskFailureRateHigh": "warning", "AirflowQueuedTasksPilingUp": "warning",
    "AirflowTriggererDown": "critical", "AirflowPoolNoOpenSlots": "warning",
    "VaultSealed": "critical", "VaultLeaderLost": "critical"}

# ---- a small PromQL syntax check (no PromQL parser is a project dependency) --------------------------------------
PROMQL_FUNCTIONS = {"sum", "max", "min", "avg", "count", "rate", "increase", "irate", "absent", "vector", "clamp_min",
                    "histogram_quantile", "topk"}
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                   "offset"}
_RANGE = re.compile(r"\[(\d+(ms|s|m|h|d|w|y))+\]")


def promql_metrics(expr: str) -> dict[str, bool]:
    """Metric names in `expr` -> whether each sits inside rate()/increase() (a counter use). Raises AssertionError
    on unbalanced brackets, unknown functions, bad range selectors, or a rate() without a range."""
    stack = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for ch in re.sub(r'"[^"]*"', '""', expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            assert stack and stack.pop() == pairs[ch], f"unbalanced {ch!r} in {expr!r}"
    assert not stack, f"unclosed {stack} in {expr!r}"
    ranges = re.findall(r"\[[^\]]*\]", expr)
    assert all(_RANGE.fullmatch(r) for r in ranges), f"bad range selector in {expr!r}"
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)          # ranges checked above; keep the bracket for rate()
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found: dict[str, bool] = {}
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        name, rest = match.group(), text[match.end():].lstrip()
        if re.fullmatch(r"\d+[a-z]*", name) or name in PROMQL_KEYWORDS:
            continue
        if rest.startswith("("):
            assert name in PROMQL_FUNCTIONS, f"unknown function {name!r} in {expr!r}"
            if name in ("rate", "increase", "irate"):
                assert re.match(r"\(\s*[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?\[", rest), f"{name} needs a range: {expr!r}"
            continue
        if re.match(r"[0-9]", name):
            continue
        inside_rate = re.search(rf"\b(rate|increase|irate)\(\s*{re.escape(name)}\b", text) is not None
        found[name] = found.get(name, False) or inside_rate
    return found


def all_rules():
    return (*airflow_alert_rules(queued_tasks_threshold=50, task_failure_ratio=0.1), *vault_alert_rules())


def dashboard_exprs():
    dashboard = json.loads((GLUE / "dashboards" / "airflow.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def build(stack, **overrides):
    bootstrap = LocalChart(stack, "platform-bootstrap", props=LocalChartProps(chart="platform-bootstrap",
                                                                               namespace="kube-system"))
    glue = LocalChart(stack, "platform-glue", props=LocalChartProps(chart="platform-glue", namespace="kube-system"))
    monitoring = Monitoring(stack, "monitoring", props=MonitoringProps(**BASE, settings=MonitoringSettings(**overrides)),
                            bootstrap=bootstrap)
    monitoring.add_glue_objects(glue)
    doc = synth(stack)
    releases = doc["resource"]["helm_release"]
    values = lambda name: json.loads(releases[name]["values"][0])  # noqa: E731
    return releases, values


# ---- the release ----------------------------------------------------------------------------------------------

def test_release_is_the_pinned_chart_in_the_monitoring_namespace_after_the_bootstrap_chart(stack):
    releases, _ = build(stack)
    rel = releases["kube-prometheus-stack"]
    assert (rel["chart"], rel["version"], rel["repository"], rel["name"], rel["namespace"]) == (
        "kube-prometheus-stack", "88.5.3", "https://prometheus-community.github.io/helm-charts",
        k8s.MONITORING_RELEASE, k8s.MONITORING_NAMESPACE)
    assert rel["depends_on"] == ["helm_release.platform-bootstrap"] and rel["atomic"] is True


def test_bootstrap_chart_gets_external_secrets_for_grafana_admin_and_alert_receivers(stack):
    _, values = build(stack)
    secrets = {o["metadata"]["name"]: o for o in values("platform-bootstrap")["objects"] if o["kind"] == "ExternalSecret"}
    assert set(secrets) == {"grafana-admin", "alertmanager-receivers"}
    for name, remote, keys in (("grafana-admin", k8s.grafana_admin_secret_name("airflow-dev"),
                                {"admin-user", "admin-password"}),
                               ("alertmanager-receivers", k8s.alert_receivers_secret_name("airflow-dev"),
                                {"slack-webhook-url", "pagerduty-routing-key"})):
        es = secrets[name]
        assert (es["apiVersion"], es["metadata"]["namespace"]) == (k8s.EXTERNAL_SECRETS_API_VERSION, "monitoring")
        assert es["spec"]["secretStoreRef"] == {"name": k8s.SECRETS_MANAGER_STORE, "kind": "ClusterSecretStore"}
        assert es["spec"]["target"]["name"] == name
        assert {(d["secretKey"], d["remoteRef"]["key"], d["remoteRef"]["property"]) for d in es["spec"]["data"]} == {
            (key, remote, key) for key in keys}


def test_alertmanager_reads_slack_and_pagerduty_credentials_from_the_mounted_secret(stack):
    _, values = build(stack)
    am = values("kube-prometheus-stack")["alertmanager"]
    assert am["alertmanagerSpec"]["secrets"] == ["alertmanager-receivers"]
    receivers = {r["name"]: r for r in am["config"]["receivers"]}
    (slack,) = receivers["slack"]["slack_configs"]
    (pagerduty,) = receivers["pagerduty"]["pagerduty_configs"]
    assert slack["api_url_file"] == "/etc/alertmanager/secrets/alertmanager-receivers/slack-webhook-url"
    assert pagerduty["routing_key_file"] == "/etc/alertmanager/secrets/alertmanager-receivers/pagerduty-routing-key"
    assert not {"api_url", "routing_key", "service_key"} & (slack.keys() | pagerduty.keys())
    assert "slack_api_url" not in am["config"]["global"] and "pagerduty_url" not in am["config"]["global"]
    routes = am["config"]["route"]["routes"]
    critical = [r for r in routes if 'severity = "critical"' in r.get("matchers", [])]
    assert [(r["receiver"], r.get("continue")) for r in critical] == [("pagerduty", True)]
    assert any(r["receiver"] == "slack" and 'severity =~ "critical|warning"' in r["matchers"] for r in routes)


@pytest.mark.parametrize("overrides,expected", [
    ({}, ("15d", "40GB", "50Gi", 1, "120h", "2Gi", 1, "5Gi")),
    (dict(prometheus_retention="30d", prometheus_retention_size="180GB", prometheus_storage_gib=200,
          prometheus_replicas=2, alertmanager_retention="240h", alertmanager_storage_gib=5, alertmanager_replicas=3,
          grafana_storage_gib=10), ("30d", "180GB", "200Gi", 2, "240h", "5Gi", 3, "10Gi")),
])
def test_retention_replicas_and_encrypted_gp3_volumes_follow_the_props(overrides, expected):
    values = monitoring_values(MonitoringProps(**BASE, settings=MonitoringSettings(**overrides)))
    prom, am = values["prometheus"]["prometheusSpec"], values["alertmanager"]["alertmanagerSpec"]
    claim = lambda v: v["volumeClaimTemplate"]["spec"]  # noqa: E731
    grafana = values["grafana"]["persistence"]
    assert (prom["retention"], prom["retentionSize"], claim(prom["storageSpec"])["resources"]["requests"]["storage"],
            prom["replicas"], am["retention"], claim(am["storage"])["resources"]["requests"]["storage"],
            am["replicas"], grafana["size"]) == expected
    assert {claim(prom["storageSpec"])["storageClassName"], claim(am["storage"])["storageClassName"],
            grafana["storageClassName"]} == {k8s.STORAGE_CLASS}
    assert grafana["enabled"] is True and values["grafana"]["deploymentStrategy"] == {"type": "Recreate"}


def test_prometheus_selects_monitors_and_rules_by_the_shared_labels_in_every_namespace():
    spec = monitoring_values(MonitoringProps(**BASE))["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule", "probe"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False
        assert spec[f"{kind}Selector"] == {"matchLabels": k8s.PROMETHEUS_SELECTOR_LABELS}
        assert spec[f"{kind}NamespaceSelector"] == {}


def test_grafana_uses_the_admin_secret_the_alb_host_and_the_dashboard_sidecar():
    grafana = monitoring_values(MonitoringProps(**BASE))["grafana"]
    assert grafana["admin"] == {"existingSecret": "grafana-admin", "userKey": "admin-user",
                                "passwordKey": "admin-password"}
    assert "adminPassword" not in grafana and grafana["ingress"] == {"enabled": False}
    server = grafana["grafana.ini"]["server"]
    assert (server["root_url"], server["domain"]) == ("https://grafana.dev.data.example.com/",
                                                      "grafana.dev.data.example.com")
    dashboards = grafana["sidecar"]["dashboards"]
    assert {k: dashboards[k] for k in ("enabled", "label", "labelValue", "searchNamespace")} == {
        "enabled": True, "label": "grafana_dashboard", "labelValue": "1", "searchNamespace": k8s.MONITORING_NAMESPACE}
    assert dashboard_values() == {"namespace": k8s.MONITORING_NAMESPACE, "labelKey": "grafana_dashboard",
                                  "labelValue": "1"}


def test_values_hold_no_secret_literal(stack):
    releases, _ = build(stack)
    texts = [s for rel in releases.values() for s in strings(rel)]
    assert [s for s in texts if looks_like_secret(s)] == []
    assert not any("hooks.slack.com" in s for s in texts)


@pytest.mark.parametrize("field,value,problem", [
    ("prometheus_retention", "15 days", "is not a Prometheus duration"),
    ("prometheus_retention_size", "40G", "is not a Prometheus byte size"),
    ("prometheus_retention_size", "48GB", "does not fit 90% of prometheus_storage_gib=50"),
    ("alertmanager_retention", "5d", "is not an Alertmanager retention"),
    ("prometheus_replicas", 0, "is outside 1-5"),
    ("grafana_storage_gib", 0, "is outside 1-1024"),
    ("queued_tasks_threshold", 0, "is outside 1-1000000"),
    ("task_failure_ratio", 1.5, "is not a ratio between 0 and 1"),
])
def test_settings_reject_bad_values_naming_the_field_and_fix(field, value, problem):
    with pytest.raises(ConfigError, match=re.escape(f"monitoring.{field}={value!r} {problem}; fix: ")) as err:
        MonitoringSettings(**{field: value})
    assert err.value.field == f"monitoring.{field}"


@pytest.mark.parametrize("field,value,problem", [
    ("domain", "not a domain", "is not a valid DNS domain name"),
    ("secret_prefix", "a b", "is not a Secrets Manager name prefix"),
    ("settings", {"prometheus_replicas": 2}, "is not MonitoringSettings"),
])
def test_props_reject_bad_values_naming_the_field_and_fix(field, value, problem):
    with pytest.raises(ConfigError, match=re.escape(f"{problem}; fix: ")) as err:
        MonitoringProps(**{**BASE, field: value})
    assert err.value.field == field


# ---- glue objects ----------------------------------------------------------------------------------------------

def test_service_monitor_scrapes_the_airflow_statsd_service_and_is_selected_by_prometheus(stack):
    _, values = build(stack)
    objects = values("platform-glue")["objects"]
    (sm,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert (sm["metadata"]["namespace"], sm["metadata"]["labels"]) == (k8s.AIRFLOW_NAMESPACE,
                                                                       k8s.PROMETHEUS_SELECTOR_LABELS)
    assert sm["spec"]["selector"] == {"matchLabels": {"tier": "airflow", "component": "statsd",
                                                      "release": k8s.AIRFLOW_RELEASE}}
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [k8s.AIRFLOW_NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    # chart 1.21.0 templates/statsd/statsd-service.yaml: port `statsd-scrape` = ports.statsdScrape (9102)
    assert (endpoint["port"], endpoint["path"]) == ("statsd-scrape", "/metrics")
    chart_values = yaml.safe_load((ROOT / "tests" / "data" / "charts" / "airflow" / "values.yaml").read_text())
    assert chart_values["ports"]["statsdScrape"] == 9102 and chart_values["statsd"]["enabled"] is True


def test_prometheus_rules_carry_every_required_alert_with_severity_and_annotations(stack):
    _, values = build(stack)
    rules = [o for o in values("platform-glue")["objects"] if o["kind"] == "PrometheusRule"]
    assert {r["metadata"]["name"] for r in rules} == {"airflow-alerts", "vault-alerts"}
    assert all(r["metadata"]["labels"] == k8s.PROMETHEUS_SELECTOR_LABELS and
               r["metadata"]["namespace"] == k8s.MONITORING_NAMESPACE for r in rules)
    alerts = {a["alert"]: a for r in rules for g in r["spec"]["groups"] for a in g["rules"]}
    assert {name: alerts[name]["labels"]["severity"] for name in REQUIRED_ALERTS} == REQUIRED_ALERTS
    for alert in alerts.values():
        assert set(alert) == {"alert", "expr", "for", "labels", "annotations"}
        assert re.fullmatch(r"\d+[smh]", alert["for"]) and set(alert["annotations"]) == {"summary", "description"}
    assert alerts["VaultSealed"]["expr"] == "vault_core_unsealed == 0"
    # Terraform would interpolate these inside the helm_release values string (Alertmanager's `{{ $value }}` is fine).
    assert not re.search(r"[$%]\{", json.dumps(rules))
    assert "airflow_pool_open_slots" in alerts["AirflowPoolNoOpenSlots"]["expr"]


def test_rule_thresholds_come_from_the_props():
    rules = {r.alert: r for r in airflow_alert_rules(queued_tasks_threshold=75, task_failure_ratio=0.25)}
    assert rules["AirflowQueuedTasksPilingUp"].expr.endswith("> 75")
    assert "> 0.25 and" in rules["AirflowTaskFailureRateHigh"].expr


@pytest.mark.parametrize("expr", [rule.expr for rule in all_rules()] + dashboard_exprs())
def test_every_expression_is_balanced_and_uses_only_known_metrics(expr):
    metrics = promql_metrics(expr)
    assert metrics and set(metrics) <= set(KNOWN_METRICS)
    # Terraform would interpolate these inside the helm_release values string.
    assert "${" not in expr and "%{" not in expr


def test_the_promql_check_catches_typos():
    with pytest.raises(AssertionError, match="unclosed"):
        promql_metrics("sum(rate(airflow_ti_failures[5m])")
    with pytest.raises(AssertionError, match="unbalanced"):
        promql_metrics("sum(rate(airflow_ti_failures[5m)))")
    with pytest.raises(AssertionError, match="bad range"):
        promql_metrics("sum(rate(airflow_ti_failures[5 minutes]))")
    with pytest.raises(AssertionError, match="unknown function"):
        promql_metrics("summ(airflow_ti_failures)")
    with pytest.raises(AssertionError, match="needs a range"):
        promql_metrics("rate(airflow_ti_failures)")
    assert set(promql_metrics("max by (pool_name) (airflow_pol_open_slots)")) - set(KNOWN_METRICS) == {
        "airflow_pol_open_slots"}


def test_rule_metrics_are_ones_airflow_emits_used_by_their_type():
    """Against real Airflow 3: each StatsD stat behind an Airflow metric is in Airflow's metrics registry and
    emitted by its code; counters only appear under rate()/increase(), gauges never do; the [metrics] options
    AIRFLOW_METRICS_CONFIG names exist."""
    uses: dict[str, set[bool]] = {}
    for expr in [r.expr for r in all_rules()] + dashboard_exprs():
        for metric, in_rate in promql_metrics(expr).items():
            uses.setdefault(metric, set()).add(in_rate)
    airflow = {m: KNOWN_METRICS[m].removeprefix("airflow:") for m in uses if KNOWN_METRICS[m].startswith("airflow:")}
    result = run_in_airflow(ROOT / "tests" / "airflow_checks" / "monitoring_metrics.py", json.dumps(
        sorted(set(airflow.values()))), json.dumps([f"metrics.{k}" for k in AIRFLOW_METRICS_CONFIG]))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["airflow_version"].startswith("3.")
    assert all(report["options"].values()), report["options"]
    for metric, stat in airflow.items():
        info = report["stats"][stat]
        assert info["emitted"] and info["type"] in ("counter", "gauge"), (metric, info)
        assert uses[metric] == {info["type"] == "counter"}, (metric, info["type"], uses[metric])
        # statsd_exporter's default name for `airflow.<stat>` (executor.* names are mapped by the chart to the same)
        assert metric == "airflow_" + stat.replace(".", "_")


# ---- dashboard (glue chart) --------------------------------------------------------------------------------

def render_dashboards_template(values: dict) -> list[dict]:
    """Render templates/dashboards.yaml the way Helm would for this chart (its few template actions, literally
    replaced), then parse the YAML: proves the indentation and block scalar carry the JSON intact."""
    template = (GLUE / "templates" / "dashboards.yaml").read_text()
    body = template.split("{{- range $path, $_ := $.Files.Glob \"dashboards/*.json\" }}")[1].split("{{- end }}")[0]
    docs = []
    for path in sorted((GLUE / "dashboards").glob("*.json")):
        rel = f"dashboards/{path.name}"
        text = body
        for action, value in {
            '{{ printf "grafana-dashboard-%s" (base $path | trimSuffix ".json") }}': f"grafana-dashboard-{path.stem}",
            "{{ $d.namespace }}": values["namespace"], "{{ $d.labelKey }}": values["labelKey"],
            "{{ $d.labelValue | quote }}": json.dumps(values["labelValue"]),
            "{{ $.Release.Service }}": "Helm", "{{ $.Chart.Name }}": "platform-glue", "{{ base $path }}": path.name,
            "{{ $.Files.Get $path | indent 4 }}": "\n".join("    " + line for line in
                                                           (GLUE / rel).read_text().split("\n")),
        }.items():
            assert action in text, f"templates/dashboards.yaml no longer contains {action}"
            text = text.replace(action, value)
        assert re.search(r"\{\{[\s-]", text) is None, text      # every template action replaced
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def test_glue_chart_renders_the_airflow_dashboard_configmap_for_the_grafana_sidecar():
    template = (GLUE / "templates" / "dashboards.yaml").read_text()
    assert "{{- with .Values.dashboards }}" in template and '$.Files.Glob "dashboards/*.json"' in template
    (configmap,) = render_dashboards_template(dashboard_values())
    assert (configmap["apiVersion"], configmap["kind"]) == ("v1", "ConfigMap")
    assert configmap["metadata"]["name"] == "grafana-dashboard-airflow"
    assert configmap["metadata"]["namespace"] == k8s.MONITORING_NAMESPACE
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["airflow.json"])
    assert dashboard == json.loads((GLUE / "dashboards" / "airflow.json").read_text())
    assert dashboard["uid"] == "airflow-overview" and len(dashboard["panels"]) >= 6
    assert {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]} == {"prometheus"}


def test_grafana_serves_https_from_its_platform_ca_certificate_and_every_caller_speaks_https():
    grafana = monitoring_values(MonitoringProps(**BASE))["grafana"]
    server = grafana["grafana.ini"]["server"]
    assert (server["protocol"], server["cert_file"], server["cert_key"]) == (
        "https", "/etc/grafana/tls/tls.crt", "/etc/grafana/tls/tls.key")
    (mount,) = grafana["extraSecretMounts"]
    assert (mount["secretName"], mount["mountPath"], mount["defaultMode"]) == ("grafana-tls", "/etc/grafana/tls", 0o440)
    assert grafana["readinessProbe"]["httpGet"]["scheme"] == grafana["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    monitor = grafana["serviceMonitor"]
    assert (monitor["scheme"], monitor["tlsConfig"]) == ("https", {
        "ca": {"secret": {"name": "grafana-tls", "key": "ca.crt"}},
        "serverName": "kube-prometheus-stack-grafana.monitoring.svc"})


def test_grafana_sidecars_load_files_without_calling_grafana_so_no_basic_auth_is_needed():
    sidecar = monitoring_values(MonitoringProps(**BASE))["grafana"]["sidecar"]
    # Dashboards: Grafana rescans the provider's folder; datasources: written by an init container before Grafana.
    dashboards, datasources = sidecar["dashboards"], sidecar["datasources"]
    assert (dashboards["skipReload"], dashboards["provider"]["updateIntervalSeconds"]) == (True, 30)
    assert (datasources["skipReload"], datasources["initDatasources"]) == (True, True)
    assert not any("reloadURL" in sidecar[kind] for kind in ("dashboards", "datasources"))


def test_grafana_rolls_when_what_its_datasources_are_made_of_changes_and_only_then():
    def checksum(**settings) -> str:
        values = monitoring_values(MonitoringProps(**BASE, settings=MonitoringSettings(**settings)))
        assert values["grafana"]["podAnnotations"]["checksum/datasources"] == datasources_checksum(values)
        return datasources_checksum(values)
    base = checksum()
    assert checksum(prometheus_replicas=3) != base            # one datasource per replica can follow the count
    assert checksum(grafana_storage_gib=20) == base            # Grafana's own settings do not restart it for this


def test_grafana_certificate_is_issued_by_the_platform_ca_for_the_names_its_callers_verify(stack):
    _, values = build(stack)
    (cert,) = [o for o in values("platform-bootstrap")["objects"] if o["kind"] == "Certificate" and o["metadata"]["name"] == "grafana-tls"]
    assert (cert["metadata"]["namespace"], cert["spec"]["issuerRef"]["name"]) == (k8s.MONITORING_NAMESPACE, k8s.CA_ISSUER)
    assert cert["spec"]["dnsNames"][0] == "kube-prometheus-stack-grafana.monitoring.svc"
    assert "localhost" in cert["spec"]["dnsNames"]
