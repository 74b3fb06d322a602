"""Per-environment Vault configuration (Vault provider only), applied after the platform stack once Vault is
initialised (docs/vault.md): the Airflow KV mount, Kubernetes auth, a policy and role per Airflow component and
for the raft snapshot job, and the audit devices.

The provider reaches Vault from the operator's machine (default: `kubectl port-forward svc/vault-active
8200:8200` -> https://127.0.0.1:8200), verifies it with the platform CA file and the active Service's name, and
takes its token from VAULT_TOKEN at apply time: no token is in the synthesized JSON or in the state's provider
configuration.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from cdktf import Fn
from cdktf_cdktf_provider_vault import audit, auth_backend, mount, policy
from cdktf_cdktf_provider_vault.provider import VaultProvider
from constructs import Construct

from environments.config import EnvironmentConfig
from modules.platform import kubernetes as k8s
from modules.core.aspects import GovernedStack
from modules.aws.identity import WORKLOADS
from modules.platform.vault_ci_auth import ManagedVault, VaultCiAuth, VaultCiAuthProps
from modules.platform.vault_config import VaultAirflowConfig, VaultAirflowConfigProps
from modules.platform.vault_snapshots import SNAPSHOT_TOKEN_TTL, snapshot_policy

from .backend import use_environment_backend
from .provider import Emulator


def ca_cert_file(config: EnvironmentConfig) -> str:
    """The configured CA file, else ~/.vault/<prefix>-ca.crt (where docs/vault.md saves it)."""
    return config.vault.ca_cert_file or f"~/.vault/{config.prefix}-ca.crt"


class VaultConfigStack(GovernedStack):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig,
                 emulator: Emulator | None = None) -> None:
        super().__init__(scope, id_)
        c = config
        VaultProvider(
            self, "vault", address=c.vault.address,
            # terraform runs in cdktf.out/stacks/<stack>: expand ~ there, at plan time, on the operator's machine.
            ca_cert_file=Fn.pathexpand(ca_cert_file(c)),
            # Verify the certificate against the name clients use in-cluster, whatever local address the tunnel has.
            tls_server_name=urlsplit(k8s.VAULT_ADDRESS).hostname, skip_tls_verify=False,
            # The provider's child token lives only as long as one apply.
            max_lease_ttl_seconds=1200)
        use_environment_backend(self, config=c, layer="vault-config", emulator=emulator)
        self.airflow = VaultAirflowConfig(self, "airflow", props=VaultAirflowConfigProps(settings=c.vault))
        # The raft snapshot CronJob's login (modules/platform/vault_snapshots.py).
        namespace, (service_account,) = WORKLOADS["vault-snapshot"]
        self.airflow.kubernetes_role("snapshot", role_name=k8s.VAULT_SNAPSHOT_ROLE, namespace=namespace,
                                     service_account=service_account, policy_document=snapshot_policy(),
                                     token_ttl=SNAPSHOT_TOKEN_TTL, token_max_ttl=SNAPSHOT_TOKEN_TTL)
        # The deploy workflow logs in with its GitHub OIDC token (docs/vault.md); its policy covers what is above.
        self.ci_auth: VaultCiAuth | None = None
        if c.state.github_repository:
            self.ci_auth = VaultCiAuth(self, "ci-auth", props=VaultCiAuthProps(
                repository=c.state.github_repository, environment=c.name, settings=c.vault.ci_auth,
                managed=managed_vault(self.airflow)))


def managed_vault(scope: Construct) -> ManagedVault:
    """The mounts, auth methods, audit devices and policies created under `scope`, by the paths and names they were
    given (tests/test_vault_stacks.py checks no other Vault resource type is in the stack)."""
    found = scope.node.find_all()
    return ManagedVault(
        kv_mounts=tuple(r.path_input for r in found if isinstance(r, mount.Mount)),
        kubernetes_auth=tuple(r.path_input for r in found if isinstance(r, auth_backend.AuthBackend)
                              and r.type_input == "kubernetes"),
        audit_devices=tuple(r.path_input for r in found if isinstance(r, audit.Audit)),
        policies=tuple(r.name_input for r in found if isinstance(r, policy.Policy)))
