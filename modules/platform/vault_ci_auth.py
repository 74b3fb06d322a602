"""How the deploy workflow applies the vault-config stack without a pasted token: Vault's JWT auth method verifies the
job's GitHub Actions OIDC token (issuer https://token.actions.githubusercontent.com, keys from its discovery document)
and, for the one role, returns a short-lived Vault token with one policy that grants what applying this stack needs.

    vault write auth/github-actions/login role=vault-config-deploy jwt=<OIDC token with audience "vault">

The role is bound to the repository, the GitHub environment (= the environment's name), the deploy workflow file
on the deploy ref (`job_workflow_ref`, `ref`) and the subject GitHub gives environment jobs
(the customized `repo:<owner>/<name>:environment:<env>:job_workflow_ref:…`, as the AWS deploy role), and to the audience `vault`, so a token minted for AWS (audience
sts.amazonaws.com) is refused.

The policy (`deploy_policy`) covers the mounts, auth methods, audit devices and policies the stack manages, by their
exact paths, plus the provider's child token. Left out on purpose:
- delete of a KV mount (its secrets), of an auth method (every pod's login) and of an audit device (CI cannot
  switch auditing off); Terraform already refuses to destroy the KV mount (prevent_destroy);
- writes to this file's own objects: the JWT auth method, its role and the deploy policy are readable only, so CI
  cannot widen who may log in or what it is granted. Changing them is an operator apply (docs/vault.md);
- any secret: nothing under `<kv mount>/data/` or `metadata/`, nor sys/raw, seal, rekey, generate-root, raft, leases.
Like any identity that writes policies and auth roles, the deploy token could still build a path to more (write an
`airflow-*` policy, then log in through a Kubernetes role with a service account it can create as cluster admin): the
bounds that hold are who may obtain it (the bound claims), for how long, and that every request is audited.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cdktf_cdktf_provider_vault import jwt_auth_backend, jwt_auth_backend_role, policy
from constructs import Construct

from ..aws.ci_roles import subject as ci_subject
from ..core.validation import require
from .vault_settings import VaultCiAuthSettings

GITHUB_OIDC_ISSUER = "https://token.actions.githubusercontent.com"
AUTH_PATH = "github-actions"
ROLE = "vault-config-deploy"
POLICY = "vault-config-deploy"
AUDIENCE = "vault"
_REPOSITORY = re.compile(r"[A-Za-z0-9-]+/[A-Za-z0-9._-]+")
_SEGMENT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_POLICY_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
# Vault provider resource types `deploy_policy` knows the API paths of (ManagedVault's fields come from them).
COVERED_RESOURCE_TYPES = frozenset({
    "vault_audit", "vault_mount", "vault_kv_secret_backend_v2", "vault_auth_backend",
    "vault_kubernetes_auth_backend_config", "vault_kubernetes_auth_backend_role", "vault_policy",
    "vault_jwt_auth_backend", "vault_jwt_auth_backend_role"})


@dataclass(frozen=True, kw_only=True)
class ManagedVault:
    """What the vault-config stack manages, by path: the deploy policy grants exactly these."""
    kv_mounts: tuple[str, ...] = ()          # secrets engine mounts (KV v2), e.g. ('airflow',)
    kubernetes_auth: tuple[str, ...] = ()    # Kubernetes auth method paths, e.g. ('kubernetes',)
    audit_devices: tuple[str, ...] = ()      # audit device paths, e.g. ('file',)
    policies: tuple[str, ...] = ()           # ACL policy names (not the deploy policy itself)

    def __post_init__(self) -> None:
        for name in ("kv_mounts", "kubernetes_auth", "audit_devices"):
            for value in getattr(self, name):
                require(isinstance(value, str) and _SEGMENT.fullmatch(value) is not None, name, value,
                        "is not a simple Vault path segment", "use lowercase letters, digits, '-' and '_'")
        for value in self.policies:
            require(isinstance(value, str) and _POLICY_NAME.fullmatch(value) is not None and value != POLICY,
                    "policies", value, "is not a policy the deploy token may write",
                    f"list the stack's own policies (lowercase names), never '{POLICY}'")


def deploy_policy(managed: ManagedVault) -> dict[str, Any]:
    """The deploy token's ACL policy (JSON form): the API paths the Vault provider calls to read, create and update
    each managed object (sudo where Vault requires it: audit devices and enabling auth methods)."""
    paths: dict[str, list[str]] = {
        # The provider's child token (max_lease_ttl_seconds), created under this token.
        "auth/token/create": ["update"],
        # The provider reads its own token (the `default` policy's grant, which the role leaves out).
        "auth/token/lookup-self": ["read"],
        "sys/mounts": ["read"],
        "sys/auth": ["read"],
    }
    if managed.audit_devices:
        paths["sys/audit"] = ["read", "sudo"]
    for device in managed.audit_devices:
        paths[f"sys/audit/{device}"] = ["create", "update", "sudo"]
    for mount in managed.kv_mounts:
        paths[f"sys/mounts/{mount}"] = ["create", "read", "update"]
        paths[f"sys/mounts/{mount}/tune"] = ["read", "update"]
        paths[f"{mount}/config"] = ["create", "read", "update"]        # KV v2 engine settings, not secrets
    for auth in managed.kubernetes_auth:
        paths[f"sys/auth/{auth}"] = ["create", "read", "update", "sudo"]     # no delete: every pod's login
        paths[f"sys/auth/{auth}/tune"] = ["read", "update"]
        paths[f"sys/mounts/auth/{auth}/tune"] = ["read", "update"]
        paths[f"auth/{auth}/config"] = ["create", "read", "update"]
        paths[f"auth/{auth}/role/*"] = ["create", "read", "update", "delete"]
    for name in managed.policies:
        paths[f"sys/policies/acl/{name}"] = ["create", "read", "update", "delete"]
    # This construct's own objects: readable (so plans work), never writable by the token they produce.
    paths[f"sys/auth/{AUTH_PATH}"] = ["read", "sudo"]
    paths[f"sys/auth/{AUTH_PATH}/tune"] = ["read"]
    paths[f"sys/mounts/auth/{AUTH_PATH}/tune"] = ["read"]
    paths[f"auth/{AUTH_PATH}/config"] = ["read"]
    paths[f"auth/{AUTH_PATH}/role/{ROLE}"] = ["read"]
    paths[f"sys/policies/acl/{POLICY}"] = ["read"]
    return {"path": {path: {"capabilities": caps} for path, caps in sorted(paths.items())}}


@dataclass(frozen=True, kw_only=True)
class VaultCiAuthProps:
    repository: str                          # GitHub 'owner/name' (state.github_repository)
    environment: str                         # the GitHub environment the deploy job runs in (= environment name)
    managed: ManagedVault                    # what the deploy token may manage (the rest of the stack)
    settings: VaultCiAuthSettings = field(default_factory=VaultCiAuthSettings)

    def __post_init__(self) -> None:
        require(isinstance(self.repository, str) and _REPOSITORY.fullmatch(self.repository) is not None,
                "repository", self.repository, "is not a GitHub 'owner/name'",
                "use the repository whose deploy workflow applies this stack, e.g. 'example-org/airflow-platform'")
        require(isinstance(self.environment, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,255}", self.environment)
                is not None, "environment", self.environment, "is not a GitHub environment name",
                "use the environment's name, e.g. 'prod'")

    @property
    def bound_claims(self) -> dict[str, str]:
        s = self.settings
        return {"repository": self.repository, "environment": self.environment, "ref": s.ref,
                "job_workflow_ref": f"{self.repository}/{s.workflow_file}@{s.ref}"}

    @property
    def subject(self) -> str:
        """`sub` of the deploy job: GitHub's customized subject (`include_claim_keys: [repo, context,
        job_workflow_ref]`), the same one the AWS deploy role trusts (modules/aws/ci_roles.py)."""
        s = self.settings
        return ci_subject(self.repository, f"environment:{self.environment}", s.workflow_file, s.ref)


class VaultCiAuth(Construct):
    """The `github-actions` JWT auth method, the `vault-config-deploy` role and its policy."""

    def __init__(self, scope: Construct, id_: str, *, props: VaultCiAuthProps) -> None:
        super().__init__(scope, id_)
        p, s = props, props.settings

        def named(resource):
            # `vault_jwt_auth_backend.ci-auth-backend`: readable, stable plan addresses (as in vault_config.py).
            resource.override_logical_id(f"{id_}-{resource.node.id}")
            return resource

        self.backend = named(jwt_auth_backend.JwtAuthBackend(
            self, "backend", path=AUTH_PATH, type="jwt", oidc_discovery_url=GITHUB_OIDC_ISSUER,
            bound_issuer=GITHUB_OIDC_ISSUER, description="GitHub Actions OIDC login of the deploy workflow"))
        self.policy_document = deploy_policy(p.managed)
        self.policy = named(policy.Policy(self, "policy", name=POLICY,
                                          policy=json.dumps(self.policy_document, sort_keys=True)))
        self.role = named(jwt_auth_backend_role.JwtAuthBackendRole(
            self, "role", backend=self.backend.path, role_name=ROLE, role_type="jwt",
            bound_audiences=[AUDIENCE], bound_subject=p.subject, bound_claims=p.bound_claims,
            bound_claims_type="string", user_claim="job_workflow_ref",
            token_policies=[self.policy.name], token_ttl=s.token_ttl, token_max_ttl=s.token_max_ttl,
            # service, not batch: the provider creates a child token, which batch tokens cannot.
            token_type="service",
            # Only the deploy policy: Vault's `default` policy (cubbyhole, response wrapping, identity lookups) is not
            # something a deploy needs; what it does need of it is listed in the deploy policy.
            token_no_default_policy=True))
        self.auth_path: str = AUTH_PATH
        self.role_name: str = ROLE
