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
Pure data: no cdktf import.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def pod_admission_objects(namespace: str = k8s.AIRFLOW_NAMESPACE) -> list[dict[str, Any]]:
    """Both objects, for the platform-bootstrap chart."""
    return [pod_policy(), pod_policy_binding(namespace)]
