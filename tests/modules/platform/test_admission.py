"""modules/platform/admission.py: every validation of the pod policy evaluated with cel-python against a compliant
KubernetesExecutor task pod, the pods the Airflow chart renders with our values, and one bad pod per rule."""
from __future__ import annotations

import copy
from pathlib import Path

import celpy
import pytest
import yaml

from modules.platform import admission, kubernetes as k8s
from modules.platform.admission import RULES, pod_admission_objects, pod_policy, pod_policy_binding
from tests.harness import helm_merge
from tests.modules.platform.test_airflow import values as airflow_values

CHART_DEFAULTS = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "data" / "charts" / "airflow" / "values.yaml").read_text())
NAMES = [rule.name for rule in RULES]
_ENV = celpy.Environment()
_PROGRAMS = {rule.name: _ENV.program(_ENV.compile(rule.expression)) for rule in RULES}


def failing(pod: dict, operation: str = "CREATE") -> set[str]:
    """The rules `pod` breaks. An evaluation error (e.g. a field read without has()) fails the test: in the
    cluster it would deny every pod with an unhelpful message."""
    activation = {"object": celpy.json_to_cel(pod), "request": celpy.json_to_cel({"operation": operation})}
    out = set()
    for name, program in _PROGRAMS.items():
        result = program.evaluate(activation)
        assert isinstance(result, celpy.celtypes.BoolType), f"{name}: {result!r}"
        if not result:
            out.add(name)
    return out


# ---- the pods the chart renders with our values (chart 1.21.0's securityContext helpers, in Python) --------------

_NO_ESCALATION = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
# Added to every pod by the DefaultTolerationSeconds admission plugin, before validation runs.
_DEFAULT_TOLERATIONS = [{"key": f"node.kubernetes.io/{k}", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 300} for k in ("not-ready", "unreachable")]


def _airflow_pod_sc(v: dict, node: dict) -> dict:        # "airflowPodSecurityContext"
    return (node.get("securityContexts", {}).get("pod") or node.get("securityContext")
            or v["securityContexts"]["pod"] or v["securityContext"] or {"runAsUser": v["uid"], "fsGroup": v["gid"]})


def _airflow_container_sc(v: dict, node: dict) -> dict:  # "containerSecurityContext"
    return node.get("securityContexts", {}).get("container") or v["securityContexts"]["containers"] or _NO_ESCALATION


def _local_pod_sc(node: dict) -> dict:                   # "localPodSecurityContext" (statsd, pgbouncer)
    return node["securityContexts"]["pod"] or node.get("securityContext") or {"runAsUser": node["uid"]}


def _external_container_sc(node: dict) -> dict:          # "externalContainerSecurityContext"
    return node["securityContexts"]["container"] or _NO_ESCALATION


def _airflow_pod(v: dict, node: dict, *, main: str, sidecars: tuple[str, ...] = ()) -> dict:
    sc = _airflow_container_sc(v, node)
    spec = {"securityContext": _airflow_pod_sc(v, node),
            "initContainers": [{"name": "wait-for-airflow-migrations", "securityContext": sc},
                               *node.get("extraInitContainers", [])],
            "containers": [{"name": main, "securityContext": sc}, *({"name": s, "securityContext": sc} for s in sidecars)],
            "volumes": [{"name": "config", "configMap": {"name": "airflow-config"}}, *v["volumes"],
                        *node.get("extraVolumes", [])],
            "tolerations": [*node.get("tolerations", []), *_DEFAULT_TOLERATIONS]}
    if node.get("nodeSelector"):
        spec["nodeSelector"] = node["nodeSelector"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": main, "namespace": k8s.AIRFLOW_NAMESPACE},
            "spec": spec}


def chart_pods() -> dict[str, dict]:
    v = helm_merge(CHART_DEFAULTS, airflow_values())
    workers = helm_merge(v["workers"], v["workers"]["celery"])
    task = helm_merge(v["workers"], v["workers"]["kubernetes"])
    pods = {name: _airflow_pod(v, v[name], main=name, sidecars=("scheduler-log-groomer",) if name == "scheduler" else ())
            for name in ("scheduler", "apiServer", "dagProcessor", "triggerer")}
    pods["celery-worker"] = _airflow_pod(v, workers, main="worker")
    # files/pod-template-file.kubernetes-helm-yaml: the KubernetesExecutor's template has no wait-for-migrations.
    pods["task"] = _airflow_pod(v, task, main="base")
    pods["task"]["spec"]["initContainers"].pop(0)
    pods["migrate-database-job"] = _airflow_pod(v, v["migrateDatabaseJob"], main="run-airflow-migrations")
    pods["migrate-database-job"]["spec"]["initContainers"] = []
    for name, containers in (("pgbouncer", ("pgbouncer", "metrics-exporter")), ("statsd", ("statsd",))):
        node = v[name]
        pods[name] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
            "securityContext": _local_pod_sc(node), "tolerations": list(_DEFAULT_TOLERATIONS),
            "containers": [{"name": c, "securityContext": _external_container_sc(
                node["metricsExporterSidecar"] if c == "metrics-exporter" else node)} for c in containers]}}
    return pods


CHART_PODS = chart_pods()
TASK_POD = CHART_PODS["task"]


def test_the_chart_pods_are_what_chart_1_21_renders_for_our_values():
    # What the helpers above assume of the chart defaults and our values (if either changes, so must they).
    assert (CHART_DEFAULTS["uid"], CHART_DEFAULTS["gid"], CHART_DEFAULTS["statsd"]["uid"],
            CHART_DEFAULTS["pgbouncer"]["uid"]) == (50000, 0, 65534, 65534)
    assert TASK_POD["spec"]["securityContext"] == {"runAsUser": 50000, "runAsGroup": 0, "fsGroup": 0,
                                                   "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert [c["name"] for c in TASK_POD["spec"]["initContainers"]] == ["sync-plugins"]
    assert TASK_POD["spec"]["nodeSelector"] == k8s.WORKER_NODE_LABELS
    assert CHART_PODS["pgbouncer"]["spec"]["securityContext"]["runAsUser"] == 65534


@pytest.mark.parametrize("name", sorted(CHART_PODS))
def test_every_pod_the_chart_renders_passes_every_rule(name):
    assert failing(CHART_PODS[name]) == set()
    assert failing(CHART_PODS[name], operation="UPDATE") == set()


def test_a_scheduled_pod_may_still_be_updated():
    # The scheduler sets nodeName through pods/binding; later label patches (the executor marks finished pods)
    # are UPDATEs of a pod with nodeName set, and must pass.
    scheduled = copy.deepcopy(TASK_POD)
    scheduled["spec"]["nodeName"] = "ip-10-0-1-2.eu-west-1.compute.internal"
    assert failing(scheduled, operation="UPDATE") == set()


def _bad(mutate) -> dict:
    pod = copy.deepcopy(TASK_POD)
    mutate(pod["spec"])
    return pod


def _container_sc(index_list: str, **fields):
    def mutate(spec):
        if index_list == "ephemeralContainers":
            spec["ephemeralContainers"] = [{"name": "debugger", "image": "busybox", "targetContainerName": "base"}]
        spec[index_list][0].setdefault("securityContext", {}).update(fields)
    return mutate


def _set(**fields):
    return lambda spec: spec.update(fields)


BAD = {
    "privileged": ("privileged", _container_sc("containers", privileged=True)),
    "privileged-init": ("privileged", _container_sc("initContainers", privileged=True)),
    "privileged-ephemeral": ("privileged", _container_sc("ephemeralContainers", privileged=True)),
    "allowPrivilegeEscalation": ("allowPrivilegeEscalation", _container_sc("containers", allowPrivilegeEscalation=True)),
    "allowPrivilegeEscalation-init": ("allowPrivilegeEscalation",
                                      _container_sc("initContainers", allowPrivilegeEscalation=True)),
    "hostNetwork": ("hostNamespaces", _set(hostNetwork=True)),
    "hostPID": ("hostNamespaces", _set(hostPID=True)),
    "hostIPC": ("hostNamespaces", _set(hostIPC=True)),
    "hostPath": ("hostPath", lambda spec: spec["volumes"].append({"name": "root", "hostPath": {"path": "/"}})),
    "NET_ADMIN": ("addedCapabilities", _container_sc("containers", capabilities={"add": ["NET_ADMIN"], "drop": []})),
    "SYS_ADMIN-init": ("addedCapabilities", _container_sc("initContainers", capabilities={"add": ["SYS_ADMIN"]})),
    "SYS_ADMIN-ephemeral": ("addedCapabilities", _container_sc("ephemeralContainers", capabilities={"add": ["SYS_ADMIN"]})),
    "runAsUser-0-pod": ("nonRoot", lambda spec: spec["securityContext"].update(runAsUser=0)),
    "runAsUser-0-container": ("nonRoot", _container_sc("containers", runAsUser=0)),
    "runAsUser-0-init": ("nonRoot", _container_sc("initContainers", runAsUser=0)),
    "runAsUser-0-ephemeral": ("nonRoot", _container_sc("ephemeralContainers", runAsUser=0)),
    "runAsNonRoot-false-pod": ("nonRoot", lambda spec: spec["securityContext"].update(runAsNonRoot=False)),
    "runAsNonRoot-false-container": ("nonRoot", _container_sc("containers", runAsNonRoot=False)),
    "no-user-anywhere": ("nonRoot", lambda spec: [spec.update(securityContext={"fsGroup": 0}), *(
        c["securityContext"].pop("runAsNonRoot", None) for key in ("initContainers", "containers")
        for c in spec[key] if c.get("securityContext"))]),
    "system-taint-toleration": ("systemNodes", lambda spec: spec["tolerations"].append(
        {"key": k8s.SYSTEM_NODE_TAINT_KEY, "operator": "Exists"})),
    "exists-toleration-without-key": ("systemNodes", lambda spec: spec["tolerations"].append({"operator": "Exists"})),
    "empty-key-toleration": ("systemNodes", lambda spec: spec["tolerations"].append({"key": "", "operator": "Exists"})),
    "system-node-selector": ("systemNodes", lambda spec: spec["nodeSelector"].update(role="system")),
    "nodeName": ("nodeName", _set(nodeName="ip-10-0-1-2.eu-west-1.compute.internal")),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_one_bad_pod_per_rule_breaks_exactly_that_rule(case):
    rule, mutate = BAD[case]
    assert failing(_bad(mutate)) == {rule}


def test_every_rule_has_a_bad_pod():
    assert {rule for rule, _ in BAD.values()} == set(NAMES)


@pytest.mark.parametrize("compliant", [
    # Explicitly compliant values are not confused with violations.
    _container_sc("containers", privileged=False, allowPrivilegeEscalation=False, runAsNonRoot=True, runAsUser=1000,
                  capabilities={"add": [], "drop": ["ALL"]}),
    _set(hostNetwork=False, hostPID=False, hostIPC=False, nodeName=""),
    # A pod that says nothing of its user but whose containers each do.
    lambda spec: [spec.update(securityContext={}), *(c.setdefault("securityContext", {}).update(runAsNonRoot=True)
                                                     for c in spec["containers"] + spec["initContainers"])],
    # No optional list at all.
    lambda spec: [spec.pop(k) for k in ("initContainers", "volumes", "tolerations", "nodeSelector")],
])
def test_compliant_variants_pass(compliant):
    assert failing(_bad(compliant)) == set()


def test_policy_fails_closed_on_pods_and_ephemeral_containers_with_one_messaged_validation_per_rule():
    policy = pod_policy()
    assert (policy["apiVersion"], policy["kind"]) == ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy")
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["operations"], sorted(rule["resources"])) == (
        [""], ["CREATE", "UPDATE"], ["pods", "pods/ephemeralcontainers"])
    assert spec["validations"] == [r.validation() for r in RULES]
    assert len(set(NAMES)) == len(NAMES) == 8
    assert all(v["message"] and v["reason"] == "Forbidden" for v in spec["validations"])


def test_binding_denies_in_the_airflow_namespace_only():
    binding = pod_policy_binding()
    assert binding["kind"] == "ValidatingAdmissionPolicyBinding"
    assert binding["spec"] == {
        "policyName": admission.POLICY_NAME, "validationActions": ["Deny"],
        "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "airflow"}}}}
    assert pod_admission_objects() == [pod_policy(), binding]


def test_system_node_names_match_the_add_ons_and_the_node_group():
    from modules.platform.addons import SYSTEM_NODE_SELECTOR, _CRITICAL_ADDONS
    assert SYSTEM_NODE_SELECTOR == dict([admission.SYSTEM_NODE_LABEL])
    assert [t["key"] for t in _CRITICAL_ADDONS] == [k8s.SYSTEM_NODE_TAINT_KEY]
