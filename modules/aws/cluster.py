"""The EKS cluster: private API endpoint by default, Kubernetes secrets envelope-encrypted with a rotating
KMS key, control-plane logs to an encrypted log group, IAM access entries instead of the aws-auth
ConfigMap, a managed system node group on IMDSv2-only AL2023 nodes, and pinned EKS add-ons."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cdktf import Token
from cdktf_cdktf_provider_aws import (
    cloudwatch_log_group,
    eks_access_entry,
    eks_access_policy_association as access_policy,
    eks_addon,
    eks_cluster,
    eks_node_group,
    iam_role,
    iam_role_policy,
    iam_role_policy_attachment as attachment,
    launch_template,
    security_group,
    vpc_security_group_egress_rule as egress,
    vpc_security_group_ingress_rule as ingress,
)
from constructs import Construct

from ..core import iam, validation
from .encryption import EncryptionKey, EncryptionKeyProps
from . import karpenter
from .identity import PlatformIdentities, target_group_name_pattern
from .network import admit_tcp_from
from .settings import (ADDON_CONFIGURATION, ADDONS, DEFAULT_ADDON_VERSIONS, INSTANCE_FAMILIES,  # noqa: F401
                       ClusterSettings, architecture, check_node_group)
from ..core.tokens import is_unresolved
from ..core.validation import ConfigError
from ..core.environment import AwsEnvironment

_AMI_TYPES = {"x86_64": "AL2023_x86_64_STANDARD", "arm64": "AL2023_ARM_64_STANDARD"}
# Add-ons whose pods are Deployments needing schedulable nodes: created after the node group, or the
# add-on stays DEGRADED and Terraform times out waiting for it.
_AFTER_NODES = ("coredns", "aws-ebs-csi-driver", "amazon-cloudwatch-observability")
# Log groups the amazon-cloudwatch-observability add-on (Container Insights agent + Fluent Bit) writes. It would
# create them itself, unencrypted and kept forever; created here first, with retention and the logs key.
CONTAINER_INSIGHTS_LOG_TYPES = ("application", "dataplane", "host", "performance")


def container_insights_log_group_prefix(cluster_name: str) -> str:
    """Prefix of the Container Insights log groups (a logs key policy admits it)."""
    return f"/aws/containerinsights/{cluster_name}/"

_NAME = re.compile(r"[a-z][a-z0-9-]{0,38}[a-z0-9]")
_ROLE_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}")

# Control plane -> node ports. EKS only needs 10250 itself; the others are the ports the platform's
# webhooks and aggregated APIs listen on. The API server calls them on the pod IP + container port
# (not the Service port), and pods carry the node security group (VPC CNI default), so each port
# a webhook listens on must be open here or that admission call times out.
CONTROL_PLANE_TO_NODE_PORTS: dict[int, str] = {
    443: "webhooks and extension API servers serving on 443",
    4443: "metrics-server secure port (upstream manifest) for kubectl top / HPA",
    6443: "KEDA metrics API server (external.metrics.k8s.io) for ScaledObject HPAs",
    8080: "Vault Agent Injector mutating webhook (chart default injector port)",
    8443: "Karpenter webhook (chart default webhook.port)",
    9443: "AWS Load Balancer Controller, KEDA admission and Vault Secrets Operator webhooks",
    10250: "kubelet (logs/exec/port-forward); cert-manager, prometheus-operator and metrics-server chart webhooks",
}


@dataclass(frozen=True, kw_only=True)
class NodeGroupSizing:
    instance_types: tuple[str, ...] = ("m7i.large",)
    min_size: int = 2
    desired_size: int = 2
    max_size: int = 4
    disk_size_gib: int = 50

    def __post_init__(self) -> None:
        check_node_group(self.instance_types, self.min_size, self.desired_size, self.max_size, self.disk_size_gib)


def ami_type_for(instance_types: tuple[str, ...]) -> str:
    """The AL2023 managed node group AMI type matching the instance families (Graviton -> ARM)."""
    return _AMI_TYPES[architecture(instance_types[0])]


@dataclass(frozen=True, kw_only=True)
class ClusterProps:
    name: str                                         # EKS cluster name
    vpc_id: str
    subnet_ids: tuple[str, ...]                       # private subnets: control-plane ENIs and nodes
    logs_kms_key_arn: str
    settings: ClusterSettings                         # admins, API access, system nodes, add-on versions
    log_retention_days: int = 90
    ebs_kms_key_arn: str | None = None                # None = the account's default EBS key (still encrypted)

    def __post_init__(self) -> None:
        validation.require(isinstance(self.name, str) and _NAME.fullmatch(self.name) is not None, "name", self.name,
                           "is not a valid cluster name", "use 2-40 lowercase letters, digits and inner hyphens")
        if not is_unresolved(list(self.subnet_ids)):
            validation.require(len(self.subnet_ids) >= 2, "subnet_ids", list(self.subnet_ids),
                               "has fewer than 2 subnets", "pass the private subnets of at least two AZs")
        validation.log_retention("log_retention_days", self.log_retention_days)

    @property
    def system_nodes(self) -> NodeGroupSizing:
        s = self.settings
        return NodeGroupSizing(instance_types=s.system_instance_types, min_size=s.system_min_size,
                               desired_size=s.system_desired_size, max_size=s.system_max_size,
                               disk_size_gib=s.system_disk_size_gib)


class Cluster(Construct):
    """An EKS cluster nothing outside the VPC can reach unless public_access_cidrs names it. Admins get
    access entries; the identity that runs Terraform does not become cluster-admin implicitly."""

    def __init__(self, scope: Construct, id_: str, *, props: ClusterProps) -> None:
        super().__init__(scope, id_)
        env = AwsEnvironment.of(self)
        name = props.name
        self._ebs_kms_key_arn = props.ebs_kms_key_arn
        aws_policy = f"arn:{env.partition}:iam::aws:policy"

        self._secrets_key = EncryptionKey(self, "secrets-key", props=EncryptionKeyProps(
            alias=f"{name}-eks-secrets", description=f"{name} EKS Kubernetes secrets envelope encryption"))
        log_group = cloudwatch_log_group.CloudwatchLogGroup(
            self, "log-group", name=f"/aws/eks/{name}/cluster", retention_in_days=props.log_retention_days,
            kms_key_id=props.logs_kms_key_arn)

        cluster_role = iam_role.IamRole(self, "cluster-role", name=f"{name}-eks-cluster",
                                        assume_role_policy=_eks_trust_policy())
        cluster_policy = attachment.IamRolePolicyAttachment(
            self, "cluster-policy", role=cluster_role.name, policy_arn=f"{aws_policy}/AmazonEKSClusterPolicy")
        # The managed policy has no KMS rights: EKS uses the cluster role to wrap secrets with this key.
        cluster_kms = iam_role_policy.IamRolePolicy(
            self, "cluster-secrets-key-policy", role=cluster_role.id, name="use-secrets-key",
            policy=iam.policy_document(iam.statement(
                "EnvelopeEncryption", ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                [self._secrets_key.arn])))

        self._security_groups(props)
        self.resource = eks_cluster.EksCluster(
            self, "cluster", name=name, version=props.settings.kubernetes_version, role_arn=cluster_role.arn,
            vpc_config=eks_cluster.EksClusterVpcConfig(
                subnet_ids=list(props.subnet_ids), endpoint_private_access=True,
                endpoint_public_access=bool(props.settings.public_access_cidrs),
                public_access_cidrs=list(props.settings.public_access_cidrs) or None,
                security_group_ids=[self._cluster_sg.id]),
            access_config=eks_cluster.EksClusterAccessConfig(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=False),
            encryption_config=eks_cluster.EksClusterEncryptionConfig(
                resources=["secrets"],
                provider=eks_cluster.EksClusterEncryptionConfigProvider(key_arn=self._secrets_key.arn)),
            enabled_cluster_log_types=["api", "audit", "authenticator"],
            tags={"Name": name},
            depends_on=[log_group, cluster_policy, cluster_kms])

        self.name: str = self.resource.name
        self.arn: str = self.resource.arn
        self.endpoint: str = self.resource.endpoint
        self.version: str = self.resource.version
        self.certificate_authority_data: str = self.resource.certificate_authority.get(0).data
        self.oidc_issuer_url: str = self.resource.identity.get(0).oidc.get(0).issuer
        self.security_group_id: str = self.resource.vpc_config.cluster_security_group_id
        self.additional_security_group_id: str = self._cluster_sg.id
        self.node_security_group_id: str = self._node_sg.id
        self.secrets_key_arn: str = self._secrets_key.arn
        self.log_group_name: str = log_group.name

        self._admin_role_arns = tuple(props.settings.admin_role_arns)
        for i, principal in enumerate(props.settings.admin_role_arns):
            entry = eks_access_entry.EksAccessEntry(self, f"admin-access-entry-{i}", cluster_name=self.resource.name,
                                                    principal_arn=principal, type="STANDARD")
            access_policy.EksAccessPolicyAssociation(
                self, f"admin-access-policy-{i}", cluster_name=self.resource.name, principal_arn=entry.principal_arn,
                policy_arn=f"arn:{env.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                access_scope=access_policy.EksAccessPolicyAssociationAccessScope(type="cluster"))

        self._node_group(props, aws_policy)

    def grant_deployer(self, principal_arn: str) -> None:
        """Cluster access for the role CI deploys the platform with (EnvironmentConfig.deploy_role_arn, a literal ARN:
        the role lives in the state stack, so no cross-stack reference). AmazonEKSClusterAdminPolicy, cluster scope:
        the platform stack's Helm releases create CRDs, namespaces, ClusterRoles and bindings and webhook
        configurations, and granting a ClusterRole needs its permissions (RBAC escalation check), so any narrower
        policy (AmazonEKSAdminPolicy, namespace scope) fails the first install (docs/design.md §12)."""
        env = AwsEnvironment.of(self)
        if not is_unresolved(principal_arn):
            validation.require(_ROLE_ARN.fullmatch(principal_arn) is not None, "deploy_role_arn", principal_arn,
                               "is not an IAM role ARN", "use arn:<partition>:iam::<account>:role/<name>")
        validation.require(principal_arn not in self._admin_role_arns, "deploy_role_arn", principal_arn,
                           "is already one of cluster.admin_role_arns (EKS refuses a second access entry)",
                           "remove it from cluster.admin_role_arns")
        entry = eks_access_entry.EksAccessEntry(self, "deployer-access-entry", cluster_name=self.resource.name,
                                                principal_arn=principal_arn, type="STANDARD")
        access_policy.EksAccessPolicyAssociation(
            self, "deployer-access-policy", cluster_name=self.resource.name, principal_arn=entry.principal_arn,
            policy_arn=f"arn:{env.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
            access_scope=access_policy.EksAccessPolicyAssociationAccessScope(type="cluster"))

    # ---- security groups ------------------------------------------------------------------------

    def _security_groups(self, props: ClusterProps) -> None:
        name = props.name
        # Terraform strips the default allow-all egress from groups it creates: every flow below is explicit.
        self._cluster_sg = security_group.SecurityGroup(
            self, "cluster-security-group", name=f"{name}-eks-control-plane", vpc_id=props.vpc_id,
            description=f"{name} EKS control plane: API from nodes, calls to node webhooks and kubelets",
            tags={"Name": f"{name}-eks-control-plane"})
        self._node_sg = security_group.SecurityGroup(
            self, "node-security-group", name=f"{name}-eks-nodes", vpc_id=props.vpc_id,
            description=f"{name} EKS nodes and pods (VPC CNI gives pods the node security group)",
            tags={"Name": f"{name}-eks-nodes", "karpenter.sh/discovery": name})
        cluster_sg, node_sg = self._cluster_sg.id, self._node_sg.id

        ingress.VpcSecurityGroupIngressRule(
            self, "cluster-ingress-nodes-https", security_group_id=cluster_sg, referenced_security_group_id=node_sg,
            ip_protocol="tcp", from_port=443, to_port=443, description="Kubernetes API from nodes and pods")
        for port, why in CONTROL_PLANE_TO_NODE_PORTS.items():
            egress.VpcSecurityGroupEgressRule(
                self, f"cluster-egress-nodes-{port}", security_group_id=cluster_sg,
                referenced_security_group_id=node_sg, ip_protocol="tcp", from_port=port, to_port=port,
                description=f"To nodes: {why}"[:255])
            ingress.VpcSecurityGroupIngressRule(
                self, f"node-ingress-cluster-{port}", security_group_id=node_sg,
                referenced_security_group_id=cluster_sg, ip_protocol="tcp", from_port=port, to_port=port,
                description=f"From control plane: {why}"[:255])

        # Pods talk to pods across nodes on any port (services, CoreDNS on 53/udp+tcp, Vault, StatsD...).
        ingress.VpcSecurityGroupIngressRule(
            self, "node-ingress-self", security_group_id=node_sg, referenced_security_group_id=node_sg,
            ip_protocol="-1", description="Node and pod traffic within the cluster")
        egress.VpcSecurityGroupEgressRule(
            self, "node-egress-self", security_group_id=node_sg, referenced_security_group_id=node_sg,
            ip_protocol="-1", description="Node and pod traffic within the cluster")
        # HTTPS out reaches the API server endpoint, ECR, STS/EKS Auth, S3 and other AWS APIs (through NAT
        # or the VPC endpoints) and HTTPS alert receivers. DNS (VPC resolver), NTP (Time Sync) and IMDS are
        # link-local/Amazon-provided services that security groups do not filter, so they need no rule.
        # Data stores inside the VPC are opened one by one with allow_node_egress(), not with a wide rule.
        egress.VpcSecurityGroupEgressRule(
            self, "node-egress-https", security_group_id=node_sg, cidr_ipv4="0.0.0.0/0", ip_protocol="tcp",
            from_port=443, to_port=443, description="HTTPS to AWS APIs, ECR, the EKS endpoint and webhooks")

    def allow_node_ingress(self, id_: str, *, source_security_group_id: str, port: int) -> None:
        """Admit one TCP port on the node (= pod) security group from exactly one security group,
        e.g. the ALB forwarding to pod IPs registered by TargetGroupBinding."""
        admit_tcp_from(self, f"node-ingress-{id_}", security_group_id=self._node_sg.id, port=port,
                       source_security_group_id=source_security_group_id, description=f"{id_} to pods on {port}")

    def allow_api_from(self, id_: str, *, source_security_group_id: str) -> None:
        """Open the private API endpoint (443 on the control plane's security group) to exactly one security group,
        and that group's egress to it: both sides of the connection (cf. aws-cdk connections.allowTo), e.g. the
        in-VPC CI runner that runs helm and kubectl."""
        admit_tcp_from(self, f"cluster-ingress-{id_}-https", security_group_id=self._cluster_sg.id, port=443,
                       source_security_group_id=source_security_group_id, description=f"Kubernetes API from {id_}")
        egress.VpcSecurityGroupEgressRule(
            self, f"{id_}-egress-cluster-https", security_group_id=source_security_group_id,
            referenced_security_group_id=self._cluster_sg.id, ip_protocol="tcp", from_port=443, to_port=443,
            description="To the Kubernetes API endpoint")

    def allow_node_egress(self, id_: str, *, destination_security_group_id: str, port: int) -> None:
        """Let nodes and pods open one TCP port on exactly one security group (a database, cache or broker
        that in turn admits node_security_group_id)."""
        egress.VpcSecurityGroupEgressRule(
            self, f"node-egress-{id_}", security_group_id=self._node_sg.id,
            referenced_security_group_id=destination_security_group_id, ip_protocol="tcp", from_port=port,
            to_port=port, description=f"Pods to {id_} on {port}")

    # ---- what the cluster's controllers may do in AWS (granted to their workload identities) -----------------

    def grant_node_provisioning(self, identities: PlatformIdentities, workload_id: str = "karpenter") -> None:
        """Karpenter launches, tags and terminates this cluster's nodes, passing only the node role to EC2."""
        identities.add_statements(workload_id, *karpenter.controller_statements(
            AwsEnvironment.of(self), cluster_name=self.name, node_role_arn=self.node_role_arn))

    def grant_target_registration(self, identities: PlatformIdentities,
                                  workload_id: str = "aws-load-balancer-controller") -> None:
        """The AWS Load Balancer Controller registers this cluster's pods in its target groups."""
        identities.add_statements(workload_id, *load_balancer_controller_statements(
            AwsEnvironment.of(self), cluster_name=self.name))

    def grant_container_insights(self, identities: PlatformIdentities, workload_id: str = "cloudwatch-agent") -> None:
        """The CloudWatch agent and Fluent Bit ship this cluster's Container Insights."""
        identities.add_statements(workload_id, *container_insights_statements(AwsEnvironment.of(self),
                                                                              cluster_name=self.name))

    def grant_volume_management(self, identities: PlatformIdentities, workload_id: str = "ebs-csi-driver") -> None:
        """The EBS CSI driver manages this cluster's persistent volumes (and uses its EBS key, if any)."""
        identities.add_statements(workload_id, *ebs_csi_statements(
            AwsEnvironment.of(self), cluster_name=self.name, ebs_kms_key_arn=self._ebs_kms_key_arn))

    def bind_addon_identity(self, addon: str, *, service_account: str, role_arn: str) -> None:
        """Give an add-on that calls AWS (EBS CSI driver, CloudWatch agent) its least-privilege role through the
        add-on's own Pod Identity association, so its pods have credentials from their first start."""
        if addon not in self.addons:
            raise ConfigError("addon", addon, "is not a managed add-on of this cluster", f"use one of {sorted(self.addons)}")
        self.addons[addon].put_pod_identity_association([eks_addon.EksAddonPodIdentityAssociation(
            role_arn=role_arn, service_account=service_account)])

    # ---- system node group and add-ons ----------------------------------------------------------

    def _node_group(self, props: ClusterProps, aws_policy: str) -> None:
        name, sizing = props.name, props.system_nodes
        node_role = iam_role.IamRole(self, "node-role", name=f"{name}-eks-node",
                                     assume_role_policy=iam.service_assume_role_policy("ec2.amazonaws.com"))
        # The CNI policy sits on the node role, not on a pod identity: aws-node must assign pod IPs before
        # any pod (the Pod Identity agent included) can run, so a pod identity for it is a bootstrap loop.
        # No SSM or admin policy: nodes are not logged into; debugging goes through kubectl.
        node_policies = [
            attachment.IamRolePolicyAttachment(self, f"node-policy-{i}", role=node_role.name,
                                               policy_arn=f"{aws_policy}/{policy}")
            for i, policy in enumerate(("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly",
                                        "AmazonEKS_CNI_Policy"))]
        self.node_role_arn: str = node_role.arn
        self.node_role_name: str = node_role.name

        template = launch_template.LaunchTemplate(
            self, "system-launch-template", name=f"{name}-system-nodes", update_default_version=True,
            description=f"{name} EKS system nodes: IMDSv2 only, encrypted gp3 root volume",
            vpc_security_group_ids=[self._node_sg.id],
            # Hop limit 1: pods cannot reach IMDS and borrow the node role; they use EKS Pod Identity.
            metadata_options=launch_template.LaunchTemplateMetadataOptions(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1),
            block_device_mappings=[launch_template.LaunchTemplateBlockDeviceMappings(
                device_name="/dev/xvda", ebs=launch_template.LaunchTemplateBlockDeviceMappingsEbs(
                    volume_size=sizing.disk_size_gib, volume_type="gp3", encrypted="true",
                    kms_key_id=props.ebs_kms_key_arn, delete_on_termination="true"))],
            tag_specifications=[launch_template.LaunchTemplateTagSpecifications(
                resource_type=kind, tags={"Name": f"{name}-system"}) for kind in ("instance", "volume")],
            tags={"Name": f"{name}-system-nodes"})

        addons = {addon: self._addon(props, addon) for addon in ADDONS if addon not in _AFTER_NODES}
        self.system_node_group = eks_node_group.EksNodeGroup(
            self, "system-node-group", cluster_name=self.resource.name, node_group_name=f"{name}-system",
            version=self.resource.version, node_role_arn=node_role.arn, subnet_ids=list(props.subnet_ids),
            ami_type=ami_type_for(sizing.instance_types), capacity_type="ON_DEMAND",
            instance_types=list(sizing.instance_types),
            scaling_config=eks_node_group.EksNodeGroupScalingConfig(
                min_size=sizing.min_size, desired_size=sizing.desired_size, max_size=sizing.max_size),
            update_config=eks_node_group.EksNodeGroupUpdateConfig(max_unavailable=1),
            launch_template=eks_node_group.EksNodeGroupLaunchTemplate(
                id=template.id, version=Token.as_string(template.latest_version)),
            labels={"role": "system"},
            # Soft taint: system add-ons and controllers (which tolerate CriticalAddonsOnly) prefer these
            # nodes, Airflow workloads go to Karpenter capacity, yet nothing is unschedulable if that is late.
            taint=[eks_node_group.EksNodeGroupTaint(key="CriticalAddonsOnly", value="true",
                                                    effect="PREFER_NO_SCHEDULE")],
            tags={"Name": f"{name}-system"},
            # Networking add-ons first (nodes become Ready with the pinned CNI), then the nodes.
            depends_on=[*node_policies, *addons.values()])
        insights_groups = [cloudwatch_log_group.CloudwatchLogGroup(
            self, f"container-insights-log-group-{log_type}",
            name=f"{container_insights_log_group_prefix(name)}{log_type}", retention_in_days=props.log_retention_days,
            kms_key_id=props.logs_kms_key_arn) for log_type in CONTAINER_INSIGHTS_LOG_TYPES]
        self.container_insights_log_group_names: list[str] = [group.name for group in insights_groups]
        for addon in _AFTER_NODES:
            first = insights_groups if addon == "amazon-cloudwatch-observability" else []
            addons[addon] = self._addon(props, addon, depends_on=[self.system_node_group, *first])
        self.addons: dict[str, eks_addon.EksAddon] = addons

    def _addon(self, props: ClusterProps, addon: str, depends_on: list | None = None) -> eks_addon.EksAddon:
        return eks_addon.EksAddon(
            self, f"addon-{addon}", cluster_name=self.resource.name, addon_name=addon,
            addon_version=props.settings.effective_addon_versions[addon], resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE", depends_on=depends_on,
            configuration_values=json.dumps(ADDON_CONFIGURATION[addon], sort_keys=True)
            if addon in ADDON_CONFIGURATION else None)


def _eks_trust_policy() -> str:
    return iam.policy_document({"Sid": "AssumeByEks", "Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"},
                                "Action": ["sts:AssumeRole", "sts:TagSession"]})


# ---- controller permissions (pure: the Cluster's grant_* methods apply them with its own attributes) ------------

def load_balancer_controller_statements(env: AwsEnvironment, *, cluster_name: str) -> list[dict[str, Any]]:
    """TargetGroupBinding only: the controller registers pod IPs in this cluster's target groups (named
    '<cluster>-*'); it creates no load balancer, listener or security group, and changes no security group rule.
    The upstream policy lets it Authorize/RevokeSecurityGroupIngress on any group for a binding's `spec.networking`;
    ours carry none (helm/platform-glue), and Terraform admits the ALB on the node group itself
    (`Cluster.allow_node_ingress`), so the set of groups the controller must change is empty and it gets no EC2 write.
    Without `networking` its security-group reconciler only reads (DescribeSecurityGroups) and never finds a rule of
    its own to revoke."""
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
                      [env.arn("elasticloadbalancing", f"targetgroup/{target_group_name_pattern(cluster_name)}/*")]),
    ]


def container_insights_statements(env: AwsEnvironment, *, cluster_name: str) -> list[dict[str, Any]]:
    """Container Insights (agent and Fluent Bit of the amazon-cloudwatch-observability add-on)."""
    groups = env.arn("logs", f"log-group:{container_insights_log_group_prefix(cluster_name)}*")  # streams match too
    return [
        iam.statement("WriteContainerInsightsLogs", ["logs:CreateLogGroup", "logs:CreateLogStream",
                                                     "logs:PutLogEvents", "logs:PutRetentionPolicy"], [groups]),
        iam.statement("DescribeLogs", ["logs:DescribeLogGroups", "logs:DescribeLogStreams"], "*"),
        iam.statement("PutContainerInsightsMetrics", ["cloudwatch:PutMetricData"], "*",
                      condition={"StringEquals": {"cloudwatch:namespace": ["ContainerInsights", "CWAgent"]}}),
        iam.statement("DescribeNodes", ["ec2:DescribeInstances", "ec2:DescribeTags", "ec2:DescribeVolumes"], "*"),
    ]


def ebs_csi_statements(env: AwsEnvironment, *, cluster_name: str,
                       ebs_kms_key_arn: str | None = None) -> list[dict[str, Any]]:
    """Volume lifecycle of this cluster's persistent volumes only (no snapshots: nothing here uses them)."""
    volumes = env.arn("ec2", "volume/*")
    cluster_tags = {"ebs.csi.aws.com/cluster": "true", f"kubernetes.io/cluster/{cluster_name}": "owned"}
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
        iam.statement("AttachToInstances", ["ec2:AttachVolume", "ec2:DetachVolume"], [env.arn("ec2", "instance/*")]),
    ]
    if ebs_kms_key_arn:
        statements += [
            iam.statement("UseEbsKeyViaEc2", ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext",
                                              "kms:ReEncryptFrom", "kms:ReEncryptTo"], [ebs_kms_key_arn],
                          condition={"StringEquals": {"kms:ViaService": env.service_endpoint("ec2")}}),
            iam.statement("CreateEbsKeyGrantsForEc2", ["kms:CreateGrant"], [ebs_kms_key_arn],
                          condition={"Bool": {"kms:GrantIsForAWSResource": "true"}}),
        ]
    return statements
