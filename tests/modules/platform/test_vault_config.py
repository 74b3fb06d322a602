"""Vault's Airflow configuration: KV v2 mount, Kubernetes auth validated with Vault's own token, one read-only policy
and one role per Airflow component (task pods: DAG paths only), the Vault audience on every role, audit devices on
stdout (shipped off the pod) and on the audit volume."""
from __future__ import annotations

import json

import cdktf
import pytest

from modules.platform import kubernetes as k8s
from modules.aws.identity import workloads
from modules.core.validation import ConfigError
from modules.platform.vault import AUDIT_LOG_FILE, vault_values
from modules.platform.vault_settings import VaultSettings
from modules.platform.vault_config import (COMPONENT_PATHS, IN_CLUSTER_API, VaultAirflowConfig, VaultAirflowConfigProps,
                                          airflow_service_accounts, read_policy)
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


def roles_by_name(res) -> dict[str, dict]:
    return {role["role_name"]: role for role in res["vault_kubernetes_auth_backend_role"].values()}


def policy_of(res, role: dict) -> dict:
    """The policy document a role's tokens get: its one token policy, joined through the reference."""
    (ref,) = role["token_policies"]
    address = ref.removeprefix("${vault_policy.").removesuffix(".name}")
    return json.loads(res["vault_policy"][address]["policy"])


def test_one_role_per_airflow_component_bound_to_that_components_service_account_only(res):
    roles = roles_by_name(res)
    expected = {wid: sa for wid, (_, (sa,)) in workloads().items() if wid.startswith("airflow-")}
    assert expected["airflow-task"] == "airflow-worker-kubernetes"          # KubernetesExecutor task pods
    assert set(roles) == set(k8s.VAULT_AIRFLOW_ROLES.values()) == set(expected)
    for wid, role in roles.items():
        assert role["bound_service_account_names"] == [expected[wid]], wid
        assert role["bound_service_account_namespaces"] == [k8s.AIRFLOW_NAMESPACE]
        assert (role["token_ttl"], role["token_max_ttl"], role["token_type"]) == (900, 3600, "service")
        assert role["token_no_default_policy"] is True          # the role's policy and nothing else
    # each role has a policy of its own, named like it
    refs = [role["token_policies"][0] for role in roles.values()]
    assert len(set(refs)) == len(roles) == len(res["vault_policy"]) == 6
    assert {p["name"] for p in res["vault_policy"].values()} == set(roles)


def test_every_role_requires_the_vault_audience(res):
    assert {role["audience"] for role in res["vault_kubernetes_auth_backend_role"].values()} == {
        k8s.VAULT_TOKEN_AUDIENCE}
    # not the API server's: a token the Kubernetes API accepts does not log in to Vault
    assert k8s.VAULT_TOKEN_AUDIENCE not in ("https://kubernetes.default.svc", "kubernetes.default.svc", "")


def test_task_pods_and_dag_code_read_only_connections_and_variables(res):
    roles = roles_by_name(res)
    for wid in ("airflow-task", "airflow-worker", "airflow-dag-processor", "airflow-triggerer"):
        document = policy_of(res, roles[wid])
        assert set(document["path"]) == {"airflow/data/connections/*", "airflow/data/variables/*"}, wid
        assert allows(document, "airflow/data/connections/kafka_default", "read")
        assert allows(document, "airflow/data/variables/some_variable", "read")
        assert not allows(document, "airflow/data/config/sql_alchemy_conn", "read"), wid   # component config
        assert not allows(document, "airflow/metadata/connections/kafka_default", "list")


def test_components_read_what_they_need_and_nothing_writes(res):
    roles = roles_by_name(res)
    assert set(policy_of(res, roles["airflow-scheduler"])["path"]) == {"airflow/data/config/*"}
    assert set(policy_of(res, roles["airflow-api-server"])["path"]) == {
        "airflow/data/connections/*", "airflow/data/variables/*", "airflow/data/config/*"}
    for role in roles.values():
        for rule in policy_of(res, role)["path"].values():
            assert rule["capabilities"] == ["read"] and not WRITE_CAPABILITIES & set(rule["capabilities"])
        assert not allows(policy_of(res, role), "secret/data/other", "read")
        assert not allows(policy_of(res, role), "airflow/data/connections/x", "update")


def test_audit_goes_to_stdout_for_the_log_agent_and_to_the_audit_volume(res):
    devices = {d["path"]: d for d in res["vault_audit"].values()}
    assert set(devices) == {"stdout", "file"}
    assert (devices["stdout"]["type"], devices["stdout"]["options"]) == ("file", {"file_path": "stdout", "format": "json"})
    assert (devices["file"]["type"], devices["file"]["options"]) == ("file", {"file_path": AUDIT_LOG_FILE, "format": "json"})
    # audit is enabled before the mount and the auth method, so their use is recorded from the start
    for rtype in ("vault_mount", "vault_auth_backend"):
        assert {f"vault_audit.{a}" for a in res["vault_audit"]} <= set(only(res, rtype)[1]["depends_on"])


def test_kubernetes_role_adds_a_role_with_its_own_policy_for_another_namespace():
    stack = vault_stack()
    config = VaultAirflowConfig(stack, "airflow", props=VaultAirflowConfigProps())
    config.kubernetes_role("snapshot", role_name="vault-snapshot", namespace="vault", service_account="vault-snapshot",
                           policy_document={"path": {"sys/storage/raft/snapshot": {"capabilities": ["read"]}}},
                           token_ttl=300, token_max_ttl=300)
    res = synth(stack)["resource"]
    role = roles_by_name(res)["vault-snapshot"]
    assert (role["bound_service_account_names"], role["bound_service_account_namespaces"], role["audience"]) == (
        ["vault-snapshot"], ["vault"], k8s.VAULT_TOKEN_AUDIENCE)
    assert policy_of(res, role) == {"path": {"sys/storage/raft/snapshot": {"capabilities": ["read"]}}}


def test_airflow_service_accounts_follow_the_release_name():
    assert airflow_service_accounts(release="af") == {
        wid: f"af-{s}" for wid, s in (("airflow-api-server", "api-server"), ("airflow-dag-processor", "dag-processor"),
                                      ("airflow-scheduler", "scheduler"), ("airflow-task", "worker-kubernetes"),
                                      ("airflow-triggerer", "triggerer"), ("airflow-worker", "worker"))}
    assert set(airflow_service_accounts()) == set(COMPONENT_PATHS)


def test_read_policy_is_built_from_the_shared_paths():
    assert read_policy("kv", {"connections_path": "c"}) == {"path": {"kv/data/c/*": {"capabilities": ["read"]}}}
    assert read_policy("kv", {"connections_path": "c", "config_path": "x"}, ("config_path",)) == {
        "path": {"kv/data/x/*": {"capabilities": ["read"]}}}


@pytest.mark.parametrize("field,value,message", [
    ("service_accounts", {}, "does not name one distinct, valid service account per Airflow component"),
    ("service_accounts", {**airflow_service_accounts(), "airflow-task": "airflow-worker"},
     "does not name one distinct"),
    ("roles", {**k8s.VAULT_AIRFLOW_ROLES, "airflow-task": "airflow-worker"}, "does not give each Airflow component"),
    ("roles", {"airflow-worker": "airflow-worker"}, "does not give each Airflow component its own role name"),
    ("audience", "", "is not a token audience"),
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
