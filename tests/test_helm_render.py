"""Every helm_release of every environment rendered with real Helm (tools/render_releases.py, charts from
tests/data/chart-sources/) and checked: Kubernetes 1.34 and CRD schemas, the Secrets pods take, Pod Identity
service accounts, the Services behind TargetGroupBindings and ServiceMonitors. Each check also has a test that
breaks what it guards and sees it fail."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from environments import NAMES
from tools import pod_security as pss, render_releases as rr


@pytest.fixture(scope="session")
def rendered(synthesized: Path) -> dict[str, tuple[list[rr.Release], list[rr.Manifest], list[tuple[str, str]]]]:
    """Per environment: its platform releases, their manifests, the infra stack's Pod Identity associations.
    Rendered once per session (per xdist worker); Helm renders each chart in well under a second."""
    out = {}
    for env in NAMES:
        (platform,) = synthesized.glob(f"stacks/*-{env}-platform")
        (infra,) = synthesized.glob(f"stacks/*-{env}-infra")
        found, manifests = rr.render_stack(platform)
        out[env] = found, manifests, rr.pod_identity_associations(json.loads((infra / "cdk.tf.json").read_text()))
    return out


def one(manifests: list[rr.Manifest], kind: str, name: str) -> rr.Manifest:
    (found,) = [m for m in manifests if m.kind == kind and m.name == name]
    return found


def replaced(manifests: list[rr.Manifest], old: rr.Manifest, body: dict) -> list[rr.Manifest]:
    """The manifests with one replaced by a changed copy (the rendered ones stay untouched for other tests)."""
    return [rr.Manifest(m.release, m.template, body, _default_ns=m.namespace or "default") if m is old else m
            for m in manifests]


# ---- what is rendered, from which source ------------------------------------------------------------------------

@pytest.mark.parametrize("env", NAMES)
def test_every_release_renders_from_a_source_of_its_chart_and_version(rendered, env):
    found, manifests, _ = rendered[env]
    for release in found:
        count = sum(m.release == release.name for m in manifests)
        if release.source is None:                       # the project's own chart, as synthesized
            assert release.chart_dir.parent.parent.name == "assets" and count > 0, release.name
            continue
        if release.chart_dir is None:
            assert release.source.reason and count == 0, release.name
            continue
        chart_yaml = (release.chart_dir / "Chart.yaml").read_text()
        (name,) = re.findall(r"^name:\s*(\S+)", chart_yaml, re.M)
        (version,) = re.findall(r"^version:\s*\"?([^\s\"]+)", chart_yaml, re.M)
        assert (name, version) == (release.chart, release.source.version), release.name
        # A vendored version other than the release's is a named proxy with its reason.
        assert version == release.version or release.source.reason.startswith("proxy:"), release.name
        assert count > 0, f"{release.name} rendered nothing"
    assert {r.chart for r in found if r.source} == {chart for chart, _ in rr.CHART_SOURCES}


def test_every_vendored_chart_has_its_provenance():
    provenance = (rr.SOURCES / "PROVENANCE.md").read_text()
    for source in rr.CHART_SOURCES.values():
        if source.directory:
            assert f"| {source.directory}/ |" in provenance and (rr.SOURCES / source.directory / "Chart.yaml").is_file()
    assert "| crd-schemas.json |" in provenance


def test_references_get_placeholders_of_their_shape():
    cross = "data.terraform_remote_state.cross-stack-reference-input-airflow-dev-infra.outputs.cross-stack-output-"
    shaped = {f"{cross}aws_lb_target_groupedge_airflow-target-group_76DE6DFCarn":
              r"arn:aws:elasticloadbalancing:eu-west-1:\d{12}:targetgroup/placeholder-[0-9a-f]{10}/[0-9a-f]{16}",
              f"{cross}aws_db_instancedatabase_instance_D7FC2283address":
              r"placeholder-[0-9a-f]{10}\.c0ffee000000\.eu-west-1\.rds\.amazonaws\.com",
              f"{cross}aws_vpcnetwork_vpc_4E8F0223id": r"vpc-[0-9a-f]{17}",
              "aws_db_instance.database_instance_D7FC2283.port": r"5432",
              f"{cross}aws_kms_keyvault-unseal-key_CB0C113Carn":
              r"arn:aws:kms:eu-west-1:\d{12}:key/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}"}
    for reference, shape in shaped.items():
        assert re.fullmatch(shape, rr.placeholder(reference, region="eu-west-1", release="r")), reference
    # Text around a reference stays; an escaped $${ stays a literal ${.
    bucket = rr.placeholder("aws_s3_bucket.logs.bucket", region="eu-west-1", release="r")
    assert re.fullmatch(r"placeholder-[0-9a-f]{10}", bucket)
    assert rr.substitute('{"a": "s3://${aws_s3_bucket.logs.bucket}/x", "b": "$${keep}"}', region="eu-west-1",
                         release="r") == '{"a": "s3://' + bucket + '/x", "b": "${keep}"}'


@pytest.mark.parametrize("text", ["${aws_mq_broker.b.arn}", "${aws_vpc.v.cidr_block}",
                                  "${jsonencode({a = aws_vpc.v.id})}"])
def test_an_unplaceable_reference_fails_loudly(text):
    with pytest.raises(rr.RenderError, match=r"release r: .*fix: "):
        rr.substitute(f'{{"x": "{text}"}}', region="eu-west-1", release="r")


def test_values_documents_coalesce_in_order_then_set_entries_apply(tmp_path):
    stack = {"provider": {"aws": [{"region": "us-east-2"}]}, "resource": {"helm_release": {"vault": {
        "name": "vault", "namespace": "vault", "chart": "vault", "version": "0.34.1",
        "values": ['{"server": {"ha": {"replicas": 3, "enabled": true}, "logLevel": "info"}}',
                   '{"server": {"ha": {"replicas": 5}, "extraArgs": "${aws_kms_key.k.arn}"}}'],
        "set": [{"name": "server.logLevel", "value": "debug"}, {"name": "server.ha.raft.enabled", "value": "true"},
                {"name": "injector.port", "value": "8080", "type": "string"}],
        "set_sensitive": [{"name": "server.extraLabels.a\\.b", "value": "c"}],
        "set_list": [{"name": "server.extraSecretEnvironmentVars", "value": []}]}}}}
    (release,) = rr.releases(stack, tmp_path)
    server = release.values["server"]
    assert (server["ha"], server["logLevel"], release.values["injector"]["port"], server["extraLabels"]) == (
        {"replicas": 5, "enabled": True, "raft": {"enabled": True}}, "debug", "8080", {"a.b": "c"})
    assert re.fullmatch(r"arn:aws:kms:us-east-2:\d{12}:key/[-0-9a-f]{36}", server["extraArgs"])
    assert (release.chart_dir, release.namespace) == (rr.SOURCES / "vault", "vault")


def test_a_chart_version_without_a_vendored_source_fails_loudly(tmp_path):
    stack = {"resource": {"helm_release": {"x": {"name": "vault", "chart": "vault", "version": "0.35.0"}}}}
    with pytest.raises(rr.RenderError, match=r"no vendored source for chart vault 0.35.0; fix: vendor"):
        rr.releases(stack, tmp_path)


# ---- schemas --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", NAMES)
def test_every_manifest_is_valid_kubernetes_1_34_or_valid_for_its_crd(rendered, env):
    _, manifests, _ = rendered[env]
    assert rr.schema_problems(manifests) == []
    custom = {f"{m.body['apiVersion']}/{m.kind}" for m in manifests} & set(rr._crd_schemas())
    assert {"external-secrets.io/v1/ExternalSecret", "monitoring.coreos.com/v1/ServiceMonitor",
            "elbv2.k8s.aws/v1beta1/TargetGroupBinding", "karpenter.sh/v1/NodePool"} <= custom


def test_schema_check_refuses_unknown_fields_wrong_types_bad_enums_and_unknown_kinds(rendered):
    _, manifests, _ = rendered["dev"]
    deployment = copy.deepcopy(one(manifests, "Deployment", "airflow-scheduler").body)
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    deployment["spec"]["replicas"] = "2"
    binding = copy.deepcopy(one(manifests, "TargetGroupBinding", "airflow-alb").body)
    binding["spec"]["serviceRef"]["prot"] = 8080
    pool = copy.deepcopy(one(manifests, "NodePool", "airflow-workers").body)
    pool["spec"]["disruption"]["consolidationPolicy"] = "Sometimes"
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    problems = rr.schema_problems([rr.Manifest("x", "t", body) for body in (deployment, binding, pool, unknown)])
    assert len(problems) == 5 and all(re.search(pattern, " ".join(problems)) for pattern in (
        r"'securityContex' was unexpected", r"spec\.replicas: '2' is not of type", r"'prot' was unexpected",
        r"'Sometimes' is not one of", r"no Kubernetes 1\.34 schema and no CRD schema for example\.com/v1 Widget"))


# ---- Secrets --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", NAMES)
def test_every_secret_and_key_a_pod_takes_is_created(rendered, env):
    _, manifests, _ = rendered[env]
    assert rr.secret_problems(manifests) == []
    taken = {(ns, name) for _, ns, name, _ in rr.secret_references(manifests)}
    # The ExternalSecrets of platform-bootstrap are what most pods take; task pods' template is included.
    assert {("airflow", "airflow-metadata-db"), ("airflow", "airflow-keys"), ("monitoring", "grafana-admin"),
            ("monitoring", "alertmanager-receivers"), ("vault", "vault-server-tls")} <= taken
    assert any("[pod_template_file.yaml]" in owner for owner, *_ in rr.secret_references(manifests))
    # Every run-time exemption is still needed.
    assert set(rr.RUNTIME_SECRETS) <= taken


def test_secret_check_fails_when_an_external_secret_loses_a_key_a_pod_takes(rendered):
    _, manifests, _ = rendered["dev"]
    keys = one(manifests, "ExternalSecret", "airflow-keys")
    body = copy.deepcopy(keys.body)
    body["spec"]["data"] = [d for d in body["spec"]["data"] if d["secretKey"] != "jwt-secret"]
    problems = rr.secret_problems(replaced(manifests, keys, body))
    assert problems and all("Secret airflow/airflow-keys has no key 'jwt-secret'" in p for p in problems)
    assert any(p.startswith("airflow:Deployment/airflow/airflow-scheduler:") for p in problems)


def test_secret_check_fails_when_no_external_secret_creates_a_secret_a_pod_takes(rendered):
    _, manifests, _ = rendered["dev"]
    admin = one(manifests, "ExternalSecret", "grafana-admin")
    problems = rr.secret_problems([m for m in manifests if m is not admin])
    assert problems == ["kube-prometheus-stack:Deployment/monitoring/kube-prometheus-stack-grafana: Secret "
                        "monitoring/grafana-admin is created by no rendered Secret, ExternalSecret or Certificate"]


def test_secret_keys_of_templated_external_secrets_and_certificates():
    def manifest(kind, body):
        return rr.Manifest("r", "t", {"apiVersion": "external-secrets.io/v1" if kind == "ExternalSecret" else
                                      "cert-manager.io/v1", "kind": kind, "metadata": {"name": "s", "namespace": "n"},
                                      "spec": body})
    templated = manifest("ExternalSecret", {"data": [{"secretKey": "token"}],
                                            "target": {"name": "t", "template": {"data": {"url": "x"}}}})
    merged = manifest("ExternalSecret", {"data": [{"secretKey": "token"}], "target": {
        "name": "m", "template": {"mergePolicy": "Merge", "data": {"url": "x"}}}})
    everything = manifest("ExternalSecret", {"dataFrom": [{"extract": {"key": "k"}}]})
    certificate = manifest("Certificate", {"secretName": "tls"})
    assert rr.provided_secrets([templated, merged, everything, certificate]) == {
        ("n", "t"): frozenset({"url"}), ("n", "m"): frozenset({"url", "token"}), ("n", "s"): None,
        ("n", "tls"): frozenset({"tls.crt", "tls.key", "ca.crt"})}


# ---- Pod Identity ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", NAMES)
def test_every_pod_identity_association_is_a_rendered_service_account_a_pod_runs_as(rendered, env):
    _, manifests, associations = rendered[env]
    assert rr.pod_identity_problems(associations, manifests) == []
    assert {("vault", "vault"), ("kube-system", "karpenter"), ("airflow", "airflow-scheduler")} <= set(associations)
    # The Airflow 1.18 proxy's gap is a real association, and the only one exempted.
    assert set(rr.PROXY_GAPS) <= set(associations) and len(rr.PROXY_GAPS) == 1


def test_pod_identity_check_fails_when_no_pod_runs_as_the_associated_account(rendered):
    _, manifests, associations = rendered["dev"]
    vault = one(manifests, "StatefulSet", "vault")
    body = copy.deepcopy(vault.body)
    body["spec"]["template"]["spec"]["serviceAccountName"] = "default"
    assert rr.pod_identity_problems(associations, replaced(manifests, vault, body)) == [
        "Pod Identity association vault/vault: no rendered pod runs as it (its AWS role would reach nothing, and a "
        "pod meant to have it has none)"]
    karpenter = one(manifests, "ServiceAccount", "karpenter")
    assert rr.pod_identity_problems(associations, [m for m in manifests if m is not karpenter]) == [
        "Pod Identity association kube-system/karpenter: no rendered ServiceAccount of that name"]


# ---- Services behind bindings and monitors ----------------------------------------------------------------------

@pytest.mark.parametrize("env", NAMES)
def test_every_target_group_binding_and_service_monitor_reaches_a_service_port(rendered, env):
    _, manifests, _ = rendered[env]
    assert rr.service_port_problems(manifests) == []
    kinds = [m.kind for m in manifests]
    assert kinds.count("TargetGroupBinding") == 2 and kinds.count("ServiceMonitor") >= 10


def test_service_check_fails_on_a_binding_to_a_missing_port_or_service(rendered):
    _, manifests, _ = rendered["dev"]
    binding = one(manifests, "TargetGroupBinding", "airflow-alb")
    wrong_port, wrong_service = copy.deepcopy(binding.body), copy.deepcopy(binding.body)
    wrong_port["spec"]["serviceRef"]["port"] = 8081
    wrong_service["spec"]["serviceRef"]["name"] = "airflow-webserver"
    (problem,) = rr.service_port_problems(replaced(manifests, binding, wrong_port))
    assert problem.startswith("platform-glue:TargetGroupBinding/airflow/airflow-alb: Service "
                              "airflow/airflow-api-server has no port 8081")
    assert rr.service_port_problems(replaced(manifests, binding, wrong_service)) == [
        "platform-glue:TargetGroupBinding/airflow/airflow-alb: serviceRef airflow-webserver is no rendered Service "
        "in airflow"]


def test_service_check_fails_on_a_monitor_whose_port_or_selector_matches_nothing(rendered):
    _, manifests, _ = rendered["dev"]
    monitor = one(manifests, "ServiceMonitor", "airflow-statsd")
    wrong_port, wrong_selector = copy.deepcopy(monitor.body), copy.deepcopy(monitor.body)
    wrong_port["spec"]["endpoints"][0]["port"] = "statsd-metrics"
    wrong_selector["spec"]["selector"]["matchLabels"]["component"] = "stats"
    (problem,) = rr.service_port_problems(replaced(manifests, monitor, wrong_port))
    assert "ServiceMonitor/airflow/airflow-statsd: endpoint port 'statsd-metrics' is on none of the Services" in problem
    (problem,) = rr.service_port_problems(replaced(manifests, monitor, wrong_selector))
    assert "ServiceMonitor/airflow/airflow-statsd: its selector" in problem and "matches no rendered Service" in problem


# ---- Pod Security Admission -------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", NAMES)
def test_every_pod_meets_the_pod_security_level_its_namespace_enforces(rendered, env):
    _, manifests, _ = rendered[env]
    labels = rr.pod_security_labels(manifests)
    assert {ns: labels[ns]["enforce"] for ns in ("airflow", "vault")} == {"airflow": "restricted",
                                                                        "vault": "restricted"}
    assert rr.pod_security_problems(manifests) == []
    # Task pods are in what was checked: the KubernetesExecutor pod template, and every Airflow and Vault workload.
    owners = {p.owner for p in rr.pods(manifests) if p.namespace in ("airflow", "vault")}
    assert "airflow:ConfigMap/airflow/airflow-config[pod_template_file.yaml]" in owners
    assert {"airflow:Deployment/airflow/airflow-scheduler", "airflow:Deployment/airflow/airflow-worker",
            "airflow:Deployment/airflow/airflow-pgbouncer", "vault:StatefulSet/vault/vault",
            "platform-bootstrap:CronJob/vault/vault-snapshot"} <= owners


@pytest.mark.parametrize("env", NAMES)
def test_every_airflow_and_vault_container_has_a_read_only_root_filesystem(rendered, env):
    _, manifests, _ = rendered[env]
    for pod in rr.pods(manifests):
        if pod.namespace in ("airflow", "vault"):
            for where, container in pss.containers(pod.spec):
                assert (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is True, (
                    pod.owner, where)


@pytest.mark.parametrize("env", NAMES)
def test_monitoring_enforces_privileged_only_because_node_exporter_needs_the_host(rendered, env):
    """The evidence for k8s.POD_SECURITY_ENFORCE["monitoring"]: the one pod that fails baseline there is
    node-exporter, for host namespaces and hostPath; were it gone, the namespace could enforce more."""
    _, manifests, _ = rendered[env]
    assert rr.pod_security_labels(manifests)["monitoring"]["enforce"] == "privileged"
    below_baseline = {p.owner: pss.violations(p.spec, p.metadata, "baseline") for p in rr.pods(manifests)
                      if p.namespace == "monitoring" and pss.violations(p.spec, p.metadata, "baseline")}
    (owner,) = below_baseline
    assert owner == "kube-prometheus-stack:DaemonSet/monitoring/kube-prometheus-stack-prometheus-node-exporter"
    assert {v.split(":")[0] for v in below_baseline[owner]} == {"Host Namespaces", "HostPath Volumes"}


def test_pod_security_check_refuses_what_pod_override_could_ask_for(rendered):
    _, manifests, _ = rendered["dev"]
    config = one(manifests, "ConfigMap", "airflow-config")
    body = copy.deepcopy(config.body)
    template = yaml.safe_load(body["data"]["pod_template_file.yaml"])
    template["spec"]["hostNetwork"] = True
    template["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
    body["data"]["pod_template_file.yaml"] = yaml.safe_dump(template)
    owner = "airflow:ConfigMap/airflow/airflow-config[pod_template_file.yaml]"
    assert rr.pod_security_problems(replaced(manifests, config, body)) == [
        f"{owner}: enforce restricted: Host Namespaces: spec.hostNetwork is true",
        f"{owner}: enforce restricted: Running as Non-root user: containers[base].securityContext.runAsUser is 0"]


# ---- Checkov's kubernetes checks (issue #17 item 2): zero failures apart from tests/data/checkov-k8s-skips.yaml --

@pytest.fixture(scope="session")
def checkov_failures(rendered) -> dict[str, list[dict]]:
    """One Checkov run over every environment's releases (Checkov starts slowly: ~10 s for all three)."""
    return rr.checkov_failures_by_environment({env: (found, manifests)
                                               for env, (found, manifests, _) in rendered.items()})


@pytest.mark.parametrize("env", NAMES)
def test_checkov_finds_nothing_but_the_justified_skips(checkov_failures, env):
    assert checkov_failures[env], "expected Checkov to report the skipped findings"
    assert rr.unskipped_checkov_failures(checkov_failures[env], rr.checkov_skips()) == []


def test_no_checkov_skip_is_stale_and_each_has_a_reason(checkov_failures):
    skips = rr.checkov_skips()
    assert rr.stale_checkov_skips([f for env in NAMES for f in checkov_failures[env]], skips) == []
    for skip in skips:
        assert re.fullmatch(r"CKV2?_K8S_\d+", skip.check) and skip.resources and len(skip.reason) > 40, skip
    # Airflow and Vault have none of the checks their Pod Security level covers.
    pod_security_checks = {"CKV_K8S_16", "CKV_K8S_17", "CKV_K8S_19", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23",
                           "CKV_K8S_25", "CKV_K8S_28", "CKV_K8S_29", "CKV_K8S_30", "CKV_K8S_31", "CKV_K8S_37"}
    assert not [f for env in NAMES for f in checkov_failures[env]
                if f["release"] in ("airflow", "vault") and f["check_id"] in pod_security_checks]


def test_checkov_skip_matching_reports_what_a_skip_no_longer_covers(checkov_failures):
    skips = rr.checkov_skips()
    fewer = [s for s in skips if s.check != "CKV_K8S_40"]
    assert all(line.startswith("CKV_K8S_40 ") for line in rr.unskipped_checkov_failures(checkov_failures["dev"], fewer))
    assert rr.unskipped_checkov_failures(checkov_failures["dev"], fewer)
    stale = rr.CheckovSkip("CKV_K8S_16", ("vault:*",), "privileged containers")
    assert rr.stale_checkov_skips(checkov_failures["dev"], [stale]) == ["CKV_K8S_16 vault:*"]



def test_checkov_runs_over_a_release_in_its_namespace_and_names_the_release():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "busybox@sha256:" + "0" * 64, "securityContext": {"privileged": True}}]}}
    failures = rr.checkov_failures([rr.Manifest("r", "t", pod, _default_ns="airflow"),
                                    rr.Manifest("other", "t", pod)], ["r"])
    ids = {f["check_id"] for f in failures}
    assert "CKV_K8S_16" in ids and {f["release"] for f in failures} == {"r"}
    assert "CKV_K8S_21" not in ids        # the release namespace is given, so no "default namespace" finding


# ---- who may create, change and exec into pods in the Airflow namespace ------------------------------------------

_POD_WRITES = {("pods", verb) for verb in ("create", "update", "patch", "*")} | {
    (sub, verb) for sub in ("pods/exec", "pods/attach", "pods/portforward", "pods/*", "*") for verb in ("create", "get", "*")}


def _grants_pod_writes(role: dict) -> bool:
    return any(("" in r.get("apiGroups", []) or "*" in r.get("apiGroups", []))
               and any((res, verb) in _POD_WRITES for res in r.get("resources", []) for verb in r.get("verbs", []))
               for r in role.get("rules") or [])


def pod_writers(manifests: list[rr.Manifest], namespace: str) -> set[str]:
    """Usernames of the service accounts that a rendered (Cluster)RoleBinding lets create, patch or exec into pods
    in `namespace`."""
    roles = {(m.kind, m.namespace, m.name): m.body for m in manifests if m.kind in ("Role", "ClusterRole")}
    out = set()
    for m in manifests:
        if m.kind not in ("RoleBinding", "ClusterRoleBinding") or (m.kind == "RoleBinding" and m.namespace != namespace):
            continue
        ref = m.body["roleRef"]
        role = roles.get((ref["kind"], m.namespace if ref["kind"] == "Role" else None, ref["name"]))
        if role is None or not _grants_pod_writes(role):
            continue
        out |= {f"system:serviceaccount:{s.get('namespace', m.namespace)}:{s['name']}"
                for s in m.body.get("subjects") or [] if s["kind"] == "ServiceAccount"}
    return out


@pytest.mark.parametrize("env", NAMES)
def test_the_launcher_policy_covers_every_account_the_chart_lets_write_or_exec_pods(rendered, env):
    from modules.platform import admission
    _, manifests, _ = rendered[env]
    policy = one(manifests, "ValidatingAdmissionPolicy", admission.LAUNCHER_POLICY_NAME).body
    (condition,) = policy["spec"]["matchConditions"]
    covered = set(re.findall(r'"([^"]+)"', condition["expression"]))
    # Chart 1.18/1.21 templates/rbac/pod-launcher-rolebinding.yaml binds its Role (pods create/patch/delete,
    # pods/exec) to the scheduler and, for CeleryExecutor, the Celery workers: the accounts the policy confines.
    writers = pod_writers(manifests, "airflow")
    in_namespace = {w for w in writers if w.startswith("system:serviceaccount:airflow:")}
    assert in_namespace == covered == {
        "system:serviceaccount:airflow:airflow-scheduler", "system:serviceaccount:airflow:airflow-worker"}
    # Cluster-wide controllers that may create pods anywhere (cert-manager's ACME solver pods, KEDA's ScaledJobs)
    # run in their own namespaces, where no DAG code runs.
    assert writers - in_namespace == {"system:serviceaccount:cert-manager:cert-manager",
                                      "system:serviceaccount:keda:keda-operator"}
    launcher_role = one(manifests, "Role", "airflow-pod-launcher-role").body
    assert {"create"} <= {v for r in launcher_role["rules"] if "pods/exec" in r["resources"] for v in r["verbs"]}


def test_pod_writers_sees_a_new_binding_to_an_exec_role(rendered):
    _, manifests, _ = rendered["dev"]
    binding = copy.deepcopy(one(manifests, "RoleBinding", "airflow-pod-log-reader-rolebinding").body)
    binding["roleRef"]["name"] = "airflow-pod-launcher-role"
    extra = rr.Manifest("x", "t", binding, _default_ns="airflow")
    assert pod_writers([*manifests, extra], "airflow") - pod_writers(manifests, "airflow") == {
        "system:serviceaccount:airflow:airflow-api-server", "system:serviceaccount:airflow:airflow-triggerer"}


@pytest.mark.parametrize("env", NAMES)
def test_every_workload_pod_in_the_airflow_namespace_is_named_after_the_release(rendered, env):
    # The launcher policy refuses exec/attach/port-forward into pods named `airflow-*` (on CONNECT admission sees
    # only the pod's name): so every pod a rendered workload starts there must be so named. Task pods come from the
    # pod template file (a ConfigMap), named by the executor after DAG and task.
    _, manifests, _ = rendered[env]
    workloads = [m for m in manifests if m.namespace == "airflow" and m.kind in rr._POD_TEMPLATE_PATHS]
    assert {"airflow-scheduler", "airflow-api-server", "airflow-worker", "airflow-pgbouncer"} <= {
        m.name for m in workloads}
    assert [str(m) for m in workloads if not m.name.startswith("airflow-")] == []


@pytest.mark.parametrize("env", NAMES)
def test_the_rendered_task_pod_template_carries_the_component_the_launcher_policy_allows(rendered, env):
    from modules.platform import admission
    _, manifests, _ = rendered[env]
    (template,) = [yaml.safe_load(m.body["data"]["pod_template_file.yaml"]) for m in manifests
                   if m.kind == "ConfigMap" and "pod_template_file.yaml" in (m.body.get("data") or {})]
    assert template["metadata"]["labels"]["component"] == admission.TASK_COMPONENT
    # Its serviceAccountName is chart 1.21's workers.kubernetes.serviceAccount, which the 1.18 proxy lacks
    # (rr.PROXY_GAPS); tests/modules/platform/test_admission.py checks the policy against that account.


def secret_keys_taken(spec: dict) -> set[tuple[str, str | None]]:
    """Every (Secret, key) a pod spec references, optional references included (a key of None: the whole
    Secret): the reference kinds the launcher policy's taskSecrets rule governs."""
    taken: set[tuple[str, str | None]] = set()
    for volume in spec.get("volumes") or []:
        refs = [(volume["secret"], "secretName")] if volume.get("secret") else []
        refs += [(src["secret"], "name") for src in (volume.get("projected") or {}).get("sources") or []
                 if src.get("secret")]
        for ref, name_field in refs:
            taken |= {(ref[name_field], item["key"]) for item in ref.get("items") or []} or {(ref[name_field], None)}
    for container in rr._containers(spec):
        taken |= {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                  for e in container.get("env") or [] if (e.get("valueFrom") or {}).get("secretKeyRef")}
        taken |= {(e["secretRef"]["name"], None) for e in container.get("envFrom") or [] if e.get("secretRef")}
    return taken


def allowlist_drift(spec: dict) -> tuple[set, set]:
    """(what the task pod template takes beyond airflow.TASK_POD_SECRETS, what the allowlist holds that it does not
    take): both must be empty, so the launcher policy admits task pods and nothing more."""
    from modules.platform.airflow import TASK_POD_SECRETS
    allowed = {(name, key) for name, keys in TASK_POD_SECRETS.items() for key in keys}
    taken = secret_keys_taken(spec)
    return taken - allowed, allowed - taken


def without_nulls(value):
    """As the API server stores an object: a null field (e.g. the template's `initContainers:` with no value) is
    absent, which is what has() in the policy's CEL sees."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return [without_nulls(v) for v in value] if isinstance(value, list) else value


def rendered_task_pod(manifests: list[rr.Manifest]) -> dict:
    """The rendered pod template as the KubernetesExecutor submits it: the executor's label, and the task account
    (chart 1.21's workers.kubernetes.serviceAccount, which the 1.18 proxy lacks: rr.PROXY_GAPS)."""
    from modules.platform.airflow import service_accounts
    (pod,) = [yaml.safe_load(m.body["data"]["pod_template_file.yaml"]) for m in manifests
              if m.kind == "ConfigMap" and "pod_template_file.yaml" in (m.body.get("data") or {})]
    pod = without_nulls(pod)
    pod["metadata"].update(name="example-dag-extract-7f3k2m9q",
                           labels={**pod["metadata"]["labels"], "kubernetes_executor": "True"})
    pod["spec"]["serviceAccountName"] = service_accounts()["kubernetes"]
    return pod


def launcher_refusals(manifests: list[rr.Manifest], pod: dict) -> list[str]:
    """The messages of the rendered launcher policy's validations that refuse a worker's CREATE of `pod`."""
    import celpy
    from modules.platform import admission
    policy = one(manifests, "ValidatingAdmissionPolicy", admission.LAUNCHER_POLICY_NAME).body
    env = celpy.Environment()
    activation = {"object": celpy.json_to_cel(pod), "request": celpy.json_to_cel(
        {"operation": "CREATE", "userInfo": {"username": "system:serviceaccount:airflow:airflow-worker"}})}
    out = []
    for validation in policy["spec"]["validations"]:
        result = env.program(env.compile(validation["expression"])).evaluate(activation)
        assert isinstance(result, celpy.celtypes.BoolType), f"{validation['message']}: {result!r}"
        out += [] if result else [validation["message"]]
    return out


@pytest.mark.parametrize("env", NAMES)
def test_the_rendered_task_pod_template_takes_exactly_the_allowlisted_secret_keys(rendered, env):
    _, manifests, _ = rendered[env]
    assert allowlist_drift(rendered_task_pod(manifests)["spec"]) == (set(), set())


def test_allowlist_drift_sees_a_new_secret_in_the_task_pod_template_and_a_stale_allowlist_entry(rendered):
    _, manifests, _ = rendered["dev"]
    spec = rendered_task_pod(manifests)["spec"]
    spec["containers"][0]["env"].append({"name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "valueFrom": {
        "secretKeyRef": {"name": "airflow-metadata-db", "key": "connection", "optional": True}}})
    spec["containers"][0]["envFrom"] = [{"secretRef": {"name": "airflow-keys"}}]
    spec["containers"][0]["env"] = [e for e in spec["containers"][0]["env"] if e["name"] != "AIRFLOW__CELERY__BROKER_URL"]
    assert allowlist_drift(spec) == ({("airflow-metadata-db", "connection"), ("airflow-keys", None)},
                                     {("airflow-broker-url", "connection")})


@pytest.mark.parametrize("env", NAMES)
def test_the_rendered_launcher_policy_admits_the_task_pod_and_refuses_every_other_secret_of_the_namespace(
        rendered, env):
    from modules.platform import admission
    from modules.platform.airflow import TASK_POD_SECRETS
    _, manifests, _ = rendered[env]
    pod = rendered_task_pod(manifests)
    assert launcher_refusals(manifests, pod) == []
    (message,) = [r.message for r in admission.launcher_rules(task_service_account="t", task_secrets=TASK_POD_SECRETS)
                  if r.name == "taskSecrets"]
    others = {name: sorted(keys or {"connection"}) for (ns, name), keys in rr.provided_secrets(manifests).items()
              if ns == "airflow" and name not in TASK_POD_SECRETS}
    assert {"airflow-metadata-db", "airflow-pgbouncer-config", "airflow-pgbouncer-stats", "airflow-keda-db",
            "airflow-api-server-tls"} <= set(others)
    for name, keys in others.items():
        for mutate in (lambda spec: spec["volumes"].append({"name": "s", "secret": {"secretName": name}}),
                       lambda spec: spec["containers"][0]["env"].append(
                           {"name": "S", "valueFrom": {"secretKeyRef": {"name": name, "key": keys[0]}}})):
            bad = copy.deepcopy(pod)
            mutate(bad["spec"])
            assert launcher_refusals(manifests, bad) == [message], name


# ---- database credentials: only where the database is used ------------------------------------------------------

def database_credentials(pod: rr.Pod) -> list[str]:
    """Every way `pod` takes a database credential: a Secret holding one (volume, env, envFrom) or an environment
    variable Airflow or KEDA would read a connection from."""
    from modules.platform import airflow as af, database_roles as dbr
    secrets = {af.METADATA_SECRET, af.KEDA_DATABASE_SECRET, af.PGBOUNCER_CONFIG_SECRET, af.PGBOUNCER_STATS_SECRET,
               dbr.ADMIN_SECRET}
    names = re.compile(r"SQL_ALCHEMY_CONN|KEDA_DB_CONN|AIRFLOW_CONN_AIRFLOW_DB")
    found = []
    for volume in pod.spec.get("volumes") or []:
        sources = [volume.get("secret") or {}, *((s.get("secret") or {}) for s in
                                                 (volume.get("projected") or {}).get("sources") or [])]
        found += [f"volume {volume['name']}: Secret {s.get('secretName') or s.get('name')}" for s in sources
                  if (s.get("secretName") or s.get("name")) in secrets]
    for container in rr._containers(pod.spec):
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name") in secrets or names.search(env["name"]):
                found.append(f"{container['name']}: env {env['name']}")
        found += [f"{container['name']}: envFrom Secret {e['secretRef']['name']}" for e in container.get("envFrom") or []
                  if (e.get("secretRef") or {}).get("name") in secrets]
    return found


@pytest.mark.parametrize("env", NAMES)
def test_celery_workers_and_task_pods_hold_no_database_credential(rendered, env):
    _, manifests, _ = rendered[env]
    airflow_pods = {p.owner: p for p in rr.pods(manifests) if p.namespace == "airflow"}
    (worker,) = [p for owner, p in airflow_pods.items() if owner.endswith("Deployment/airflow/airflow-worker")]
    (task,) = [p for owner, p in airflow_pods.items() if owner.endswith("[pod_template_file.yaml]")]
    assert database_credentials(worker) == [] and database_credentials(task) == []
    # The check sees a credential where there is one: the scheduler's connection, PgBouncer's users file.
    (scheduler,) = [p for owner, p in airflow_pods.items() if owner.endswith("Deployment/airflow/airflow-scheduler")]
    assert "scheduler: env AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in database_credentials(scheduler)
    assert "wait-for-airflow-migrations: env AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD" in database_credentials(scheduler)
    # PgBouncer admits exactly the pods that hold the connection (the network policy names them by component label).
    from modules.platform import network_policy as netpol
    holders = {p.metadata.get("labels", {}).get("component") for p in airflow_pods.values()
               if any("airflow-metadata-db" in f or "SQL_ALCHEMY_CONN" in f for f in database_credentials(p))
               and "pgbouncer" not in p.owner}
    assert holders == set(netpol.DATABASE_COMPONENTS)
    # The master password is mounted by exactly one pod: the role Job's, in its own namespace.
    holders = [p.owner for p in rr.pods(manifests) if any("airflow-db-admin" in f for f in database_credentials(p))]
    assert len(holders) == 1 and "Job/airflow-db-admin/airflow-db-roles" in holders[0]
