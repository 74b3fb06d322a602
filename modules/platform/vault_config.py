"""What Airflow needs inside Vault, through the Vault provider (the vault-config stack, applied once Vault is
initialised): a KV v2 mount for Airflow's connections, variables and config; the Kubernetes auth method; a
read-only policy; the role every Airflow service account logs in with; a file audit device.

How Vault validates the service account tokens Airflow presents: the auth method calls the cluster's TokenReview
API at https://kubernetes.default.svc with Vault's *own* service account token and the cluster CA from its pod
(`disable_local_ca_jwt = false`, no `token_reviewer_jwt`, no `kubernetes_ca_cert`). Vault re-reads that
short-lived projected token as kubelet rotates it, and the chart binds its service account to
`system:auth-delegator` (modules/platform/vault.py `authDelegator`). So no long-lived reviewer token and no CA copy ever
lands in Terraform state, and a revoked or expired Airflow token is refused by the API server itself.

Secret layout Airflow's VaultBackend reads (KV v2: hvac `read_secret_version`, i.e. GET <mount>/data/<path>):
  <mount>/connections/<conn_id>   e.g. airflow/connections/kafka_default for the Kafka connection
  <mount>/variables/<key>
  <mount>/config/<section>__<key>   (`*_secret` config options)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_vault import (audit, auth_backend, kubernetes_auth_backend_config,
                                        kubernetes_auth_backend_role, kv_secret_backend_v2, mount, policy)
from constructs import Construct

from . import kubernetes as k8s
from ..aws.identity import workloads
from ..core.validation import ConfigError
from .vault import AUDIT_LOG_FILE
from .vault_settings import VaultSettings

IN_CLUSTER_API = "https://kubernetes.default.svc"
READ_POLICY = "airflow-read"
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_PATH = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def airflow_service_accounts(*, namespace: str = k8s.AIRFLOW_NAMESPACE,
                             release: str = k8s.AIRFLOW_RELEASE) -> tuple[str, ...]:
    """Every Airflow service account of modules/aws/identity.py (scheduler, dag-processor, triggerer, API server,
    Celery workers and KubernetesExecutor task pods), in a stable order."""
    return tuple(sorted(sa for wid, (_, sas) in workloads(airflow_namespace=namespace, airflow_release=release).items()
                        if wid.startswith("airflow-") for sa in sas))


def read_policy(mount_path: str, paths: dict[str, str]) -> dict[str, Any]:
    """A Vault policy (JSON form) that reads exactly the secrets VaultBackend reads: KV v2 `data/` of each base
    path. No list on `metadata/` (pods need not enumerate connection names), nothing that writes."""
    return {"path": {f"{mount_path}/data/{base}/*": {"capabilities": ["read"]} for base in sorted(paths.values())}}


@dataclass(frozen=True, kw_only=True)
class VaultAirflowConfigProps:
    """The environment's settings (token lifetimes, KV versions), whole; the rest are the platform's fixed names
    (modules/platform/kubernetes.py), shared with the Airflow release and the Vault chart."""
    settings: VaultSettings = VaultSettings()
    mount_path: str = k8s.VAULT_AIRFLOW_MOUNT
    auth_path: str = k8s.VAULT_KUBERNETES_AUTH_PATH
    role_name: str = k8s.VAULT_AIRFLOW_ROLE
    airflow_namespace: str = k8s.AIRFLOW_NAMESPACE
    service_accounts: tuple[str, ...] = field(default_factory=airflow_service_accounts)
    secret_paths: dict[str, str] = field(default_factory=lambda: dict(k8s.VAULT_AIRFLOW_PATHS))
    audit_file_path: str = AUDIT_LOG_FILE

    def __post_init__(self) -> None:
        for name in ("mount_path", "auth_path", "role_name"):
            if not _PATH.fullmatch(getattr(self, name)):
                raise ConfigError(name, getattr(self, name), "is not a simple Vault path segment",
                                  "use lowercase letters, digits, '-' and '_'")
        if not _NAME.fullmatch(self.airflow_namespace):
            raise ConfigError("airflow_namespace", self.airflow_namespace, "is not a Kubernetes namespace",
                              "use a DNS label")
        if not self.service_accounts or len(set(self.service_accounts)) != len(self.service_accounts) or any(
                not _NAME.fullmatch(sa) for sa in self.service_accounts):
            raise ConfigError("service_accounts", list(self.service_accounts),
                              "is empty, repeats a name or holds an invalid service account name",
                              "list every Airflow service account once (airflow_service_accounts())")
        if set(self.secret_paths) != set(k8s.VAULT_AIRFLOW_PATHS) or any(
                not _PATH.fullmatch(p) for p in self.secret_paths.values()):
            raise ConfigError("secret_paths", self.secret_paths, "does not name the three VaultBackend base paths",
                              f"give {', '.join(sorted(k8s.VAULT_AIRFLOW_PATHS))} as simple path segments")
        if not isinstance(self.settings, VaultSettings):
            raise ConfigError("settings", type(self.settings).__name__, "is not VaultSettings",
                              "pass VaultSettings (or the environment's VaultConfig)")
        if not self.audit_file_path.startswith("/"):
            raise ConfigError("audit_file_path", self.audit_file_path, "is not an absolute path",
                              "write to the audit volume, e.g. /vault/audit/vault_audit.log")


class VaultAirflowConfig(Construct):
    def __init__(self, scope: Construct, id_: str, *, props: VaultAirflowConfigProps) -> None:
        super().__init__(scope, id_)
        p = props

        def named(resource):
            # `vault_mount.airflow-kv`: readable, stable plan addresses (no path hash). Renamed before anything
            # references the resource, so references use the final address.
            resource.override_logical_id(f"{id_}-{resource.node.id}")
            return resource

        # Audit first: everything after it (and every Airflow read) is recorded. The file lives on the chart's
        # auditStorage volume of each replica.
        self.audit = named(audit.Audit(self, "audit-file", type="file", path="file",
                                       options={"file_path": p.audit_file_path, "format": "json"},
                                       description="request/response audit log on the audit volume"))
        self.mount = named(mount.Mount(
            self, "kv", path=p.mount_path, type="kv", options={"version": "2"},
            description="Airflow connections, variables and config (VaultBackend)", depends_on=[self.audit],
            # removing the mount deletes every secret in it: never as a side effect of a plan
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True)))
        self.kv_config = named(kv_secret_backend_v2.KvSecretBackendV2(self, "kv-config", mount=self.mount.path,
                                                                      max_versions=p.settings.kv_max_versions))
        self.auth = named(auth_backend.AuthBackend(self, "kubernetes", type="kubernetes", path=p.auth_path,
                                                   description="Kubernetes service account login (Airflow pods)",
                                                   depends_on=[self.audit]))
        self.auth_config = named(kubernetes_auth_backend_config.KubernetesAuthBackendConfig(
            self, "kubernetes-config", backend=self.auth.path, kubernetes_host=IN_CLUSTER_API,
            disable_local_ca_jwt=False))     # Vault's own SA token + pod CA (module docstring)
        self.policy_document = read_policy(p.mount_path, p.secret_paths)
        self.policy = named(policy.Policy(self, "read-policy", name=READ_POLICY,
                                          policy=json.dumps(self.policy_document, sort_keys=True)))
        self.role = named(kubernetes_auth_backend_role.KubernetesAuthBackendRole(
            self, "role", backend=self.auth.path, role_name=p.role_name,
            bound_service_account_names=list(p.service_accounts),
            bound_service_account_namespaces=[p.airflow_namespace],
            token_policies=[self.policy.name], token_ttl=p.settings.airflow_token_ttl,
            token_max_ttl=p.settings.airflow_token_max_ttl, token_type="service", depends_on=[self.auth_config]))
        self.mount_path: str = p.mount_path
        self.role_name: str = p.role_name
        self.auth_path: str = p.auth_path
        self.service_accounts: tuple[str, ...] = p.service_accounts
        self._paths = dict(p.secret_paths)

    def connection_path(self, conn_id: str) -> str:
        """Where an operator writes the Airflow connection `conn_id` (`vault kv put <this> ...`)."""
        return f"{self.mount_path}/{self._paths['connections_path']}/{conn_id}"

    def variable_path(self, key: str) -> str:
        return f"{self.mount_path}/{self._paths['variables_path']}/{key}"
