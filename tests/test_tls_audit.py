"""No plaintext path anywhere: walks every synthesized stack, resource type by resource type, so a plaintext
listener, database or broker added later fails here; and every Helm release's values, so a connection string
without certificate verification, a Vault listener without TLS or an http:// Vault address fails too.

Then the hops between components (docs/tls.md): every Helm release rendered with real Helm (tools/render_releases.py)
and the generated Airflow configuration are searched for http:// URLs between components and Service ports that carry
plaintext; target groups must be HTTPS to the pods, and every node a type whose Nitro card encrypts traffic between
instances (what the hops that no protocol encrypts rely on). A plaintext hop is allowed only where docs/tls.md says
why (NITRO_SERVICE_PORTS, NITRO_URLS), each finding names the object and the field, and each kind is planted below
and caught."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import urlsplit

import pytest

from environments import NAMES
from modules.aws.settings import IN_TRANSIT_ENCRYPTION_FAMILIES, IN_TRANSIT_ENCRYPTION_LABEL
from modules.platform import airflow as af
from modules.platform import monitoring
from tests.conftest import strings
from tools import render_releases as rr

TLS13 = "ELBSecurityPolicy-TLS13"


def _blocks(value) -> list[dict]:
    return [value] if isinstance(value, dict) else [v for v in value or [] if isinstance(v, dict)]


def listener_problems(address: str, body: dict) -> Iterator[str]:
    if body.get("protocol") == "HTTPS":
        if not str(body.get("ssl_policy", "")).startswith(TLS13):
            yield f"{address}: HTTPS listener without a TLS 1.3 policy ({body.get('ssl_policy')!r})"
        if not body.get("certificate_arn"):
            yield f"{address}: HTTPS listener without a certificate"
        return
    actions = _blocks(body.get("default_action"))
    if not actions or not all(a.get("type") == "redirect" and
                              all(r.get("protocol") == "HTTPS" for r in _blocks(a.get("redirect"))) and
                              _blocks(a.get("redirect")) for a in actions):
        yield f"{address}: {body.get('protocol')} listener on {body.get('port')} does not only redirect to HTTPS"


def audit(doc: dict) -> list[str]:
    res = doc.get("resource", {})
    problems: list[str] = []
    for rtype in ("aws_lb_listener", "aws_alb_listener"):
        for name, body in (res.get(rtype) or {}).items():
            problems += listener_problems(f"{rtype}.{name}", body)
    for rtype in ("aws_lb_listener_rule", "aws_alb_listener_rule"):   # rules cannot downgrade: they sit on a listener
        for name, body in (res.get(rtype) or {}).items():
            if not body.get("listener_arn"):
                problems.append(f"{rtype}.{name}: no listener")
    params = res.get("aws_db_parameter_group") or {}
    for name, body in (res.get("aws_db_instance") or {}).items():
        if "postgres" not in str(body.get("engine")):
            continue
        group = next((p for pn, p in params.items() if f"aws_db_parameter_group.{pn}." in str(body.get("parameter_group_name"))), None)
        settings = {p["name"]: str(p["value"]) for p in _blocks((group or {}).get("parameter"))}
        if settings.get("rds.force_ssl") != "1":
            problems.append(f"aws_db_instance.{name}: parameter group does not set rds.force_ssl=1")
    for name, body in (res.get("aws_elasticache_replication_group") or {}).items():
        if body.get("transit_encryption_enabled") not in (True, "true") or \
                body.get("transit_encryption_mode", "required") != "required":
            problems.append(f"aws_elasticache_replication_group.{name}: TLS is not required")
    for name, body in (res.get("aws_msk_cluster") or {}).items():
        tls = [t for e in _blocks(body.get("encryption_info")) for t in _blocks(e.get("encryption_in_transit"))]
        if not tls or any(t.get("client_broker", "TLS") != "TLS" or t.get("in_cluster") in (False, "false") for t in tls):
            problems.append(f"aws_msk_cluster.{name}: client-broker traffic is not TLS-only")
    for name, body in (res.get("helm_release") or {}).items():
        problems += helm_problems(f"helm_release.{name}", body)
    return problems


_POSTGRES_URL = re.compile(r"postgres(ql)?(\+\w+)?://")


def helm_problems(address: str, body: dict) -> Iterator[str]:
    """Connection strings, the Vault listener and Vault addresses inside a release's values."""
    for raw in body.get("values") or []:
        values = json.loads(raw)
        for text in strings(values):
            for line in text.splitlines():
                if _POSTGRES_URL.search(line) and not re.search(r"[?&](sslmode|ssl)=verify-full\b", line):
                    yield f"{address}: PostgreSQL URL without verify-full: {line[:120]}"
                if "redis://" in line:
                    yield f"{address}: plaintext Redis URL: {line[:120]}"
                if "rediss://" in line and "ssl_cert_reqs=required" not in line:
                    yield f"{address}: Redis TLS without certificate verification: {line[:120]}"
                if re.search(r"http://[\w.-]*vault", line):
                    yield f"{address}: Vault over plain HTTP: {line[:120]}"
                if re.match(r"\s*(server|client)_tls_sslmode\s*=\s*(disable|allow|prefer)\b", line):
                    yield f"{address}: PgBouncer TLS not enforced: {line.strip()}"
                if re.match(r"\s*server_tls_sslmode\s*=", line) and "verify-full" not in line:
                    yield f"{address}: PgBouncer does not verify the database: {line.strip()}"
        server = values.get("server") if isinstance(values.get("server"), dict) else {}
        configs = [server.get("standalone", {}).get("config"), server.get("ha", {}).get("raft", {}).get("config")]
        for config in filter(None, configs):
            parsed = json.loads(config) if isinstance(config, str) and config.lstrip().startswith("{") else None
            listeners = [] if parsed is None else [t for l in parsed.get("listener", []) for t in _blocks(l.get("tcp"))]
            if parsed is None or not listeners:
                yield f"{address}: Vault server config has no parsable TCP listener"
            for tcp in listeners:
                if tcp.get("tls_disable") in (True, "true", 1, "1") or not tcp.get("tls_cert_file"):
                    yield f"{address}: Vault listener {tcp.get('address')} without TLS"
        if values.get("global", {}).get("tlsDisable") is True:
            yield f"{address}: Vault chart global.tlsDisable is true"


def test_no_stack_has_a_plaintext_path(stacks):
    assert {name: audit(doc) for name, doc in stacks.items()} == {name: [] for name in stacks}


def test_the_audit_covers_what_is_there(stacks):
    counts = {rtype: sum(len(doc.get("resource", {}).get(rtype) or {}) for doc in stacks.values())
              for rtype in ("aws_lb_listener", "aws_db_instance", "aws_elasticache_replication_group", "aws_msk_cluster")}
    assert counts == {"aws_lb_listener": 6, "aws_db_instance": 3, "aws_elasticache_replication_group": 3,
                      "aws_msk_cluster": 2}
    # what the Helm check reads is there: each platform has Vault's listener and the Airflow connection strings
    for name in ("dev", "staging", "prod"):
        text = json.dumps(stacks[f"airflow-{name}-platform"]["resource"]["helm_release"])
        assert "postgresql://" in text and "postgresql+asyncpg://" in text and "rediss://" in text
        assert "tls_cert_file" in text and "server_tls_sslmode = verify-full" in text


def test_audit_catches_a_plaintext_listener_and_a_weak_policy(stacks):
    doc = copy.deepcopy(stacks["airflow-dev-infra"])
    listeners = doc["resource"]["aws_lb_listener"]
    https = next(n for n, l in listeners.items() if l["protocol"] == "HTTPS")
    listeners["plain"] = {"port": 8080, "protocol": "HTTP", "load_balancer_arn": "x",
                          "default_action": [{"type": "forward", "target_group_arn": "tg"}]}
    listeners[https]["ssl_policy"] = "ELBSecurityPolicy-2016-08"
    problems = audit(doc)
    assert any("aws_lb_listener.plain" in p and "does not only redirect" in p for p in problems)
    assert any(https in p and "TLS 1.3" in p for p in problems)


def test_audit_catches_plaintext_databases_brokers_and_msk(stacks):
    doc = copy.deepcopy(stacks["airflow-dev-infra"])
    res = doc["resource"]
    for group in res["aws_db_parameter_group"].values():
        group["parameter"] = [p for p in group["parameter"] if p["name"] != "rds.force_ssl"]
    (cache,) = res["aws_elasticache_replication_group"].values()
    cache["transit_encryption_mode"] = "preferred"
    res["aws_msk_cluster"] = {"kafka": {"encryption_info": {"encryption_in_transit": {"client_broker": "TLS_PLAINTEXT"}}}}
    problems = " ".join(audit(doc))
    assert "rds.force_ssl=1" in problems and "TLS is not required" in problems and "aws_msk_cluster.kafka" in problems


def _bootstrap_and_vault(doc):
    releases = doc["resource"]["helm_release"]
    return releases, json.loads(releases["platform-bootstrap"]["values"][0]), json.loads(releases["vault"]["values"][0])


def test_audit_catches_unverified_connections_and_a_plaintext_vault(stacks):
    doc = copy.deepcopy(stacks["airflow-dev-platform"])
    releases, bootstrap, vault = _bootstrap_and_vault(doc)
    secrets = {o["metadata"]["name"]: o for o in bootstrap["objects"] if o["kind"] == "ExternalSecret"}
    templates = secrets["airflow-metadata-db"]["spec"]["target"]["template"]["data"]
    templates["connection"] = templates["connection"].replace("sslmode=verify-full", "sslmode=require")
    broker = secrets["airflow-broker-url"]["spec"]["target"]["template"]["data"]
    broker["connection"] = broker["connection"].replace("?ssl_cert_reqs=required", "")
    ini = secrets["airflow-pgbouncer-config"]["spec"]["target"]["template"]["data"]
    ini["pgbouncer.ini"] = ini["pgbouncer.ini"].replace("server_tls_sslmode = verify-full", "server_tls_sslmode = require")
    releases["platform-bootstrap"]["values"] = [json.dumps(bootstrap)]
    config = json.loads(vault["server"]["standalone"]["config"] if vault["server"].get("standalone", {}).get("enabled")
                        else vault["server"]["ha"]["raft"]["config"])
    config["listener"][0]["tcp"]["tls_disable"] = True
    key = ("standalone", "config") if vault["server"].get("standalone", {}).get("enabled") else ("ha", "raft", "config")
    target = vault["server"]
    for part in key[:-1]:
        target = target[part]
    target[key[-1]] = json.dumps(config)
    releases["vault"]["values"] = [json.dumps(vault)]
    problems = " ".join(audit(doc))
    assert "PostgreSQL URL without verify-full" in problems
    assert "Redis TLS without certificate verification" in problems
    assert "PgBouncer does not verify the database" in problems
    assert "helm_release.vault: Vault listener" in problems and "without TLS" in problems



# ---- the hops between components -----------------------------------------------------------------------------------

# Service ports that serve TLS, and what makes them: (namespace, Service, port name) -> the evidence. The two the
# platform turned to TLS for this audit are also checked in the rendered pods (service_tls_problems).
TLS_SERVICE_PORTS = {
    ("airflow", "airflow-api-server", "api-server"): "[api] ssl_cert/ssl_key env on the API server (platform CA)",
    ("airflow", "airflow-pgbouncer", "pgbouncer"): "pgbouncer.ini client_tls_sslmode = require (platform CA)",
    ("monitoring", "kube-prometheus-stack-grafana", "http-web"): "grafana.ini [server] protocol = https (platform CA)",
    ("monitoring", "kube-prometheus-stack-operator", "https"): "the operator's admission webhook (TLS only)",
    **{("vault", service, port): "Vault listener tls_cert_file (platform CA)"
       for service in ("vault", "vault-active", "vault-internal", "vault-standby")
       for port in ("https", "https-internal")},
    ("vault", "vault-ui", "https"): "Vault listener tls_cert_file (platform CA)",
    ("kube-system", "aws-load-balancer-webhook-service", "webhook-server"): "admission webhook (TLS only)",
    ("cert-manager", "cert-manager-webhook", "https"): "admission webhook (TLS only)",
    ("external-secrets", "external-secrets-webhook", "webhook"): "admission webhook (TLS only)",
    ("keda", "keda-admission-webhooks", "https"): "admission webhook (TLS only)",
    ("keda", "keda-operator-metrics-apiserver", "https"): "the external metrics API server (TLS only)",
}
# Plaintext Service ports, each with why it is not TLS. Every one is pod-to-pod traffic that Nitro encrypts between
# nodes (NodePool and node group checks below); on one node it stays on the host's veth pairs (docs/tls.md).
_SCRAPE = "a Prometheus scrape of a metrics endpoint (no credentials; the exporter serves no TLS)"
NITRO_SERVICE_PORTS = {
    ("airflow", "airflow-worker", "worker-logs"):
        "Airflow 3.3's log server serves plain HTTP only and the API server fetches with http:// (serve_logs)",
    ("airflow", "airflow-triggerer", "triggerer-logs"):
        "Airflow 3.3's log server serves plain HTTP only and the API server fetches with http:// (serve_logs)",
    ("airflow", "airflow-statsd", "statsd-ingest"): "StatsD over UDP: metric names and counts, no TLS in the protocol",
    ("airflow", "airflow-statsd", "statsd-scrape"): _SCRAPE,
    ("airflow", "airflow-pgbouncer", "pgb-metrics"): _SCRAPE,
    ("monitoring", "kube-prometheus-stack-prometheus", "http-web"):
        "Prometheus's API: Grafana's queries and self-scrape (web TLS not configured; docs/tls.md)",
    ("monitoring", "kube-prometheus-stack-alertmanager", "http-web"):
        "Alertmanager's API: alerts from Prometheus, Grafana's datasource (web TLS not configured; docs/tls.md)",
    ("monitoring", "kube-prometheus-stack-prometheus", "reloader-web"): _SCRAPE,
    ("monitoring", "kube-prometheus-stack-alertmanager", "reloader-web"): _SCRAPE,
    ("monitoring", "kube-prometheus-stack-kube-state-metrics", "http"): _SCRAPE,
    ("monitoring", "kube-prometheus-stack-prometheus-node-exporter", "http-metrics"): _SCRAPE,
    ("cert-manager", "cert-manager", "tcp-prometheus-servicemonitor"): _SCRAPE,
    ("cert-manager", "cert-manager-cainjector", "http-metrics"): _SCRAPE,
    ("cert-manager", "cert-manager-webhook", "metrics"): _SCRAPE,
    ("kube-system", "karpenter", "http-metrics"): _SCRAPE,
    ("keda", "keda-operator", "metricsservice"): "KEDA operator -> its metrics API server: scaler metric values (gRPC)",
    ("keda", "keda-operator-metrics-apiserver", "metrics"): _SCRAPE,
    # kube-prometheus-stack's Services for the control plane's and node agents' metrics (EKS runs the control plane;
    # kube-proxy and CoreDNS are node/cluster add-ons)
    **{("kube-system", f"kube-prometheus-stack-{name}", "http-metrics"): _SCRAPE
       for name in ("coredns", "kube-controller-manager", "kube-etcd", "kube-proxy", "kube-scheduler")},
}
# http:// URLs between components that docs/tls.md allows, by the URL's scheme://host:port: the Prometheus and
# Alertmanager APIs (Grafana's datasources, the servers' own external URLs).
NITRO_URLS = {"http://kube-prometheus-stack-prometheus.monitoring:9090",
              "http://kube-prometheus-stack-alertmanager.monitoring:9093"}
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _walk(value, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, string) for every string in a manifest."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def _component_hosts(manifests: Iterable[rr.Manifest]) -> set[str]:
    """Every name a rendered Service answers to in the cluster."""
    hosts = set()
    for m in manifests:
        if m.kind == "Service":
            ns = m.namespace
            hosts |= {m.name, f"{m.name}.{ns}", f"{m.name}.{ns}.svc", f"{m.name}.{ns}.svc.cluster.local"}
    return hosts


def _is_component(host: str, hosts: set[str]) -> bool:
    return host in hosts or host.endswith((".svc", ".svc.cluster.local", ".cluster.local")) or "." not in host


def plaintext_urls(where: str, text: str, hosts: set[str]) -> Iterator[str]:
    for url in re.findall(r"http://[^\s\"'<>,;)]+", text):
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host in _LOOPBACK or not _is_component(host, hosts):
            continue                        # inside the pod, or not a component (e.g. a licence link)
        if f"http://{parts.netloc}" in NITRO_URLS:
            continue
        yield f"{where}: plaintext http:// URL between components: {url}"


def manifest_problems(manifests: list[rr.Manifest]) -> list[str]:
    """http:// URLs between components and Service ports that carry plaintext, in rendered manifests."""
    hosts = _component_hosts(manifests)
    problems = []
    for m in manifests:
        for path, text in _walk(m.body):
            problems += plaintext_urls(f"{m} .{path}", text, hosts)
        if m.kind == "Service":
            for i, port in enumerate(m.body["spec"].get("ports") or []):
                key = (m.namespace, m.name, port.get("name"))
                if key not in TLS_SERVICE_PORTS and key not in NITRO_SERVICE_PORTS:
                    problems.append(f"{m} .spec.ports[{i}] ({port.get('name')}, {port.get('port')}): a Service port "
                                    "not known to serve TLS carries plaintext to an application")
    return problems + service_tls_problems(manifests) + scrape_problems(manifests)


def scrape_problems(manifests: list[rr.Manifest]) -> list[str]:
    """A ServiceMonitor endpoint on a port that serves TLS scrapes it over https and verifies the certificate."""
    views = rr.services(manifests)
    problems = []
    for m in manifests:
        if m.kind != "ServiceMonitor":
            continue
        spec = m.body["spec"]
        namespaces = set((spec.get("namespaceSelector") or {}).get("matchNames") or [m.namespace])
        selected = [v for v in views if v.namespace in namespaces and rr._selects(spec.get("selector") or {},
                                                                                 dict(v.labels))]
        for i, endpoint in enumerate(spec.get("endpoints") or []):
            if not any((v.namespace, v.name, endpoint.get("port")) in TLS_SERVICE_PORTS for v in selected):
                continue
            tls = endpoint.get("tlsConfig") or {}
            if endpoint.get("scheme") != "https" or tls.get("insecureSkipVerify") or not (tls.get("ca") or
                                                                                        tls.get("caFile")):
                problems.append(f"{m} .spec.endpoints[{i}]: scrapes TLS port {endpoint.get('port')!r} with scheme "
                                f"{endpoint.get('scheme', 'http')!r} and tlsConfig {tls} (not https verified)")
    return problems


def _container(manifests: list[rr.Manifest], kind: str, name: str, container: str) -> tuple[rr.Manifest, dict] | None:
    for m in manifests:
        if m.kind == kind and m.name == name:
            for c in m.body["spec"]["template"]["spec"]["containers"]:
                if c["name"] == container:
                    return m, c
    return None


def service_tls_problems(manifests: list[rr.Manifest]) -> list[str]:
    """The evidence behind TLS_SERVICE_PORTS for the two servers the platform turns to TLS: the API server has its
    certificate and key and probes over HTTPS; Grafana's grafana.ini says protocol = https with a certificate."""
    problems = []
    found = _container(manifests, "Deployment", f"{af.API_SERVER_SERVICE}", "api-server")
    if found is None:
        problems.append(f"Deployment {af.API_SERVER_SERVICE}: no api-server container to check for TLS")
    else:
        m, c = found
        env = {e["name"]: e.get("value") for e in c.get("env") or []}
        for name, value in af.API_SERVER_TLS_ENV.items():
            if env.get(name) != value:
                problems.append(f"{m} container api-server .env.{name}: {env.get(name)!r}, not {value!r} (no TLS)")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            scheme = (c.get(probe) or {}).get("httpGet", {}).get("scheme", "HTTP")
            if scheme != "HTTPS":
                problems.append(f"{m} container api-server .{probe}.httpGet.scheme: {scheme} (plaintext)")
    grafana = [m for m in manifests if m.kind == "ConfigMap" and m.name == monitoring.GRAFANA_SERVICE]
    for m in grafana:
        ini = m.body["data"].get("grafana.ini", "")
        server = re.search(r"^\[server\]\n((?:(?!\[).*\n?)*)", ini, re.MULTILINE)
        options = dict(re.findall(r"^(\w+) = (.*)$", server.group(1), re.MULTILINE)) if server else {}
        if options.get("protocol") != "https" or not options.get("cert_file"):
            problems.append(f"{m} .data.grafana.ini [server] protocol: {options.get('protocol', 'http')!r} "
                            "(Grafana serves plaintext)")
    if not grafana:
        problems.append(f"ConfigMap {monitoring.GRAFANA_SERVICE}: no grafana.ini to check for TLS")
    return problems


def airflow_config_problems(address: str, values: dict) -> list[str]:
    """The generated Airflow configuration (the release's `config`): no http:// URL between components, the
    Execution API over https to the API server, verified against the platform CA only."""
    problems = []
    for section, options in (values.get("config") or {}).items():
        for key, value in options.items():
            problems += plaintext_urls(f"{address} .config.{section}.{key}", str(value), set())
    url = (values.get("config") or {}).get("core", {}).get("execution_api_server_url", "")
    if urlsplit(url).scheme != "https":
        problems.append(f"{address} .config.core.execution_api_server_url: {url!r} is not https (the chart's "
                        "default is http://<release>-api-server:8080)")
    api = (values.get("config") or {}).get("api", {})
    if not api.get("ssl_ca_file") or str(api.get("client_use_public_certs")) != "False":
        problems.append(f"{address} .config.api: ssl_ca_file {api.get('ssl_ca_file')!r} / client_use_public_certs "
                        f"{api.get('client_use_public_certs')!r}: the Execution API client must trust the platform CA only")
    return problems


def edge_and_node_problems(doc: dict) -> list[str]:
    """Target groups HTTPS to the pods (health checks too); node groups of in-transit-encrypting families."""
    res = doc.get("resource", {})
    problems = []
    for rtype in ("aws_lb_target_group", "aws_alb_target_group"):
        for name, body in (res.get(rtype) or {}).items():
            if body.get("protocol") not in ("HTTPS", "TLS"):
                problems.append(f"{rtype}.{name} .protocol: {body.get('protocol')!r} carries plaintext to the pods")
            for check in _blocks(body.get("health_check")):
                if check.get("protocol") not in ("HTTPS", None) and body.get("protocol") == "HTTPS":
                    problems.append(f"{rtype}.{name} .health_check.protocol: {check.get('protocol')!r} (plaintext)")
    for name, body in (res.get("aws_eks_node_group") or {}).items():
        for t in body.get("instance_types") or []:
            if str(t).split(".", 1)[0] not in IN_TRANSIT_ENCRYPTION_FAMILIES:
                problems.append(f"aws_eks_node_group.{name} .instance_types: {t} has no Nitro in-transit encryption")
    return problems


def node_pool_problems(manifests: list[rr.Manifest]) -> list[str]:
    problems = []
    for m in manifests:
        if m.kind != "NodePool":
            continue
        reqs = m.body["spec"]["template"]["spec"].get("requirements") or []
        if not any(r["key"] == IN_TRANSIT_ENCRYPTION_LABEL and r["operator"] == "In" and r["values"] == ["true"]
                   for r in reqs):
            problems.append(f"{m} .spec.template.spec.requirements: no {IN_TRANSIT_ENCRYPTION_LABEL} In ['true'] "
                            "(Karpenter may launch a node without in-transit encryption)")
        for r in reqs:
            if r["key"] == "karpenter.k8s.aws/instance-family" and r["operator"] == "In":
                plain = [f for f in r["values"] if f not in IN_TRANSIT_ENCRYPTION_FAMILIES]
                if plain:
                    problems.append(f"{m} .spec.template.spec.requirements instance-family: {plain} have no "
                                    "Nitro in-transit encryption")
    return problems


def airflow_release_values(doc: dict) -> dict:
    (raw,) = doc["resource"]["helm_release"]["airflow"]["values"]
    return json.loads(raw)


def hop_problems(infra: dict, platform: dict, manifests: list[rr.Manifest]) -> list[str]:
    return (edge_and_node_problems(infra) + manifest_problems(manifests) + node_pool_problems(manifests)
            + airflow_config_problems("helm_release.airflow", airflow_release_values(platform)))


@pytest.fixture(scope="module")
def rendered(synthesized: Path) -> dict[str, list[rr.Manifest]]:
    out = {}
    for env in NAMES:
        (platform,) = synthesized.glob(f"stacks/*-{env}-platform")
        out[env] = rr.render_stack(platform)[1]
    return out


@pytest.mark.parametrize("env", NAMES)
def test_no_hop_between_components_is_plaintext(stacks, rendered, env):
    infra, platform = stacks[f"airflow-{env}-infra"], stacks[f"airflow-{env}-platform"]
    assert hop_problems(infra, platform, rendered[env]) == []


def test_every_allowed_plaintext_port_and_every_tls_port_is_rendered_somewhere(rendered):
    """The lists name what is rendered in some environment: a stale entry hides nothing today but could later."""
    ports = {(m.namespace, m.name, p.get("name")) for manifests in rendered.values() for m in manifests
             if m.kind == "Service" for p in m.body["spec"].get("ports") or []}
    assert set(NITRO_SERVICE_PORTS) - ports == set() and set(TLS_SERVICE_PORTS) - ports == set()


def _replace(manifests: list[rr.Manifest], kind: str, name: str, change) -> list[rr.Manifest]:
    out = []
    for m in manifests:
        if m.kind == kind and m.name == name:
            body = copy.deepcopy(m.body)
            change(body)
            m = rr.Manifest(m.release, m.template, body, _default_ns=m.namespace or "default")
        out.append(m)
    return out


def test_audit_catches_a_plaintext_service_port_and_an_http_url_between_components(rendered):
    manifests = _replace(rendered["dev"], "Service", "airflow-api-server",
                         lambda b: b["spec"]["ports"].append({"name": "plain", "port": 8081}))
    manifests = _replace(manifests, "ConfigMap", "airflow-config", lambda b: b["data"].update({
        "airflow.cfg": b["data"]["airflow.cfg"].replace("https://airflow-api-server.airflow.svc:8080",
                                                        "http://airflow-api-server:8080")}))
    problems = manifest_problems(manifests)
    assert any(p.startswith("airflow:Service/airflow/airflow-api-server .spec.ports[1] (plain, 8081)") for p in problems)
    assert any(p.startswith("airflow:ConfigMap/airflow/airflow-config .data.airflow.cfg: plaintext http:// URL")
               and "http://airflow-api-server:8080/execution/" in p for p in problems), problems


def test_audit_catches_a_scrape_of_a_tls_port_that_does_not_verify_it(rendered):
    def plain(body):
        body["spec"]["endpoints"][0]["scheme"] = "http"
    problems = scrape_problems(_replace(rendered["dev"], "ServiceMonitor", "kube-prometheus-stack-grafana", plain))
    assert len(problems) == 1 and problems[0].startswith(
        "kube-prometheus-stack:ServiceMonitor/monitoring/kube-prometheus-stack-grafana .spec.endpoints[0]: scrapes TLS "
        "port 'http-web' with scheme 'http'"), problems

    def unverified(body):
        body["spec"]["endpoints"][0]["tlsConfig"] = {"insecureSkipVerify": True}
    assert len(scrape_problems(_replace(rendered["dev"], "ServiceMonitor", "vault", unverified))) == 1


def test_audit_catches_servers_that_stopped_serving_tls(rendered):
    def plain_api(body):
        (c,) = [c for c in body["spec"]["template"]["spec"]["containers"] if c["name"] == "api-server"]
        c["env"] = [e for e in c["env"] if e["name"] != "AIRFLOW__API__SSL_CERT"]
        c["readinessProbe"]["httpGet"]["scheme"] = "HTTP"
    manifests = _replace(rendered["dev"], "Deployment", "airflow-api-server", plain_api)
    manifests = _replace(manifests, "ConfigMap", "kube-prometheus-stack-grafana", lambda b: b["data"].update({
        "grafana.ini": b["data"]["grafana.ini"].replace("protocol = https", "protocol = http")}))
    problems = " | ".join(manifest_problems(manifests))
    assert "airflow:Deployment/airflow/airflow-api-server container api-server .env.AIRFLOW__API__SSL_CERT" in problems
    assert "container api-server .readinessProbe.httpGet.scheme: HTTP" in problems
    assert "ConfigMap/monitoring/kube-prometheus-stack-grafana .data.grafana.ini [server] protocol: 'http'" in problems


def test_audit_catches_a_plaintext_execution_api_in_the_generated_airflow_config(stacks):
    values = airflow_release_values(stacks["airflow-dev-platform"])
    values["config"]["core"]["execution_api_server_url"] = "http://airflow-api-server:8080/execution/"
    values["config"]["api"]["client_use_public_certs"] = "True"
    problems = " | ".join(airflow_config_problems("helm_release.airflow", values))
    assert "helm_release.airflow .config.core.execution_api_server_url: plaintext http:// URL" in problems
    assert "execution_api_server_url: 'http://airflow-api-server:8080/execution/' is not https" in problems
    assert "client_use_public_certs 'True'" in problems


def test_audit_catches_plaintext_target_groups_and_nodes_without_in_transit_encryption(stacks, rendered):
    infra = copy.deepcopy(stacks["airflow-dev-infra"])
    res = infra["resource"]
    airflow_tg, grafana_tg = sorted(res["aws_lb_target_group"])
    res["aws_lb_target_group"][airflow_tg]["protocol"] = "HTTP"
    res["aws_lb_target_group"][grafana_tg]["health_check"]["protocol"] = "HTTP"
    (group,) = res["aws_eks_node_group"]
    res["aws_eks_node_group"][group]["instance_types"] = ["t3.large"]
    problems = " | ".join(edge_and_node_problems(infra))
    assert f"aws_lb_target_group.{airflow_tg} .protocol: 'HTTP' carries plaintext" in problems
    assert f"aws_lb_target_group.{grafana_tg} .health_check.protocol: 'HTTP'" in problems
    assert f"aws_eks_node_group.{group} .instance_types: t3.large has no Nitro in-transit encryption" in problems

    def loose(body):
        reqs = body["spec"]["template"]["spec"]["requirements"]
        reqs[:] = [r for r in reqs if r["key"] != IN_TRANSIT_ENCRYPTION_LABEL]
        next(r for r in reqs if r["key"] == "karpenter.k8s.aws/instance-family")["values"].append("t3")
    problems = " | ".join(node_pool_problems(_replace(rendered["dev"], "NodePool", "airflow-workers", loose)))
    assert f"NodePool/airflow-workers .spec.template.spec.requirements: no {IN_TRANSIT_ENCRYPTION_LABEL}" in problems
    assert "instance-family: ['t3'] have no Nitro in-transit encryption" in problems
