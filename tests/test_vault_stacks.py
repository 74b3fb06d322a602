"""Vault in every environment's synthesized stacks: the release in `platform` (replicas per environment, raft on
the encrypted StorageClass, KMS unseal with infra's key, TLS, internal only, schema-valid values) and the
`vault-config` stack (mount, auth, role, read-only policy, audit, backend key, provider without a token), plus the
policy checked against the requests real Airflow's VaultBackend makes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import environments
from modules.platform import kubernetes as k8s
from modules.aws.identity import workloads
from modules.platform.vault import TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE
from modules.platform import vault_ci_auth
from tests.conftest import looks_like_secret, strings
from tests.harness import run_in_airflow
from tests.modules.platform.test_vault import schema_errors, unknown_keys
from tests.modules.platform.test_vault_config import WRITE_CAPABILITIES, allows

import yaml

EXPECTED_REPLICAS = {"dev": 1, "staging": 3, "prod": 3}
CHART_VALUES = Path(__file__).resolve().parent / "data" / "charts" / "vault" / "values.yaml"
AIRFLOW_SERVICE_ACCOUNTS = {sa for wid, (_, sas) in workloads().items() if wid.startswith("airflow-") for sa in sas}


def vault_release(stacks, name):
    return stacks[f"airflow-{name}-platform"]["resource"]["helm_release"]["vault"]


def values_of(release) -> dict:
    (raw,) = release["values"]
    return json.loads(raw)


def vault_config_doc(stacks, name):
    return stacks[f"airflow-{name}-vault-config"]


def test_every_environment_has_a_vault_config_stack(stacks):
    assert {n for n in stacks if n.endswith("-vault-config")} == {f"airflow-{e}-vault-config" for e in environments.NAMES}


@pytest.mark.parametrize("name", environments.NAMES)
def test_vault_release_is_the_pinned_chart_with_replicas_per_environment(stacks, name):
    rel = vault_release(stacks, name)
    assert (rel["chart"], rel["version"], rel["repository"], rel["namespace"]) == (
        "vault", "0.34.1", "https://helm.releases.hashicorp.com", k8s.VAULT_NAMESPACE)
    values = values_of(rel)
    replicas = EXPECTED_REPLICAS[name]
    assert values["server"]["ha"]["replicas"] == replicas == environments.load(name).vault.replicas
    config = json.loads(values["server"]["ha"]["raft"]["config"])
    assert len(config["storage"]["raft"]["retry_join"]) == replicas
    assert values["server"]["ha"]["raft"]["enabled"] is True
    assert values["server"]["dataStorage"]["storageClass"] == values["server"]["auditStorage"]["storageClass"] == \
        k8s.VAULT_STORAGE_CLASS
    assert "helm_release.platform-bootstrap" in rel["depends_on"]


@pytest.mark.parametrize("name", environments.NAMES)
def test_vault_unseals_with_the_infra_stacks_key_over_remote_state(stacks, name):
    doc = stacks[f"airflow-{name}-platform"]
    seal = json.loads(values_of(vault_release(stacks, name))["server"]["ha"]["raft"]["config"])["seal"]["awskms"]
    assert seal["region"] == "eu-west-1"
    assert seal["kms_key_id"].startswith("${data.terraform_remote_state.") and "vault-unseal-key" in seal["kms_key_id"]
    infra_outputs = stacks[f"airflow-{name}-infra"]["output"]
    output = seal["kms_key_id"].split(".outputs.")[1].rstrip("}")
    assert output in infra_outputs and "vault-unseal-key" in infra_outputs[output]["value"]
    assert "terraform_remote_state" in doc["data"]


@pytest.mark.parametrize("name", environments.NAMES)
def test_vault_tls_certificate_and_listener(stacks, name):
    values = values_of(vault_release(stacks, name))
    tcp = json.loads(values["server"]["ha"]["raft"]["config"])["listener"][0]["tcp"]
    assert (tcp["tls_cert_file"], tcp["tls_key_file"], tcp["tls_client_ca_file"], tcp["tls_min_version"]) == (
        TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE, "tls12")
    assert values["global"]["tlsDisable"] is False
    (raw,) = stacks[f"airflow-{name}-platform"]["resource"]["helm_release"]["platform-bootstrap"]["values"]
    (cert,) = [o for o in json.loads(raw)["objects"]
               if o["kind"] == "Certificate" and o["metadata"]["name"] == k8s.VAULT_TLS_SECRET]
    host = k8s.VAULT_ADDRESS.split("//")[1].split(":")[0]
    assert host in cert["spec"]["dnsNames"] and cert["metadata"]["namespace"] == k8s.VAULT_NAMESPACE


@pytest.mark.parametrize("name", environments.NAMES)
def test_vault_is_internal_only_and_values_are_schema_valid(stacks, name):
    doc = stacks[f"airflow-{name}-platform"]
    values = values_of(vault_release(stacks, name))
    assert "LoadBalancer" not in json.dumps(values) and values["ui"]["serviceType"] == "ClusterIP"
    assert values["server"]["ingress"]["enabled"] is False
    assert not any("vault" in n for n in doc["resource"].get("aws_lb", {}))
    assert schema_errors(values) == []
    assert unknown_keys(values, yaml.safe_load(CHART_VALUES.read_text())) == []


@pytest.mark.parametrize("name", environments.NAMES)
def test_vault_config_stack_provider_backend_and_resources(stacks, name):
    doc = vault_config_doc(stacks, name)
    assert set(doc["terraform"]["required_providers"]) == {"vault"}
    assert doc["terraform"]["required_providers"]["vault"]["version"] == "5.6.0"
    backend = doc["terraform"]["backend"]["s3"]
    assert (backend["key"], backend["encrypt"], backend["use_lockfile"]) == (f"{name}/vault-config.tfstate", True, True)
    (provider,) = doc["provider"]["vault"]
    assert provider["address"] == "https://127.0.0.1:8200" and provider["skip_tls_verify"] is False
    assert provider["ca_cert_file"] == f'${{pathexpand("~/.vault/airflow-{name}-ca.crt")}}'
    assert provider["tls_server_name"] == "vault-active.vault.svc"
    assert "token" not in provider                    # VAULT_TOKEN from the environment at apply time
    res = doc["resource"]
    (mount,) = res["vault_mount"].values()
    assert (mount["path"], mount["type"], mount["options"]) == ("airflow", "kv", {"version": "2"})
    (auth,) = res["vault_auth_backend"].values()
    assert (auth["type"], auth["path"]) == ("kubernetes", k8s.VAULT_KUBERNETES_AUTH_PATH)
    (auth_config,) = res["vault_kubernetes_auth_backend_config"].values()
    assert auth_config["kubernetes_host"] == "https://kubernetes.default.svc"
    roles = {r["role_name"]: r for r in res["vault_kubernetes_auth_backend_role"].values()}
    airflow_roles = [r for r in roles.values() if r["bound_service_account_namespaces"] == [k8s.AIRFLOW_NAMESPACE]]
    assert sorted(sa for r in airflow_roles for sa in r["bound_service_account_names"]) == sorted(
        AIRFLOW_SERVICE_ACCOUNTS)                          # one role per service account, each in one role
    assert all(r["token_ttl"] <= 900 for r in airflow_roles)
    snapshot = roles[k8s.VAULT_SNAPSHOT_ROLE]
    assert (snapshot["bound_service_account_names"], snapshot["bound_service_account_namespaces"]) == (
        ["vault-snapshot"], [k8s.VAULT_NAMESPACE])
    assert len(roles) == 7 and {r["audience"] for r in roles.values()} == {k8s.VAULT_TOKEN_AUDIENCE}
    for policy in res["vault_policy"].values():
        if policy["name"] == vault_ci_auth.POLICY:      # the deploy workflow's: it writes what the stack manages
            continue
        for rule in json.loads(policy["policy"])["path"].values():
            assert not WRITE_CAPABILITIES & set(rule["capabilities"])
    (snapshot_policy,) = [p for p in res["vault_policy"].values() if p["name"] == k8s.VAULT_SNAPSHOT_ROLE]
    assert json.loads(snapshot_policy["policy"]) == {"path": {"sys/storage/raft/snapshot": {"capabilities": ["read"]}}}
    audits = {a["path"]: a for a in res["vault_audit"].values()}
    assert audits["stdout"]["options"]["file_path"] == "stdout"
    assert audits["file"]["type"] == "file" and audits["file"]["options"]["file_path"].startswith(
        values_of(vault_release(stacks, name))["server"]["auditStorage"]["mountPath"] + "/")


def test_vault_config_is_not_an_aws_only_stack(stacks):
    for name in environments.NAMES:
        assert "aws" not in vault_config_doc(stacks, name)["terraform"]["required_providers"]


def test_policy_allows_exactly_the_requests_real_airflow_vault_backend_makes(stacks):
    """VaultBackend (apache-airflow-providers-hashicorp + hvac, in .venv-airflow) with the shared contract's
    backend_kwargs logs in at auth/<path>/login with the role and then only GETs (reads) KV v2 data/ paths,
    every one of which the synthesized policy allows."""
    kwargs = {"auth_type": "kubernetes", "kubernetes_role": k8s.VAULT_TASK_ROLE,
              "auth_mount_point": k8s.VAULT_KUBERNETES_AUTH_PATH, "mount_point": k8s.VAULT_AIRFLOW_MOUNT,
              "kv_engine_version": 2, **k8s.VAULT_AIRFLOW_PATHS, "url": k8s.VAULT_ADDRESS,
              "verify": k8s.AIRFLOW_PLATFORM_CA_FILE}
    result = run_in_airflow(Path(__file__).parent / "airflow_checks" / "vault_requests.py", json.dumps(kwargs))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    login, *reads = report["requests"]
    assert (login["method"], login["path"], login["body"]["role"]) == (
        "POST", f"/v1/auth/{k8s.VAULT_KUBERNETES_AUTH_PATH}/login", k8s.VAULT_TASK_ROLE)
    assert [r["path"] for r in reads] == ["/v1/airflow/data/connections/kafka_default",
                                          "/v1/airflow/data/variables/some_variable",
                                          "/v1/airflow/data/config/sql_alchemy_conn"]
    assert report["results"]["connection"] == "kafka://broker.example:9098"
    assert all(request["method"] == "GET" for request in reads)
    connection, variable, config = (request["path"].removeprefix("/v1/") for request in reads)
    for name in environments.NAMES:
        documents = {p["name"]: json.loads(p["policy"]) for p in vault_config_doc(stacks, name)["resource"]["vault_policy"].values()}
        # The API server reads all three; task pods (and other DAG code) connections and variables, never config.
        assert all(allows(documents["airflow-api-server"], path, "read") for path in (connection, variable, config))
        assert allows(documents["airflow-task"], connection, "read") and allows(documents["airflow-task"], variable, "read")
        assert not allows(documents["airflow-task"], config, "read")
        assert allows(documents["airflow-scheduler"], config, "read")


@pytest.mark.parametrize("name", environments.NAMES)
def test_no_literal_secret_in_the_vault_config_stack_or_the_vault_values(stacks, name):
    found = [s for s in strings(vault_config_doc(stacks, name)) if looks_like_secret(s)]
    found += [s for s in strings(values_of(vault_release(stacks, name))) if looks_like_secret(s)]
    assert found == []
    assert looks_like_secret("Zq4xR8pL2vN7")          # the scan does bite


@pytest.mark.parametrize("component,keys", [("airflow-scheduler", ("scheduler",)), ("airflow-triggerer", ("triggerer",)),
                                            ("airflow-task", ("workers", "kubernetes"))])
def test_real_airflow_logs_in_with_each_components_role_and_vault_token(stacks, component, keys):
    """The synthesized [secrets] backend_kwargs plus a component's env, given to real Airflow: both the server
    processes and the task / DAG-parsing / trigger processes (worker mode) build VaultBackend with that component's
    role and the projected Vault token, so no pod presents another component's role."""
    values = values_of(stacks["airflow-dev-platform"]["resource"]["helm_release"]["airflow"])
    pod = values
    for key in keys:
        pod = pod[key]
    result = run_in_airflow(Path(__file__).parent / "airflow_checks" / "vault_role_env.py",
                            values["config"]["secrets"]["backend_kwargs"], json.dumps(pod["env"]))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    for mode in ("server", "worker"):
        assert report[mode] == {"class": "VaultBackend", "role": k8s.VAULT_AIRFLOW_ROLES[component],
                                "jwt_path": k8s.VAULT_TOKEN_FILE, "auth_type": "kubernetes"}


@pytest.mark.parametrize("name", environments.NAMES)
def test_vault_volumes_and_snapshots_use_the_infra_stacks_vault_data_key_and_bucket(stacks, name):
    platform, infra = stacks[f"airflow-{name}-platform"], stacks[f"airflow-{name}-infra"]
    (raw,) = platform["resource"]["helm_release"]["platform-bootstrap"]["values"]
    objects = json.loads(raw)["objects"]
    (storage_class,) = [o for o in objects if o["kind"] == "StorageClass" and o["metadata"]["name"] == k8s.VAULT_STORAGE_CLASS]
    (cronjob,) = [o for o in objects if o["kind"] == "CronJob"]
    (upload,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    bucket = {e["name"]: e["value"] for e in upload["env"]}["SNAPSHOT_BUCKET"]

    def infra_value(reference: str) -> str:
        output = reference.split(".outputs.")[1].rstrip("}")
        return infra["output"][output]["value"]

    (key_address,) = [a for a in infra["resource"]["aws_kms_key"] if a.startswith("vault-storage_data-key")]
    assert infra_value(storage_class["parameters"]["kmsKeyId"]) == f"${{aws_kms_key.{key_address}.arn}}"
    (bucket_address,) = [a for a, b in infra["resource"]["aws_s3_bucket"].items() if b["bucket"].endswith("-vault-snapshots")]
    assert infra_value(bucket) == f"${{aws_s3_bucket.{bucket_address}.bucket}}"
    assert cronjob["spec"]["schedule"] == environments.load(name).vault.snapshot_schedule


@pytest.fixture(scope="module")
def openbao(tmp_path_factory):
    from tools import local_services as ls

    workdir = tmp_path_factory.mktemp("vault-policies")
    tls = ls.make_ca(workdir / "tls")
    service, root = ls.start_openbao(workdir, tls=tls, kv_mount=None)
    try:
        yield service, tls, root
    finally:
        service.stop()


def test_synthesized_policies_hold_on_a_real_server(stacks, openbao):
    """OpenBao (Vault's API) with the dev vault-config stack's mount and policies, one token per policy (nothing
    else, no default policy): the task pods' token reads connections and variables but not a component's config;
    the scheduler's reads config only; the snapshot token reads no secret and cannot restore a snapshot."""
    from tools import local_services as ls

    service, tls, root = openbao
    res = vault_config_doc(stacks, "dev")["resource"]

    def call(method: str, path: str, token: str = root, body=None) -> tuple[int, dict]:
        return ls.openbao_request(service, method, f"/v1/{path}", tls=tls, token=token, body=body)

    (mount,) = res["vault_mount"].values()
    assert call("POST", f"sys/mounts/{mount['path']}", body={"type": mount["type"], "options": mount["options"]})[0] < 300
    paths = {"connections": "airflow/data/connections/kafka_default", "variables": "airflow/data/variables/greeting",
             "config": "airflow/data/config/sql_alchemy_conn"}
    for path in paths.values():
        assert call("POST", path, body={"data": {"value": "x"}})[0] < 300
    tokens = {}
    for policy in res["vault_policy"].values():
        assert call("PUT", f"sys/policies/acl/{policy['name']}", body={"policy": policy["policy"]})[0] < 300
        status, created = call("POST", "auth/token/create", body={"policies": [policy["name"]],
                                                                  "no_default_policy": True, "ttl": "10m"})
        assert status < 300
        tokens[policy["name"]] = created["auth"]["client_token"]

    def readable(role: str) -> set[str]:
        return {kind for kind, path in paths.items() if call("GET", path, tokens[role])[0] == 200}

    assert readable("airflow-task") == readable("airflow-worker") == readable("airflow-dag-processor") == \
        readable("airflow-triggerer") == {"connections", "variables"}
    assert call("GET", paths["config"], tokens["airflow-task"])[0] == 403
    assert readable("airflow-scheduler") == {"config"}
    assert readable("airflow-api-server") == {"connections", "variables", "config"}
    assert readable(k8s.VAULT_SNAPSHOT_ROLE) == set()
    for role, token in tokens.items():     # nothing writes, nothing lists
        assert call("POST", paths["connections"], token, body={"data": {"value": "y"}})[0] == 403, role
        assert call("LIST", "airflow/metadata/connections", token)[0] == 403, role
    # the snapshot token may take a snapshot (the ACL lets it through; in-memory storage then has no raft to
    # snapshot) but not restore one
    assert call("GET", "sys/storage/raft/snapshot", tokens[k8s.VAULT_SNAPSHOT_ROLE])[0] != 403
    assert call("GET", "sys/storage/raft/snapshot", tokens["airflow-task"])[0] == 403
    assert call("POST", "sys/storage/raft/snapshot", tokens[k8s.VAULT_SNAPSHOT_ROLE], body={})[0] == 403
