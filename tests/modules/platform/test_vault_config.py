"""Vault's Airflow configuration: KV v2 mount, Kubernetes auth validated with Vault's own token, a read-only
policy, the role bound to every Airflow service account, the file audit device on the audit volume."""
from __future__ import annotations

import json

import cdktf
import pytest

from modules.platform import kubernetes as k8s
from modules.aws.identity import workloads
from modules.core.validation import ConfigError
from modules.platform.vault import AUDIT_LOG_FILE, vault_values
from modules.platform.vault_settings import VaultSettings
from modules.platform.vault_config import (IN_CLUSTER_API, VaultAirflowConfig, VaultAirflowConfigProps, airflow_service_accounts,
                                  read_policy)
from tests.conftest import only, synth

WRITE_CAPABILITIES = {"create", "update", "patch", "delete", "sudo", "list"}


def vault_stack() -> cdktf.TerraformStack:
    from cdktf_cdktf_provider_vault.provider import VaultProvider

    stack = cdktf.TerraformStack(cdktf.Testing.app(), "test")
    VaultProvider(stack, "vault", address="https://127.0.0.1:8200")
    return stack


def allows(policy: dict, path: str, capability: str) -> bool:
    """Vault's policy matching for the forms used here: exact paths and a trailing `*` prefix glob."""
    return any(capability in rule["capabilities"] and (path == pattern or (
        pattern.endswith("*") and path.startswith(pattern[:-1]))) for pattern, rule in policy["path"].items())


@pytest.fixture(scope="module")
def res() -> dict:
    stack = vault_stack()
    construct = VaultAirflowConfig(stack, "airflow", props=VaultAirflowConfigProps())
    assert construct.connection_path("kafka_default") == "airflow/connections/kafka_default"
    return synth(stack)["resource"]


def test_kv_version_2_mount_for_airflow_keeps_versions_and_is_never_destroyed_by_a_plan(res):
    address, kv = only(res, "vault_mount")
    assert (kv["path"], kv["type"], kv["options"]) == (k8s.VAULT_AIRFLOW_MOUNT, "kv", {"version": "2"})
    assert address == "airflow-kv" and kv["lifecycle"] == {"prevent_destroy": True}   # pinned: holds every secret
    _, kv_config = only(res, "vault_kv_secret_backend_v2")
    assert kv_config["max_versions"] == 10 and kv_config["mount"].startswith("${vault_mount.")


def test_kubernetes_auth_validates_tokens_with_vaults_own_service_account_and_the_pod_ca(res):
    _, backend = only(res, "vault_auth_backend")
    assert (backend["type"], backend["path"]) == ("kubernetes", k8s.VAULT_KUBERNETES_AUTH_PATH)
    _, config = only(res, "vault_kubernetes_auth_backend_config")
    assert config["kubernetes_host"] == IN_CLUSTER_API == "https://kubernetes.default.svc"
    assert config["disable_local_ca_jwt"] is False
    assert "token_reviewer_jwt" not in config and "kubernetes_ca_cert" not in config   # nothing secret in state
    assert config["backend"].startswith("${vault_auth_backend.")
    # ... which needs TokenReview rights for Vault's service account: the chart's auth-delegator binding
    assert vault_values(region="eu-west-1", unseal_key_arn="arn:aws:kms:eu-west-1:123456789012:key/x",
                        settings=VaultSettings(replicas=1))["server"]["authDelegator"]["enabled"] is True


def test_role_binds_every_airflow_service_account_in_the_airflow_namespace_with_short_tokens(res):
    _, role = only(res, "vault_kubernetes_auth_backend_role")
    expected = {sa for wid, (ns, sas) in workloads().items() if wid.startswith("airflow-") for sa in sas}
    assert "airflow-worker-kubernetes" in expected            # KubernetesExecutor task pods
    assert set(role["bound_service_account_names"]) == expected
    assert len(role["bound_service_account_names"]) == len(expected) == 6
    assert role["bound_service_account_namespaces"] == [k8s.AIRFLOW_NAMESPACE]
    assert (role["role_name"], role["token_ttl"], role["token_max_ttl"]) == (k8s.VAULT_AIRFLOW_ROLE, 900, 3600)
    (policy_ref,) = role["token_policies"]
    assert policy_ref == f"${{vault_policy.{only(res, 'vault_policy')[0]}.name}}"


def test_policy_only_reads_airflow_connections_variables_and_config(res):
    _, pol = only(res, "vault_policy")
    document = json.loads(pol["policy"])
    assert set(document["path"]) == {"airflow/data/connections/*", "airflow/data/variables/*",
                                     "airflow/data/config/*"}
    for rule in document["path"].values():
        assert rule["capabilities"] == ["read"] and not WRITE_CAPABILITIES & set(rule["capabilities"])
    assert allows(document, "airflow/data/connections/kafka_default", "read")
    assert not allows(document, "airflow/metadata/connections/kafka_default", "read")
    assert not allows(document, "airflow/data/connections/kafka_default", "update")
    assert not allows(document, "secret/data/other", "read")


def test_audit_device_writes_json_to_the_audit_volume(res):
    _, device = only(res, "vault_audit")
    assert (device["type"], device["path"]) == ("file", "file")
    assert device["options"] == {"file_path": AUDIT_LOG_FILE, "format": "json"}
    # audit is enabled before the mount and the auth method, so their use is recorded from the start
    assert any(d.startswith("vault_audit.") for d in only(res, "vault_mount")[1]["depends_on"])


def test_airflow_service_accounts_follow_the_release_name():
    assert airflow_service_accounts(release="af") == tuple(sorted(
        f"af-{s}" for s in ("scheduler", "dag-processor", "triggerer", "api-server", "worker", "worker-kubernetes")))


def test_read_policy_is_built_from_the_shared_paths():
    assert read_policy("kv", {"connections_path": "c"}) == {"path": {"kv/data/c/*": {"capabilities": ["read"]}}}


@pytest.mark.parametrize("field,value,message", [
    ("service_accounts", (), "is empty"),
    ("service_accounts", ("airflow-worker", "airflow-worker"), "repeats a name"),
    ("mount_path", "airflow/nested", "is not a simple Vault path segment"),
    ("secret_paths", {"connections_path": "connections"}, "does not name the three"),
    ("audit_file_path", "audit.log", "is not an absolute path"),
])
def test_props_refuse_bad_input(field, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        VaultAirflowConfigProps(**{field: value})
    assert err.value.field == field


@pytest.mark.parametrize("change,field,message", [
    ({"airflow_token_ttl": 30}, "vault.airflow_token_ttl", "is not a token lifetime between 60 and 86400 seconds"),
    ({"airflow_token_max_ttl": 90000}, "vault.airflow_token_max_ttl",
     "is not a token lifetime between 60 and 86400 seconds"),
    ({"airflow_token_ttl": 7200}, "vault.airflow_token_ttl", "exceeds airflow_token_max_ttl=3600"),
    ({"kv_max_versions": 0}, "vault.kv_max_versions", "is not between 1 and 100"),
])
def test_settings_refuse_bad_token_lifetimes_and_versions(change, field, message):
    with pytest.raises(ConfigError, match=message) as err:
        VaultAirflowConfigProps(settings=VaultSettings(**change))
    assert err.value.field == field


def test_props_take_the_settings_whole():
    with pytest.raises(ConfigError, match="is not VaultSettings"):
        VaultAirflowConfigProps(settings={"kv_max_versions": 10})
