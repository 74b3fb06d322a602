"""The Vault Helm release: pinned chart, HA raft on the encrypted StorageClass, KMS auto-unseal through Pod
Identity, TLS listener with a cert-manager certificate in the bootstrap chart, internal-only, metrics, audit volume."""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import cdktf
import jsonschema
import pytest
import yaml

from modules.platform import kubernetes as k8s
from modules.aws.identity import WORKLOADS
from modules.platform.local_chart import LocalChart, LocalChartProps
from modules.core.validation import ConfigError
from modules.platform.vault import (AUDIT_LOG_FILE, TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, VAULT_IMAGE, Vault, VaultProps,
                           VaultSettings, server_config, vault_values)
from tests.conftest import new_stack, synth
from tests.harness import helm_merge

CHART_DIR = Path(__file__).resolve().parents[2] / "data" / "charts" / "vault"
KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0b6f0a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
DATA_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
PROPS = dict(region="eu-west-1", cluster_name="af-test", unseal_key_arn=KEY_ARN, volume_kms_key_arn=DATA_KEY_ARN)
# Keys the chart reads that its values.yaml documents only in a comment (`#type: ClusterIP`).
COMMENTED_KEYS = {"server.service.type"}




def schema_errors(values: dict) -> list[str]:
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(helm_merge(defaults, values))]


def unknown_keys(values: dict, defaults: dict, prefix: str = "") -> list[str]:
    """Keys set that the chart's values.yaml does not define; free-form maps ({} by default) are not descended."""
    unknown = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in defaults:
            if path not in COMMENTED_KEYS:
                unknown.append(path)
        elif isinstance(value, dict) and isinstance(defaults[key], dict) and defaults[key]:
            unknown += unknown_keys(value, defaults[key], f"{path}.")
    return unknown


def values_for(replicas: int) -> dict:
    return vault_values(region="eu-west-1", unseal_key_arn=KEY_ARN, settings=VaultSettings(replicas=replicas))


def config_of(values: dict) -> dict:
    return json.loads(values["server"]["ha"]["raft"]["config"])


def platform_stack():
    from cdktf_cdktf_provider_helm.provider import HelmProvider

    stack = new_stack()
    HelmProvider(stack, "helm")
    bootstrap = LocalChart(stack, "platform-bootstrap", props=LocalChartProps(chart="platform-glue", namespace="kube-system"))
    return stack, bootstrap


@pytest.fixture(scope="module")
def synthesized() -> dict:
    stack, bootstrap = platform_stack()
    Vault(stack, "vault", bootstrap=bootstrap, props=VaultProps(**PROPS, settings=VaultSettings(replicas=3)))
    return synth(stack)["resource"]["helm_release"]


def test_release_is_the_pinned_chart_installed_after_the_bootstrap_chart_without_waiting(synthesized):
    rel = synthesized["vault"]
    assert (rel["chart"], rel["version"], rel["repository"], rel["name"], rel["namespace"]) == (
        "vault", "0.34.1", "https://helm.releases.hashicorp.com", k8s.VAULT_RELEASE, k8s.VAULT_NAMESPACE)
    assert rel["depends_on"] == ["helm_release.platform-bootstrap"]
    # Sealed pods are unready until `vault operator init`: an atomic/waiting install would roll itself back.
    assert (rel["atomic"], rel["wait"]) == (False, False)
    assert yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["version"] == rel["version"]


def test_volumes_storage_class_encrypts_with_the_customer_managed_vault_key(synthesized):
    (raw,) = synthesized["platform-bootstrap"]["values"]
    (storage_class,) = [o for o in json.loads(raw)["objects"] if o["kind"] == "StorageClass"]
    assert storage_class["metadata"]["name"] == k8s.VAULT_STORAGE_CLASS
    assert (storage_class["provisioner"], storage_class["reclaimPolicy"]) == ("ebs.csi.aws.com", "Retain")
    assert storage_class["parameters"] == {
        "type": "gp3", "encrypted": "true", "kmsKeyId": DATA_KEY_ARN, "csi.storage.k8s.io/fstype": "ext4",
        # the EBS CSI driver's IAM policy only creates volumes tagged as this cluster's
        "tagSpecification_1": "kubernetes.io/cluster/af-test=owned"}
    values = json.loads(synthesized["vault"]["values"][0])
    assert {values["server"][v]["storageClass"] for v in ("dataStorage", "auditStorage")} == {k8s.VAULT_STORAGE_CLASS}


def test_certificate_in_the_bootstrap_chart_covers_every_name_clients_use(synthesized):
    (raw,) = synthesized["platform-bootstrap"]["values"]
    (cert,) = [o for o in json.loads(raw)["objects"] if o["kind"] == "Certificate"]
    assert (cert["apiVersion"], cert["metadata"]) == ("cert-manager.io/v1",
                                                      {"name": k8s.VAULT_TLS_SECRET, "namespace": k8s.VAULT_NAMESPACE})
    spec = cert["spec"]
    assert spec["secretName"] == k8s.VAULT_TLS_SECRET and spec["issuerRef"]["name"] == k8s.CA_ISSUER
    assert spec["dnsNames"][0] == "vault-active.vault.svc" == k8s.VAULT_ADDRESS.split("//")[1].split(":")[0]
    assert set(spec["dnsNames"]) >= {"vault", "vault.vault.svc", "*.vault-internal",
                                     "*.vault-internal.vault.svc.cluster.local"}
    assert spec["ipAddresses"] == ["127.0.0.1"]
    # raft joins and redirects name hosts the certificate must match
    values = json.loads(synthesized["vault"]["values"][0])
    joins = config_of(values)["storage"]["raft"]["retry_join"]
    api_host = values["server"]["ha"]["apiAddr"].split("//")[1].split(":")[0].replace("$(VAULT_K8S_POD_NAME)", "vault-1")
    for name in [j["leader_tls_servername"] for j in joins] + [api_host]:
        assert any(fnmatch.fnmatchcase(name, pattern) and name.count(".") == pattern.count(".")
                   for pattern in spec["dnsNames"]), name


@pytest.mark.parametrize("replicas", [1, 3, 5])
def test_values_validate_against_the_chart_schema_and_use_only_chart_keys(replicas):
    values = values_for(replicas)
    assert schema_errors(values) == []
    assert unknown_keys(values, yaml.safe_load((CHART_DIR / "values.yaml").read_text())) == []


def test_schema_check_catches_a_wrong_type():
    values = values_for(3)
    values["server"]["ha"]["replicas"] = "three"
    assert any("replicas" in e for e in schema_errors(values))


@pytest.mark.parametrize("replicas", [1, 3])
def test_ha_raft_with_one_join_target_per_replica_on_vaults_own_storage_class(replicas):
    values = values_for(replicas)
    ha = values["server"]["ha"]
    assert (ha["enabled"], ha["replicas"], ha["raft"]["enabled"], ha["raft"]["setNodeId"]) == (True, replicas, True, True)
    assert values["server"]["standalone"]["enabled"] is False
    raft = config_of(values)["storage"]["raft"]
    assert raft["path"] == values["server"]["dataStorage"]["mountPath"]
    assert [j["leader_api_addr"] for j in raft["retry_join"]] == [
        f"https://vault-{i}.vault-internal:8200" for i in range(replicas)]
    for volume in ("dataStorage", "auditStorage"):
        assert values["server"][volume]["enabled"] is True
        assert values["server"][volume]["storageClass"] == k8s.VAULT_STORAGE_CLASS != k8s.STORAGE_CLASS
    # one replica: a budget of 0 would only block node drains
    assert values["server"]["ha"]["disruptionBudget"]["enabled"] is (replicas > 1)


def test_auto_unseal_with_the_kms_key_through_pod_identity_only():
    values = values_for(3)
    assert config_of(values)["seal"] == {"awskms": {"region": "eu-west-1", "kms_key_id": KEY_ARN}}
    namespace, (service_account,) = WORKLOADS["vault"]
    sa = values["server"]["serviceAccount"]
    assert (namespace, sa["name"], sa["create"], sa["annotations"]) == (k8s.VAULT_NAMESPACE, service_account, True, {})
    text = json.dumps(values).lower()
    assert "access_key" not in text and "secret_key" not in text and "aws_access_key_id" not in text
    assert "eks.amazonaws.com/role-arn" not in text


def test_tls_listener_reads_the_mounted_certificate_secret():
    values = values_for(3)
    assert values["global"]["tlsDisable"] is False
    (listener,) = config_of(values)["listener"]
    tcp = listener["tcp"]
    assert tcp["tls_disable"] is False and tcp["tls_min_version"] == "tls12"
    assert (tcp["tls_cert_file"], tcp["tls_key_file"], tcp["tls_client_ca_file"]) == (
        TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE)
    (volume,) = [v for v in values["server"]["volumes"] if "secret" in v]
    (mount,) = [m for m in values["server"]["volumeMounts"] if m["name"] == volume["name"]]
    assert volume["secret"]["secretName"] == k8s.VAULT_TLS_SECRET and mount["name"] == volume["name"]
    assert mount["readOnly"] is True
    for path in (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE):
        assert path.startswith(mount["mountPath"] + "/")
    for join in config_of(values)["storage"]["raft"]["retry_join"]:
        assert join["leader_ca_cert_file"] == TLS_CA_FILE and join["leader_api_addr"].startswith("https://")


def test_ui_and_api_are_reachable_only_inside_the_cluster():
    values = values_for(3)
    assert values["ui"] == {"enabled": True, "serviceType": "ClusterIP", "activeVaultPodOnly": True}
    assert values["server"]["service"]["type"] == "ClusterIP"
    assert all(values["server"][k]["enabled"] is False for k in ("ingress", "route", "httproute"))
    assert "LoadBalancer" not in json.dumps(values) and "NodePort" not in json.dumps(values)
    # Who reaches 8200/8201 is decided in modules/platform/network_policy.py (tests/modules/platform/
    # test_network_policy.py); a second list in the chart's policy could only disagree with it.
    assert values["server"]["networkPolicy"] == {"enabled": False}
    assert values["injector"]["enabled"] is False and values["csi"]["enabled"] is False


def test_metrics_are_exposed_and_scraped_by_kube_prometheus_stack_over_verified_tls():
    values = values_for(3)
    config = config_of(values)
    assert config["telemetry"]["prometheus_retention_time"] == "60s"
    assert config["listener"][0]["tcp"]["telemetry"] == {"unauthenticated_metrics_access": True}
    monitor = values["serverTelemetry"]["serviceMonitor"]
    assert monitor["enabled"] is True and monitor["selectors"] == k8s.PROMETHEUS_SELECTOR_LABELS
    assert monitor["tlsConfig"] == {"ca": {"secret": {"name": k8s.VAULT_TLS_SECRET, "key": "ca.crt"}},
                                    "serverName": "vault-active.vault.svc"}


def test_audit_volume_is_on_and_holds_the_audit_log():
    values = values_for(1)
    audit = values["server"]["auditStorage"]
    assert audit["enabled"] is True and AUDIT_LOG_FILE.startswith(audit["mountPath"] + "/")


def test_server_config_is_data_not_templated_text():
    config = server_config(region="eu-west-1", unseal_key_arn=KEY_ARN, replicas=3)
    assert json.loads(values_for(3)["server"]["ha"]["raft"]["config"]) == config
    assert config["disable_mlock"] is True and config["ui"] is True
    assert config["service_registration"] == {"kubernetes": {}}


def test_install_after_adds_a_dependency_resolved_at_synth():
    from cdktf_cdktf_provider_helm.release import Release

    stack, bootstrap = platform_stack()
    vault = Vault(stack, "vault", bootstrap=bootstrap, props=VaultProps(**PROPS))
    crds = Release(stack, "crds", name="kube-prometheus-stack", chart="kube-prometheus-stack")
    vault.install_after(crds)
    crds.override_logical_id("kube-prometheus-stack")
    rel = synth(stack)["resource"]["helm_release"]["vault"]
    assert rel["depends_on"] == ["helm_release.platform-bootstrap", "helm_release.kube-prometheus-stack"]


def test_token_key_reference_passes_through_to_the_seal():
    stack, bootstrap = platform_stack()
    key = cdktf.TerraformVariable(stack, "key-arn", type="string")
    Vault(stack, "vault", bootstrap=bootstrap, props=VaultProps(**{**PROPS, "unseal_key_arn": key.string_value}))
    rel = synth(stack)["resource"]["helm_release"]["vault"]
    assert config_of(json.loads(rel["values"][0]))["seal"]["awskms"]["kms_key_id"] == "${var.key-arn}"


@pytest.mark.parametrize("field,value,message", [
    ("replicas", 2, "is not an odd number of raft voters"),
    ("replicas", 0, "is not an odd number of raft voters"),
    ("replicas", 9, "is not an odd number of raft voters between 1 and 7"),
    ("data_storage_size", "10GB", "is not a volume size"),
    ("cpu", "lots", "is not a CPU quantity"),
    ("memory", "512MB", "is not a memory quantity"),
])
def test_settings_refuse_bad_input_naming_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        VaultSettings(**{field: value})
    assert err.value.field == f"vault.{field}"


@pytest.mark.parametrize("field,value,message", [
    ("unseal_key_arn", "alias/vault", "is not a KMS key ARN"),
    ("region", "Europe", "is not an AWS region name"),
    ("settings", {"replicas": 3}, "is not VaultSettings"),
    ("volume_kms_key_arn", "alias/aws/ebs", "is not a KMS key ARN"),
    ("cluster_name", "Airflow_Dev", "is not a valid EKS cluster name"),
    ("storage_reclaim_policy", "Recycle", "is not a reclaim policy"),
])
def test_props_refuse_bad_input_naming_the_field(field, value, message):
    base = dict(PROPS)
    with pytest.raises(ConfigError, match=message) as err:
        VaultProps(**{**base, field: value})
    assert err.value.field == field


def test_other_pods_running_the_vault_cli_use_the_servers_image():
    server = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["server"]["image"]
    assert VAULT_IMAGE == f"{server['repository']}:{server['tag']}"


def test_the_server_runs_restricted_with_a_read_only_root_and_a_writable_tmp():
    server = values_for(3)["server"]
    context = server["statefulSet"]["securityContext"]
    assert context["pod"] == {"runAsNonRoot": True, "runAsUser": 100, "runAsGroup": 1000, "fsGroup": 1000,
                              "seccompProfile": {"type": "RuntimeDefault"}}
    assert context["container"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                    "seccompProfile": {"type": "RuntimeDefault"}}
    # the chart's start command copies the config to /tmp/storageconfig.hcl before Vault starts
    (tmp,) = [v for v in server["volumes"] if "emptyDir" in v]
    assert {"name": tmp["name"], "mountPath": "/tmp"} in server["volumeMounts"]
