"""Least-privilege IAM roles for the workloads on the EKS cluster that call AWS, bound with EKS Pod Identity.

Every workload gets its own role, one inline policy naming exact ARNs, and one
`aws_eks_pod_identity_association` per Kubernetes service account. The role trusts only the EKS Pod
Identity service (`pods.eks.amazonaws.com`, `sts:AssumeRole` + `sts:TagSession`) acting for this account.

Policies are checked when a statement is added (at construction or through `grant()`): no `*` or
`<service>:*` actions, and no `Resource: "*"` on a write action unless the statement carries a
Condition (for the few APIs with no resource-level permissions, e.g. `cloudwatch:PutMetricData`).
The inline policy is rendered lazily at synth, so statements granted after construction land in it.

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


def pod_identity_trust_policy(account_id: str) -> str:
    """Only the EKS Pod Identity service, acting for this account, may assume (and tag the session of) the role."""
    return iam.policy_document({
        "Sid": "AssumeByEksPodIdentity", "Effect": "Allow", "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}})


# ---- one workload ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class WorkloadIdentityProps:
    name: str                                   # IAM role name
    cluster_name: str
    namespace: str
    service_accounts: tuple[str, ...]           # one pod identity association each
    statements: tuple[dict[str, Any], ...]      # built with iam.statement
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
        if not self.statements:
            raise ConfigError("statements", self.statements, "is empty (IAM rejects an empty policy)",
                              "grant the workload the exact actions it calls")
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
            assume_role_policy=pod_identity_trust_policy(env.account_id), force_detach_policies=True)
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
        stmt = iam.statement(sid, list(actions), resources, condition=condition)
        check_statement(stmt, "grant")
        _check_sids_unique([*self._statements, stmt], "grant")
        self._statements.append(stmt)
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
    dags_bucket_arn: str
    logs_bucket_arn: str
    plugins_bucket_arn: str
    storage_kms_key_arn: str                    # encrypts the three buckets
    vault_unseal_key_arn: str
    delivered_secret_arns: tuple[str, ...]      # DB master secret, Redis token secret
    secrets_kms_key_arns: tuple[str, ...]       # keys encrypting those secrets
    node_security_group_id: str                 # the LB controller adds pod-port rules here only
    node_role_arn: str                          # the only role Karpenter may pass to EC2
    ebs_kms_key_arn: str | None = None          # customer key for EBS volumes, if any
    airflow_namespace: str = "airflow"
    airflow_release: str = "airflow"
    addon_managed: tuple[str, ...] = ()         # workload ids whose association an EKS add-on creates

    def __post_init__(self) -> None:
        if not is_unresolved(self.cluster_name) and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,29}",
                                                                           self.cluster_name):
            raise ConfigError("cluster_name", self.cluster_name, "does not leave room for target group names",
                              "use 1-30 lowercase letters, digits and hyphens (target groups are named "
                              "'<cluster_name>-<suffix>' within ELB's 32-character limit)")
        if not is_unresolved(list(self.delivered_secret_arns)) and not self.delivered_secret_arns:
            raise ConfigError("delivered_secret_arns", self.delivered_secret_arns, "is empty",
                              "pass the DB master secret and Redis token secret ARNs")
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
    """One WorkloadIdentity per workload that talks to AWS (see WORKLOADS), each with exact ARNs."""

    def __init__(self, scope: Construct, id_: str, *, props: PlatformIdentitiesProps) -> None:
        super().__init__(scope, id_)
        self._env = AwsEnvironment.of(self)
        self._props = props
        self.workloads = workloads(airflow_namespace=props.airflow_namespace, airflow_release=props.airflow_release)
        policies = {**self._airflow_statements(), "vault": self._vault(), "karpenter": self._karpenter(),
                    "aws-load-balancer-controller": self._load_balancer_controller(),
                    "external-secrets": self._external_secrets(), "cloudwatch-agent": self._cloudwatch_agent(),
                    "ebs-csi-driver": self._ebs_csi_driver()}
        self.identities: dict[str, WorkloadIdentity] = {}
        for wid, (namespace, service_accounts) in self.workloads.items():
            self.identities[wid] = WorkloadIdentity(self, wid, props=WorkloadIdentityProps(
                name=f"{props.cluster_name}-{wid}", cluster_name=props.cluster_name,
                namespace=namespace, service_accounts=service_accounts, statements=tuple(policies[wid]),
                description=f"{wid} on EKS cluster {props.cluster_name} ({namespace}/{', '.join(service_accounts)})",
                associate=wid not in props.addon_managed))
        self.role_arns: dict[str, str] = {wid: ident.role_arn for wid, ident in self.identities.items()}
        self.role_names: dict[str, str] = {wid: ident.role_name for wid, ident in self.identities.items()}

    def grant(self, workload_id: str, sid: str, actions: list[str], resources: list[str] | str,
              condition: dict[str, Any] | None = None) -> None:
        """Add a scoped statement to one workload's role (e.g. SQS receive for the triggerer)."""
        if workload_id not in self.identities:
            raise ConfigError("workload_id", workload_id, "is not a workload of this platform",
                              f"use one of {sorted(self.identities)}")
        self.identities[workload_id].grant(sid, actions, resources, condition)

    # ---- ARN helpers ------------------------------------------------------------------------------

    def _arn(self, service: str, resource: str, *, account: bool = True, region: bool = True) -> str:
        return self._env.arn(service, resource, account=account, region=region)

    def _via(self, service: str) -> dict[str, Any]:
        return {"StringEquals": {"kms:ViaService": self._env.service_endpoint(service)}}

    # ---- Airflow ----------------------------------------------------------------------------------

    def _airflow_statements(self) -> dict[str, list[dict[str, Any]]]:
        p = self._props
        task_logs = f"{p.logs_bucket_arn}/{TASK_LOG_PREFIX}/*"
        read_bundles = [
            iam.statement("ReadDagsAndPlugins", ["s3:GetObject", "s3:GetObjectVersion"],
                          [f"{p.dags_bucket_arn}/*", f"{p.plugins_bucket_arn}/*"]),
            iam.statement("ListDagsAndPlugins", ["s3:ListBucket"], [p.dags_bucket_arn, p.plugins_bucket_arn])]
        # ListBucket on the logs bucket reveals key names only; without it S3 answers 403 instead of 404 to
        # the HeadObject S3TaskHandler makes before appending to / reading a log that does not exist yet.
        read_logs = [iam.statement("ReadTaskLogs", ["s3:GetObject"], [task_logs]),
                     iam.statement("ListTaskLogs", ["s3:ListBucket"], [p.logs_bucket_arn])]
        write_logs = [iam.statement("WriteTaskLogs", ["s3:PutObject"], [task_logs]), *read_logs]
        decrypt = iam.statement("DecryptStorageViaS3", ["kms:Decrypt"], [p.storage_kms_key_arn],
                                condition=self._via("s3"))
        # Every Airflow pod syncs the plugins bucket at start (modules/platform/airflow.py), the API server and triggerer too.
        read_plugins = [iam.statement("ReadPlugins", ["s3:GetObject", "s3:GetObjectVersion"], [f"{p.plugins_bucket_arn}/*"]),
                        iam.statement("ListPlugins", ["s3:ListBucket"], [p.plugins_bucket_arn])]
        encrypt = iam.statement("UseStorageKeyViaS3", ["kms:Decrypt", "kms:GenerateDataKey"],
                                [p.storage_kms_key_arn], condition=self._via("s3"))
        return {
            # Airflow 3's scheduler neither writes task logs (the task supervisor on the worker/pod uploads them)
            # nor serves them (the API server reads S3): it gets no access to the logs bucket.
            "airflow-scheduler": [*read_bundles, decrypt],
            "airflow-dag-processor": [*read_bundles, decrypt],
            "airflow-triggerer": [*read_plugins, *write_logs, encrypt],   # deferred tasks' trigger logs
            "airflow-api-server": [*read_plugins, *read_logs, decrypt],   # shows task logs: read-only
            "airflow-worker": [*read_bundles, *write_logs, encrypt],
            "airflow-task": [*read_bundles, *write_logs, encrypt],
        }

    # ---- platform controllers ---------------------------------------------------------------------

    def _vault(self) -> list[dict[str, Any]]:
        return [iam.statement("AutoUnsealWithKms", ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"],
                              [self._props.vault_unseal_key_arn])]

    def _load_balancer_controller(self) -> list[dict[str, Any]]:
        """TargetGroupBinding only: it registers pod IPs in this cluster's target groups and opens the
        node security group to the load balancer; it creates no load balancer, listener or group."""
        p = self._props
        reads = ["ec2:DescribeAvailabilityZones", "ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces",
                 "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeTags", "ec2:DescribeVpcs",
                 "ec2:GetSecurityGroupsForVpc", "elasticloadbalancing:DescribeListeners",
                 "elasticloadbalancing:DescribeLoadBalancerAttributes", "elasticloadbalancing:DescribeLoadBalancers",
                 "elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTags",
                 "elasticloadbalancing:DescribeTargetGroupAttributes", "elasticloadbalancing:DescribeTargetGroups",
                 "elasticloadbalancing:DescribeTargetHealth"]
        return [
            iam.statement("DescribeLoadBalancingAndNetwork", reads, "*"),
            iam.statement("RegisterClusterTargets",
                          ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
                          [self._arn("elasticloadbalancing",
                                     f"targetgroup/{target_group_name_pattern(p.cluster_name)}/*")]),
            iam.statement("ManageNodeSecurityGroupIngress",
                          ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
                          [self._arn("ec2", f"security-group/{p.node_security_group_id}")]),
        ]

    def _karpenter(self) -> list[dict[str, Any]]:
        """The Karpenter v1 controller policy (getting-started cloudformation.yaml), with this account,
        region and cluster in every ARN, and launches limited to the cluster's discovery-tagged network."""
        env = self._env
        p = self._props
        ec2 = lambda resource, account=True: self._arn("ec2", resource, account=account)  # noqa: E731
        owned = {f"aws:RequestTag/kubernetes.io/cluster/{p.cluster_name}": "owned"}
        nodepool = {"aws:RequestTag/karpenter.sh/nodepool": "*"}
        resource_owned = {f"aws:ResourceTag/kubernetes.io/cluster/{p.cluster_name}": "owned"}
        resource_nodepool = {"aws:ResourceTag/karpenter.sh/nodepool": "*"}
        created = [ec2("fleet/*"), ec2("instance/*"), ec2("volume/*"), ec2("network-interface/*"),
                   ec2("launch-template/*"), ec2("spot-instances-request/*")]
        profile_tags = {f"kubernetes.io/cluster/{p.cluster_name}": "owned", "topology.kubernetes.io/region": env.region}
        instance_profiles = self._arn("iam", "instance-profile/*", region=False)
        statements = [
            iam.statement("AllowScopedEC2InstanceAccessActions", ["ec2:RunInstances", "ec2:CreateFleet"],
                          [ec2("image/*", account=False), ec2("snapshot/*", account=False),
                           ec2("spot-instances-request/*"), ec2("launch-template/*"), ec2("capacity-reservation/*")]),
            iam.statement("AllowDiscoveredNetworkAccess", ["ec2:RunInstances", "ec2:CreateFleet"],
                          [ec2("security-group/*"), ec2("subnet/*")],
                          condition={"StringEquals": {"aws:ResourceTag/karpenter.sh/discovery": p.cluster_name}}),
            iam.statement("AllowScopedEC2InstanceActionsWithTags",
                          ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"], created,
                          condition={"StringEquals": owned, "StringLike": nodepool}),
            iam.statement("AllowScopedResourceCreationTagging", ["ec2:CreateTags"], created, condition={
                "StringEquals": {**owned, "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]},
                "StringLike": nodepool}),
            iam.statement("AllowScopedResourceTagging", ["ec2:CreateTags"], [ec2("instance/*")], condition={
                "StringEquals": resource_owned, "StringLike": resource_nodepool,
                "ForAllValues:StringEquals": {"aws:TagKeys": ["karpenter.sh/nodeclaim", "Name"]}}),
            iam.statement("AllowScopedDeletion", ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
                          [ec2("instance/*"), ec2("launch-template/*")],
                          condition={"StringEquals": resource_owned, "StringLike": resource_nodepool}),
            iam.statement("AllowRegionalReadActions", [
                "ec2:DescribeAvailabilityZones", "ec2:DescribeCapacityReservations", "ec2:DescribeImages",
                "ec2:DescribeInstanceStatus", "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
                "ec2:DescribeInstances", "ec2:DescribeLaunchTemplates", "ec2:DescribePlacementGroups",
                "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets"], "*",
                condition={"StringEquals": {"aws:RequestedRegion": env.region}}),
            iam.statement("AllowSSMReadActions", ["ssm:GetParameter"],
                          [self._arn("ssm", "parameter/aws/service/*", account=False)]),
            iam.statement("AllowPricingReadActions", ["pricing:GetProducts"], "*"),
            iam.statement("AllowPassingInstanceRole", ["iam:PassRole"], [p.node_role_arn],
                          condition={"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}),
            iam.statement("AllowScopedInstanceProfileCreationActions", ["iam:CreateInstanceProfile"],
                          [instance_profiles], condition={
                              "StringEquals": {f"aws:RequestTag/{k}": v for k, v in profile_tags.items()},
                              "StringLike": {"aws:RequestTag/karpenter.sh/nodeclass": "*"}}),
            iam.statement("AllowScopedInstanceProfileTagActions", ["iam:TagInstanceProfile"],
                          [instance_profiles], condition={
                              "StringEquals": {**{f"aws:ResourceTag/{k}": v for k, v in profile_tags.items()},
                                               **{f"aws:RequestTag/{k}": v for k, v in profile_tags.items()}},
                              "StringLike": {"aws:ResourceTag/karpenter.sh/nodeclass": "*",
                                             "aws:RequestTag/karpenter.sh/nodeclass": "*"}}),
            iam.statement("AllowScopedInstanceProfileActions",
                          ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
                           "iam:DeleteInstanceProfile"], [instance_profiles], condition={
                              "StringEquals": {f"aws:ResourceTag/{k}": v for k, v in profile_tags.items()},
                              "StringLike": {"aws:ResourceTag/karpenter.sh/nodeclass": "*"}}),
            iam.statement("AllowInstanceProfileReadActions", ["iam:GetInstanceProfile", "iam:ListInstanceProfiles"],
                          [instance_profiles]),
            iam.statement("AllowAPIServerEndpointDiscovery", ["eks:DescribeCluster"],
                          [self._arn("eks", f"cluster/{p.cluster_name}")]),
        ]
        return statements

    def _external_secrets(self) -> list[dict[str, Any]]:
        p = self._props
        statements = [iam.statement("ReadDeliveredSecrets",
                                    ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                                    list(p.delivered_secret_arns))]
        if p.secrets_kms_key_arns:
            statements.append(iam.statement("DecryptSecretsViaSecretsManager", ["kms:Decrypt"],
                                            list(p.secrets_kms_key_arns), condition=self._via("secretsmanager")))
        return statements

    def _cloudwatch_agent(self) -> list[dict[str, Any]]:
        """Container Insights (agent and Fluent Bit of the amazon-cloudwatch-observability add-on)."""
        p = self._props
        groups = self._arn("logs", f"log-group:/aws/containerinsights/{p.cluster_name}/*")  # streams match too
        return [
            iam.statement("WriteContainerInsightsLogs", ["logs:CreateLogGroup", "logs:CreateLogStream",
                                                         "logs:PutLogEvents", "logs:PutRetentionPolicy"], [groups]),
            iam.statement("DescribeLogs", ["logs:DescribeLogGroups", "logs:DescribeLogStreams"], "*"),
            iam.statement("PutContainerInsightsMetrics", ["cloudwatch:PutMetricData"], "*",
                          condition={"StringEquals": {"cloudwatch:namespace": ["ContainerInsights", "CWAgent"]}}),
            iam.statement("DescribeNodes", ["ec2:DescribeInstances", "ec2:DescribeTags", "ec2:DescribeVolumes"], "*"),
        ]

    def _ebs_csi_driver(self) -> list[dict[str, Any]]:
        """Volume lifecycle of this cluster's persistent volumes only (no snapshots: nothing here uses them)."""
        p = self._props
        volumes = self._arn("ec2", "volume/*")
        cluster_tags = {"ebs.csi.aws.com/cluster": "true", f"kubernetes.io/cluster/{p.cluster_name}": "owned"}
        statements = [
            iam.statement("DescribeVolumesAndInstances", [
                "ec2:DescribeAvailabilityZones", "ec2:DescribeInstances", "ec2:DescribeSnapshots", "ec2:DescribeTags",
                "ec2:DescribeVolumeStatus", "ec2:DescribeVolumes", "ec2:DescribeVolumesModifications"], "*"),
            iam.statement("CreateClusterVolumes", ["ec2:CreateVolume"], [volumes],
                          condition={"StringEquals": {f"aws:RequestTag/{k}": v for k, v in cluster_tags.items()}}),
            iam.statement("TagVolumesOnCreate", ["ec2:CreateTags"], [volumes],
                          condition={"StringEquals": {"ec2:CreateAction": "CreateVolume"}}),
            iam.statement("ManageClusterVolumes",
                          ["ec2:AttachVolume", "ec2:DetachVolume", "ec2:ModifyVolume", "ec2:DeleteVolume"], [volumes],
                          condition={"StringEquals": {f"aws:ResourceTag/{k}": v for k, v in cluster_tags.items()}}),
            # Attach/Detach also authorize against the instance; the volume half is limited above.
            iam.statement("AttachToInstances", ["ec2:AttachVolume", "ec2:DetachVolume"],
                          [self._arn("ec2", "instance/*")]),
        ]
        if p.ebs_kms_key_arn:
            statements += [
                iam.statement("UseEbsKeyViaEc2", ["kms:Decrypt", "kms:DescribeKey",
                                                  "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom",
                                                  "kms:ReEncryptTo"],
                              [p.ebs_kms_key_arn], condition=self._via("ec2")),
                iam.statement("CreateEbsKeyGrantsForEc2", ["kms:CreateGrant"], [p.ebs_kms_key_arn],
                              condition={"Bool": {"kms:GrantIsForAWSResource": "true"}}),
            ]
        return statements
