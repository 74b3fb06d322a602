"""kube-prometheus-stack in each environment's platform stack: the pinned chart, per-environment retention and
storage, selectors, secret-backed receivers and Grafana login, and the glue chart's ServiceMonitor, rules and
dashboard. Values use only keys the chart (and its Grafana subchart) defines."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

import environments
from modules.platform import kubernetes as k8s
from modules.platform.monitoring import (AIRFLOW_METRICS_CONFIG, MonitoringProps, MonitoringSettings, dashboard_values,
                                         monitoring_values)
from tests.modules.platform.test_monitoring import REQUIRED_ALERTS

CHARTS = Path(__file__).resolve().parent / "data" / "charts"
GRAFANA_SOURCE = CHARTS.parent / "chart-sources" / "kube-prometheus-stack" / "charts" / "grafana"
CONFIGS = {name: environments.load(name) for name in environments.NAMES}
# Keys the upstream values.yaml documents only in comments (so a plain key walk cannot see them).
DOCUMENTED_IN_COMMENTS = {"grafana.persistence.storageClassName",
                          # the probes are Kubernetes Probe objects the chart renders as given (_pod.tpl toYaml):
                          # httpGet.scheme is Kubernetes's field (checked by tests/test_helm_render.py's schema check)
                          "grafana.livenessProbe.httpGet.scheme", "grafana.readinessProbe.httpGet.scheme",
                          "grafana.podAnnotations",    # values.yaml "# podAnnotations: {}"; deployment.yaml renders it
                          # templates/_config.tpl renders it, `| default 30`
                          "grafana.sidecar.dashboards.provider.updateIntervalSeconds"}
# Grafana's own configuration (grafana.ini is rendered to INI as given): options from grafana/grafana
# conf/defaults.ini ([server] domain, root_url, protocol, cert_file, cert_key, min_tls_version; [security]
# cookie_secure; [analytics] reporting_enabled, check_for_updates).
# Single sign-on ([auth] disable_login_form, [auth.basic] enabled, [auth.generic_oauth] ...): the same file's
# sections, Grafana 12 (auto_login, use_refresh_token, skip_org_role_sync, allow_assign_grafana_admin included).
GRAFANA_INI_OPTIONS = {"server": {"domain", "root_url", "protocol", "cert_file", "cert_key", "min_tls_version"},
                       "security": {"cookie_secure"},
                       "analytics": {"reporting_enabled", "check_for_updates"},
                       "auth": {"disable_login_form"}, "auth.basic": {"enabled"},
                       "auth.generic_oauth": {
                           "enabled", "name", "client_id", "scopes", "auth_url", "token_url", "api_url", "use_pkce",
                           "use_refresh_token", "allow_sign_up", "auto_login", "login_attribute_path",
                           "email_attribute_path", "groups_attribute_path", "role_attribute_path",
                           "role_attribute_strict", "allow_assign_grafana_admin", "skip_org_role_sync"}}


def platform(stacks, name):
    return stacks[f"airflow-{name}-platform"]


def release_values(doc, release):
    (raw,) = doc["resource"]["helm_release"][release]["values"]
    return json.loads(raw)


def chart_defaults() -> dict:
    """kube-prometheus-stack defaults, with the Grafana subchart's own defaults under `grafana` (Helm merges the
    parent's `grafana:` section over the subchart's values.yaml)."""
    kps = yaml.safe_load((CHARTS / "kube-prometheus-stack" / "values.yaml").read_text())
    # The Grafana subchart's whole values.yaml as vendored with the chart (the excerpt in CHARTS lacks the TLS keys).
    grafana = yaml.safe_load((GRAFANA_SOURCE / "values.yaml").read_text())

    def merge(base, over):
        out = copy.deepcopy(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out
    return {**kps, "grafana": merge(grafana, kps["grafana"])}


def unknown_keys(values: dict, defaults: dict, path: str = ""):
    """Keys (and type mismatches) the chart does not define. A default of `{}` is a free-form object (a CRD
    field such as storageSpec or a label selector): checked by the targeted tests below instead."""
    for key, value in values.items():
        full = f"{path}{key}"
        if full == "grafana.grafana.ini":
            continue                                   # Grafana's config, checked against GRAFANA_INI_OPTIONS
        if key not in defaults:
            if full not in DOCUMENTED_IN_COMMENTS:
                yield full
            continue
        default = defaults[key]
        if isinstance(value, dict):
            if default == {}:
                continue
            if isinstance(default, dict):
                yield from unknown_keys(value, default, f"{full}.")
            else:
                yield f"{full} (a map where the chart has {type(default).__name__})"
        elif default is not None and type(value) is not type(default):
            yield f"{full} ({type(value).__name__} where the chart has {type(default).__name__})"


def test_chart_files_are_the_pinned_version():
    assert yaml.safe_load((CHARTS / "kube-prometheus-stack" / "Chart.yaml").read_text())["version"] == "88.5.3"
    deps = yaml.safe_load((CHARTS / "kube-prometheus-stack" / "Chart.yaml").read_text())["dependencies"]
    assert {d["name"]: d["version"] for d in deps}["grafana"] == "12.11.1"


@pytest.mark.parametrize("name", environments.NAMES)
def test_values_use_only_keys_the_chart_defines(stacks, name):
    values = release_values(platform(stacks, name), "kube-prometheus-stack")
    defaults = chart_defaults()
    assert list(unknown_keys(values, defaults)) == []
    assert list(unknown_keys({"prometheus": {"prometheusSpec": {"retentoin": "1d", "replicas": "2"}},
                              "grafana": {"persistence": {"sise": "1Gi"}}}, defaults)) == [
        "prometheus.prometheusSpec.retentoin", "prometheus.prometheusSpec.replicas (str where the chart has int)",
        "grafana.persistence.sise"]                    # the walk does catch typos and wrong types
    ini = values["grafana"]["grafana.ini"]
    assert all(set(options) <= GRAFANA_INI_OPTIONS.get(section, set()) for section, options in ini.items())
    assert all(isinstance(v, (str, bool, int)) for options in ini.values() for v in options.values())


def _claim(volume: dict) -> dict:
    (template,) = volume.keys()
    assert template == "volumeClaimTemplate" and set(volume[template]) == {"spec"}
    spec = volume[template]["spec"]
    assert set(spec) == {"storageClassName", "accessModes", "resources"} and spec["accessModes"] == ["ReadWriteOnce"]
    assert set(spec["resources"]) == {"requests"} and re.fullmatch(r"\d+Gi", spec["resources"]["requests"]["storage"])
    return spec


@pytest.mark.parametrize("name", environments.NAMES)
def test_release_is_the_pinned_chart_after_bootstrap_with_per_environment_retention_and_storage(stacks, name):
    doc = platform(stacks, name)
    rel = doc["resource"]["helm_release"]["kube-prometheus-stack"]
    assert (rel["chart"], rel["version"], rel["repository"], rel["namespace"]) == (
        "kube-prometheus-stack", "88.5.3", "https://prometheus-community.github.io/helm-charts", "monitoring")
    assert "helm_release.platform-bootstrap" in rel["depends_on"]
    m = CONFIGS[name].monitoring
    values = release_values(doc, "kube-prometheus-stack")
    prom, am = values["prometheus"]["prometheusSpec"], values["alertmanager"]["alertmanagerSpec"]
    prom_claim, am_claim = _claim(prom["storageSpec"]), _claim(am["storage"])
    assert (prom["retention"], prom["retentionSize"], prom_claim["resources"]["requests"]["storage"],
            prom["replicas"]) == (m.prometheus_retention, m.prometheus_retention_size,
                                  f"{m.prometheus_storage_gib}Gi", m.prometheus_replicas)
    assert (am["retention"], am_claim["resources"]["requests"]["storage"], am["replicas"]) == (
        m.alertmanager_retention, f"{m.alertmanager_storage_gib}Gi", m.alertmanager_replicas)
    assert prom_claim["storageClassName"] == am_claim["storageClassName"] == k8s.STORAGE_CLASS
    assert values["grafana"]["persistence"]["storageClassName"] == k8s.STORAGE_CLASS


def test_environments_differ_in_retention_and_size():
    retention = {name: CONFIGS[name].monitoring.prometheus_retention for name in environments.NAMES}
    assert retention == {"dev": "7d", "staging": "15d", "prod": "30d"}
    assert CONFIGS["prod"].monitoring.prometheus_replicas >= 2 and CONFIGS["prod"].monitoring.alertmanager_replicas >= 2
    assert CONFIGS["prod"].monitoring.prometheus_storage_gib > CONFIGS["dev"].monitoring.prometheus_storage_gib


@pytest.mark.parametrize("name", environments.NAMES)
def test_prometheus_selects_by_the_shared_labels_explicitly(stacks, name):
    spec = release_values(platform(stacks, name), "kube-prometheus-stack")["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "rule"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False
        assert spec[f"{kind}Selector"] == {"matchLabels": k8s.PROMETHEUS_SELECTOR_LABELS}
        assert spec[f"{kind}NamespaceSelector"] == {}


@pytest.mark.parametrize("name", environments.NAMES)
def test_receivers_reference_files_of_the_mounted_secret_never_literals(stacks, name):
    am = release_values(platform(stacks, name), "kube-prometheus-stack")["alertmanager"]
    mounted = "/etc/alertmanager/secrets/{}/".format(am["alertmanagerSpec"]["secrets"][0])
    receivers = {r["name"]: r for r in am["config"]["receivers"]}
    assert set(receivers) == {"null", "slack", "pagerduty"}
    (slack,), (pagerduty,) = receivers["slack"]["slack_configs"], receivers["pagerduty"]["pagerduty_configs"]
    assert slack["api_url_file"] == mounted + "slack-webhook-url" and "api_url" not in slack
    assert pagerduty["routing_key_file"] == mounted + "pagerduty-routing-key" and "routing_key" not in pagerduty
    assert set(am["config"]["global"]) == {"resolve_timeout"}


@pytest.mark.parametrize("name", environments.NAMES)
def test_grafana_logs_in_from_the_external_secret_and_knows_its_alb_url(stacks, name):
    doc = platform(stacks, name)
    grafana = release_values(doc, "kube-prometheus-stack")["grafana"]
    assert grafana["admin"]["existingSecret"] == "grafana-admin" and "adminPassword" not in grafana
    assert grafana["grafana.ini"]["server"]["root_url"] == f"https://grafana.{CONFIGS[name].domain}/"
    assert grafana["ingress"]["enabled"] is False
    bootstrap = release_values(doc, "platform-bootstrap")["objects"]
    secrets = {o["metadata"]["name"]: o for o in bootstrap if o["kind"] == "ExternalSecret"
               and o["metadata"].get("namespace") == k8s.MONITORING_NAMESPACE}
    assert {n: {d["remoteRef"]["key"] for d in s["spec"]["data"]} for n, s in secrets.items()} == {
        "grafana-admin": {k8s.grafana_admin_secret_name(f"airflow-{name}")},
        "alertmanager-receivers": {k8s.alert_receivers_secret_name(f"airflow-{name}")},
        "grafana-sso": {CONFIGS[name].sso.client_secret_name}}
    infra_secrets = {s["name"] for s in stacks[f"airflow-{name}-infra"]["resource"]["aws_secretsmanager_secret"].values()}
    assert {k8s.grafana_admin_secret_name(f"airflow-{name}"), k8s.alert_receivers_secret_name(f"airflow-{name}")} <= (
        infra_secrets)


def glue(stacks, name):
    doc = platform(stacks, name)
    return doc["resource"]["helm_release"]["platform-glue"], release_values(doc, "platform-glue")


@pytest.mark.parametrize("name", environments.NAMES)
def test_service_monitor_selects_the_statsd_service_with_the_selector_labels(stacks, name):
    rel, values = glue(stacks, name)
    assert "helm_release.kube-prometheus-stack" in rel["depends_on"]     # the CRDs exist before the objects
    (sm,) = [o for o in values["objects"] if o["kind"] == "ServiceMonitor"]
    assert sm["metadata"]["labels"] == k8s.PROMETHEUS_SELECTOR_LABELS
    assert sm["metadata"]["namespace"] == k8s.AIRFLOW_NAMESPACE
    assert sm["spec"]["selector"]["matchLabels"] == {"tier": "airflow", "component": "statsd",
                                                     "release": k8s.AIRFLOW_RELEASE}
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["statsd-scrape"]


@pytest.mark.parametrize("name", environments.NAMES)
def test_every_required_alert_is_present_with_its_severity(stacks, name):
    _, values = glue(stacks, name)
    rules = [o for o in values["objects"] if o["kind"] == "PrometheusRule"]
    assert all(r["metadata"]["labels"] == k8s.PROMETHEUS_SELECTOR_LABELS for r in rules)
    alerts = {a["alert"]: a for r in rules for g in r["spec"]["groups"] for a in g["rules"]}
    assert {n: alerts[n]["labels"]["severity"] for n in REQUIRED_ALERTS} == REQUIRED_ALERTS
    assert alerts["AirflowQueuedTasksPilingUp"]["expr"].endswith(f"> {CONFIGS[name].monitoring.queued_tasks_threshold}")


@pytest.mark.parametrize("name", environments.NAMES)
def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar(stacks, name):
    _, values = glue(stacks, name)
    assert values["dashboards"] == dashboard_values()
    sidecar = release_values(platform(stacks, name), "kube-prometheus-stack")["grafana"]["sidecar"]["dashboards"]
    assert (values["dashboards"]["labelKey"], values["dashboards"]["labelValue"]) == (sidecar["label"],
                                                                                      sidecar["labelValue"])
    assert values["dashboards"]["namespace"] == sidecar["searchNamespace"] == k8s.MONITORING_NAMESPACE


def test_the_config_section_is_the_props_settings():
    from environments.sections.monitoring import MonitoringConfig
    config, props = MonitoringConfig(), MonitoringProps(domain="example.com", secret_prefix="p")
    assert isinstance(config, MonitoringSettings) and vars(props.settings) == vars(config)
    assert monitoring_values(props)["prometheus"]["prometheusSpec"]["retention"] == config.prometheus_retention


@pytest.mark.parametrize("name", environments.NAMES)
def test_airflow_emits_the_tagged_metrics_the_rules_select(stacks, name):
    """Contract with the Airflow release: `[metrics]` AIRFLOW_METRICS_CONFIG (tags as labels, no legacy names)."""
    releases = platform(stacks, name)["resource"]["helm_release"]
    if k8s.AIRFLOW_RELEASE not in releases:
        pytest.skip("no Airflow release in the platform stack yet")
    config = release_values(platform(stacks, name), k8s.AIRFLOW_RELEASE).get("config", {}).get("metrics", {})
    assert {k: str(config.get(k)) for k in AIRFLOW_METRICS_CONFIG} == AIRFLOW_METRICS_CONFIG


@pytest.mark.parametrize("name", environments.NAMES)
def test_grafana_signs_in_at_the_idp_with_the_client_secret_only_from_the_external_secret(stacks, name):
    sso = CONFIGS[name].sso
    grafana = release_values(platform(stacks, name), "kube-prometheus-stack")["grafana"]
    ini = grafana["grafana.ini"]
    oauth = ini["auth.generic_oauth"]
    assert (oauth["enabled"], oauth["client_id"], oauth["auth_url"], oauth["token_url"], oauth["api_url"]) == (
        True, sso.client_id, sso.authorization_endpoint, sso.token_endpoint, sso.user_info_endpoint)
    assert (oauth["scopes"], oauth["use_pkce"], oauth["role_attribute_strict"]) == ("openid email profile groups", True,
                                                                                    True)
    assert "client_secret" not in oauth and sso.client_secret_name not in json.dumps(grafana)
    assert grafana["envValueFrom"] == {"GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET": {
        "secretKeyRef": {"name": "grafana-sso", "key": "client-secret"}}}
    # Password login (form and basic auth) only where local_login is on: dev; production has neither.
    assert (ini["auth"]["disable_login_form"], ini["auth.basic"]["enabled"], oauth["auto_login"]) == (
        not sso.local_login, sso.local_login, not sso.local_login)


def test_grafana_role_path_gives_the_most_privileged_mapped_role_and_nothing_to_strangers():
    import jmespath

    from modules.platform.monitoring import grafana_role_path

    path = grafana_role_path(CONFIGS["prod"].sso)
    assert path.startswith("contains(groups[*], 'data-platform-admins') && 'Admin' || ")
    role = lambda groups: jmespath.search(path, {"groups": groups})   # noqa: E731
    assert (role(["data-analysts", "data-engineers"]), role(["data-analysts"]), role(["other"])) == (
        "Editor", "Viewer", False)


@pytest.fixture(scope="module")
def grafana_rendered(synthesized):
    """Per environment: the rendered Grafana Deployment and the dashboard provider's ConfigMap (real Helm)."""
    from tools import render_releases as rr
    out = {}
    for name in environments.NAMES:
        (platform_dir,) = synthesized.glob(f"stacks/*-{name}-platform")
        _, manifests = rr.render_stack(platform_dir)
        (deployment,) = [m.body for m in manifests if m.kind == "Deployment" and m.name.endswith("-grafana")]
        (provider,) = [m.body for m in manifests if m.kind == "ConfigMap" and m.name.endswith("-config-dashboards")]
        out[name] = deployment, yaml.safe_load(provider["data"]["provider.yaml"])
    return out


@pytest.mark.parametrize("name", environments.NAMES)
def test_grafana_picks_up_dashboards_and_datasources_without_basic_auth(stacks, grafana_rendered, name):
    """Basic auth is off wherever local login is (production), and k8s-sidecar's reload call knows no other login:
    no container calls Grafana's reload API; Grafana rescans dashboards itself, and datasources are written by an
    init container before it starts, the pod rolling when they change."""
    deployment, provider = grafana_rendered[name]
    pod = deployment["spec"]["template"]
    containers = {c["name"]: c for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])}
    assert [n for n, c in containers.items() if any(e["name"] == "REQ_URL" for e in c.get("env", []))] == []
    assert "grafana-init-sc-datasources" in containers and "grafana-sc-datasources" not in containers
    assert "grafana-sc-dashboard" in containers
    (dashboards,) = provider["providers"]
    assert dashboards["updateIntervalSeconds"] == 30
    values = release_values(platform(stacks, name), "kube-prometheus-stack")
    assert pod["metadata"]["annotations"]["checksum/datasources"] == \
        values["grafana"]["podAnnotations"]["checksum/datasources"]
    ini = values["grafana"]["grafana.ini"]
    assert ini["auth.basic"]["enabled"] is CONFIGS[name].sso.local_login
