"""No plaintext path anywhere: walks every synthesized stack, resource type by resource type, so a plaintext
listener, database or broker added later fails here; and every Helm release's values, so a connection string
without certificate verification, a Vault listener without TLS or an http:// Vault address fails too."""
from __future__ import annotations

import copy
import json
import re
from typing import Iterator

from tests.conftest import strings

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
