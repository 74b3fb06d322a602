"""The deploy workflow's Vault login (JWT auth against GitHub's OIDC tokens) and its policy: asserted on the
synthesized JSON, and the policy and role evaluated by a real OpenBao (ACLs, JWT bound claims and audience)."""
from __future__ import annotations

import base64
import json
import time

import cdktf
import pytest

import environments
from modules.core.validation import ConfigError
from modules.platform.vault_ci_auth import (AUTH_PATH, COVERED_RESOURCE_TYPES, GITHUB_OIDC_ISSUER, POLICY, ROLE,
                                            ManagedVault, VaultCiAuth, VaultCiAuthProps, deploy_policy)
from modules.platform.vault_settings import VaultCiAuthSettings
from tests.conftest import only, synth

REPO = "example-org/airflow-platform"
MANAGED = ManagedVault(kv_mounts=("airflow",), kubernetes_auth=("kubernetes",), audit_devices=("file",),
                       policies=("airflow-read",))
CLAIMS = {"repository": REPO, "environment": "prod", "ref": "refs/heads/main",
          "job_workflow_ref": f"{REPO}/.github/workflows/deploy.yml@refs/heads/main"}


def vault_stack() -> cdktf.TerraformStack:
    from cdktf_cdktf_provider_vault.provider import VaultProvider

    stack = cdktf.TerraformStack(cdktf.Testing.app(), "test")
    VaultProvider(stack, "vault", address="https://127.0.0.1:8200")
    return stack


@pytest.fixture(scope="module")
def res() -> dict:
    stack = vault_stack()
    VaultCiAuth(stack, "ci-auth", props=VaultCiAuthProps(repository=REPO, environment="prod", managed=MANAGED))
    return synth(stack)["resource"]


def test_jwt_method_trusts_only_githubs_oidc_issuer(res):
    _, backend = only(res, "vault_jwt_auth_backend")
    assert (backend["path"], backend["type"], backend["oidc_discovery_url"], backend["bound_issuer"]) == (
        AUTH_PATH, "jwt", GITHUB_OIDC_ISSUER, GITHUB_OIDC_ISSUER)
    assert "oidc_client_secret" not in backend and "jwt_validation_pubkeys" not in backend


def test_role_is_bound_to_repository_environment_deploy_workflow_on_main_and_audience(res):
    _, role = only(res, "vault_jwt_auth_backend_role")
    assert (role["role_name"], role["role_type"], role["user_claim"], role["bound_audiences"]) == (
        ROLE, "jwt", "job_workflow_ref", ["vault"])
    assert role["bound_claims"] == CLAIMS and role["bound_claims_type"] == "string"
    assert role["bound_subject"] == f"repo:{REPO}:environment:prod:job_workflow_ref:{REPO}/.github/workflows/deploy.yml@refs/heads/main"
    assert (role["token_ttl"], role["token_max_ttl"], role["token_type"]) == (900, 1800, "service")
    assert role["token_no_default_policy"] is True                # the deploy policy only, not Vault's `default`
    assert role["token_policies"] == ["${vault_policy.ci-auth-policy.name}"]


def test_policy_grants_the_managed_paths_and_only_reads_its_own_login_and_grant(res):
    _, policy = only(res, "vault_policy")
    document = json.loads(policy["policy"])
    assert policy["name"] == POLICY and document == deploy_policy(MANAGED)
    rules = {path: set(rule["capabilities"]) for path, rule in document["path"].items()}
    for own in (f"sys/auth/{AUTH_PATH}", f"auth/{AUTH_PATH}/config", f"auth/{AUTH_PATH}/role/{ROLE}",
                f"sys/policies/acl/{POLICY}"):
        assert rules[own] <= {"read", "sudo"}, own
    assert "delete" not in rules["sys/mounts/airflow"] | rules["sys/audit/file"] | rules["sys/auth/kubernetes"]
    assert not [p for p in rules if p.startswith(("airflow/data", "airflow/metadata", "sys/raw", "sys/seal",
                                                    "sys/rekey", "sys/generate-root", "sys/storage", "*"))]


def test_managed_vault_refuses_the_deploy_policy_itself_and_odd_paths():
    with pytest.raises(ConfigError, match=r"policies='vault-config-deploy' is not a policy the deploy token may write"):
        ManagedVault(policies=(POLICY,))
    with pytest.raises(ConfigError, match=r"kv_mounts='airflow/\*' is not a simple Vault path segment"):
        ManagedVault(kv_mounts=("airflow/*",))


@pytest.mark.parametrize("values,match", [
    (dict(ref="main"), r"vault.ci_auth.ref='main' is not a full Git ref"),
    (dict(workflow_file="deploy.yml"), r"vault.ci_auth.workflow_file='deploy.yml' is not a workflow file"),
    (dict(token_ttl=7200), r"vault.ci_auth.token_ttl=7200 is not a token lifetime between 60 and 3600"),
    (dict(token_ttl=1200, token_max_ttl=600), r"vault.ci_auth.token_ttl=1200 exceeds token_max_ttl=600"),
])
def test_ci_auth_settings_refuse_bad_values_in_one_line(values, match):
    with pytest.raises(ConfigError, match=match):
        VaultCiAuthSettings(**values)


@pytest.mark.parametrize("name", environments.NAMES)
def test_each_environments_vault_config_stack_binds_its_own_environment(stacks, name):
    res = stacks[f"airflow-{name}-vault-config"]["resource"]
    _, role = only(res, "vault_jwt_auth_backend_role")
    assert role["bound_claims"]["environment"] == name
    assert role["bound_subject"] == f"repo:{REPO}:environment:{name}:job_workflow_ref:{REPO}/.github/workflows/deploy.yml@refs/heads/main"


@pytest.mark.parametrize("name", environments.NAMES)
def test_deploy_policy_covers_every_vault_object_the_stack_manages(stacks, name):
    """A new Vault resource type in the stack needs its API paths in deploy_policy (and in COVERED_RESOURCE_TYPES)."""
    res = stacks[f"airflow-{name}-vault-config"]["resource"]
    assert set(res) <= COVERED_RESOURCE_TYPES, f"deploy_policy does not know {sorted(set(res) - COVERED_RESOURCE_TYPES)}"
    (policy,) = [p for p in res["vault_policy"].values() if p["name"] == POLICY]
    rules = json.loads(policy["policy"])["path"]
    for mount in res["vault_mount"].values():
        assert {"create", "update"} <= set(rules[f"sys/mounts/{mount['path']}"]["capabilities"])
    for auth in res["vault_auth_backend"].values():
        assert {"create", "update", "sudo"} <= set(rules[f"sys/auth/{auth['path']}"]["capabilities"])
    for device in res["vault_audit"].values():
        assert {"create", "update", "sudo"} <= set(rules[f"sys/audit/{device['path']}"]["capabilities"])
    for other in res["vault_policy"].values():
        if other["name"] != POLICY:
            assert {"create", "update"} <= set(rules[f"sys/policies/acl/{other['name']}"]["capabilities"])


# ---- a real OpenBao: the policy's ACLs and the role's claim checks -----------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(key, claims: dict) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "test"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64(signature)}"


@pytest.fixture(scope="module")
def bao(tmp_path_factory, res):
    """OpenBao over TLS on loopback with the synthesized role and policy. The method verifies tokens with a local key
    instead of GitHub's discovery document (no network here); issuer, audience and claims are checked the same way."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tools import local_services as ls

    workdir = tmp_path_factory.mktemp("vault-ci-auth")
    tls = ls.make_ca(workdir / "tls")
    service, root = ls.start_openbao(workdir, tls=tls, kv_mount=None, timeout=60)
    try:
        def call(method, path, token=root, body=None):
            return ls.openbao_request(service, method, f"/v1/{path}", tls=tls, token=token, body=body)

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        _, policy = only(res, "vault_policy")
        _, role = only(res, "vault_jwt_auth_backend_role")
        _, backend = only(res, "vault_jwt_auth_backend")
        setup = [("POST", f"sys/auth/{AUTH_PATH}", {"type": "jwt"}),
                 ("POST", f"auth/{AUTH_PATH}/config", {"jwt_validation_pubkeys": [public],
                                                       "bound_issuer": backend["bound_issuer"]}),
                 ("PUT", f"sys/policies/acl/{POLICY}", {"policy": policy["policy"]}),
                 ("POST", f"auth/{AUTH_PATH}/role/{ROLE}", {
                     **{k: role[k] for k in ("role_type", "bound_audiences", "bound_subject", "bound_claims",
                                             "bound_claims_type", "user_claim", "token_ttl", "token_max_ttl",
                                             "token_type", "token_no_default_policy")},
                     "token_policies": [POLICY]}),
                 ("POST", "sys/mounts/airflow", {"type": "kv", "options": {"version": "2"}}),
                 ("POST", "airflow/data/connections/db", {"data": {"conn_uri": "postgresql://u:p@h/db"}})]
        for method, path, body in setup:
            status, answer = call(method, path, body=body)
            assert status in (200, 204), (path, status, answer)
        yield call, key, tls.ca_cert.read_text()
    finally:
        service.stop()


def _claims(**overrides) -> dict:
    now = int(time.time())
    return {"iss": GITHUB_OIDC_ISSUER, "aud": "vault", "sub": f"repo:{REPO}:environment:prod:job_workflow_ref:{REPO}/.github/workflows/deploy.yml@refs/heads/main", "iat": now,
            "nbf": now - 5, "exp": now + 300, **CLAIMS, **overrides}


def _login(call, key, **overrides) -> tuple[int, dict]:
    return call("POST", f"auth/{AUTH_PATH}/login", token=None,
                body={"role": ROLE, "jwt": _jwt(key, _claims(**overrides))})


def test_openbao_logs_in_only_the_deploy_workflow_of_this_environment_with_audience_vault(bao):
    call, key, _ = bao
    status, answer = _login(call, key)
    assert status == 200, answer
    assert answer["auth"]["policies"] == [POLICY] and answer["auth"]["lease_duration"] == 900
    for overrides in (dict(aud="sts.amazonaws.com"), dict(environment="dev", sub=f"repo:{REPO}:environment:dev:job_workflow_ref:{REPO}/.github/workflows/deploy.yml@refs/heads/main"),
                      dict(repository="someone/fork"), dict(ref="refs/heads/feature"),
                      dict(job_workflow_ref=f"{REPO}/.github/workflows/plan.yml@refs/heads/main"),
                      dict(sub=f"repo:{REPO}:pull_request"), dict(iss="https://attacker.example")):
        status, answer = _login(call, key, **overrides)
        assert status in (400, 403), (overrides, status, answer)


def test_openbao_lets_the_deploy_token_apply_the_stack_but_not_read_secrets_or_change_its_own_grant(bao):
    call, key, ca = bao
    status, answer = _login(call, key)
    token = answer["auth"]["client_token"]

    def caps(path: str) -> set[str]:
        # Asked with the root token: the deploy token lacks `default`, which grants sys/capabilities-self.
        status, answer = call("POST", "sys/capabilities", body={"token": token, "paths": [path]})
        assert status == 200, answer
        return set(answer[path])

    # What the Vault provider does on apply, for real: its child token, then the objects themselves.
    status, child = call("POST", "auth/token/create", token=token, body={"ttl": "1200s"})
    assert status == 200, child
    apply = [("POST", "sys/auth/kubernetes", {"type": "kubernetes"}),
             # (Vault in the cluster reads the CA from its pod; this one has none, hence a CA here)
             ("POST", "auth/kubernetes/config", {"kubernetes_host": "https://kubernetes.default.svc",
                                                 "kubernetes_ca_cert": ca}),
             ("POST", "auth/kubernetes/role/airflow", {"bound_service_account_names": ["airflow-worker"],
                                                       "bound_service_account_namespaces": ["airflow"],
                                                       "token_policies": ["airflow-read"]}),
             ("PUT", "sys/policies/acl/airflow-read", {"policy": 'path "airflow/data/connections/*" '
                                                                 '{ capabilities = ["read"] }'}),
             ("POST", "sys/mounts/airflow/tune", {"description": "Airflow"}),
             ("POST", "airflow/config", {"max_versions": 10}),
             ("GET", "sys/mounts", None), ("GET", "sys/auth", None), ("GET", "sys/audit", None),
             ("GET", f"auth/{AUTH_PATH}/role/{ROLE}", None), ("GET", f"sys/policies/acl/{POLICY}", None)]
    for method, path, body in apply:
        status, answer = call(method, path, token=child["auth"]["client_token"], body=body)
        assert status in (200, 204), (method, path, status, answer)
    assert {"create", "update", "sudo"} <= caps("sys/audit/file")
    # Refused: secrets, destroying the data or the audit trail, and widening its own login or grant.
    for method, path, body in [("GET", "airflow/data/connections/db", None),
                               ("LIST", "airflow/metadata/connections", None),
                               ("DELETE", "sys/mounts/airflow", None), ("DELETE", "sys/auth/kubernetes", None),
                               ("DELETE", "sys/audit/file", None),
                               ("PUT", f"sys/policies/acl/{POLICY}", {"policy": 'path "*" { capabilities = ["sudo"] }'}),
                               ("POST", f"auth/{AUTH_PATH}/role/{ROLE}", {"bound_claims": {}}),
                               ("POST", f"auth/{AUTH_PATH}/config", {"bound_issuer": "https://attacker.example"}),
                               ("DELETE", f"sys/auth/{AUTH_PATH}", None), ("POST", "sys/mounts/other", {"type": "kv"}),
                               ("GET", "sys/raw/core/keyring", None), ("POST", "sys/rotate", {}),
                               ("POST", "auth/token/create-orphan", {})]:
        status, answer = call(method, path, token=token, body=body)
        assert status == 403, (method, path, status, answer)
