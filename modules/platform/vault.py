"""HashiCorp Vault on the cluster: the official chart as an HA raft cluster with AWS KMS auto-unseal and a TLS
listener whose certificate cert-manager issues from the platform CA.

- Chart hashicorp/vault 0.34.1 (appVersion 2.0.4) from https://helm.releases.hashicorp.com; its values.yaml and
  values.schema.json are in tests/data/charts/vault/ (source: github.com/hashicorp/vault-helm tag v0.34.1).
- Unseal: `seal "awskms"` with the infra stack's key. Credentials come from the EKS Pod Identity association of
  service account WORKLOADS["vault"] (modules/aws/identity.py: kms:Encrypt/Decrypt/DescribeKey on that key only):
  no static keys, no IRSA annotation.
- Storage: integrated raft on `VAULT_STORAGE_CLASS` (gp3 encrypted with the infra stack's customer-managed Vault data
  key, a StorageClass this construct adds to the bootstrap chart) plus a second volume for the file audit device
  (enabled by the vault-config stack, modules/platform/vault_config.py, at AUDIT_LOG_FILE, next to a stdout device
  that the node's log agent ships off the pod).
- Reachable only inside the cluster: ClusterIP Services, no ingress/route. Which pods may open 8200 and 8201 is
  decided with every other app namespace's ingress in modules/platform/network_policy.py (default-deny + one allow
  per flow, in the bootstrap chart), so the chart's own NetworkPolicy is off. Operators use `kubectl port-forward`
  (docs/vault.md).
- The server config is Python data serialized as JSON (the chart accepts a JSON string: `vault.config` in
  templates/_helpers.tpl parses it with fromJson), so no HCL is templated here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlsplit

import jsii
from cdktf import IResolveContext, IStringProducer, ITerraformDependable, Lazy, TerraformResource
from cdktf_cdktf_provider_helm.release import Release
from constructs import Construct

from . import kubernetes as k8s
from ..aws.identity import WORKLOADS
from .addons import storage_class
from .local_chart import LocalChart
from ..core import validation
from ..core.validation import require
from .vault_settings import VaultSettings

CHART = "vault"
CHART_VERSION = "0.34.1"          # https://github.com/hashicorp/vault-helm/releases/tag/v0.34.1
REPOSITORY = "https://helm.releases.hashicorp.com"
VAULT_IMAGE = "hashicorp/vault:2.0.4"   # the chart's server.image default: other pods running the CLI use the same

CLUSTER_PORT = 8201
TLS_DIR = f"/vault/userconfig/{k8s.VAULT_TLS_SECRET}"   # the Certificate's Secret, mounted read-only
TLS_CERT_FILE = f"{TLS_DIR}/tls.crt"
TLS_KEY_FILE = f"{TLS_DIR}/tls.key"
TLS_CA_FILE = f"{TLS_DIR}/ca.crt"
DATA_PATH = "/vault/data"
TMP_DIR = "/tmp"                                           # the chart's start command writes /tmp/storageconfig.hcl
VAULT_UID, VAULT_GID = 100, 1000                           # the image's vault user and group
AUDIT_PATH = "/vault/audit"
AUDIT_LOG_FILE = f"{AUDIT_PATH}/vault_audit.log"          # the vault-config stack's file audit device writes here
INTERNAL_SERVICE = f"{k8s.VAULT_RELEASE}-internal"        # the chart's headless Service: <pod>.<release>-internal
ACTIVE_HOST = urlsplit(k8s.VAULT_ADDRESS).hostname or ""   # "<release>-active.<namespace>.svc"

@dataclass(frozen=True, kw_only=True)
class VaultProps:
    """What the release needs: the environment's settings, whole, and other constructs' attributes."""
    settings: VaultSettings = VaultSettings()
    region: str
    cluster_name: str                         # tags the volumes as this cluster's (the EBS CSI driver's IAM condition)
    unseal_key_arn: str                       # the infra stack's Vault unseal key (usually a cross-stack token)
    volume_kms_key_arn: str                   # the infra stack's Vault data key: encrypts the data and audit volumes
    storage_reclaim_policy: str = "Retain"    # the environment's AddonsSettings.storage_reclaim_policy
    depends_on: Sequence[ITerraformDependable] = field(default=())

    def __post_init__(self) -> None:
        require(isinstance(self.settings, VaultSettings), "settings", type(self.settings).__name__,
                "is not VaultSettings", "pass VaultSettings (or the environment's VaultConfig)")
        validation.aws_region("region", self.region)
        validation.eks_cluster_name("cluster_name", self.cluster_name)
        validation.kms_key_arn("unseal_key_arn", self.unseal_key_arn)
        validation.kms_key_arn("volume_kms_key_arn", self.volume_kms_key_arn)
        require(self.storage_reclaim_policy in ("Retain", "Delete"), "storage_reclaim_policy",
                self.storage_reclaim_policy, "is not a reclaim policy", "use 'Retain' or 'Delete'")


# ---- pure builders ------------------------------------------------------------------------------------

def certificate_dns_names() -> list[str]:
    """Every name a client uses: the active Service (VAULT_ADDRESS, first = common name), the release Service,
    each pod through the headless Service (raft retry_join, api_addr)."""
    release, ns = k8s.VAULT_RELEASE, k8s.VAULT_NAMESPACE
    return [ACTIVE_HOST, release, f"{release}.{ns}.svc", f"*.{INTERNAL_SERVICE}",
            f"*.{INTERNAL_SERVICE}.{ns}.svc.cluster.local"]


def certificate_manifest() -> dict[str, Any]:
    """The cert-manager Certificate for VAULT_TLS_SECRET (a whole object, for the bootstrap LocalChart).
    127.0.0.1 is a SAN because the in-pod CLI (VAULT_ADDR=https://127.0.0.1:8200) and `kubectl port-forward`
    reach the listener on loopback. One year, renewed 30 days ahead: Vault reads the files at start and on
    SIGHUP (docs/vault.md)."""
    return k8s.certificate(name=k8s.VAULT_TLS_SECRET, namespace=k8s.VAULT_NAMESPACE,
                           dns_names=certificate_dns_names(), ip_addresses=["127.0.0.1"], duration="8760h",
                           renew_before="720h")


def server_config(*, region: str, unseal_key_arn: str, replicas: int) -> dict[str, Any]:
    """Vault's server configuration (JSON form of the HCL stanzas)."""
    port, release = k8s.VAULT_PORT, k8s.VAULT_RELEASE
    retry_join = [{"leader_api_addr": f"https://{release}-{i}.{INTERNAL_SERVICE}:{port}",
                   "leader_ca_cert_file": TLS_CA_FILE,
                   "leader_tls_servername": f"{release}-{i}.{INTERNAL_SERVICE}"} for i in range(replicas)]
    return {
        "ui": True,
        "disable_mlock": True,            # recommended with integrated storage (raft memory-maps its database)
        "listener": [{"tcp": {
            "address": f"[::]:{port}", "cluster_address": f"[::]:{CLUSTER_PORT}", "tls_disable": False,
            "tls_cert_file": TLS_CERT_FILE, "tls_key_file": TLS_KEY_FILE, "tls_client_ca_file": TLS_CA_FILE,
            "tls_min_version": "tls12",
            # Prometheus scrapes /v1/sys/metrics without a Vault token (the endpoint exposes no secrets).
            "telemetry": {"unauthenticated_metrics_access": True}}}],
        "storage": {"raft": {"path": DATA_PATH, "retry_join": retry_join}},
        "seal": {"awskms": {"region": region, "kms_key_id": unseal_key_arn}},
        "service_registration": {"kubernetes": {}},   # labels pods vault-active / vault-sealed for the Services
        "telemetry": {"prometheus_retention_time": "60s", "disable_hostname": True},
    }


def volume_storage_class(*, cluster_name: str, kms_key_arn: str, reclaim_policy: str) -> dict[str, Any]:
    """VAULT_STORAGE_CLASS: the platform's gp3 class, but on the customer-managed Vault data key (a class of its
    own because a StorageClass's parameters cannot change in place, and only Vault's volumes need this key)."""
    return storage_class(cluster_name=cluster_name, reclaim_policy=reclaim_policy, kms_key_arn=kms_key_arn,
                         name=k8s.VAULT_STORAGE_CLASS)


def vault_values(*, region: str, unseal_key_arn: str, settings: VaultSettings = VaultSettings()) -> dict[str, Any]:
    """Helm values for hashicorp/vault 0.34.1."""
    replicas, cpu, memory = settings.replicas, settings.cpu, settings.memory
    namespace, (service_account,) = WORKLOADS["vault"]
    assert namespace == k8s.VAULT_NAMESPACE, "the Pod Identity association must be in the release's namespace"
    release, ns, port = k8s.VAULT_RELEASE, k8s.VAULT_NAMESPACE, k8s.VAULT_PORT
    storage = {"enabled": True, "storageClass": k8s.VAULT_STORAGE_CLASS, "accessMode": "ReadWriteOnce"}
    return {
        "global": {"enabled": True, "tlsDisable": False},
        # No agent injector: Airflow reads Vault itself (VaultBackend with Kubernetes auth), so a cluster-wide
        # mutating webhook would add attack surface and a failure mode for every pod creation with no user.
        "injector": {"enabled": False},
        "csi": {"enabled": False},
        "server": {
            "enabled": True,
            "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
            "serviceAccount": {"create": True, "name": service_account, "annotations": {},
                               "serviceDiscovery": {"enabled": True}},
            # TokenReview rights for Vault's own service account: the Kubernetes auth method validates
            # Airflow's tokens with it (modules/platform/vault_config.py).
            "authDelegator": {"enabled": True},
            "extraEnvironmentVars": {"VAULT_CACERT": TLS_CA_FILE},   # the in-pod CLI verifies the listener
            "volumes": [{"name": "tls", "secret": {"secretName": k8s.VAULT_TLS_SECRET, "defaultMode": 0o440}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
            "volumeMounts": [{"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                             {"name": "tmp", "mountPath": TMP_DIR}],
            "dataStorage": {**storage, "size": settings.data_storage_size, "mountPath": DATA_PATH},
            "auditStorage": {**storage, "size": settings.audit_storage_size, "mountPath": AUDIT_PATH},
            "standalone": {"enabled": False},
            "ha": {
                "enabled": True, "replicas": replicas,
                # Redirects name a host the certificate covers (the default is the pod IP, which it does not).
                "apiAddr": f"https://$(VAULT_K8S_POD_NAME).{INTERNAL_SERVICE}.{ns}.svc.cluster.local:{port}",
                "raft": {"enabled": True, "setNodeId": True,
                         "config": json.dumps(server_config(region=region, unseal_key_arn=unseal_key_arn,
                                                            replicas=replicas), sort_keys=True)},
                # One replica cannot be disrupted without an outage; a budget of 0 would only block node drains.
                "disruptionBudget": {"enabled": replicas > 1},
            },
            # Pod Security `restricted` (the vault namespace enforces it) with a read-only root filesystem: the
            # image's vault user (uid 100, group 1000, which owns the existing raft data) as the chart's default
            # pod context says, seccomp added. Vault writes its data and audit volumes, /home/vault (the chart's
            # emptyDir) and /tmp, where the chart's start command renders the config (TMP_DIR).
            "statefulSet": {"securityContext": {
                "pod": {"runAsNonRoot": True, "runAsUser": VAULT_UID, "runAsGroup": VAULT_GID, "fsGroup": VAULT_GID,
                        "seccompProfile": {"type": "RuntimeDefault"}},
                "container": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                              "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                              "seccompProfile": {"type": "RuntimeDefault"}}}},
            "topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": CHART,
                                                  "app.kubernetes.io/instance": release, "component": "server"}}}],
            "service": {"enabled": True, "type": "ClusterIP", "active": {"enabled": True}},
            "ingress": {"enabled": False},
            "route": {"enabled": False},
            "httproute": {"enabled": False},
            # Off: Vault's allow policies (Airflow pods and Prometheus -> 8200, Vault peers -> 8200/8201) live in
            # modules/platform/network_policy.py with the vault namespace's default-deny; one list, not two.
            "networkPolicy": {"enabled": False},
        },
        "ui": {"enabled": True, "serviceType": "ClusterIP", "activeVaultPodOnly": True},
        "serverTelemetry": {"serviceMonitor": {
            "enabled": True, "selectors": dict(k8s.PROMETHEUS_SELECTOR_LABELS), "interval": "30s",
            "scrapeTimeout": "10s",
            # Verify the listener (the chart's default is insecureSkipVerify): the Secret's ca.crt, and the
            # active Service's name because Prometheus connects to the pod IP.
            "tlsConfig": {"ca": {"secret": {"name": k8s.VAULT_TLS_SECRET, "key": "ca.crt"}},
                          "serverName": ACTIVE_HOST}}},
    }


# ---- the construct ------------------------------------------------------------------------------------

class Vault(Construct):
    """The Vault Helm release. Adds its TLS Certificate and its volumes' StorageClass to `bootstrap` (the chart
    that also creates the CA issuer) and installs after it."""

    def __init__(self, scope: Construct, id_: str, *, props: VaultProps, bootstrap: LocalChart) -> None:
        super().__init__(scope, id_)
        self.certificate = certificate_manifest()
        bootstrap.add_object(self.certificate)
        self.storage_class = volume_storage_class(cluster_name=props.cluster_name, kms_key_arn=props.volume_kms_key_arn,
                                                  reclaim_policy=props.storage_reclaim_policy)
        bootstrap.add_object(self.storage_class)
        values = vault_values(region=props.region, unseal_key_arn=props.unseal_key_arn, settings=props.settings)
        self.release = Release(
            self, "release", name=k8s.VAULT_RELEASE, namespace=k8s.VAULT_NAMESPACE, create_namespace=False,
            repository=REPOSITORY, chart=CHART, version=CHART_VERSION,
            # Pods stay unready (sealed) until `vault operator init` on first install: waiting would time out, and
            # `atomic` (which implies waiting) would then uninstall a healthy release. docs/vault.md has the steps.
            atomic=False, wait=False, cleanup_on_fail=True, timeout=600, values=[json.dumps(values, sort_keys=True)],
            depends_on=[bootstrap.release, *props.depends_on])
        self.release.override_logical_id(id_)   # `helm_release.vault`: a readable, stable plan address
        self.address: str = k8s.VAULT_ADDRESS
        self.namespace: str = k8s.VAULT_NAMESPACE
        self.tls_secret: str = k8s.VAULT_TLS_SECRET
        self.service_account: str = WORKLOADS["vault"][1][0]
        self.replicas: int = props.settings.replicas

    def install_after(self, *resources: TerraformResource) -> None:
        """Install after `resources` too, e.g. the kube-prometheus-stack release whose CRDs the chart's
        ServiceMonitor needs (that release is created after this one in the platform stack)."""
        self.release.depends_on = [*(self.release.depends_on or []),
                                   *(Lazy.string_value(_Address(r)) for r in resources)]


@jsii.implements(IStringProducer)
class _Address:
    """`<type>.<logical id>` of a resource, read at synth (after any override_logical_id)."""

    def __init__(self, resource: TerraformResource) -> None:
        self._resource = resource

    def produce(self, context: IResolveContext) -> str:
        return f"{self._resource.terraform_resource_type}.{self._resource.friendly_unique_id}"
