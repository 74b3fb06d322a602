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
    assert pod_admission_objects(launchers=("s", "w"), task_service_account="t",
                                 task_secrets=TASK_POD_SECRETS)[:2] == [pod_policy(), binding]


def test_system_node_names_match_the_add_ons_and_the_node_group():
    from modules.platform.addons import SYSTEM_NODE_SELECTOR, _CRITICAL_ADDONS
    assert SYSTEM_NODE_SELECTOR == dict([admission.SYSTEM_NODE_LABEL])
    assert [t["key"] for t in _CRITICAL_ADDONS] == [k8s.SYSTEM_NODE_TAINT_KEY]


# ---- the pod launchers' policy: what the scheduler and DAG code in a Celery worker may do to pods -----------------

from modules.platform import airflow as af  # noqa: E402  (kept with the tests that use it)
from modules.platform.airflow import TASK_POD_SECRETS, service_accounts  # noqa: E402
from modules.core.validation import ConfigError  # noqa: E402

SA = service_accounts()
LAUNCHERS = (SA["scheduler"], SA["celery"])
LAUNCHER_POLICY = admission.launcher_policy(launchers=LAUNCHERS, task_service_account=SA["kubernetes"],
                                            task_secrets=TASK_POD_SECRETS)
(_MATCH,) = LAUNCHER_POLICY["spec"]["matchConditions"]
_MATCH_PROGRAM = _ENV.program(_ENV.compile(_MATCH["expression"]))
_LAUNCHER_RULES = admission.launcher_rules(task_service_account=SA["kubernetes"], task_secrets=TASK_POD_SECRETS)
_LAUNCHER_PROGRAMS = {rule.name: _ENV.program(_ENV.compile(rule.expression)) for rule in _LAUNCHER_RULES}
WORKER = admission.service_account_username("airflow", SA["celery"])
SCHEDULER = admission.service_account_username("airflow", SA["scheduler"])
HUMAN = "arn:aws:sts::123456789012:assumed-role/platform-admin/alice"


def launcher_failing(obj: dict, *, user: str, operation: str = "CREATE", name: str = "",
                     sub_resource: str = "") -> set[str] | None:
    """The launcher rules a request breaks; None when the policy does not apply to the requester (matchConditions)."""
    request = {"operation": operation, "name": name, "subResource": sub_resource, "namespace": "airflow",
               "userInfo": {"username": user, "groups": ["system:authenticated"]}}
    activation = {"object": celpy.json_to_cel(obj), "request": celpy.json_to_cel(request)}
    matched = _MATCH_PROGRAM.evaluate(activation)
    assert isinstance(matched, celpy.celtypes.BoolType), repr(matched)
    if not matched:
        return None
    out = set()
    for rule_name, program in _LAUNCHER_PROGRAMS.items():
        result = program.evaluate(activation)
        assert isinstance(result, celpy.celtypes.BoolType), f"{rule_name}: {result!r}"
        if not result:
            out.add(rule_name)
    return out


# Chart 1.21 `standard_airflow_environment` with our values: the Secret env every Airflow container, the task pod
# template's included, gets (tests/test_helm_render.py compares the allowlist with the rendered template). Airflow's
# keys are not in it: they go per component (modules/platform/airflow.py COMPONENT_KEYS), none to task pods.
CHART_SECRET_ENV = [{"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for name, secret, key in (
    ("AIRFLOW__CELERY__RESULT_BACKEND", af.RESULT_BACKEND_SECRET, "connection"),
    ("AIRFLOW__CELERY__BROKER_URL", af.BROKER_SECRET, "connection"))]


def executor_task_pod() -> dict:
    """A task pod as the KubernetesExecutor submits it and mutating admission leaves it: the chart's pod template
    (TASK_POD, with the chart's Secret env) under the task service account, labelled by the executor, with the API
    server token the ServiceAccount admission plugin mounts and the token the EKS Pod Identity webhook projects."""
    pod = copy.deepcopy(TASK_POD)
    pod["spec"]["containers"][0]["env"] = copy.deepcopy(CHART_SECRET_ENV)
    pod["metadata"].update(name="example-dag-extract-7f3k2m9q", labels={
        "tier": "airflow", "component": "worker", "release": "airflow", "kubernetes_executor": "True",
        "dag_id": "example_dag", "task_id": "extract", "airflow-worker": "42"})
    pod["spec"]["serviceAccountName"] = SA["kubernetes"]
    pod["spec"]["volumes"] += [
        {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                          "fieldPath": "metadata.namespace"}}]}}]}},
        {"name": "eks-pod-identity-token", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"audience": "pods.eks.amazonaws.com", "expirationSeconds": 86400,
                                     "path": "eks-pod-identity-token"}}]}}]
    return pod


EXEC_OPTIONS = {"apiVersion": "v1", "kind": "PodExecOptions", "stdin": True, "stdout": True, "tty": True,
                "container": "api-server", "command": ["cat", "/var/run/secrets/vault/token"]}


@pytest.mark.parametrize("user", [WORKER, SCHEDULER])
@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_launchers_may_create_and_update_executor_task_pods(user, operation):
    pod = executor_task_pod()
    assert launcher_failing(pod, user=user, operation=operation) == set()
    assert failing(pod, operation=operation) == set()           # and the node rules still hold for it


def test_a_kubernetes_pod_operator_pod_under_the_task_account_with_the_label_passes():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "etl-run-x8d2", "labels": {
        "kubernetes_executor": "kpo", "kubernetes_pod_operator": "True"}},
        "spec": {"serviceAccountName": SA["kubernetes"], "containers": [{"name": "base", "image": "busybox"}]}}
    assert launcher_failing(pod, user=WORKER) == set()


def _launcher_bad(mutate) -> dict:
    pod = executor_task_pod()
    mutate(pod)
    return pod


def _add_token(audience: str):
    return lambda pod: pod["spec"]["volumes"].append({"name": "stolen", "projected": {"sources": [
        {"serviceAccountToken": {"audience": audience, "expirationSeconds": 600, "path": "token"}}]}})


LAUNCHER_BAD = {
    # (b) of the finding: a pod under the scheduler's (or any component's) account gets its Vault and AWS role.
    "scheduler-account": ("taskServiceAccount",
                          lambda pod: pod["spec"].update(serviceAccountName=SA["scheduler"])),
    "api-server-account": ("taskServiceAccount",
                           lambda pod: pod["spec"].update(serviceAccountName=SA["apiServer"])),
    "worker-account": ("taskServiceAccount", lambda pod: pod["spec"].update(serviceAccountName=SA["celery"])),
    "default-account": ("taskServiceAccount", lambda pod: pod["spec"].update(serviceAccountName="default")),
    "no-account-field": ("taskServiceAccount", lambda pod: pod["spec"].pop("serviceAccountName")),
    # ... labelled as the scheduler, to pass the PgBouncer network policy.
    "no-executor-label": ("executorLabel", lambda pod: pod["metadata"]["labels"].pop("kubernetes_executor")),
    "no-labels": ("executorLabel", lambda pod: pod["metadata"].pop("labels")),
    # ... or as the API server or PgBouncer, to join their Service and receive their clients' requests.
    "api-server-component": ("componentLabel", lambda pod: pod["metadata"]["labels"].update(component="api-server")),
    "pgbouncer-component": ("componentLabel", lambda pod: pod["metadata"]["labels"].update(component="pgbouncer")),
    "sts-token": ("tokenAudiences", _add_token("sts.amazonaws.com")),
    "kubernetes-api-audience-token": ("tokenAudiences", _add_token("https://kubernetes.default.svc")),
    # H1: the metadata connection, mounted by a pod_override (every kind of reference: secret_references_cases).
    "metadata-db-volume": ("taskSecrets", lambda pod: pod["spec"]["volumes"].append(
        {"name": "db", "secret": {"secretName": af.METADATA_SECRET}})),
}


@pytest.mark.parametrize("case", sorted(LAUNCHER_BAD))
@pytest.mark.parametrize("user", [WORKER, SCHEDULER])
def test_a_launcher_cannot_create_another_kind_of_pod(case, user):
    rule, mutate = LAUNCHER_BAD[case]
    assert launcher_failing(_launcher_bad(mutate), user=user) == {rule}


# ---- Secrets: only the keys the task pod template takes -----------------------------------------------------------

def _volume(name: str, keys: list[str] | None) -> dict:
    return {"secretName": name, **({"items": [{"key": k, "path": k} for k in keys]} if keys is not None else {})}


def _projected(name: str, keys: list[str] | None) -> dict:
    return {"name": name, **({"items": [{"key": k, "path": k} for k in keys]} if keys is not None else {})}


def _containers_of(kind: str):
    def containers(pod: dict) -> list[dict]:
        if kind == "ephemeralContainers":
            pod["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox", "targetContainerName": "base"}]
        return pod["spec"][kind]
    return containers


# How a pod may reference a Secret: (name, key) -> mutation. A key of None: the reference takes the whole Secret.
REFERENCE_KINDS = {
    "secret-volume": lambda name, key: lambda pod: pod["spec"]["volumes"].append(
        {"name": "s", "secret": _volume(name, None if key is None else [key])}),
    "projected-secret": lambda name, key: lambda pod: pod["spec"]["volumes"].append(
        {"name": "s", "projected": {"sources": [{"secret": _projected(name, None if key is None else [key])}]}}),
    **{f"env-{kind}": (lambda kind: lambda name, key: lambda pod: _containers_of(kind)(pod)[0].setdefault(
        "env", []).append({"name": "STOLEN", "valueFrom": {"secretKeyRef": {"name": name, "key": key or "connection"}}})
    )(kind) for kind in ("containers", "initContainers", "ephemeralContainers")},
    **{f"envFrom-{kind}": (lambda kind: lambda name, key: lambda pod: _containers_of(kind)(pod)[0].setdefault(
        "envFrom", []).append({"secretRef": {"name": name}}))(kind)
       for kind in ("containers", "initContainers", "ephemeralContainers")},
}
KEYED_KINDS = [k for k in REFERENCE_KINDS if not k.startswith("envFrom-")]
# The finding's list: what the namespace holds besides the allowlisted keys.
FORBIDDEN_SECRETS = {af.METADATA_SECRET: "connection", af.PGBOUNCER_CONFIG_SECRET: "users.txt",
                     af.PGBOUNCER_STATS_SECRET: "connection", af.KEDA_DATABASE_SECRET: "connection",
                     af.API_SERVER_TLS_SECRET: "tls.key", af.KEDA_PLATFORM_CA_CERTIFICATE: "tls.key",
                     # the JWT secret would let a task mint any user's token (security review H3)
                     af.KEYS_SECRET: "jwt-secret", af.API_SERVER_KEYS_SECRET: "flask-secret-key"}


@pytest.mark.parametrize("kind", sorted(REFERENCE_KINDS))
@pytest.mark.parametrize("secret", sorted(FORBIDDEN_SECRETS))
def test_a_launcher_cannot_create_a_pod_that_takes_another_secret(secret, kind):
    pod = _launcher_bad(REFERENCE_KINDS[kind](secret, FORBIDDEN_SECRETS[secret]))
    assert launcher_failing(pod, user=WORKER) == {"taskSecrets"}
    assert launcher_failing(pod, user=SCHEDULER, operation="UPDATE") == {"taskSecrets"}


@pytest.mark.parametrize("kind", sorted(KEYED_KINDS))
@pytest.mark.parametrize("secret, key", [(af.PGBOUNCER_TLS_SECRET, "tls.key"),       # its CA file only
                                         (af.KEYS_SECRET, "webserver-secret-key")])
def test_a_launcher_cannot_take_another_key_of_an_allowed_secret(secret, key, kind):
    assert launcher_failing(_launcher_bad(REFERENCE_KINDS[kind](secret, key)), user=WORKER) == {"taskSecrets"}


@pytest.mark.parametrize("kind", ["secret-volume", "projected-secret", "envFrom-containers"])
def test_a_launcher_cannot_take_a_whole_allowed_secret(kind):
    # Without items (or with items: [], which the kubelet reads as "every key") the pod takes tls.key too.
    assert launcher_failing(_launcher_bad(REFERENCE_KINDS[kind](af.PGBOUNCER_TLS_SECRET, None)), user=WORKER) == {
        "taskSecrets"}
    empty = _launcher_bad(lambda pod: pod["spec"]["volumes"].append(
        {"name": "s", "secret": {"secretName": af.PGBOUNCER_TLS_SECRET, "items": []}}))
    assert launcher_failing(empty, user=WORKER) == {"taskSecrets"}


@pytest.mark.parametrize("kind", sorted(KEYED_KINDS))
@pytest.mark.parametrize("secret, key", sorted((n, k) for n, keys in TASK_POD_SECRETS.items() for k in keys))
def test_a_launcher_may_take_each_allowed_key_by_every_keyed_reference(secret, key, kind):
    assert launcher_failing(_launcher_bad(REFERENCE_KINDS[kind](secret, key)), user=WORKER) == set()


def test_a_secret_reference_without_a_name_is_refused():
    # The API defaults a missing name to "", which names no allowlisted Secret.
    pod = _launcher_bad(lambda pod: pod["spec"]["containers"][0]["env"].append(
        {"name": "X", "valueFrom": {"secretKeyRef": {"key": "connection"}}}))
    assert launcher_failing(pod, user=WORKER) == {"taskSecrets"}


def test_the_task_secrets_message_names_the_allowlist_and_bad_names_fail_fast():
    (rule,) = [r for r in _LAUNCHER_RULES if r.name == "taskSecrets"]
    assert "airflow-pgbouncer-tls: ca.crt" in rule.message and "airflow-broker-url: connection" in rule.message
    assert "airflow-keys" not in rule.message
    with pytest.raises(ConfigError, match=r"task_secrets='bad\"name' is not a Secret name; fix: "):
        admission.launcher_rules(task_service_account="t", task_secrets={'bad"name': frozenset({"k"})})
    with pytest.raises(ConfigError, match=r"task_secrets\['airflow-keys'\]=\[\] needs one or more Secret keys"):
        admission.launcher_rules(task_service_account="t", task_secrets={"airflow-keys": frozenset()})


def test_a_worker_cannot_patch_a_component_pod_to_run_its_own_code():
    # An UPDATE carries the whole pod: the API server's pod, image swapped, still runs as the API server's account.
    api_server = copy.deepcopy(CHART_PODS["apiServer"])
    api_server["metadata"].update(name="airflow-api-server-6d9f7c-abcde",
                                  labels={"tier": "airflow", "component": "api-server", "release": "airflow"})
    api_server["spec"]["serviceAccountName"] = SA["apiServer"]
    api_server["spec"]["containers"][0]["image"] = "attacker/image:latest"
    # ... and mounts its TLS key, which no task pod takes.
    assert launcher_failing(api_server, user=WORKER, operation="UPDATE") == {
        "taskServiceAccount", "executorLabel", "componentLabel", "taskSecrets"}


# (a) of the finding: exec into the API server or scheduler and read its Vault token.
@pytest.mark.parametrize("sub_resource", ["exec", "attach", "portforward"])
@pytest.mark.parametrize("target", ["airflow-api-server-6d9f7c-abcde", "airflow-scheduler-5b8c4d-xyz12",
                                    "airflow-worker-0", "airflow-triggerer-0", "airflow-pgbouncer-7c9d-q2w3e",
                                    "airflow-run-airflow-migrations-k2j3h"])
@pytest.mark.parametrize("user", [WORKER, SCHEDULER])
def test_a_launcher_cannot_exec_into_an_airflow_component(user, target, sub_resource):
    assert launcher_failing(EXEC_OPTIONS, user=user, operation="CONNECT", name=target,
                            sub_resource=sub_resource) == {"noConnectToComponents"}


def test_a_worker_may_exec_into_a_task_pod_it_launched():
    # KubernetesPodOperator reads its XCom sidecar's return.json through pods/exec.
    assert launcher_failing({**EXEC_OPTIONS, "container": "airflow-xcom-sidecar"}, user=WORKER, operation="CONNECT",
                            name="etl-run-x8d2", sub_resource="exec") == set()


@pytest.mark.parametrize("user", [HUMAN, admission.service_account_username("airflow", SA["apiServer"]),
                                  admission.service_account_username("kube-system", SA["celery"]),
                                  "system:serviceaccount:airflow:airflow-worker-extra"])
def test_the_policy_does_not_apply_to_anyone_else(user):
    # An operator's `kubectl exec` into the API server stays possible (their own RBAC decides), and a same-named
    # account in another namespace, or a name with the worker's as prefix, is not a launcher.
    assert launcher_failing(EXEC_OPTIONS, user=user, operation="CONNECT", name="airflow-api-server-6d9f7c-abcde",
                            sub_resource="exec") is None
    assert launcher_failing(_launcher_bad(LAUNCHER_BAD["scheduler-account"][1]), user=user) is None


def test_every_launcher_rule_has_a_bad_request():
    assert {rule for rule, _ in LAUNCHER_BAD.values()} | {"noConnectToComponents"} == {
        r.name for r in _LAUNCHER_RULES}


def test_launcher_policy_matches_pod_writes_and_connects_by_the_chart_launchers_only_and_fails_closed():
    spec = LAUNCHER_POLICY["spec"]
    assert LAUNCHER_POLICY["metadata"]["name"] == "airflow-pod-launchers"
    assert spec["failurePolicy"] == "Fail"
    assert [(r["operations"], r["resources"]) for r in spec["matchConstraints"]["resourceRules"]] == [
        (["CREATE", "UPDATE"], ["pods", "pods/ephemeralcontainers"]),
        (["CONNECT"], ["pods/attach", "pods/exec", "pods/portforward"])]
    # The chart binds its pod-launcher Role to exactly these two accounts (templates/rbac/pod-launcher-rolebinding
    # for executor "CeleryExecutor,KubernetesExecutor"), and task pods run as the third.
    assert (SA["scheduler"], SA["celery"], SA["kubernetes"]) == (
        "airflow-scheduler", "airflow-worker", "airflow-worker-kubernetes")
    assert _MATCH["expression"] == ('request.userInfo.username in ["system:serviceaccount:airflow:airflow-scheduler", '
                                    '"system:serviceaccount:airflow:airflow-worker"]')
    assert spec["validations"] == [r.validation() for r in _LAUNCHER_RULES]
    binding = admission.launcher_policy_binding()
    assert binding["spec"] == {
        "policyName": "airflow-pod-launchers", "validationActions": ["Deny"],
        "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "airflow"}}}}
    assert pod_admission_objects(launchers=LAUNCHERS, task_service_account=SA["kubernetes"],
                                 task_secrets=TASK_POD_SECRETS) == [
        pod_policy(), pod_policy_binding(), LAUNCHER_POLICY, binding]


def test_task_token_audiences_are_vaults_and_pod_identitys():
    from modules.aws.identity import POD_IDENTITY_PRINCIPAL
    assert admission.TASK_TOKEN_AUDIENCES == (k8s.VAULT_TOKEN_AUDIENCE, POD_IDENTITY_PRINCIPAL)
    (vault_token,) = [v for v in TASK_POD["spec"]["volumes"] if v["name"] == "vault-token"]
    assert [s["serviceAccountToken"]["audience"] for s in vault_token["projected"]["sources"]] == ["vault"]
