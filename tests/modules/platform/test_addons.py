"""ClusterAddons: the pinned add-on releases, their values checked against the upstream charts' keys, and the
bootstrap objects (namespaces, CA chain, Secrets Manager store, StorageClass, Karpenter NodePool/EC2NodeClass)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import new_stack, synth

from modules.platform import kubernetes as k8s
from modules.platform.addons import (
    CHARTS,
    ClusterAddons,
    AddonsSettings,
    ClusterAddonsProps,
    ca_chain,
    cert_manager_values,
    external_secrets_values,
    karpenter_values,
    keda_values,
    secrets_manager_store,
    storage_class,
    worker_node_class,
    worker_node_pool,
)
from modules.aws.identity import WORKLOADS
from modules.core.validation import ConfigError

CHART_DATA = Path(__file__).resolve().parents[2] / "data" / "charts"
BASE = dict(cluster_name="af-test", region="eu-west-1", node_role_name="af-test-eks-node")
KEY = "arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-0000-1111-2222-333344445555"


def releases(props: ClusterAddonsProps | None = None) -> dict[str, dict]:
    stack = new_stack()
    ClusterAddons(stack, "addons", props=props or ClusterAddonsProps(**BASE))
    return synth(stack)["resource"]["helm_release"]


def values_of(release: dict) -> dict:
    (raw,) = release["values"]
    return json.loads(raw)


def unknown_keys(values: dict, defaults: dict, path: str = ""):
    """Keys of `values` the chart's values do not define. An empty map default ({}), a label map (nodeSelector) and
    a Kubernetes security context (checked against the Kubernetes schema when rendered, tests/test_helm_render.py)
    are free-form (a PDB spec, resources, labels...), so anything below them is accepted."""
    for key, value in values.items():
        if key not in defaults:
            yield f"{path}{key}"
        elif isinstance(value, dict) and isinstance(defaults[key], dict) and defaults[key] and key != "nodeSelector" \
                and not key.endswith(("SecurityContext", "securityContext")):
            yield from unknown_keys(value, defaults[key], f"{path}{key}.")


def chart_values(chart: str) -> dict:
    return yaml.safe_load((CHART_DATA / chart / "values.excerpt.yaml").read_text())


def test_releases_are_the_pinned_charts_in_their_namespaces():
    res = releases()
    got = {name: (r["repository"], r["chart"], r["version"], r["namespace"]) for name, r in res.items()}
    assert got == {
        "cert-manager": ("https://charts.jetstack.io", "cert-manager", "v1.20.2", "cert-manager"),
        "external-secrets": ("https://charts.external-secrets.io", "external-secrets", "2.10.0", "external-secrets"),
        "karpenter-crd": ("oci://public.ecr.aws/karpenter", "karpenter-crd", "1.14.1", "kube-system"),
        "karpenter": ("oci://public.ecr.aws/karpenter", "karpenter", "1.14.1", "kube-system"),
        "keda": ("https://kedacore.github.io/charts", "keda", "2.20.2", "keda"),
    }
    assert all(r["atomic"] and r["wait"] and r["cleanup_on_fail"] for r in res.values())
    assert {n for n, r in res.items() if r.get("create_namespace")} == {"cert-manager", "external-secrets", "keda"}


def test_keda_is_exactly_the_shared_chart_version():
    shared = yaml.safe_load((CHART_DATA / "keda" / "Chart.yaml").read_text())
    assert (shared["name"], shared["version"]) == (CHARTS["keda"].chart, CHARTS["keda"].version) == ("keda", "2.20.2")


def test_crds_are_installed_by_the_charts_and_karpenters_by_its_crd_release():
    res = releases()
    assert values_of(res["cert-manager"])["crds"] == {"enabled": True, "keep": True}
    assert values_of(res["external-secrets"])["installCRDs"] is True
    assert values_of(res["keda"])["crds"] == {"install": True}
    assert res["karpenter"]["skip_crds"] is True and res["karpenter"]["depends_on"] == ["helm_release.karpenter-crd"]
    assert "skip_crds" not in res["karpenter-crd"]


def test_operators_use_their_pod_identity_service_accounts_without_irsa_annotations():
    res = releases()
    eso, karpenter = values_of(res["external-secrets"]), values_of(res["karpenter"])
    assert (res["external-secrets"]["namespace"], (eso["serviceAccount"]["name"],)) == WORKLOADS["external-secrets"]
    assert (res["karpenter"]["namespace"], (karpenter["serviceAccount"]["name"],)) == WORKLOADS["karpenter"]
    assert "eks.amazonaws.com/role-arn" not in json.dumps(res)
    assert karpenter["settings"] == {"clusterName": "af-test"}


def test_karpenter_controller_is_pinned_to_the_managed_system_nodes():
    values = karpenter_values(cluster_name="c", replicas=2)
    assert values["nodeSelector"] == {"kubernetes.io/os": "linux", "role": "system"}
    assert values["tolerations"] == [{"key": "CriticalAddonsOnly", "operator": "Exists"}]
    assert "affinity" not in values      # keeps the chart's default: never on nodes Karpenter manages itself


@pytest.mark.parametrize("chart,values", [
    ("cert-manager", cert_manager_values(replicas=2)),
    ("external-secrets", external_secrets_values(replicas=2)),
    ("karpenter", karpenter_values(cluster_name="c", replicas=2)),
    ("keda", keda_values(replicas=2)),
])
def test_values_use_only_keys_the_upstream_chart_defines(chart, values):
    defaults = chart_values(chart)
    assert list(unknown_keys(values, defaults)) == []
    assert list(unknown_keys({**values, "noSuchKey": 1}, defaults)) == ["noSuchKey"]   # the walk catches a typo


def test_one_replica_has_no_disruption_budget_and_more_get_one():
    one, two = cert_manager_values(replicas=1), cert_manager_values(replicas=2)
    assert [v["podDisruptionBudget"]["enabled"] for v in (one, one["webhook"], one["cainjector"])] == [False] * 3
    assert [v["podDisruptionBudget"]["enabled"] for v in (two, two["webhook"], two["cainjector"])] == [True] * 3
    assert (two["replicaCount"], two["webhook"]["replicaCount"], two["cainjector"]["replicaCount"]) == (2, 2, 2)
    assert "podDisruptionBudget" not in keda_values(replicas=1)
    assert keda_values(replicas=3)["podDisruptionBudget"]["operator"] == {"minAvailable": 1}
    assert external_secrets_values(replicas=1)["leaderElect"] is False
    assert external_secrets_values(replicas=2)["leaderElect"] is True


def test_node_pool_mixes_spot_and_on_demand_for_tainted_airflow_workers_within_limits():
    props = ClusterAddonsProps(**BASE, settings=AddonsSettings(
        worker_instance_families=("m7i", "m6i"), worker_cpu_limit=96, worker_memory_limit_gib=384,
        worker_disruption_budget="20%", worker_expire_after="336h"))
    pool = worker_node_pool(props)
    spec = pool["spec"]
    reqs = {r["key"]: (r["operator"], r["values"]) for r in spec["template"]["spec"]["requirements"]}
    assert reqs["karpenter.sh/capacity-type"] == ("In", ["spot", "on-demand"])
    assert reqs["karpenter.k8s.aws/instance-family"] == ("In", ["m7i", "m6i"])
    assert reqs["kubernetes.io/arch"] == ("In", ["amd64"])
    # only instance types whose Nitro cards encrypt instance-to-instance traffic (docs/tls.md)
    assert reqs["karpenter.k8s.aws/instance-encryption-in-transit-supported"] == ("In", ["true"])
    assert spec["template"]["metadata"]["labels"] == k8s.WORKER_NODE_LABELS
    (taint,) = spec["template"]["spec"]["taints"]
    (toleration,) = k8s.WORKER_TOLERATIONS
    assert (taint["key"], taint["value"], taint["effect"]) == (toleration["key"], toleration["value"], "NoSchedule")
    assert spec["template"]["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                                       "name": "airflow-workers"}
    assert spec["limits"] == {"cpu": "96", "memory": "384Gi"}
    assert spec["disruption"]["budgets"] == [{"nodes": "20%"}]
    assert spec["template"]["spec"]["expireAfter"] == "336h"


def test_graviton_families_ask_for_arm64_nodes():
    pool = worker_node_pool(ClusterAddonsProps(**BASE, settings=AddonsSettings(worker_instance_families=("m7g", "c7g"))))
    reqs = {r["key"]: r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]}
    assert reqs["kubernetes.io/arch"] == ["arm64"]


def test_node_class_uses_discovery_tags_the_node_role_imdsv2_and_an_encrypted_gp3_root():
    spec = worker_node_class(ClusterAddonsProps(**BASE, settings=AddonsSettings(worker_root_volume_gib=80)))["spec"]
    discovery = [{"tags": {"karpenter.sh/discovery": "af-test"}}]
    assert (spec["subnetSelectorTerms"], spec["securityGroupSelectorTerms"]) == (discovery, discovery)
    assert spec["role"] == "af-test-eks-node" and spec["amiSelectorTerms"] == [{"alias": "al2023@latest"}]
    assert spec["metadataOptions"]["httpTokens"] == "required" and spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    (device,) = spec["blockDeviceMappings"]
    assert device["ebs"] == {"volumeSize": "80Gi", "volumeType": "gp3", "encrypted": True, "deleteOnTermination": True}
    keyed = worker_node_class(ClusterAddonsProps(**BASE, ebs_kms_key_arn=KEY))["spec"]["blockDeviceMappings"][0]["ebs"]
    assert keyed["kmsKeyID"] == KEY


def test_ca_chain_self_signed_root_then_ca_issuer():
    selfsigned, root, ca = ca_chain(cluster_name="af-test")
    assert (selfsigned["kind"], selfsigned["metadata"]["name"], selfsigned["spec"]) == (
        "ClusterIssuer", k8s.SELF_SIGNED_ISSUER, {"selfSigned": {}})
    assert (root["kind"], root["metadata"], root["spec"]["isCA"], root["spec"]["secretName"]) == (
        "Certificate", {"name": k8s.ROOT_CA_CERTIFICATE, "namespace": k8s.CERT_MANAGER_NAMESPACE}, True,
        k8s.ROOT_CA_CERTIFICATE)
    assert root["spec"]["issuerRef"] == {"name": k8s.SELF_SIGNED_ISSUER, "kind": "ClusterIssuer",
                                         "group": "cert-manager.io"}
    assert (ca["kind"], ca["metadata"]["name"], ca["spec"]) == (
        "ClusterIssuer", k8s.CA_ISSUER, {"ca": {"secretName": k8s.ROOT_CA_CERTIFICATE}})
    assert {o["apiVersion"] for o in (selfsigned, root, ca)} == {"cert-manager.io/v1"}


def test_secrets_manager_store_uses_the_operators_own_credentials_for_app_namespaces_but_the_db_admin_one():
    store = secrets_manager_store(region="eu-west-1")
    assert (store["apiVersion"], store["kind"], store["metadata"]["name"]) == (
        "external-secrets.io/v1", "ClusterSecretStore", k8s.SECRETS_MANAGER_STORE)
    assert store["spec"]["provider"] == {"aws": {"service": "SecretsManager", "region": "eu-west-1"}}   # no auth
    # Not the database-role Job's namespace: its ExternalSecrets cannot use the shared identity at all.
    assert store["spec"]["conditions"] == [{"namespaces": ["airflow", "vault", "monitoring"]}]
    assert k8s.DATABASE_ADMIN_NAMESPACE in k8s.APP_NAMESPACES
    # The contract's ExternalSecret builder points at this store.
    assert k8s.external_secret(name="x", namespace="airflow", data=[])["spec"]["secretStoreRef"] == {
        "name": store["metadata"]["name"], "kind": store["kind"]}


def test_storage_class_is_encrypted_gp3_bound_at_first_consumer_and_tagged_for_the_cluster():
    sc = storage_class(cluster_name="af-test", reclaim_policy="Retain")
    assert (sc["metadata"]["name"], sc["provisioner"], sc["volumeBindingMode"], sc["allowVolumeExpansion"],
            sc["reclaimPolicy"]) == (k8s.STORAGE_CLASS, "ebs.csi.aws.com", "WaitForFirstConsumer", True, "Retain")
    assert sc["parameters"] == {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4",
                                "tagSpecification_1": "kubernetes.io/cluster/af-test=owned"}
    assert storage_class(cluster_name="c", reclaim_policy="Delete", kms_key_arn=KEY)["parameters"]["kmsKeyId"] == KEY


def test_bootstrap_objects_are_namespaces_kept_on_uninstall_then_the_rest():
    stack = new_stack()
    objects = ClusterAddons(stack, "addons", props=ClusterAddonsProps(**BASE)).bootstrap_objects()
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert kinds == [("Namespace", "airflow"), ("Namespace", "vault"), ("Namespace", "monitoring"),
                     ("Namespace", "airflow-db-admin"), ("ClusterIssuer", k8s.SELF_SIGNED_ISSUER), ("Certificate", k8s.ROOT_CA_CERTIFICATE),
                     ("ClusterIssuer", k8s.CA_ISSUER), ("ClusterSecretStore", k8s.SECRETS_MANAGER_STORE),
                     ("StorageClass", k8s.STORAGE_CLASS), ("EC2NodeClass", "airflow-workers"),
                     ("NodePool", "airflow-workers")]
    assert all(o["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
               for o in objects if o["kind"] == "Namespace")


def test_app_namespaces_enforce_their_pod_security_level_and_warn_and_audit_at_restricted():
    stack = new_stack()
    objects = ClusterAddons(stack, "addons", props=ClusterAddonsProps(**BASE, kubernetes_version="1.35")).bootstrap_objects()
    labels = {o["metadata"]["name"]: o["metadata"]["labels"] for o in objects if o["kind"] == "Namespace"}
    prefix = "pod-security.kubernetes.io/"
    for name, level in (("airflow", "restricted"), ("vault", "restricted"), ("monitoring", "privileged")):
        assert labels[name] == {f"{prefix}enforce": level, f"{prefix}warn": "restricted",
                                f"{prefix}audit": "restricted", f"{prefix}enforce-version": "v1.35",
                                f"{prefix}warn-version": "v1.35", f"{prefix}audit-version": "v1.35"}, name


def test_bootstrap_dependencies_are_every_addon_release():
    stack = new_stack()
    addons = ClusterAddons(stack, "addons", props=ClusterAddonsProps(**BASE))
    assert addons.bootstrap_dependencies == list(addons.releases.values()) and len(addons.releases) == 5


@pytest.mark.parametrize("change,field,message", [
    ({"worker_instance_families": ("q9",)}, "addons.worker_instance_families", "names no known instance family"),
    ({"worker_instance_families": ("m7i", "m7g")}, "addons.worker_instance_families", "mixes x86_64 and Graviton"),
    ({"worker_instance_families": ("m7i", "m5", "t3")}, "addons.worker_instance_families",
     r"\['m5', 't3'\] does not encrypt traffic between instances"),
    ({"region": "europe"}, "region", "is not an AWS region name"),
    ({"ebs_kms_key_arn": "alias/ebs"}, "ebs_kms_key_arn", "is not a KMS key ARN"),
    ({"kubernetes_version": "v1.34"}, "kubernetes_version", "is not a Kubernetes minor version"),
])
def test_props_fail_fast_naming_the_field(change, field, message):
    families = change.pop("worker_instance_families", None)
    with pytest.raises(ConfigError, match=message) as err:    # the settings refuse families, the props the rest
        settings = AddonsSettings() if families is None else AddonsSettings(worker_instance_families=families)
        ClusterAddonsProps(**{**BASE, **change}, settings=settings)
    assert err.value.field == field


@pytest.mark.parametrize("change,field,message", [
    ({"controller_replicas": 0}, "addons.controller_replicas", "is outside 1-5"),
    ({"storage_reclaim_policy": "Recycle"}, "addons.storage_reclaim_policy", "is not a reclaim policy"),
    ({"worker_cpu_limit": 1}, "addons.worker_cpu_limit", "is outside 2-10000 vCPUs"),
    ({"worker_memory_limit_gib": 2}, "addons.worker_memory_limit_gib", "is outside 4-80000 GiB"),
    ({"worker_root_volume_gib": 10}, "addons.worker_root_volume_gib", "is outside what a gp3 root volume accepts"),
])
def test_settings_fail_fast_naming_the_field(change, field, message):
    with pytest.raises(ConfigError, match=message) as err:
        AddonsSettings(**change)
    assert err.value.field == field


def test_props_take_the_settings_whole_not_field_by_field():
    with pytest.raises(ConfigError, match="is not AddonsSettings") as err:
        ClusterAddonsProps(**BASE, settings={"controller_replicas": 2})
    assert err.value.field == "settings"
    with pytest.raises(TypeError):
        ClusterAddonsProps(**BASE, controller_replicas=2)   # the settings' fields are not props fields
