"""The add-ons of each environment's platform stack, and the platform secrets of its infra stack, on the parsed
synthesized JSON: pinned charts, namespaces, install order, worker NodePool, CA chain, secret store, StorageClass."""
from __future__ import annotations

import json
import re

import pytest

import environments
from tests.conftest import looks_like_secret, strings

from environments.sections.addons import AddonsConfig
from modules.core.validation import ConfigError
from modules.platform import kubernetes as k8s

ADDONS = {"cert-manager": ("cert-manager", "v1.20.2", "cert-manager"),
          "external-secrets": ("external-secrets", "2.10.0", "external-secrets"),
          "karpenter-crd": ("karpenter-crd", "1.14.1", "kube-system"),
          "karpenter": ("karpenter", "1.14.1", "kube-system"),
          "keda": ("keda", "2.20.2", "keda")}


def releases(stacks, name: str) -> dict[str, dict]:
    return stacks[f"airflow-{name}-platform"]["resource"]["helm_release"]


def values(release: dict) -> dict:
    (raw,) = release["values"]
    return json.loads(raw)


def bootstrap_objects(stacks, name: str) -> dict[tuple[str, str], dict]:
    objects = values(releases(stacks, name)["platform-bootstrap"])["objects"]
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


@pytest.mark.parametrize("name", environments.NAMES)
def test_addon_charts_are_pinned_in_their_namespaces(stacks, name):
    rels = releases(stacks, name)
    assert {r: (rels[r]["chart"], rels[r]["version"], rels[r]["namespace"]) for r in ADDONS} == ADDONS


@pytest.mark.parametrize("name", environments.NAMES)
def test_bootstrap_installs_after_every_addon_and_karpenter_after_its_crds(stacks, name):
    rels = releases(stacks, name)
    boot = rels["platform-bootstrap"]
    assert boot["chart"].startswith("assets/platform-bootstrap_chart_") and boot["namespace"] == "kube-system"
    assert sorted(boot["depends_on"]) == sorted(f"helm_release.{r}" for r in ADDONS)
    assert rels["karpenter"]["depends_on"] == ["helm_release.karpenter-crd"]
    # The add-ons themselves wait for nothing the apps create (no cycle back through the bootstrap chart).
    assert not any("platform-bootstrap" in dep for r in ADDONS for dep in rels[r].get("depends_on") or [])


@pytest.mark.parametrize("name", environments.NAMES)
def test_controller_replicas_follow_the_environment(stacks, name):
    replicas = environments.load(name).addons.controller_replicas
    rels = releases(stacks, name)
    assert values(rels["cert-manager"])["replicaCount"] == replicas
    assert values(rels["external-secrets"])["replicaCount"] == replicas
    assert values(rels["karpenter"])["replicas"] == replicas
    assert values(rels["keda"])["operator"]["replicaCount"] == replicas
    assert ("podDisruptionBudget" in values(rels["keda"])) is (replicas > 1)


def test_production_runs_redundant_controllers_and_dev_single_ones():
    assert environments.load("prod").addons.controller_replicas >= 2
    assert environments.load("dev").addons.controller_replicas == 1


@pytest.mark.parametrize("name", environments.NAMES)
def test_worker_node_pool_mixes_spot_and_on_demand_within_the_environments_limits(stacks, name):
    addons = environments.load(name).addons
    pool = bootstrap_objects(stacks, name)[("NodePool", k8s.WORKER_NODE_POOL)]["spec"]
    reqs = {r["key"]: r["values"] for r in pool["template"]["spec"]["requirements"]}
    assert reqs["karpenter.sh/capacity-type"] == ["spot", "on-demand"]
    assert reqs["karpenter.k8s.aws/instance-family"] == list(addons.worker_instance_families)
    assert pool["limits"] == {"cpu": str(addons.worker_cpu_limit), "memory": f"{addons.worker_memory_limit_gib}Gi"}
    assert pool["disruption"]["budgets"] == [{"nodes": addons.worker_disruption_budget}]
    assert pool["template"]["spec"]["taints"][0]["key"] == k8s.WORKER_TOLERATIONS[0]["key"]


@pytest.mark.parametrize("name", environments.NAMES)
def test_node_class_takes_the_node_role_from_infra_and_the_cluster_discovery_tags(stacks, name):
    spec = bootstrap_objects(stacks, name)[("EC2NodeClass", k8s.WORKER_NODE_POOL)]["spec"]
    assert spec["role"].startswith("${data.terraform_remote_state.") and "node-role" in spec["role"]
    assert spec["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": f"airflow-{name}"}}]
    infra = json.dumps(stacks[f"airflow-{name}-infra"]["resource"])
    assert f'"karpenter.sh/discovery": "airflow-{name}"' in infra     # the tag exists on subnets / the node SG
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["blockDeviceMappings"][0]["ebs"]["encrypted"] is True


def ami_release(alias: str) -> str:
    """'al2023@v20260714' -> 'v20260714' (an amazon-eks-ami release tag); fails on '@latest'."""
    match = re.fullmatch(r"al2023@(v\d{8})", alias)
    assert match, f"{alias!r} is not a pinned AL2023 release"
    return match[1]


@pytest.mark.parametrize("name", environments.NAMES)
def test_worker_nodes_boot_the_environments_ami_alias(stacks, name):
    spec = bootstrap_objects(stacks, name)[("EC2NodeClass", k8s.WORKER_NODE_POOL)]["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": environments.load(name).addons.worker_ami_alias}]


def test_prod_pins_a_published_al2023_release_that_staging_runs_first_and_dev_tracks_latest():
    prod, staging = (ami_release(environments.load(n).addons.worker_ami_alias) for n in ("prod", "staging"))
    # v20260714: a published amazon-eks-ami release (tag and CHANGELOG entry, AL2023 AMIs for K8s 1.30-1.36)
    assert prod == "v20260714"
    assert prod <= staging          # same-width dates: prod never gets an AMI release staging has not run
    assert environments.load("dev").addons.worker_ami_alias == "al2023@latest"   # the canary sees each release first


@pytest.mark.parametrize("alias", ["al2023@latest", "bottlerocket@latest"])
def test_production_refuses_a_floating_ami_alias_in_one_line(alias):
    AddonsConfig(worker_ami_alias=alias)                    # fine outside production (dev tracks latest)
    with pytest.raises(ConfigError) as refused:
        AddonsConfig(worker_ami_alias=alias).check_production()
    assert str(refused.value).startswith(f"addons.worker_ami_alias={alias!r} lets AWS's next AMI release replace")
    assert "; fix: pin a release staging has run, e.g. 'al2023@v20260714'" in str(refused.value)
    assert "\n" not in str(refused.value)
    AddonsConfig(worker_ami_alias="al2023@v20260714").check_production()


@pytest.mark.parametrize("name", environments.NAMES)
def test_ca_chain_store_storage_class_and_namespaces(stacks, name):
    objs = bootstrap_objects(stacks, name)
    assert objs[("Certificate", k8s.ROOT_CA_CERTIFICATE)]["spec"]["isCA"] is True
    assert objs[("ClusterIssuer", k8s.CA_ISSUER)]["spec"] == {"ca": {"secretName": k8s.ROOT_CA_CERTIFICATE}}
    assert ("ClusterIssuer", k8s.SELF_SIGNED_ISSUER) in objs
    store = objs[("ClusterSecretStore", k8s.SECRETS_MANAGER_STORE)]["spec"]
    assert store["provider"] == {"aws": {"service": "SecretsManager", "region": "eu-west-1"}}
    sc = objs[("StorageClass", k8s.STORAGE_CLASS)]
    assert (sc["parameters"]["type"], sc["parameters"]["encrypted"], sc["volumeBindingMode"]) == (
        "gp3", "true", "WaitForFirstConsumer")
    assert sc["reclaimPolicy"] == environments.load(name).addons.storage_reclaim_policy
    assert {n for kind, n in objs if kind == "Namespace"} == set(k8s.APP_NAMESPACES)


@pytest.mark.parametrize("name", environments.NAMES)
def test_app_namespaces_pin_pod_security_to_the_clusters_minor(stacks, name):
    version = f"v{environments.load(name).cluster.kubernetes_version}"
    for namespace in k8s.APP_NAMESPACES:
        labels = bootstrap_objects(stacks, name)[("Namespace", namespace)]["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == k8s.POD_SECURITY_ENFORCE[namespace]
        assert {labels[f"pod-security.kubernetes.io/{mode}-version"] for mode in ("enforce", "warn", "audit")} == {
            version}


@pytest.mark.parametrize("name", environments.NAMES)
def test_no_secret_literal_in_the_addon_releases(stacks, name):
    def without_kinds(value):      # Kubernetes kinds such as 'EC2NodeClass' look random to the heuristic
        if isinstance(value, dict):
            return {k: without_kinds(v) for k, v in value.items() if k != "kind"}
        return [without_kinds(v) for v in value] if isinstance(value, list) else value

    rels = releases(stacks, name)
    found = [s for r in [*ADDONS, "platform-bootstrap"] for s in strings(without_kinds(values(rels[r])))
             if looks_like_secret(s)]
    assert found == []
    assert looks_like_secret("Zq4xR8pL2vN7") and not looks_like_secret("${data.x.y}")   # the scan does bite


@pytest.mark.parametrize("name", environments.NAMES)
def test_infra_generates_the_platform_secrets_and_only_external_secrets_reads_them(stacks, name):
    res = stacks[f"airflow-{name}-infra"]["resource"]
    names = {s["name"] for s in res["aws_secretsmanager_secret"].values()}
    prefix = f"airflow-{name}"
    assert {k8s.airflow_keys_secret_name(prefix), k8s.grafana_admin_secret_name(prefix),
            k8s.alert_receivers_secret_name(prefix)} <= names
    readers = [a for a, p in res["aws_iam_role_policy"].items() if "platform-secrets_airflow-keys" in p["policy"]]
    assert len(readers) == 1 and readers[0].startswith("identities_external-secrets")
