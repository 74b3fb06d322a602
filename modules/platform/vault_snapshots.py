"""Scheduled raft snapshots of Vault to S3: a CronJob in Vault's namespace (in the platform-bootstrap chart, like the
platform's other objects) and the Vault policy its role holds (the vault-config stack creates role and policy).

One Job per schedule tick, two steps sharing an emptyDir, because no pinned image has both CLIs:
1. init container `snapshot` (the Vault server's own image): logs in at auth/kubernetes with role
   k8s.VAULT_SNAPSHOT_ROLE using a projected token minted for Vault's audience, and runs `vault operator raft
   snapshot save` against the active node (TLS verified with the platform CA). The role's policy is `read` on
   sys/storage/raft/snapshot and nothing else (`snapshot_policy`).
2. container `upload` (the AWS CLI image): copies the file to s3://<bucket>/<SNAPSHOT_PREFIX>/... with the Pod Identity
   of service account `vault-snapshot` (modules/aws/vault_storage.py: PutObject on that prefix only).
A snapshot is still encrypted by Vault's barrier: restoring it needs the unseal key too (docs/vault.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from constructs import Construct

from . import kubernetes as k8s
from ..aws.identity import WORKLOADS
from ..aws.vault_storage import SNAPSHOT_PREFIX
from ..core import validation
from ..core.tokens import is_unresolved
from ..core.validation import require
from .local_chart import LocalChart
from .vault import TLS_CA_FILE, VAULT_IMAGE
from .vault_settings import VaultSettings

NAME = "vault-snapshot"
# AWS CLI v2 (reads EKS Pod Identity credentials), from ECR Public; bump deliberately like the charts.
AWS_CLI_IMAGE = "public.ecr.aws/aws-cli/aws-cli:2.34.29"
SNAPSHOT_DIR = "/snapshots"
SNAPSHOT_FILE = f"{SNAPSHOT_DIR}/vault.snap"
CA_DIR = TLS_CA_FILE.rsplit("/", 1)[0]
RUN_AS = 65532                          # any non-root uid: both CLIs need only the mounted emptyDirs
SNAPSHOT_TOKEN_TTL = 300                # seconds the Vault token of one snapshot lives (a login per run)

SNAPSHOT_SCRIPT = f"""\
VAULT_TOKEN="$(vault write -field=token auth/{k8s.VAULT_KUBERNETES_AUTH_PATH}/login role={k8s.VAULT_SNAPSHOT_ROLE} \\
  jwt=@{k8s.VAULT_TOKEN_FILE})"
export VAULT_TOKEN
vault operator raft snapshot save {SNAPSHOT_FILE}
"""
UPLOAD_SCRIPT = f"""\
key="{SNAPSHOT_PREFIX}/$(date -u +%Y/%m/%d)/vault-$(date -u +%Y%m%dT%H%M%SZ).snap"
aws s3 cp --only-show-errors {SNAPSHOT_FILE} "s3://$SNAPSHOT_BUCKET/$key"
echo "uploaded s3://$SNAPSHOT_BUCKET/$key"
"""


def snapshot_policy() -> dict[str, Any]:
    """The snapshot role's Vault policy (JSON form): take a raft snapshot, nothing else (no restore: that is
    `sys/storage/raft/snapshot` with update, and `-force` is sudo on snapshot-force)."""
    return {"path": {"sys/storage/raft/snapshot": {"capabilities": ["read"]}}}


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def snapshot_objects(*, bucket: str, region: str, schedule: str) -> list[dict[str, Any]]:
    """The ServiceAccount (Pod Identity: modules/aws/identity.py WORKLOADS['vault-snapshot']) and the CronJob."""
    namespace, (service_account,) = WORKLOADS[NAME]
    assert namespace == k8s.VAULT_NAMESPACE, "the snapshot job must run where its Pod Identity association is"
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": k8s.VAULT_RELEASE}
    scratch = {"name": "tmp", "mountPath": "/tmp"}
    snapshots = {"name": "snapshots", "mountPath": SNAPSHOT_DIR}
    volumes = [
        {"name": "snapshots", "emptyDir": {"sizeLimit": "2Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        # Only ca.crt of Vault's TLS Secret, never its key.
        {"name": "vault-ca", "projected": {"sources": [{"secret": {"name": k8s.VAULT_TLS_SECRET,
                                                                   "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}},
        {"name": "vault-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": k8s.VAULT_TOKEN_AUDIENCE, "expirationSeconds": k8s.VAULT_TOKEN_EXPIRATION_SECONDS,
            "path": k8s.VAULT_TOKEN_FILE.rsplit("/", 1)[1]}}]}},
    ]
    snapshot = {
        "name": "snapshot", "image": VAULT_IMAGE, "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-ec", SNAPSHOT_SCRIPT],
        "env": [{"name": "VAULT_ADDR", "value": k8s.VAULT_ADDRESS}, {"name": "VAULT_CACERT", "value": TLS_CA_FILE},
                {"name": "HOME", "value": "/tmp"}],
        "volumeMounts": [snapshots, scratch, {"name": "vault-ca", "mountPath": CA_DIR, "readOnly": True},
                         {"name": "vault-token", "mountPath": k8s.VAULT_TOKEN_DIR, "readOnly": True}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": _container_security()}
    upload = {
        "name": "upload", "image": AWS_CLI_IMAGE, "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-ec", UPLOAD_SCRIPT],
        "env": [{"name": "SNAPSHOT_BUCKET", "value": bucket}, {"name": "AWS_REGION", "value": region},
                {"name": "AWS_DEFAULT_REGION", "value": region}, {"name": "HOME", "value": "/tmp"}],
        "volumeMounts": [{**snapshots, "readOnly": True}, scratch],
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": _container_security()}
    pod = {
        "serviceAccountName": service_account,
        # Neither step calls the Kubernetes API: its token stays out of the pod (Vault gets its own projected token;
        # EKS Pod Identity injects its own).
        "automountServiceAccountToken": False,
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [snapshot], "containers": [upload], "volumes": volumes}
    cronjob = {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
        "spec": {"schedule": schedule, "timeZone": "Etc/UTC", "concurrencyPolicy": "Forbid",
                 "startingDeadlineSeconds": 600, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                 "jobTemplate": {"metadata": {"labels": labels}, "spec": {
                     "backoffLimit": 2, "activeDeadlineSeconds": 1800, "ttlSecondsAfterFinished": 86400,
                     "template": {"metadata": {"labels": labels}, "spec": pod}}}}}
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": service_account, "namespace": namespace, "labels": labels},
               "automountServiceAccountToken": False}
    return [account, cronjob]


@dataclass(frozen=True, kw_only=True)
class VaultSnapshotsProps:
    settings: VaultSettings = VaultSettings()
    bucket: str                                 # the infra stack's snapshot bucket (usually a cross-stack token)
    region: str

    def __post_init__(self) -> None:
        require(isinstance(self.settings, VaultSettings), "settings", type(self.settings).__name__,
                "is not VaultSettings", "pass VaultSettings (or the environment's VaultConfig)")
        validation.aws_region("region", self.region)
        if not is_unresolved(self.bucket):
            validation.bucket_name("bucket", self.bucket)


class VaultSnapshots(Construct):
    """Adds the snapshot ServiceAccount and CronJob to `bootstrap`."""

    def __init__(self, scope: Construct, id_: str, *, props: VaultSnapshotsProps, bootstrap: LocalChart) -> None:
        super().__init__(scope, id_)
        self.objects = snapshot_objects(bucket=props.bucket, region=props.region,
                                        schedule=props.settings.snapshot_schedule)
        for obj in self.objects:
            bootstrap.add_object(obj)
        self.service_account: str = WORKLOADS[NAME][1][0]
        self.namespace: str = WORKLOADS[NAME][0]
        self.schedule: str = props.settings.snapshot_schedule
