"""Least-privilege IAM roles for the workloads on the EKS cluster that call AWS, bound with EKS Pod Identity.

Every workload gets its own role, one inline policy naming exact ARNs, and one
`aws_eks_pod_identity_association` per Kubernetes service account. The role trusts only the EKS Pod
Identity service (`pods.eks.amazonaws.com`, `sts:AssumeRole` + `sts:TagSession`) acting for this account, and only
for its own cluster, namespace and service accounts (the session tags EKS Pod Identity sets: clusters of
environments that share an account stay apart). Associations must keep session tags on (the provider's default;
`disable_session_tags` would break it).

Policies are checked when a statement is added (at construction or through `grant()`): no `*` or
`<service>:*` actions, and no `Resource: "*"` on a write action unless the statement carries a
Condition (for the few APIs with no resource-level permissions, e.g. `cloudwatch:PutMetricData`).
The statements come from the resources a workload uses: each grants through its own method (a bucket set grants
Airflow its reads and writes, a key grants its use, the cluster grants Karpenter node provisioning); a role whose
policy is still empty at synth is refused by the policy pack (AF-IAM-1: IAM rejects an empty policy).

Conventions other stacks must follow (they are the contract these roles rely on):
- Service account names: `WORKLOADS` / `workloads()`; they match the official charts' generated names.
  Airflow chart 1.21.0 gives KubernetesExecutor pods their own service account
  (`workers.kubernetes.serviceAccount`, generated name `<release>-worker-kubernetes`): the Airflow
  release must set `workers.kubernetes.serviceAccount.create: true` (or that name explicitly), else task
  pods fall back to the Celery worker's account.
- Airflow task logs live under `s3://<logs bucket>/task-logs/` (`TASK_LOG_PREFIX`).
- ALB target groups registered through `TargetGroupBinding` are named `<cluster_name>-...`
  (`target_group_name_pattern()`); the controller can register targets in no other target group.
- Karpenter launches only into subnets and security groups tagged `karpenter.sh/discovery=<cluster>`,
  and tags what it creates `kubernetes.io/cluster/<cluster>=owned` + `karpenter.sh/nodepool` (its default).
- Persistent volumes come from the platform StorageClass (modules/platform/addons.py), whose `tagSpecification_1` tags
  them `kubernetes.io/cluster/<cluster>=owned` besides the driver's `ebs.csi.aws.com/cluster=true`: the EBS CSI
  driver can create, modify, attach and delete only those volumes, not another cluster's (nor volumes of a
  StorageClass without that tag).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


from cdktf_cdktf_provider_aws import eks_pod_identity_association, iam_role, iam_role_policy
from constructs import Construct

from ..core import iam
from ..core.tokens import is_unresolved
from ..core.validation import ConfigError
from ..core.environment import AwsEnvironment

POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"
TASK_LOG_PREFIX = "task-logs"
_READ_PREFIXES = ("Describe", "Get", "List")
_SID = re.compile(r"[A-Za-z0-9]{1,128}")
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}")
_NAMESPACE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_SERVICE_ACCOUNT = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")


# ---- statement checks -----------------------------------------------------------------------------

def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def is_read_action(action: str) -> bool:
    """Describe*/Get*/List* API calls; everything else is treated as a write."""
    return action.split(":", 1)[-1].startswith(_READ_PREFIXES)


def check_statement(stmt: dict[str, Any], field: str = "statements") -> None:
    """Refuse what least privilege forbids; the error names the statement Sid, the action and the fix."""
    sid = stmt.get("Sid")
    if not isinstance(sid, str) or not _SID.fullmatch(sid):
        raise ConfigError(f"{field}.Sid", sid, "is missing or not 1-128 ASCII letters and digits",
                          "give every statement a Sid such as 'ReadDagBundles' (IAM accepts only [A-Za-z0-9])")
    where = f"{field}[{sid}]"
    for key in ("NotAction", "NotResource", "Principal", "NotPrincipal"):
        if key in stmt:
            raise ConfigError(f"{where}.{key}", stmt[key], "is not allowed in a workload's identity policy",
                              "list the allowed Action and Resource explicitly (iam.statement does)")
    if stmt.get("Effect") not in ("Allow", "Deny"):
        raise ConfigError(f"{where}.Effect", stmt.get("Effect"), "must be 'Allow' or 'Deny'", "use iam.statement")
    actions, resources = _as_list(stmt.get("Action")), _as_list(stmt.get("Resource"))
    if not actions or not resources or None in actions or None in resources:
        raise ConfigError(where, stmt, "needs at least one Action and one Resource",
                          "build the statement with iam.statement(sid, actions, resources)")
    if stmt["Effect"] == "Deny":
        return                                     # a Deny only ever narrows what the role may do
    for action in actions:
        if not isinstance(action, str) or action == "*" or action.endswith(":*"):
            raise ConfigError(f"{where}.Action", action, "grants every action of a service",
                              "list the exact API actions the workload calls, e.g. 's3:GetObject'")
    if "*" in resources and not stmt.get("Condition"):
        for action in actions:
            if not is_read_action(action):
                raise ConfigError(
                    f"{where}.Action", action, "is a write action on Resource '*' without a Condition",
                    "name the resource ARNs; if the API supports no resource-level permissions "
                    "(e.g. cloudwatch:PutMetricData), keep '*' and add a Condition (e.g. cloudwatch:namespace)")


def _check_sids_unique(statements: list[dict[str, Any]], field: str) -> None:
    seen: set[str] = set()
    for stmt in statements:
        if stmt["Sid"] in seen:
            raise ConfigError(f"{field}.Sid", stmt["Sid"], "is used twice in the same policy",
                              "give each statement of a role its own Sid")
        seen.add(stmt["Sid"])


def pod_identity_trust_policy(account_id: str, *, cluster_arn: str, namespace: str,
                              service_accounts: tuple[str, ...]) -> str:
    """Only the EKS Pod Identity service may assume (and tag the session of) the role, and only for this workload's
    cluster, namespace and service accounts: the session tags EKS Pod Identity sets on every AssumeRole (EKS User
    Guide, "Create IAM role with trust policy required by EKS Pod Identity" and "List of session tags added by EKS
    Pod Identity"). Without them any association in the account, on any of its clusters, could use the role.
    No aws:SourceArn: AWS documents none for pods.eks.amazonaws.com, and a key absent from the request fails the
    match; the eks-cluster-arn tag is what names the cluster."""
    return iam.policy_document({
        "Sid": "AssumeByEksPodIdentity", "Effect": "Allow", "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id,
                                       "aws:RequestTag/eks-cluster-arn": cluster_arn,
                                       "aws:RequestTag/kubernetes-namespace": namespace,
                                       "aws:RequestTag/kubernetes-service-account": list(service_accounts)}}})


# ---- one workload ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class WorkloadIdentityProps:
    name: str                                   # IAM role name
    cluster_name: str
    namespace: str
    service_accounts: tuple[str, ...]           # one pod identity association each
    statements: tuple[dict[str, Any], ...] = ()   # built with iam.statement; more come through grant()
    description: str
    associate: bool = True                      # False when an EKS add-on makes the association itself

    def __post_init__(self) -> None:
        if not is_unresolved(self.name) and not _ROLE_NAME.fullmatch(self.name):
            raise ConfigError("name", self.name, "is not a valid IAM role name",
                              "use 1-64 letters, digits and +=,.@_-")
        if not is_unresolved(self.namespace) and not _NAMESPACE.fullmatch(self.namespace):
            raise ConfigError("namespace", self.namespace, "is not a valid Kubernetes namespace",
                              "use a DNS label: 1-63 lowercase letters, digits and inner hyphens")
        if not self.service_accounts or len(set(self.service_accounts)) != len(self.service_accounts):
            raise ConfigError("service_accounts", self.service_accounts, "is empty or lists a name twice",
                              "list each service account that runs the workload once")
        for sa in self.service_accounts:
            if not is_unresolved(sa) and not _SERVICE_ACCOUNT.fullmatch(sa):
                raise ConfigError("service_accounts", sa, "is not a valid Kubernetes service account name",
                                  "use lowercase letters, digits, '-' and '.', starting and ending alphanumeric")
        for stmt in self.statements:
            check_statement(stmt)
        _check_sids_unique(list(self.statements), "statements")


class WorkloadIdentity(Construct):
    """An IAM role for one workload, its inline least-privilege policy and its pod identity associations."""

    def __init__(self, scope: Construct, id_: str, *, props: WorkloadIdentityProps) -> None:
        super().__init__(scope, id_)
        env = AwsEnvironment.of(self)
        self._statements: list[dict[str, Any]] = [json.loads(json.dumps(s)) for s in props.statements]
        self.role = iam_role.IamRole(
            self, "role", name=props.name, description=props.description,
            assume_role_policy=pod_identity_trust_policy(
                env.account_id, cluster_arn=env.arn("eks", f"cluster/{props.cluster_name}"),
                namespace=props.namespace, service_accounts=props.service_accounts),
            force_detach_policies=True)
        self.role_arn: str = self.role.arn
        self.role_name: str = self.role.name
        # Rendered now and re-rendered by grant(): cheaper at synth than a Lazy (two Node->Python callbacks each).
        self._policy = iam_role_policy.IamRolePolicy(
            self, "policy", role=self.role.id, name="least-privilege", policy=iam.policy_document(*self._statements))
        self.namespace = props.namespace
        self.service_accounts = props.service_accounts
        if props.associate:
            for sa in props.service_accounts:
                eks_pod_identity_association.EksPodIdentityAssociation(
                    self, f"association-{sa}", cluster_name=props.cluster_name, namespace=props.namespace,
                    service_account=sa, role_arn=self.role_arn)

    @property
    def statements(self) -> tuple[dict[str, Any], ...]:
        return tuple(self._statements)

    def grant(self, sid: str, actions: list[str], resources: list[str] | str,
              condition: dict[str, Any] | None = None) -> None:
        """Add one checked Allow statement to this role's policy (also after construction)."""
        self.add_statements(iam.statement(sid, list(actions), resources, condition=condition))

    def add_statements(self, *statements: dict[str, Any]) -> None:
        """Add checked statements (built with iam.statement) to this role's policy, rendering it once."""
        for stmt in statements:
            check_statement(stmt, "grant")
        _check_sids_unique([*self._statements, *statements], "grant")
        self._statements.extend(json.loads(json.dumps(s)) for s in statements)
        self._policy.policy = iam.policy_document(*self._statements)


# ---- the platform's workloads ---------------------------------------------------------------------

# Airflow chart 1.21.0 names its service accounts "<release>-<suffix>" (templates/_helpers.yaml).
_AIRFLOW_SERVICE_ACCOUNT_SUFFIX = {
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-api-server": "api-server",
    "airflow-worker": "worker",                  # workers.celery.serviceAccount / workers.serviceAccount
    "airflow-task": "worker-kubernetes",         # workers.kubernetes.serviceAccount (create: true)
}
_PLATFORM_WORKLOADS: dict[str, tuple[str, tuple[str, ...]]] = {
    "vault": ("vault", ("vault",)),
    # The raft snapshot CronJob's uploader (modules/platform/vault_snapshots.py): PutObject on its bucket prefix only.
    "vault-snapshot": ("vault", ("vault-snapshot",)),
    "aws-load-balancer-controller": ("kube-system", ("aws-load-balancer-controller",)),
    "karpenter": ("kube-system", ("karpenter",)),
    "external-secrets": ("external-secrets", ("external-secrets",)),
    "cloudwatch-agent": ("amazon-cloudwatch", ("cloudwatch-agent",)),
    "ebs-csi-driver": ("kube-system", ("ebs-csi-controller-sa",)),
}


def workloads(*, airflow_namespace: str = "airflow",
              airflow_release: str = "airflow") -> dict[str, tuple[str, tuple[str, ...]]]:
    """Workload id -> (namespace, service accounts) for an Airflow release name and namespace."""
    airflow = {wid: (airflow_namespace, (f"{airflow_release}-{suffix}",))
               for wid, suffix in _AIRFLOW_SERVICE_ACCOUNT_SUFFIX.items()}
    return {**airflow, **_PLATFORM_WORKLOADS}


WORKLOADS: dict[str, tuple[str, tuple[str, ...]]] = workloads()
# The EKS add-ons that can create their own pod identity association (eks_addon.pod_identity_association).
ADDON_WORKLOADS = {"ebs-csi-driver": "aws-ebs-csi-driver", "cloudwatch-agent": "amazon-cloudwatch-observability"}


def target_group_name_pattern(cluster_name: str) -> str:
    """Target groups the load balancer controller may register pods in are named '<cluster>-<anything>'."""
    return f"{cluster_name}-*"


@dataclass(frozen=True, kw_only=True)
class PlatformIdentitiesProps:
    cluster_name: str
    airflow_namespace: str = "airflow"
    airflow_release: str = "airflow"
    addon_managed: tuple[str, ...] = ()         # workload ids whose association an EKS add-on creates

    def __post_init__(self) -> None:
        if not is_unresolved(self.cluster_name) and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,29}",
                                                                           self.cluster_name):
            raise ConfigError("cluster_name", self.cluster_name, "does not leave room for target group names",
                              "use 1-30 lowercase letters, digits and hyphens (target groups are named "
                              "'<cluster_name>-<suffix>' within ELB's 32-character limit)")
        for field in ("airflow_namespace", "airflow_release"):
            value = getattr(self, field)
            if not _NAMESPACE.fullmatch(value) or len(value) > 40:
                raise ConfigError(field, value, "is not a valid Kubernetes/Helm name",
                                  "use up to 40 lowercase letters, digits and inner hyphens")
        unknown = sorted(set(self.addon_managed) - set(ADDON_WORKLOADS))
        if unknown:
            raise ConfigError("addon_managed", unknown, "are not workloads an EKS add-on associates",
                              f"use a subset of {sorted(ADDON_WORKLOADS)}")


class PlatformIdentities(Construct):
    """One WorkloadIdentity per workload that talks to AWS (see WORKLOADS). They start with no permissions: each
    resource grants exactly what a workload needs through its own method (`AirflowBuckets.grant_airflow`,
    `EncryptionKey.grant`, `Cluster.grant_node_provisioning`, `Edge.grant_target_registration`, `Events.grant_consume`,
    ...), and the policy pack refuses a role left with an empty policy (AF-IAM-1)."""

    def __init__(self, scope: Construct, id_: str, *, props: PlatformIdentitiesProps) -> None:
        super().__init__(scope, id_)
        self.cluster_name = props.cluster_name
        self.workloads = workloads(airflow_namespace=props.airflow_namespace, airflow_release=props.airflow_release)
        self.identities: dict[str, WorkloadIdentity] = {}
        for wid, (namespace, service_accounts) in self.workloads.items():
            self.identities[wid] = WorkloadIdentity(self, wid, props=WorkloadIdentityProps(
                name=f"{props.cluster_name}-{wid}", cluster_name=props.cluster_name,
                namespace=namespace, service_accounts=service_accounts,
                description=f"{wid} on EKS cluster {props.cluster_name} ({namespace}/{', '.join(service_accounts)})",
                associate=wid not in props.addon_managed))
        self.role_arns: dict[str, str] = {wid: ident.role_arn for wid, ident in self.identities.items()}
        self.role_names: dict[str, str] = {wid: ident.role_name for wid, ident in self.identities.items()}

    def grant(self, workload_id: str, sid: str, actions: list[str], resources: list[str] | str,
              condition: dict[str, Any] | None = None) -> None:
        """Add a scoped statement to one workload's role (e.g. SQS receive for the triggerer)."""
        self.identity(workload_id).grant(sid, actions, resources, condition)

    def add_statements(self, workload_id: str, *statements: dict[str, Any]) -> None:
        """Add prepared statements to one workload's role (a resource's grant method builds them)."""
        self.identity(workload_id).add_statements(*statements)

    def identity(self, workload_id: str) -> WorkloadIdentity:
        if workload_id not in self.identities:
            raise ConfigError("workload_id", workload_id, "is not a workload of this platform",
                              f"use one of {sorted(self.identities)}")
        return self.identities[workload_id]
