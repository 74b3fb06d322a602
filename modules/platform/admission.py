"""What a pod in the Airflow namespace may ask of its node: a ValidatingAdmissionPolicy (Kubernetes CEL, built in
since 1.30, no controller to run) and its binding, added to the platform-bootstrap chart so they exist before the
Airflow release creates its first pod.

Why: the chart's `allowPodLaunching` lets the scheduler and workers create pods, and a DAG's KubernetesExecutor
`pod_override` (or KubernetesPodOperator) decides what those pods ask for. Without this policy a DAG author could
start a privileged, host-network or hostPath pod that tolerates the system nodes: root on a node, the node role
through IMDS, and the service-account tokens of Vault, External Secrets and Karpenter running there. The policy
refuses, whatever the pod spec says (docs/airflow.md, "What DAG code cannot do").

Every expression is plain Kubernetes CEL and guards each optional field with `has()` (a missing field is an
evaluation error in CEL, and with failurePolicy Fail an error denies the pod with a less helpful message).
tests/modules/platform/test_admission.py evaluates each one with cel-python against good and bad pod specs.

A second policy, `airflow-pod-launchers`, governs what the pod launchers may do: the chart binds its pod-launcher
Role (pods create/patch/delete, pods/exec) to the scheduler (KubernetesExecutor) and to the Celery workers
(KubernetesPodOperator), and the workers run DAG code. Without it that code could create a pod under another
component's service account with a Vault-audience token (that component's Vault role and Pod Identity AWS role),
patch a component's pod to run another image, or exec into the API server or scheduler and read its Vault token,
or mount a Secret of the namespace (a pod's volumes and env need no RBAC on Secrets): the metadata connection,
PgBouncer's users, a TLS key. So launched pods may reference only the Secret keys the task pod template takes.
Pure data: no cdktf import.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..core.validation import require
from . import kubernetes as k8s

API_VERSION = "admissionregistration.k8s.io/v1"
POLICY_NAME = "airflow-pod-restrictions"
# Set by the API server on every namespace (Kubernetes >= 1.22), so a binding can select one namespace by name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# The system nodes' label (modules/aws/cluster.py `labels`, modules/platform/addons.py SYSTEM_NODE_SELECTOR).
SYSTEM_NODE_LABEL = ("role", "system")

_POD_SC = "object.spec.securityContext"


def _set(path: str, field: str) -> str:
    """`path.field` is present (and so is `path`): has() on each level, as CEL requires."""
    return f"has({path}) && has({path}.{field})"


def _every_container(predicate: str) -> str:
    """`predicate` (over `c`) holds for every container, init container and ephemeral container."""
    return " && ".join([
        f"object.spec.containers.all(c, {predicate})",
        f"(!has(object.spec.initContainers) || object.spec.initContainers.all(c, {predicate}))",
        f"(!has(object.spec.ephemeralContainers) || object.spec.ephemeralContainers.all(c, {predicate}))"])


def _container_flag_not_true(field: str) -> str:
    return _every_container(f"!({_set('c.securityContext', field)} && c.securityContext.{field} == true)")


_HOST_NAMESPACES = " && ".join(f"!(has(object.spec.{f}) && object.spec.{f} == true)"
                               for f in ("hostNetwork", "hostPID", "hostIPC"))
_NO_ADDED_CAPABILITIES = _every_container(
    "!(has(c.securityContext) && has(c.securityContext.capabilities) && has(c.securityContext.capabilities.add)"
    " && size(c.securityContext.capabilities.add) > 0)")
# Not root: no runAsUser 0 and no runAsNonRoot false, at pod or container level; and every container says whom it
# runs as (a runAsUser of its own or the pod's, or runAsNonRoot true, which the kubelet enforces against the
# image's user). A pod that sets neither would run as the image's USER, which may be root.
_NON_ROOT = " && ".join([
    f"!({_set(_POD_SC, 'runAsUser')} && {_POD_SC}.runAsUser == 0)",
    f"!({_set(_POD_SC, 'runAsNonRoot')} && {_POD_SC}.runAsNonRoot == false)",
    _every_container(" && ".join([
        f"!({_set('c.securityContext', 'runAsUser')} && c.securityContext.runAsUser == 0)",
        f"!({_set('c.securityContext', 'runAsNonRoot')} && c.securityContext.runAsNonRoot == false)",
        f"({_set('c.securityContext', 'runAsUser')} || {_set('c.securityContext', 'runAsNonRoot')}"
        f" || {_set(_POD_SC, 'runAsUser')} || {_set(_POD_SC, 'runAsNonRoot')})"]))])
# A toleration with an empty key (the API allows that only with operator Exists) tolerates every taint.
_SYSTEM_NODES = " && ".join([
    "(!has(object.spec.tolerations) || object.spec.tolerations.all(t, has(t.key) && t.key != \"\""
    f" && t.key != \"{k8s.SYSTEM_NODE_TAINT_KEY}\"))",
    f"!(has(object.spec.nodeSelector) && \"{SYSTEM_NODE_LABEL[0]}\" in object.spec.nodeSelector"
    f" && object.spec.nodeSelector[\"{SYSTEM_NODE_LABEL[0]}\"] == \"{SYSTEM_NODE_LABEL[1]}\")"])


@dataclass(frozen=True)
class Rule:
    name: str           # for tests and docs; a validation has no name of its own
    expression: str     # true = allowed
    message: str        # what is refused and why, as the API server returns it

    def validation(self) -> dict[str, str]:
        return {"expression": self.expression, "message": self.message, "reason": "Forbidden"}


RULES: tuple[Rule, ...] = (
    Rule("privileged", _container_flag_not_true("privileged"),
         "securityContext.privileged: true is refused in the Airflow namespace: a privileged container is root on "
         "the node (every device, every capability)."),
    Rule("allowPrivilegeEscalation", _container_flag_not_true("allowPrivilegeEscalation"),
         "securityContext.allowPrivilegeEscalation: true is refused in the Airflow namespace: setuid binaries "
         "could gain privileges the container was not given."),
    Rule("hostNamespaces", _HOST_NAMESPACES,
         "hostNetwork, hostPID and hostIPC are refused in the Airflow namespace: the node's network (and its "
         "instance metadata), processes and IPC belong to the node."),
    Rule("hostPath", "!has(object.spec.volumes) || object.spec.volumes.all(v, !has(v.hostPath))",
         "hostPath volumes are refused in the Airflow namespace: the node's filesystem holds its kubelet "
         "credentials and other pods' service-account tokens."),
    Rule("addedCapabilities", _NO_ADDED_CAPABILITIES,
         "securityContext.capabilities.add is refused in the Airflow namespace (e.g. NET_ADMIN, SYS_ADMIN): "
         "capabilities are kernel privileges beyond what a task needs; drop, do not add."),
    Rule("nonRoot", _NON_ROOT,
         "Pods in the Airflow namespace must not run as root: runAsUser 0 and runAsNonRoot: false are refused, "
         "and every container needs a runAsUser (its own or the pod's) or runAsNonRoot: true; Airflow runs as "
         "uid 50000."),
    Rule("systemNodes", _SYSTEM_NODES,
         f"Pods in the Airflow namespace may not target the system nodes: a toleration of "
         f"{k8s.SYSTEM_NODE_TAINT_KEY}, a toleration without a key (operator Exists tolerates every taint) and "
         f"nodeSelector {SYSTEM_NODE_LABEL[0]}={SYSTEM_NODE_LABEL[1]} are refused; the cluster's controllers "
         "and Vault run there."),
    Rule("nodeName", 'request.operation != "CREATE" || !has(object.spec.nodeName) || object.spec.nodeName == ""',
         "spec.nodeName is refused on a new pod in the Airflow namespace: it skips the scheduler, and with it "
         "every taint and node selector; let the scheduler place the pod."),
)


def pod_policy() -> dict[str, Any]:
    """The ValidatingAdmissionPolicy: one validation per rule (in RULES order) over pods created or updated,
    including `kubectl debug`'s ephemeral containers (an UPDATE of pods/ephemeralcontainers whose object is the
    whole Pod). Fail closed: if the policy cannot be evaluated, the pod is refused."""
    return {"apiVersion": API_VERSION, "kind": "ValidatingAdmissionPolicy", "metadata": {"name": POLICY_NAME},
            "spec": {"failurePolicy": "Fail",
                     "matchConstraints": {"resourceRules": [{
                         "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                         "resources": ["pods", "pods/ephemeralcontainers"]}]},
                     "validations": [rule.validation() for rule in RULES]}}


def pod_policy_binding(namespace: str = k8s.AIRFLOW_NAMESPACE) -> dict[str, Any]:
    """Binds the policy to one namespace (by its name label) with Deny: a violation refuses the request."""
    return {"apiVersion": API_VERSION, "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": POLICY_NAME},
            "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"],
                     "matchResources": {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}}}


# ---- what the pod launchers (scheduler, Celery workers) may do to pods ----------------------------------------

LAUNCHER_POLICY_NAME = "airflow-pod-launchers"
# Set by the KubernetesExecutor on every task pod after the pod template; a DAG's pod_override can change the value
# but not remove the key (cncf.kubernetes PodGenerator). network_policy.DATABASE_CLIENTS leaves such pods out.
EXECUTOR_LABEL = "kubernetes_executor"
# Token audiences a task pod legitimately carries, besides the API server's own (a projection without `audience`,
# e.g. the kube-api-access volume): Vault's (airflow.vault_identity, the task Vault role), and EKS Pod Identity's,
# which the Pod Identity webhook projects into every pod whose service account has an association (the task
# account has one, for its logs) before validating admission runs.
POD_IDENTITY_AUDIENCE = "pods.eks.amazonaws.com"
TASK_TOKEN_AUDIENCES = (k8s.VAULT_TOKEN_AUDIENCE, POD_IDENTITY_AUDIENCE)
CONNECT_SUBRESOURCES = ("pods/attach", "pods/exec", "pods/portforward")
# The chart's pod template file labels task pods `component: worker` (as Celery workers are). The chart's Services
# select their pods by tier/component/release, so a launched pod may carry no other component.
TASK_COMPONENT = "worker"


# A Secret name (DNS subdomain) and a Secret key: checked before they are written into CEL string literals.
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


def _secret_keys_literal(task_secrets: Mapping[str, frozenset[str]]) -> str:
    """The allowlist as a CEL map literal: Secret name -> list of keys."""
    for name, keys in task_secrets.items():
        require(_SECRET_NAME.fullmatch(name) is not None, "task_secrets", name, "is not a Secret name",
                "use the Secret's metadata.name (lowercase DNS subdomain)")
        require(bool(keys) and all(_SECRET_KEY.fullmatch(k) for k in keys), f"task_secrets[{name!r}]",
                sorted(keys), "needs one or more Secret keys ([-._a-zA-Z0-9])", "list the keys the task pod takes")
    return "{" + ", ".join(f'"{name}": [' + ", ".join(f'"{k}"' for k in sorted(keys)) + "]"
                           for name, keys in sorted(task_secrets.items())) + "}"


def _task_secrets_expression(task_secrets: Mapping[str, frozenset[str]]) -> str:
    """Every Secret reference of the pod names an allowlisted Secret and only allowlisted keys of it. A reference
    to a whole Secret (envFrom secretRef, a secret volume or projected source without items, or with `items: []`,
    which the kubelet reads as every key) is refused: it would also take keys added to that Secret later."""
    allowed = _secret_keys_literal(task_secrets)

    def items_allowed(ref: str, name_field: str) -> str:
        name = f"{ref}.{name_field}"
        return (f"has({name}) && {name} in {allowed} && has({ref}.items) && size({ref}.items) > 0"
                f" && {ref}.items.all(i, i.key in {allowed}[{name}])")

    key_ref = "e.valueFrom.secretKeyRef"
    env = (f"(!has(c.env) || c.env.all(e, !has(e.valueFrom) || !has({key_ref}) || (has({key_ref}.name)"
           f" && {key_ref}.name in {allowed} && has({key_ref}.key) && {key_ref}.key in {allowed}[{key_ref}.name])))"
           " && (!has(c.envFrom) || c.envFrom.all(f, !has(f.secretRef)))")
    volumes = ("!has(object.spec.volumes) || object.spec.volumes.all(v, (!has(v.secret) || ("
               f"{items_allowed('v.secret', 'secretName')})) && (!has(v.projected) || !has(v.projected.sources)"
               f" || v.projected.sources.all(s, !has(s.secret) || ({items_allowed('s.secret', 'name')}))))")
    return f"({volumes}) && {_every_container(env)}"


def service_account_username(namespace: str, service_account: str) -> str:
    """`request.userInfo.username` of a request made with a service account's token."""
    return f"system:serviceaccount:{namespace}:{service_account}"


def launcher_rules(*, task_service_account: str, task_secrets: Mapping[str, frozenset[str]],
                   release: str = k8s.AIRFLOW_RELEASE) -> tuple[Rule, ...]:
    """On CONNECT the API server hands admission only the options (PodExecOptions, ...) and the pod's name, never
    the pod: so the exec rule goes by name. Every pod the chart runs is named after the release (`<release>-`:
    Deployments, StatefulSets, Jobs); task pods are named after their DAG and task, so DAG code can still exec into
    the pods it launched (KubernetesPodOperator's XCom sidecar) but not into an Airflow component."""
    not_connect = 'request.operation == "CONNECT"'
    audiences = ", ".join(f'"{a}"' for a in TASK_TOKEN_AUDIENCES)
    allowed_secrets = "; ".join(f"{name}: {', '.join(sorted(keys))}" for name, keys in sorted(task_secrets.items()))
    return (
        Rule("taskServiceAccount",
             f"{not_connect} || (has(object.spec.serviceAccountName)"
             f' && object.spec.serviceAccountName == "{task_service_account}")',
             f"The scheduler and the workers may only create or change pods that run as {task_service_account} "
             "(the task pods' service account): another account's pod would get that account's Vault role and "
             "AWS role. Set service_account_name to it in pod_override / KubernetesPodOperator."),
        Rule("executorLabel",
             f'{not_connect} || (has(object.metadata.labels) && "{EXECUTOR_LABEL}" in object.metadata.labels)',
             f"The scheduler and the workers may only create or change pods labelled {EXECUTOR_LABEL} (any value): "
             "the label keeps them out of the network policy that admits Airflow components to PgBouncer. The "
             f"KubernetesExecutor sets it; give KubernetesPodOperator pods one too (e.g. {EXECUTOR_LABEL}: kpo)."),
        Rule("componentLabel",
             f'{not_connect} || !has(object.metadata.labels) || !("component" in object.metadata.labels)'
             f' || object.metadata.labels["component"] == "{TASK_COMPONENT}"',
             f"The scheduler and the workers may only create or change pods whose component label, if any, is "
             f"{TASK_COMPONENT} (the task pods' one): with another (api-server, pgbouncer, ...) the pod would join "
             "that component's Service and receive its clients' requests."),
        Rule("tokenAudiences",
             f"{not_connect} || !has(object.spec.volumes) || object.spec.volumes.all(v, !has(v.projected)"
             " || !has(v.projected.sources) || v.projected.sources.all(s, !has(s.serviceAccountToken)"
             f" || !has(s.serviceAccountToken.audience) || s.serviceAccountToken.audience in [{audiences}]))",
             "The scheduler and the workers may only create pods whose projected service-account tokens are for "
             f"the API server, Vault or EKS Pod Identity ({', '.join(TASK_TOKEN_AUDIENCES)}): a token for another "
             "audience would let the pod sign in elsewhere as the task account."),
        Rule("taskSecrets", f"{not_connect} || ({_task_secrets_expression(task_secrets)})",
             "The scheduler and the workers may only create or change pods that take the Secret keys the task pod "
             f"template takes ({allowed_secrets}), each by name and key (env valueFrom.secretKeyRef, or a secret "
             "volume or projected source with items); envFrom secretRef and whole-Secret volumes are refused: the "
             "namespace's other Secrets hold the database credentials and TLS keys of Airflow's components. "
             "Connections and credentials for tasks come from Vault."),
        Rule("noConnectToComponents",
             f'request.operation != "CONNECT" || !request.name.startsWith("{release}-")',
             f"The scheduler and the workers may not exec, attach or port-forward into pods named {release}-*: "
             "those are Airflow's own components (API server, scheduler, ...), whose Vault and AWS tokens DAG code "
             "must not read."),
    )


def launcher_policy(*, launchers: tuple[str, ...], task_service_account: str,
                    task_secrets: Mapping[str, frozenset[str]], namespace: str = k8s.AIRFLOW_NAMESPACE,
                    release: str = k8s.AIRFLOW_RELEASE) -> dict[str, Any]:
    """The ValidatingAdmissionPolicy for requests made by the `launchers` service accounts (matchConditions: anyone
    else, e.g. an operator's `kubectl exec`, is not subject to it): pod CREATE/UPDATE (the whole pod, so also a
    patch of an existing component pod) and CONNECT to pods/exec, attach and portforward. Fail closed."""
    usernames = ", ".join(f'"{service_account_username(namespace, sa)}"' for sa in launchers)
    return {"apiVersion": API_VERSION, "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": LAUNCHER_POLICY_NAME},
            "spec": {"failurePolicy": "Fail",
                     "matchConstraints": {"resourceRules": [
                         {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                          "resources": ["pods", "pods/ephemeralcontainers"]},
                         {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CONNECT"],
                          "resources": list(CONNECT_SUBRESOURCES)}]},
                     "matchConditions": [{"name": "pod-launcher",
                                          "expression": f"request.userInfo.username in [{usernames}]"}],
                     "validations": [rule.validation() for rule in launcher_rules(
                         task_service_account=task_service_account, task_secrets=task_secrets, release=release)]}}


def launcher_policy_binding(namespace: str = k8s.AIRFLOW_NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": LAUNCHER_POLICY_NAME},
            "spec": {"policyName": LAUNCHER_POLICY_NAME, "validationActions": ["Deny"],
                     "matchResources": {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}}}


def pod_admission_objects(namespace: str = k8s.AIRFLOW_NAMESPACE, *, launchers: tuple[str, ...],
                          task_service_account: str, task_secrets: Mapping[str, frozenset[str]],
                          release: str = k8s.AIRFLOW_RELEASE) -> list[dict[str, Any]]:
    """Both policies and their bindings, for the platform-bootstrap chart. `task_secrets`: Secret name -> the keys
    of it a launched pod may take (airflow.TASK_POD_SECRETS, what the chart's task pod template takes)."""
    return [pod_policy(), pod_policy_binding(namespace),
            launcher_policy(launchers=launchers, task_service_account=task_service_account,
                            task_secrets=task_secrets, namespace=namespace, release=release),
            launcher_policy_binding(namespace)]
