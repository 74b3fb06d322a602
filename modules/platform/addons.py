"""Cluster add-ons of the platform stack: cert-manager, External Secrets Operator, Karpenter and KEDA as pinned
Helm releases, plus the cluster-wide objects the apps need before they install (namespaces, the in-cluster CA
chain, the Secrets Manager store, the encrypted gp3 StorageClass, the Airflow worker NodePool). Those objects go
into the platform-bootstrap local chart (modules/platform/local_chart.py), installed after the add-ons' CRDs exist.

Credentials: External Secrets and Karpenter run under the service accounts named in modules/aws/identity.py
WORKLOADS, whose EKS Pod Identity associations the infra stack creates; no IRSA annotation, no static key.
Helm values are built by the pure functions below (Python data, serialized with json.dumps).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from cdktf import ITerraformDependable
from cdktf_cdktf_provider_helm.release import Release
from constructs import Construct

from . import kubernetes as k8s
from ..aws.settings import IN_TRANSIT_ENCRYPTION_LABEL, INSTANCE_FAMILIES
from ..aws.identity import WORKLOADS
from ..core import validation
from ..core.validation import require
from .addons_settings import AddonsSettings  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class ChartPin:
    repository: str
    chart: str
    version: str
    namespace: str


# Pinned charts. Bump deliberately, after reading the release notes and re-checking the value keys against the
# chart's values.yaml (tests/data/charts/<chart>/, tests/modules/platform/test_addons.py).
# cert-manager v1.20.2: https://github.com/cert-manager/cert-manager/releases/tag/v1.20.2 (chart from the
# jetstack repository; `crds.enabled` renders the CRDs as templates, `crds.keep` keeps them on uninstall).
CERT_MANAGER = ChartPin("https://charts.jetstack.io", "cert-manager", "v1.20.2", k8s.CERT_MANAGER_NAMESPACE)
# External Secrets Operator chart 2.10.0: https://github.com/external-secrets/external-secrets/releases
# (tag helm-chart-2.10.0); serves external-secrets.io/v1 (v1beta1 stopped being served in 0.17).
EXTERNAL_SECRETS = ChartPin("https://charts.external-secrets.io", "external-secrets", "2.10.0",
                            k8s.EXTERNAL_SECRETS_NAMESPACE)
# Karpenter 1.14.1: https://github.com/aws/karpenter-provider-aws/releases/tag/v1.14.1 (OCI charts on ECR
# Public). CRDs come from the separate karpenter-crd chart, which, unlike a chart's crds/ directory, Helm
# upgrades with the controller (Karpenter upgrade guide).
KARPENTER = ChartPin("oci://public.ecr.aws/karpenter", "karpenter", "1.14.1", WORKLOADS["karpenter"][0])
KARPENTER_CRD = ChartPin("oci://public.ecr.aws/karpenter", "karpenter-crd", "1.14.1", WORKLOADS["karpenter"][0])
# KEDA 2.20.2: exactly the chart whose Chart.yaml is tests/data/charts/keda/ (kedacore/charts tag v2.20.2).
KEDA = ChartPin("https://kedacore.github.io/charts", "keda", "2.20.2", k8s.KEDA_NAMESPACE)
CHARTS = {"cert-manager": CERT_MANAGER, "external-secrets": EXTERNAL_SECRETS, "karpenter-crd": KARPENTER_CRD,
          "karpenter": KARPENTER, "keda": KEDA}

BOOTSTRAP_CHART = "platform-bootstrap"
BOOTSTRAP_NAMESPACE = "kube-system"              # where the bootstrap release's own record lives
SYSTEM_NODE_SELECTOR = {"role": "system"}        # label of the managed system node group (modules/aws/cluster.py)
_CRITICAL_ADDONS = [{"key": k8s.SYSTEM_NODE_TAINT_KEY, "operator": "Exists"}]   # the system nodes' soft taint
_ARCH = {"x86_64": "amd64", "arm64": "arm64"}


@dataclass(frozen=True, kw_only=True)
class ClusterAddonsProps:
    """What the add-ons need: the environment's settings, whole, and other constructs' attributes."""
    settings: AddonsSettings = AddonsSettings()
    cluster_name: str
    region: str
    node_role_name: str                          # the cluster's node role: Karpenter's EC2NodeClass uses it too
    ebs_kms_key_arn: str | None = None           # customer key for EBS volumes; None = the account's EBS default key
    interruption_queue_name: str | None = None   # SQS queue of EC2 interruption events (modules/aws/node_interruption.py)
    kubernetes_version: str = "1.34"             # the cluster's minor (ClusterSettings): Pod Security labels pin it

    def __post_init__(self) -> None:
        validation.eks_cluster_name("cluster_name", self.cluster_name)
        validation.aws_region("region", self.region)
        require(isinstance(self.settings, AddonsSettings), "settings", type(self.settings).__name__,
                "is not AddonsSettings", "pass AddonsSettings (or the environment's AddonsConfig)")
        if self.ebs_kms_key_arn is not None:
            validation.kms_key_arn("ebs_kms_key_arn", self.ebs_kms_key_arn)
        require(isinstance(self.kubernetes_version, str) and re.fullmatch(r"1\.\d{2}", self.kubernetes_version)
                is not None, "kubernetes_version", self.kubernetes_version, "is not a Kubernetes minor version",
                "pass the cluster's ClusterSettings.kubernetes_version, e.g. '1.34'")

    @property
    def worker_architecture(self) -> str:
        """Kubernetes arch label value of the worker families (amd64 or arm64)."""
        return _ARCH[INSTANCE_FAMILIES[self.settings.worker_instance_families[0]]]


# ---- Helm values (pure) ---------------------------------------------------------------------------

def _pdb(replicas: int) -> bool:
    return replicas > 1


def cert_manager_values(*, replicas: int) -> dict[str, Any]:
    """cert-manager chart: CRDs installed (and kept on uninstall, so issued certificates survive a reinstall)."""
    ha = {"replicaCount": replicas, "podDisruptionBudget": {"enabled": _pdb(replicas)}}
    return {"crds": {"enabled": True, "keep": True}, **ha, "webhook": dict(ha), "cainjector": dict(ha),
            "prometheus": {"enabled": True}}


def external_secrets_values(*, replicas: int) -> dict[str, Any]:
    """ESO chart: CRDs installed; the controller's service account is the Pod Identity one (no annotation)."""
    namespace, (service_account,) = WORKLOADS["external-secrets"]
    assert namespace == EXTERNAL_SECRETS.namespace
    # The chart sets a restricted container securityContext but no pod one; seccomp and non-root at pod level too.
    pod_security = {"enabled": True, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    return {"installCRDs": True, "replicaCount": replicas, "leaderElect": replicas > 1,
            "podSecurityContext": dict(pod_security),
            "serviceAccount": {"create": True, "name": service_account},
            "podDisruptionBudget": {"enabled": _pdb(replicas), "minAvailable": 1},
            "webhook": {"replicaCount": replicas, "podSecurityContext": dict(pod_security)},
            "certController": {"podSecurityContext": dict(pod_security)}}


def karpenter_values(*, cluster_name: str, replicas: int, interruption_queue: str | None = None) -> dict[str, Any]:
    """Karpenter chart: the controller runs on the managed system nodes (never on capacity it manages itself)
    under the Pod Identity service account; the API endpoint is discovered with eks:DescribeCluster. With an
    interruption queue it cordons and drains a node on a spot interruption warning or scheduled maintenance."""
    namespace, (service_account,) = WORKLOADS["karpenter"]
    assert namespace == KARPENTER.namespace
    settings = {"clusterName": cluster_name, **({"interruptionQueue": interruption_queue} if interruption_queue else {})}
    return {"settings": settings,
            "serviceAccount": {"create": True, "name": service_account},
            "replicas": replicas,
            "nodeSelector": {"kubernetes.io/os": "linux", **SYSTEM_NODE_SELECTOR},
            "tolerations": list(_CRITICAL_ADDONS),
            "controller": {"resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                                         "limits": {"memory": "1Gi"}}}}


def keda_values(*, replicas: int) -> dict[str, Any]:
    """KEDA chart 2.20.2: CRDs installed; a PodDisruptionBudget per component once there is more than one pod."""
    values: dict[str, Any] = {"crds": {"install": True}, "operator": {"replicaCount": replicas},
                              "metricsServer": {"replicaCount": replicas}, "webhooks": {"replicaCount": replicas},
                              # The Airflow worker scaler (postgresql, in the operator) verifies PgBouncer's
                              # certificate against the platform CA: mount it where modules/platform/airflow.py points.
                              "volumes": {"keda": {
                                  "extraVolumes": [{"name": "platform-ca", "secret": {
                                      "secretName": k8s.KEDA_PLATFORM_CA_SECRET, "items": [
                                          {"key": "ca.crt", "path": PurePosixPath(k8s.KEDA_PLATFORM_CA_FILE).name}]}}],
                                  "extraVolumeMounts": [{"name": "platform-ca", "readOnly": True,
                                                         "mountPath": str(PurePosixPath(k8s.KEDA_PLATFORM_CA_FILE).parent)}]}}}
    if _pdb(replicas):
        values["podDisruptionBudget"] = {part: {"minAvailable": 1} for part in ("operator", "metricServer", "webhooks")}
    return values


# ---- bootstrap objects (pure) ---------------------------------------------------------------------

def pod_security_labels(*, enforce: str, kubernetes_version: str) -> dict[str, str]:
    """Pod Security Admission labels: `enforce` refuses pods, warn and audit report at k8s.POD_SECURITY_AUDIT.
    Each mode's version is the cluster's minor, so a control plane upgrade changes no policy until the
    versions here move with ClusterSettings.kubernetes_version."""
    version = f"v{kubernetes_version}"
    labels = {}
    for mode, level in (("enforce", enforce), ("warn", k8s.POD_SECURITY_AUDIT), ("audit", k8s.POD_SECURITY_AUDIT)):
        labels[f"pod-security.kubernetes.io/{mode}"] = level
        labels[f"pod-security.kubernetes.io/{mode}-version"] = version
    return labels


def app_namespace(name: str, *, kubernetes_version: str) -> dict[str, Any]:
    """A namespace Helm never deletes (uninstalling the bootstrap chart must not take Vault's data with it),
    labelled with its Pod Security level (k8s.POD_SECURITY_ENFORCE)."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "annotations": {"helm.sh/resource-policy": "keep"},
                         "labels": pod_security_labels(enforce=k8s.POD_SECURITY_ENFORCE[name],
                                                       kubernetes_version=kubernetes_version)}}


def ca_chain(*, cluster_name: str) -> list[dict[str, Any]]:
    """Self-signed issuer -> platform root CA (a CA certificate in the cert-manager namespace, where ClusterIssuers
    read their secrets) -> the CA ClusterIssuer every in-cluster certificate uses."""
    issuer = lambda name: {"name": name, "kind": "ClusterIssuer", "group": "cert-manager.io"}  # noqa: E731
    return [
        {"apiVersion": k8s.CERT_MANAGER_API_VERSION, "kind": "ClusterIssuer",
         "metadata": {"name": k8s.SELF_SIGNED_ISSUER}, "spec": {"selfSigned": {}}},
        {"apiVersion": k8s.CERT_MANAGER_API_VERSION, "kind": "Certificate",
         "metadata": {"name": k8s.ROOT_CA_CERTIFICATE, "namespace": k8s.CERT_MANAGER_NAMESPACE},
         "spec": {"isCA": True, "commonName": f"{cluster_name} platform root CA",
                  "secretName": k8s.ROOT_CA_CERTIFICATE, "duration": "87600h", "renewBefore": "720h",
                  "privateKey": {"algorithm": "ECDSA", "size": 256},
                  "issuerRef": issuer(k8s.SELF_SIGNED_ISSUER)}},
        {"apiVersion": k8s.CERT_MANAGER_API_VERSION, "kind": "ClusterIssuer",
         "metadata": {"name": k8s.CA_ISSUER}, "spec": {"ca": {"secretName": k8s.ROOT_CA_CERTIFICATE}}},
    ]


def secrets_manager_store(*, region: str) -> dict[str, Any]:
    """The shared ClusterSecretStore: AWS Secrets Manager with the operator's own Pod Identity credentials (no auth
    block), usable only from the app namespaces that share that identity (not the database-role Job's)."""
    return {"apiVersion": k8s.EXTERNAL_SECRETS_API_VERSION, "kind": "ClusterSecretStore",
            "metadata": {"name": k8s.SECRETS_MANAGER_STORE},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": region}},
                     "conditions": [{"namespaces": list(k8s.SECRETS_MANAGER_STORE_NAMESPACES)}]}}


def storage_class(*, cluster_name: str, reclaim_policy: str, kms_key_arn: str | None = None,
                  name: str = k8s.STORAGE_CLASS) -> dict[str, Any]:
    """Encrypted gp3 through the EBS CSI driver. Volumes are tagged as this cluster's, which the driver's IAM
    policy requires to create and manage them (modules/aws/identity.py). Vault's volumes use their own class on
    a customer-managed key (modules/platform/vault.py)."""
    parameters = {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4",
                  "tagSpecification_1": f"kubernetes.io/cluster/{cluster_name}=owned"}
    if kms_key_arn:
        parameters["kmsKeyId"] = kms_key_arn
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": "ebs.csi.aws.com", "parameters": parameters, "reclaimPolicy": reclaim_policy,
            "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": True}


def worker_node_class(props: ClusterAddonsProps) -> dict[str, Any]:
    """EC2NodeClass: the cluster's discovery-tagged private subnets and node security group, the node role,
    IMDSv2 only with hop limit 1 (pods use Pod Identity, never the node role), encrypted gp3 root volume."""
    s = props.settings
    discovery = [{"tags": {"karpenter.sh/discovery": props.cluster_name}}]
    ebs: dict[str, Any] = {"volumeSize": f"{s.worker_root_volume_gib}Gi", "volumeType": "gp3",
                           "encrypted": True, "deleteOnTermination": True}
    if props.ebs_kms_key_arn:
        ebs["kmsKeyID"] = props.ebs_kms_key_arn
    return {"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
            "metadata": {"name": k8s.WORKER_NODE_POOL},
            "spec": {"role": props.node_role_name, "amiSelectorTerms": [{"alias": s.worker_ami_alias}],
                     "subnetSelectorTerms": discovery, "securityGroupSelectorTerms": discovery,
                     "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled",
                                         "httpPutResponseHopLimit": 1, "httpTokens": "required"},
                     "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": ebs}],
                     "tags": {"Name": f"{props.cluster_name}-{k8s.WORKER_NODE_POOL}"}}}


def worker_node_pool(props: ClusterAddonsProps) -> dict[str, Any]:
    """NodePool for Airflow workers: spot and on-demand both allowed (Karpenter launches the cheapest available,
    spot first, and falls back to on-demand when spot capacity is short); tainted and labelled so only Airflow
    worker pods run there; capped by the configured limits; disrupted at most `worker_disruption_budget` at once."""
    s = props.settings
    (taint,) = k8s.WORKER_TOLERATIONS
    requirements = [
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]},
        {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": list(s.worker_instance_families)},
        {"key": "karpenter.k8s.aws/instance-size", "operator": "In", "values": list(s.worker_instance_sizes)},
        {"key": "kubernetes.io/arch", "operator": "In", "values": [props.worker_architecture]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        # Nitro encrypts traffic between instances only where both support it: Karpenter launches no other kind, so
        # the scrapes of and log fetches from worker pods are encrypted on the wire (docs/tls.md).
        {"key": IN_TRANSIT_ENCRYPTION_LABEL, "operator": "In", "values": ["true"]},
    ]
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": k8s.WORKER_NODE_POOL},
            "spec": {
                "template": {
                    "metadata": {"labels": dict(k8s.WORKER_NODE_LABELS)},
                    "spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                              "name": k8s.WORKER_NODE_POOL},
                             "taints": [{"key": taint["key"], "value": taint["value"], "effect": taint["effect"]}],
                             "requirements": requirements, "expireAfter": s.worker_expire_after}},
                "limits": {"cpu": str(s.worker_cpu_limit), "memory": f"{s.worker_memory_limit_gib}Gi"},
                "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized",
                               "consolidateAfter": s.worker_consolidate_after,
                               "budgets": [{"nodes": s.worker_disruption_budget}]}}}


# ---- the construct --------------------------------------------------------------------------------

class ClusterAddons(Construct):
    """The add-on releases. `bootstrap_objects()` are the objects for the platform-bootstrap chart, which must
    depend on `bootstrap_dependencies` (their CRDs and webhooks come with these releases)."""

    def __init__(self, scope: Construct, id_: str, *, props: ClusterAddonsProps) -> None:
        super().__init__(scope, id_)
        self._props = props
        replicas = props.settings.controller_replicas
        self.cert_manager = self._release("cert-manager", cert_manager_values(replicas=replicas))
        self.external_secrets = self._release("external-secrets", external_secrets_values(replicas=replicas))
        self.karpenter_crd = self._release("karpenter-crd", {})
        self.karpenter = self._release("karpenter", karpenter_values(
                                           cluster_name=props.cluster_name, replicas=replicas,
                                           interruption_queue=props.interruption_queue_name),
                                       depends_on=[self.karpenter_crd], skip_crds=True)
        self.keda = self._release("keda", keda_values(replicas=replicas))

    def _release(self, key: str, values: dict[str, Any], *, depends_on: list[ITerraformDependable] | None = None,
                 skip_crds: bool = False) -> Release:
        pin = CHARTS[key]
        release = Release(
            self, key, name=key, namespace=pin.namespace, create_namespace=pin.namespace != BOOTSTRAP_NAMESPACE,
            repository=pin.repository, chart=pin.chart, version=pin.version, atomic=True, cleanup_on_fail=True,
            wait=True, timeout=600, skip_crds=skip_crds or None,
            values=[json.dumps(values, sort_keys=True)], depends_on=depends_on)
        release.override_logical_id(key)        # `helm_release.<chart>`: a readable, stable plan address
        return release

    @property
    def releases(self) -> dict[str, Release]:
        return {"cert-manager": self.cert_manager, "external-secrets": self.external_secrets,
                "karpenter-crd": self.karpenter_crd, "karpenter": self.karpenter, "keda": self.keda}

    @property
    def bootstrap_dependencies(self) -> list[ITerraformDependable]:
        """Every add-on release: the bootstrap chart's objects need their CRDs and webhooks, and the apps that
        depend on the bootstrap release then find KEDA (ScaledObjects) in place too."""
        return list(self.releases.values())

    def bootstrap_objects(self) -> list[dict[str, Any]]:
        p = self._props
        return [*(app_namespace(ns, kubernetes_version=p.kubernetes_version) for ns in k8s.APP_NAMESPACES),
                *ca_chain(cluster_name=p.cluster_name),
                secrets_manager_store(region=p.region),
                storage_class(cluster_name=p.cluster_name, reclaim_policy=p.settings.storage_reclaim_policy,
                              kms_key_arn=p.ebs_kms_key_arn),
                worker_node_class(p), worker_node_pool(p)]

