import json

import cdktf
import pytest

from tests.conftest import make_props, synth

from modules.aws.cluster import (ADDONS, CONTROL_PLANE_TO_NODE_PORTS, DEFAULT_ADDON_VERSIONS, Cluster, ClusterProps,
                             NodeGroupSizing, ami_type_for)

ADMIN = "arn:aws:iam::123456789012:role/platform-admin"
BASE = dict(name="af-test", vpc_id="vpc-1", subnet_ids=("subnet-a", "subnet-b"), admin_role_arns=(ADMIN,),
            logs_kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/logs")


def build(stack, **overrides) -> Cluster:
    return Cluster(stack, "cluster", props=make_props(ClusterProps, **{**BASE, **overrides}))


def only(res: dict, rtype: str) -> dict:
    (body,) = res[rtype].values()
    return body


def address(res: dict, rtype: str, body: dict) -> str:
    (name,) = [n for n, b in res[rtype].items() if b is body]
    return f"{rtype}.{name}"


def test_api_endpoint_is_private_by_default(stack):
    build(stack)
    vpc = only(synth(stack)["resource"], "aws_eks_cluster")["vpc_config"]
    assert (vpc["endpoint_private_access"], vpc["endpoint_public_access"]) == (True, False)
    assert "public_access_cidrs" not in vpc


def test_api_endpoint_is_public_only_for_the_listed_cidrs(stack):
    build(stack, public_access_cidrs=("203.0.113.0/24", "198.51.100.7/32"))
    vpc = only(synth(stack)["resource"], "aws_eks_cluster")["vpc_config"]
    assert (vpc["endpoint_private_access"], vpc["endpoint_public_access"]) == (True, True)
    assert vpc["public_access_cidrs"] == ["203.0.113.0/24", "198.51.100.7/32"]


def test_secrets_are_envelope_encrypted_with_a_rotating_key_the_cluster_role_may_use(stack):
    build(stack)
    res = synth(stack)["resource"]
    cluster = only(res, "aws_eks_cluster")
    key = only(res, "aws_kms_key")
    key_ref = "${" + address(res, "aws_kms_key", key) + ".arn}"
    assert cluster["encryption_config"] == {"resources": ["secrets"], "provider": {"key_arn": key_ref}}
    assert (key["enable_key_rotation"], only(res, "aws_kms_alias")["name"]) == (True, "alias/af-test-eks-secrets")
    (grant,) = json.loads(only(res, "aws_iam_role_policy")["policy"])["Statement"]
    assert grant["Resource"] == [key_ref] and "kms:Decrypt" in grant["Action"]


def test_control_plane_logs_go_to_an_encrypted_group_created_first(stack):
    build(stack, log_retention_days=365)
    res = synth(stack)["resource"]
    cluster = only(res, "aws_eks_cluster")
    (group,) = [g for g in res["aws_cloudwatch_log_group"].values() if g["name"].startswith("/aws/eks/")]
    assert cluster["enabled_cluster_log_types"] == ["api", "audit", "authenticator"]
    assert (group["name"], group["retention_in_days"], group["kms_key_id"]) == \
        ("/aws/eks/af-test/cluster", 365, BASE["logs_kms_key_arn"])
    assert address(res, "aws_cloudwatch_log_group", group) in cluster["depends_on"]


def test_admins_get_access_entries_and_the_creator_gets_no_implicit_admin(stack):
    second = "arn:aws:iam::123456789012:user/break-glass"
    build(stack, admin_role_arns=(ADMIN, second))
    res = synth(stack)["resource"]
    assert only(res, "aws_eks_cluster")["access_config"] == {
        "authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": False}
    entries = sorted(e["principal_arn"] for e in res["aws_eks_access_entry"].values())
    assert entries == [ADMIN, second]
    associations = list(res["aws_eks_access_policy_association"].values())
    assert len(associations) == 2
    for assoc in associations:
        assert assoc["policy_arn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
        assert assoc["access_scope"] == {"type": "cluster"}
        assert assoc["principal_arn"].startswith("${aws_eks_access_entry.")  # created after its entry


def test_nodes_require_imdsv2_with_hop_limit_1_and_encrypted_gp3(stack):
    build(stack, system_disk_size_gib=80, ebs_kms_key_arn="arn:aws:kms:eu-west-1:1:key/ebs")
    res = synth(stack)["resource"]
    template = only(res, "aws_launch_template")
    assert template["metadata_options"] == {"http_endpoint": "enabled", "http_tokens": "required",
                                            "http_put_response_hop_limit": 1}
    (device,) = template["block_device_mappings"]
    assert device["device_name"] == "/dev/xvda"
    assert (device["ebs"]["volume_type"], device["ebs"]["encrypted"], device["ebs"]["volume_size"],
            device["ebs"]["kms_key_id"]) == ("gp3", "true", 80, "arn:aws:kms:eu-west-1:1:key/ebs")
    group = only(res, "aws_eks_node_group")
    template_address = address(res, "aws_launch_template", template)
    assert group["launch_template"] == {"id": "${" + template_address + ".id}",
                                        "version": "${" + template_address + ".latest_version}"}
    (node_sg,) = [n for n in res["aws_security_group"] if "_node-security-group_" in n]
    assert template["vpc_security_group_ids"] == ["${aws_security_group." + node_sg + ".id}"]


def test_system_node_group_is_on_demand_al2023_with_sizing_and_labels(stack):
    build(stack, system_instance_types=("m7g.large", "c7g.xlarge"), system_min_size=1, system_desired_size=3,
          system_max_size=5)
    group = only(synth(stack)["resource"], "aws_eks_node_group")
    assert (group["ami_type"], group["capacity_type"], group["instance_types"]) == \
        ("AL2023_ARM_64_STANDARD", "ON_DEMAND", ["m7g.large", "c7g.xlarge"])
    assert group["scaling_config"] == {"min_size": 1, "desired_size": 3, "max_size": 5}
    assert (group["labels"], group["update_config"]) == ({"role": "system"}, {"max_unavailable": 1})
    assert group["taint"] == [{"key": "CriticalAddonsOnly", "value": "true", "effect": "PREFER_NO_SCHEDULE"}]


def test_ami_type_follows_the_instance_family():
    assert ami_type_for(("m7i.large",)) == "AL2023_x86_64_STANDARD"
    assert ami_type_for(("t4g.medium",)) == "AL2023_ARM_64_STANDARD"


def test_node_role_has_worker_registry_and_cni_policies_and_nothing_else(stack):
    build(stack)
    res = synth(stack)["resource"]
    (node_role_name,) = [n for n in res["aws_iam_role"] if "node-role" in n]
    role = res["aws_iam_role"][node_role_name]
    assert json.loads(role["assume_role_policy"])["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    attached = sorted(a["policy_arn"] for a in res["aws_iam_role_policy_attachment"].values()
                      if a["role"] == "${aws_iam_role." + node_role_name + ".name}")
    assert attached == ["arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
                        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
                        "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"]


def test_six_addons_are_pinned_and_workload_addons_wait_for_nodes(stack):
    build(stack).bind_addon_identity("aws-ebs-csi-driver", service_account="ebs-csi-controller-sa", role_arn="arn:role")
    res = synth(stack)["resource"]
    addons = {a["addon_name"]: a for a in res["aws_eks_addon"].values()}
    assert {name: a["addon_version"] for name, a in addons.items()} == DEFAULT_ADDON_VERSIONS
    assert set(addons) == set(ADDONS) and len(ADDONS) == 6
    for addon in addons.values():
        assert (addon["resolve_conflicts_on_create"], addon["resolve_conflicts_on_update"]) == ("OVERWRITE", "PRESERVE")
    group_address = "aws_eks_node_group." + next(iter(res["aws_eks_node_group"]))
    waits = {name for name, a in addons.items() if group_address in a.get("depends_on", [])}
    assert waits == {"coredns", "aws-ebs-csi-driver", "amazon-cloudwatch-observability"}
    (association,) = addons["aws-ebs-csi-driver"]["pod_identity_association"]
    assert (association["service_account"], association["role_arn"]) == ("ebs-csi-controller-sa", "arn:role")
    assert "pod_identity_association" not in addons["amazon-cloudwatch-observability"]


def test_security_group_rules_name_groups_and_never_admit_the_internet(stack):
    build(stack).allow_node_ingress("alb", source_security_group_id="sg-alb", port=8080)
    res = synth(stack)["resource"]
    groups = {n: "${aws_security_group." + n + ".id}" for n in res["aws_security_group"]}
    (node_sg,) = [ref for n, ref in groups.items() if "_node-security-group_" in n]
    (cluster_sg,) = [ref for n, ref in groups.items() if "_cluster-security-group_" in n]
    rules = list(res["aws_vpc_security_group_ingress_rule"].values())
    assert all("cidr_ipv4" not in r and "cidr_ipv6" not in r and r["referenced_security_group_id"] for r in rules)
    from_control_plane = sorted(r["from_port"] for r in rules
                                if (r["security_group_id"], r["referenced_security_group_id"]) == (node_sg, cluster_sg))
    assert from_control_plane == sorted(CONTROL_PLANE_TO_NODE_PORTS) and 10250 in from_control_plane
    (api,) = [r for r in rules if r["security_group_id"] == cluster_sg]
    assert (api["referenced_security_group_id"], api["from_port"], api["to_port"]) == (node_sg, 443, 443)
    (alb,) = [r for r in rules if r["referenced_security_group_id"] == "sg-alb"]
    assert (alb["security_group_id"], alb["from_port"], alb["to_port"]) == (node_sg, 8080, 8080)
    internet_egress = [r for r in res["aws_vpc_security_group_egress_rule"].values() if r.get("cidr_ipv4")]
    assert [(r["security_group_id"], r["cidr_ipv4"], r["from_port"], r["to_port"]) for r in internet_egress] == \
        [(node_sg, "0.0.0.0/0", 443, 443)]


def test_node_security_group_is_discoverable_by_karpenter(stack):
    build(stack)
    groups = synth(stack)["resource"]["aws_security_group"]
    (node,) = [g for n, g in groups.items() if "_node-security-group_" in n]
    assert node["tags"]["karpenter.sh/discovery"] == "af-test"


def test_attributes_resolve_to_cluster_outputs(stack):
    cluster = build(stack)
    for key in ("certificate_authority_data", "oidc_issuer_url", "security_group_id"):
        cdktf.TerraformOutput(stack, key, value=getattr(cluster, key))
    outputs = synth(stack)["output"]
    assert outputs["certificate_authority_data"]["value"].endswith(".certificate_authority[0].data}")
    assert outputs["oidc_issuer_url"]["value"].endswith(".identity[0].oidc[0].issuer}")
    assert outputs["security_group_id"]["value"].endswith(".vpc_config[0].cluster_security_group_id}")


@pytest.mark.parametrize("sizing, message", [
    (dict(instance_types=("m99x.large",)), r"instance_types='m99x.large' is not an instance type of a known family"),
    (dict(instance_types=("m7i.large", "m7g.large")), r"mixes x86_64 and Graviton"),
    (dict(instance_types=("m6a.large", "t3.large")),
     r"instance_types='t3.large' does not encrypt traffic between instances .*fix: use a family from .*m6a"),
    (dict(instance_types=("m6g.large",)), r"instance_types='m6g.large' does not encrypt traffic between instances"),
    (dict(min_size=3, desired_size=3, max_size=2), r"min_size <= desired_size <= max_size"),
    (dict(disk_size_gib=10), r"disk_size_gib=10 .*use 20-16384 GiB"),
])
def test_bad_node_sizing_fails_fast(sizing, message):
    with pytest.raises(ValueError, match=message):
        NodeGroupSizing(**sizing)


@pytest.mark.parametrize("override, message", [
    (dict(kubernetes_version="1.34.1"), r"kubernetes_version='1.34.1' is not a Kubernetes minor version"),
    (dict(kubernetes_version="v1.34"), r"kubernetes_version='v1.34'"),
    (dict(public_access_cidrs=("0.0.0.0/0",)), r"public_access_cidrs='0.0.0.0/0' would expose"),
    (dict(public_access_cidrs=("10.0.0.1/16",)), r"public_access_cidrs='10.0.0.1/16' is not a valid IPv4 CIDR"),
    (dict(log_retention_days=45), r"log_retention_days=45 is not a retention period"),
    (dict(subnet_ids=("subnet-a",)), r"subnet_ids=\['subnet-a'\] has fewer than 2 subnets"),
    (dict(admin_role_arns=()), r"admin_role_arns=\(\) is empty"),
    (dict(admin_role_arns=("arn:aws:iam::123:role/x",)), r"is not an IAM role or user ARN"),
    (dict(addon_versions={k: v for k, v in DEFAULT_ADDON_VERSIONS.items() if k != "coredns"}),
     r"does not name exactly the managed add-ons"),
    (dict(addon_versions={**DEFAULT_ADDON_VERSIONS, "coredns": "latest"}), r"addon_versions.coredns='latest'"),
    (dict(addon_versions={**DEFAULT_ADDON_VERSIONS, "vpc-cni": "v1.13.4-eksbuild.1"}),
     r"addon_versions.vpc-cni='v1.13.4-eksbuild.1' has no network policy agent"),
    (dict(name="AF_Test"), r"name='AF_Test' is not a valid cluster name"),
])
def test_bad_cluster_props_fail_fast(override, message):
    with pytest.raises(ValueError, match=message):
        make_props(ClusterProps, **{**BASE, **override})


def test_vpc_cni_enforces_network_policies_and_no_other_addon_is_configured(stack):
    build(stack)
    addons = {a["addon_name"]: a for a in synth(stack)["resource"]["aws_eks_addon"].values()}
    # The network policy agent's switch, as the add-on's configuration schema spells it (a string, not a bool).
    assert json.loads(addons["vpc-cni"]["configuration_values"]) == {"enableNetworkPolicy": "true"}
    assert [name for name, a in addons.items() if "configuration_values" in a] == ["vpc-cni"]


def test_container_insights_log_groups_are_encrypted_and_created_before_the_addon(stack):
    build(stack, log_retention_days=90)
    res = synth(stack)["resource"]
    groups = {g["name"]: g for g in res["aws_cloudwatch_log_group"].values() if "containerinsights" in g["name"]}
    assert sorted(groups) == [f"/aws/containerinsights/af-test/{t}" for t in ("application", "dataplane", "host",
                                                                               "performance")]
    assert {(g["retention_in_days"], g["kms_key_id"]) for g in groups.values()} == {(90, BASE["logs_kms_key_arn"])}
    (addon,) = [a for a in res["aws_eks_addon"].values() if a["addon_name"] == "amazon-cloudwatch-observability"]
    assert {address(res, "aws_cloudwatch_log_group", g) for g in groups.values()} <= set(addon["depends_on"])


DEPLOYER = "arn:aws:iam::123456789012:role/github-actions-dev-deploy"


def test_deploy_role_gets_a_cluster_admin_access_entry_by_its_literal_arn(stack):
    build(stack).grant_deployer(DEPLOYER)
    res = synth(stack)["resource"]
    (entry,) = [e for k, e in res["aws_eks_access_entry"].items() if "deployer" in k]
    (assoc,) = [a for k, a in res["aws_eks_access_policy_association"].items() if "deployer" in k]
    assert (entry["principal_arn"], entry["type"]) == (DEPLOYER, "STANDARD")
    # Helm installs CRDs, namespaces and ClusterRoles: nothing below cluster admin at cluster scope can.
    assert (assoc["policy_arn"], assoc["access_scope"]) == (
        "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy", {"type": "cluster"})
    assert assoc["principal_arn"].startswith("${aws_eks_access_entry.cluster_deployer-access-entry")


@pytest.mark.parametrize("arn,match", [
    ("arn:aws:iam::123456789012:user/someone", "is not an IAM role ARN"),
    (ADMIN, "already one of cluster.admin_role_arns"),
])
def test_deploy_role_must_be_a_role_that_is_not_already_an_admin(stack, arn, match):
    cluster = build(stack)
    with pytest.raises(ValueError, match=match):
        cluster.grant_deployer(arn)


def test_api_access_opens_443_on_the_control_plane_and_on_the_clients_egress(stack):
    build(stack).allow_api_from("ci-runner", source_security_group_id="sg-runner")
    res = synth(stack)["resource"]
    (cluster_sg,) = [n for n in res["aws_security_group"] if "_cluster-security-group_" in n]
    (ingress,) = [r for r in res["aws_vpc_security_group_ingress_rule"].values()
                  if r.get("referenced_security_group_id") == "sg-runner"]
    (egress,) = [r for r in res["aws_vpc_security_group_egress_rule"].values() if r["security_group_id"] == "sg-runner"]
    assert (ingress["security_group_id"], ingress["ip_protocol"], ingress["from_port"], ingress["to_port"]) == (
        "${aws_security_group." + cluster_sg + ".id}", "tcp", 443, 443)
    assert (egress["referenced_security_group_id"], egress["from_port"], egress["to_port"]) == (
        "${aws_security_group." + cluster_sg + ".id}", 443, 443)
