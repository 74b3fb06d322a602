"""What Airflow needs inside Vault, through the Vault provider (the vault-config stack, applied once Vault is
initialised): a KV v2 mount for Airflow's connections, variables and config; the Kubernetes auth method; one
read-only policy and one role per Airflow component; audit devices (stdout, shipped off the pod, and a file).

How Vault validates the service account tokens Airflow presents: the auth method calls the cluster's TokenReview
API at https://kubernetes.default.svc with Vault's *own* service account token and the cluster CA from its pod
(`disable_local_ca_jwt = false`, no `token_reviewer_jwt`, no `kubernetes_ca_cert`). Vault re-reads that
short-lived projected token as kubelet rotates it, and the chart binds its service account to
`system:auth-delegator` (modules/platform/vault.py `authDelegator`). So no long-lived reviewer token and no CA copy ever
lands in Terraform state, and a revoked or expired Airflow token is refused by the API server itself.

Every role requires the audience k8s.VAULT_TOKEN_AUDIENCE: Vault checks the token's `aud` claim and asks the
TokenReview for that audience, so only the projected tokens minted for Vault (modules/platform/airflow.py mounts one
in each pod) log in, not the pods' Kubernetes API tokens, and a token Vault sees cannot be replayed to the API server.

Who reads what (COMPONENT_PATHS): DAG-authored code runs in task pods, Celery workers, the dag-processor (top-level
DAG code) and the triggerer (triggers), so their roles read only the DAG paths (connections, variables). The
scheduler reads only `config/` (`*_secret` options); the API server reads all three (its Execution API serves the
tasks' connection and variable lookups, and it reads its own config).

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
AUDIT_STDOUT = "stdout"      # Vault's file device writes to the process's stdout: the node's log agent ships it
DAG_PATHS = ("connections_path", "variables_path")
# Workload id (modules/aws/identity.py) -> the VaultBackend base paths (k8s.VAULT_AIRFLOW_PATHS keys) it may read.
COMPONENT_PATHS: dict[str, tuple[str, ...]] = {
    "airflow-scheduler": ("config_path",),
    "airflow-api-server": (*DAG_PATHS, "config_path"),
    "airflow-dag-processor": DAG_PATHS,
    "airflow-triggerer": DAG_PATHS,
    "airflow-worker": DAG_PATHS,
    "airflow-task": DAG_PATHS,
}
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_PATH = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def airflow_service_accounts(*, namespace: str = k8s.AIRFLOW_NAMESPACE,
                             release: str = k8s.AIRFLOW_RELEASE) -> dict[str, str]:
    """Workload id -> service account of every Airflow component in modules/aws/identity.py (scheduler,
    dag-processor, triggerer, API server, Celery workers and KubernetesExecutor task pods)."""
    return {wid: sa for wid, (_, (sa,)) in sorted(workloads(airflow_namespace=namespace, airflow_release=release).items())
            if wid in COMPONENT_PATHS}


def read_policy(mount_path: str, paths: dict[str, str], keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A Vault policy (JSON form) that reads exactly the secrets VaultBackend reads: KV v2 `data/` of each base
    path (`keys` of `paths`, all by default). No list on `metadata/` (pods need not enumerate connection names),
    nothing that writes."""
    chosen = sorted(paths[k] for k in (keys if keys is not None else paths))
    return {"path": {f"{mount_path}/data/{base}/*": {"capabilities": ["read"]} for base in chosen}}


@dataclass(frozen=True, kw_only=True)
class VaultAirflowConfigProps:
    """The environment's settings (token lifetimes, KV versions), whole; the rest are the platform's fixed names
    (modules/platform/kubernetes.py), shared with the Airflow release and the Vault chart."""
    settings: VaultSettings = VaultSettings()
    mount_path: str = k8s.VAULT_AIRFLOW_MOUNT
    auth_path: str = k8s.VAULT_KUBERNETES_AUTH_PATH
    roles: dict[str, str] = field(default_factory=lambda: dict(k8s.VAULT_AIRFLOW_ROLES))   # workload id -> role
    audience: str = k8s.VAULT_TOKEN_AUDIENCE
    airflow_namespace: str = k8s.AIRFLOW_NAMESPACE
    service_accounts: dict[str, str] = field(default_factory=airflow_service_accounts)    # workload id -> SA
    secret_paths: dict[str, str] = field(default_factory=lambda: dict(k8s.VAULT_AIRFLOW_PATHS))
    audit_file_path: str = AUDIT_LOG_FILE

    def __post_init__(self) -> None:
        for name in ("mount_path", "auth_path"):
            if not _PATH.fullmatch(getattr(self, name)):
                raise ConfigError(name, getattr(self, name), "is not a simple Vault path segment",
                                  "use lowercase letters, digits, '-' and '_'")
        if set(self.roles) != set(COMPONENT_PATHS) or len(set(self.roles.values())) != len(self.roles) or any(
                not _PATH.fullmatch(r) for r in self.roles.values()):
            raise ConfigError("roles", self.roles, "does not give each Airflow component its own role name",
                              f"map each of {', '.join(COMPONENT_PATHS)} to a distinct simple name")
        if not _NAME.fullmatch(self.airflow_namespace):
            raise ConfigError("airflow_namespace", self.airflow_namespace, "is not a Kubernetes namespace",
                              "use a DNS label")
        if set(self.service_accounts) != set(COMPONENT_PATHS) or len(set(self.service_accounts.values())) != len(
                self.service_accounts) or any(not _NAME.fullmatch(sa) for sa in self.service_accounts.values()):
            raise ConfigError("service_accounts", self.service_accounts,
                              "does not name one distinct, valid service account per Airflow component",
                              "use airflow_service_accounts() (modules/aws/identity.py names them)")
        if not self.audience or not isinstance(self.audience, str) or any(c.isspace() for c in self.audience):
            raise ConfigError("audience", self.audience, "is not a token audience",
                              "use the audience the pods' projected tokens are minted for (k8s.VAULT_TOKEN_AUDIENCE)")
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
        self._id = id_
        self._audience = p.audience

        # Audit first: everything after it (and every Airflow read) is recorded. `stdout` goes with the pod's log
        # to the node's log agent (Container Insights, docs/vault.md); the file stays on each replica's audit
        # volume as a local copy. With two devices Vault keeps serving while one of them can still write.
        self.audit_stdout = self._named(audit.Audit(
            self, "audit-stdout", type="file", path=AUDIT_STDOUT, options={"file_path": AUDIT_STDOUT, "format": "json"},
            description="request/response audit log on stdout, shipped to CloudWatch Logs"))
        self.audit = self._named(audit.Audit(self, "audit-file", type="file", path="file",
                                             options={"file_path": p.audit_file_path, "format": "json"},
                                             description="request/response audit log on the audit volume"))
        audits = [self.audit_stdout, self.audit]
        self.mount = self._named(mount.Mount(
            self, "kv", path=p.mount_path, type="kv", options={"version": "2"},
            description="Airflow connections, variables and config (VaultBackend)", depends_on=audits,
            # removing the mount deletes every secret in it: never as a side effect of a plan
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True)))
        self.kv_config = self._named(kv_secret_backend_v2.KvSecretBackendV2(
            self, "kv-config", mount=self.mount.path, max_versions=p.settings.kv_max_versions))
        self.auth = self._named(auth_backend.AuthBackend(self, "kubernetes", type="kubernetes", path=p.auth_path,
                                                         description="Kubernetes service account login",
                                                         depends_on=audits))
        self.auth_config = self._named(kubernetes_auth_backend_config.KubernetesAuthBackendConfig(
            self, "kubernetes-config", backend=self.auth.path, kubernetes_host=IN_CLUSTER_API,
            disable_local_ca_jwt=False))     # Vault's own SA token + pod CA (module docstring)
        self.policy_documents: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, policy.Policy] = {}
        self.roles: dict[str, kubernetes_auth_backend_role.KubernetesAuthBackendRole] = {}
        for wid, keys in COMPONENT_PATHS.items():
            self.kubernetes_role(wid.removeprefix("airflow-"), role_name=p.roles[wid], namespace=p.airflow_namespace,
                                 service_account=p.service_accounts[wid],
                                 policy_document=read_policy(p.mount_path, p.secret_paths, keys),
                                 token_ttl=p.settings.airflow_token_ttl, token_max_ttl=p.settings.airflow_token_max_ttl)
        self.mount_path: str = p.mount_path
        self.role_names: dict[str, str] = dict(p.roles)
        self.auth_path: str = p.auth_path
        self.service_accounts: dict[str, str] = dict(p.service_accounts)
        self._paths = dict(p.secret_paths)

    def _named(self, resource):
        # `vault_mount.airflow-kv`: readable, stable plan addresses (no path hash). Renamed before anything
        # references the resource, so references use the final address.
        resource.override_logical_id(f"{self._id}-{resource.node.id}")
        return resource

    def kubernetes_role(self, name: str, *, role_name: str, namespace: str, service_account: str,
                        policy_document: dict[str, Any], token_ttl: int, token_max_ttl: int) -> None:
        """A policy named `role_name` holding `policy_document`, and a Kubernetes auth role of the same name that
        only `namespace/service_account` logs in with, with a token minted for the audience, and that gets only
        that policy (no `default` policy either). `name` is the construct id suffix (a Terraform address)."""
        self.policy_documents[role_name] = policy_document
        self.policies[role_name] = self._named(policy.Policy(self, f"policy-{name}", name=role_name,
                                                             policy=json.dumps(policy_document, sort_keys=True)))
        self.roles[role_name] = self._named(kubernetes_auth_backend_role.KubernetesAuthBackendRole(
            self, f"role-{name}", backend=self.auth.path, role_name=role_name,
            bound_service_account_names=[service_account], bound_service_account_namespaces=[namespace],
            audience=self._audience, token_policies=[self.policies[role_name].name], token_no_default_policy=True,
            token_ttl=token_ttl, token_max_ttl=token_max_ttl, token_type="service", depends_on=[self.auth_config]))

    def connection_path(self, conn_id: str) -> str:
        """Where an operator writes the Airflow connection `conn_id` (`vault kv put <this> ...`)."""
        return f"{self.mount_path}/{self._paths['connections_path']}/{conn_id}"

    def variable_path(self, key: str) -> str:
        return f"{self.mount_path}/{self._paths['variables_path']}/{key}"
