import json
import re
from pathlib import Path

import pytest

from tests.conftest import new_stack, synth

from modules.aws import karpenter
from modules.aws.cluster import container_insights_statements, ebs_csi_statements, load_balancer_controller_statements
from modules.aws.identity import (
    WORKLOADS,
    PlatformIdentities,
    PlatformIdentitiesProps,
    WorkloadIdentity,
    WorkloadIdentityProps,
    is_read_action,
    workloads,
)
from modules.aws.platform_secrets import secret_delivery_statements
from modules.aws.storage import airflow_access_statements
from modules.aws.vault_storage import snapshot_upload_statements
from modules.core import iam
from modules.core.environment import AwsEnvironment

ACCOUNT, REGION = "123456789012", "eu-west-1"
LOGS, DAGS, PLUGINS = "arn:aws:s3:::af-test-logs", "arn:aws:s3:::af-test-dags", "arn:aws:s3:::af-test-plugins"
STORAGE_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/storage"
NODE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/af-test-eks-node"
BASE = dict(cluster_name="af-test")
UNSEAL_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/unseal"
SNAPSHOTS, VAULT_DATA_KEY = "arn:aws:s3:::af-test-vault-snapshots", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/vault-data"
DELIVERED_SECRETS = (f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:idp-client-secret-AbCdEf",
                     f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:redis-token-GhIjKl")
SECRETS_KEYS = (f"arn:aws:kms:{REGION}:{ACCOUNT}:key/secrets",)


def grant_all(identities: PlatformIdentities, *, ebs_kms_key_arn: str | None = None,
              vault_snapshot: bool = True) -> PlatformIdentities:
    """Every grant the infra stack makes, through the same statement builders its resources' grant methods use,
    here with literal ARNs so the tests can assert exact policies (tests/test_infra_stack.py checks the wiring)."""
    env = AwsEnvironment(account_id=ACCOUNT, region=REGION)
    for workload, statements in airflow_access_statements(dags_bucket_arn=DAGS, plugins_bucket_arn=PLUGINS,
                                                          logs_bucket_arn=LOGS, kms_key_arn=STORAGE_KEY,
                                                          region=REGION).items():
        identities.add_statements(workload, *statements)
    identities.grant("vault", "AutoUnsealWithKms", ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], [UNSEAL_KEY])
    if vault_snapshot:      # False: the test grants it through VaultStorage itself
        identities.add_statements("vault-snapshot", *snapshot_upload_statements(env, bucket_arn=SNAPSHOTS,
                                                                                 kms_key_arn=VAULT_DATA_KEY))
    identities.add_statements("karpenter", *karpenter.controller_statements(env, cluster_name="af-test",
                                                                            node_role_arn=NODE_ROLE))
    identities.add_statements("aws-load-balancer-controller", *load_balancer_controller_statements(
        env, cluster_name="af-test"))
    identities.add_statements("cloudwatch-agent", *container_insights_statements(env, cluster_name="af-test"))
    identities.add_statements("ebs-csi-driver", *ebs_csi_statements(env, cluster_name="af-test",
                                                                    ebs_kms_key_arn=ebs_kms_key_arn))
    identities.add_statements("external-secrets", *secret_delivery_statements(env, secret_arns=DELIVERED_SECRETS,
                                                                              kms_key_arns=SECRETS_KEYS))
    return identities

S3_READ = ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"]
LOG_WRITE = ["s3:GetObject", "s3:ListBucket", "s3:PutObject"]
EXPECTED_ACTIONS = {
    "airflow-scheduler": sorted(["kms:Decrypt", *S3_READ]),
    "airflow-dag-processor": sorted(["kms:Decrypt", *S3_READ]),
    "airflow-triggerer": sorted({"kms:Decrypt", "kms:GenerateDataKey", "s3:GetObjectVersion", *LOG_WRITE}),
    "airflow-api-server": sorted(["kms:Decrypt", *S3_READ]),
    "airflow-worker": sorted({"kms:Decrypt", "kms:GenerateDataKey", *S3_READ, *LOG_WRITE}),
    "airflow-task": sorted({"kms:Decrypt", "kms:GenerateDataKey", *S3_READ, *LOG_WRITE}),
    "vault": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt"],
    "vault-snapshot": ["kms:Decrypt", "kms:GenerateDataKey", "s3:PutObject"],
    "aws-load-balancer-controller": sorted([
        "ec2:DescribeAvailabilityZones", "ec2:DescribeInstances",
        "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeTags",
        "ec2:DescribeVpcs", "ec2:GetSecurityGroupsForVpc",
        "elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeLoadBalancerAttributes", "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTags",
        "elasticloadbalancing:DescribeTargetGroupAttributes", "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:RegisterTargets"]),
    "karpenter": sorted([
        "ec2:CreateFleet", "ec2:CreateLaunchTemplate", "ec2:CreateTags", "ec2:DeleteLaunchTemplate",
        "ec2:DescribeAvailabilityZones", "ec2:DescribeCapacityReservations", "ec2:DescribeImages",
        "ec2:DescribeInstanceStatus", "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
        "ec2:DescribeInstances", "ec2:DescribeLaunchTemplates", "ec2:DescribePlacementGroups",
        "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets", "ec2:RunInstances",
        "ec2:TerminateInstances", "eks:DescribeCluster", "iam:AddRoleToInstanceProfile",
        "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile", "iam:GetInstanceProfile",
        "iam:ListInstanceProfiles", "iam:PassRole", "iam:RemoveRoleFromInstanceProfile", "iam:TagInstanceProfile",
        "pricing:GetProducts", "ssm:GetParameter"]),
    "external-secrets": ["kms:Decrypt", "secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
    "cloudwatch-agent": sorted([
        "cloudwatch:PutMetricData", "ec2:DescribeInstances", "ec2:DescribeTags", "ec2:DescribeVolumes",
        "logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogGroups", "logs:DescribeLogStreams",
        "logs:PutLogEvents", "logs:PutRetentionPolicy"]),
    "ebs-csi-driver": sorted([
        "ec2:AttachVolume", "ec2:CreateTags", "ec2:CreateVolume", "ec2:DeleteVolume", "ec2:DescribeAvailabilityZones",
        "ec2:DescribeInstances", "ec2:DescribeSnapshots", "ec2:DescribeTags", "ec2:DescribeVolumeStatus",
        "ec2:DescribeVolumes", "ec2:DescribeVolumesModifications", "ec2:DetachVolume", "ec2:ModifyVolume"]),
}
LOG_WRITERS = {"airflow-worker", "airflow-task", "airflow-triggerer"}


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _policies(doc) -> dict[str, list[dict]]:
    """Workload id -> its role's policy statements (joined through the role reference, not the address)."""
    res = doc["resource"]
    role_of = {f"${{aws_iam_role.{address}.id}}": role["name"].removeprefix("af-test-")
               for address, role in res["aws_iam_role"].items()}
    policies = {}
    for policy in res["aws_iam_role_policy"].values():
        workload = role_of[policy["role"]]
        assert workload not in policies, f"{workload} has two inline policies"
        policies[workload] = json.loads(policy["policy"])["Statement"]
    return policies


def _actions(statements) -> list[str]:
    return sorted({a for s in statements for a in _as_list(s["Action"])})


def _with_action(statements, action):
    return [s for s in statements if action in _as_list(s["Action"])]


@pytest.fixture(scope="module")
def platform():
    """One synthesized platform (with a grant made after construction) shared by the read-only tests."""
    stack = new_stack()
    identities = grant_all(PlatformIdentities(stack, "identities", props=PlatformIdentitiesProps(**BASE)))
    identities.grant("airflow-triggerer", "ConsumeEventQueue", ["sqs:ReceiveMessage", "sqs:DeleteMessage"],
                     [f"arn:aws:sqs:{REGION}:{ACCOUNT}:af-test-events"])
    doc = synth(stack)
    return identities, doc, _policies(doc)


def test_each_role_grants_exactly_the_expected_actions(platform):
    _, _, policies = platform
    policies = {**policies, "airflow-triggerer": [s for s in policies["airflow-triggerer"]
                                                  if s["Sid"] != "ConsumeEventQueue"]}
    assert {wid: _actions(statements) for wid, statements in policies.items()} == EXPECTED_ACTIONS


def test_no_wildcard_action_and_no_unconditioned_star_resource_on_a_write(platform):
    _, _, policies = platform
    for wid, statements in policies.items():
        for s in statements:
            assert s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s
            for action in _as_list(s["Action"]):
                assert action != "*" and not action.endswith(":*") and "*" not in action, (wid, s["Sid"], action)
                if "*" in _as_list(s["Resource"]) and not is_read_action(action):
                    assert s.get("Condition"), (wid, s["Sid"], action)


def test_only_put_metric_data_and_scoped_iam_writes_use_star_with_a_condition(platform):
    _, _, policies = platform
    star_writes = sorted((wid, a) for wid, statements in policies.items() for s in statements
                         if "*" in _as_list(s["Resource"]) for a in _as_list(s["Action"]) if not is_read_action(a))
    assert star_writes == [("cloudwatch-agent", "cloudwatch:PutMetricData")]
    (metrics,) = _with_action(policies["cloudwatch-agent"], "cloudwatch:PutMetricData")
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": ["ContainerInsights", "CWAgent"]}}


def test_api_server_only_reads_task_logs(platform):
    _, _, policies = platform
    api = policies["airflow-api-server"]
    assert all(is_read_action(a) or a == "kms:Decrypt" for a in _actions(api))
    gets = sorted(r for stmt in _with_action(api, "s3:GetObject") for r in stmt["Resource"])
    lists = sorted(r for stmt in _with_action(api, "s3:ListBucket") for r in stmt["Resource"])
    (decrypt,) = _with_action(api, "kms:Decrypt")
    # task logs to show them, plugins for the plugin sync at start; nothing else
    assert (gets, lists) == (sorted([f"{LOGS}/task-logs/*", f"{PLUGINS}/*"]), sorted([LOGS, PLUGINS]))
    assert decrypt["Resource"] == [STORAGE_KEY] and "kms:GenerateDataKey" not in _actions(api)


def test_log_writers_put_only_under_the_task_logs_prefix(platform):
    _, _, policies = platform
    writers = {wid for wid, statements in policies.items() if _with_action(statements, "s3:PutObject")}
    assert writers == LOG_WRITERS | {"vault-snapshot"}
    (put,) = _with_action(policies["vault-snapshot"], "s3:PutObject")   # its own bucket's prefix only
    assert put["Resource"] == [f"{SNAPSHOTS}/raft-snapshots/*"]
    for wid in LOG_WRITERS:
        (put,) = _with_action(policies[wid], "s3:PutObject")
        assert put["Resource"] == [f"{LOGS}/task-logs/*"], wid
        reads = [r for s in _with_action(policies[wid], "s3:GetObject") for r in s["Resource"] if r.startswith(LOGS)]
        assert reads == [f"{LOGS}/task-logs/*"], wid


def test_dag_and_plugin_readers_get_read_only_bundle_access(platform):
    _, _, policies = platform
    readers = {wid for wid, statements in policies.items()
               if any(r.startswith(DAGS) for s in statements for r in _as_list(s["Resource"]))}
    assert readers == {"airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-task"}
    for wid in readers:
        (objects,) = [s for s in policies[wid] if s["Sid"] == "ReadDagsAndPlugins"]
        assert (sorted(objects["Action"]), objects["Resource"]) == (
            ["s3:GetObject", "s3:GetObjectVersion"], [f"{DAGS}/*", f"{PLUGINS}/*"])


def test_airflow_kms_use_is_the_storage_key_through_s3_only(platform):
    _, _, policies = platform
    for wid in EXPECTED_ACTIONS:
        if not wid.startswith("airflow-"):
            continue
        (kms,) = [s for s in policies[wid] if any(a.startswith("kms:") for a in s["Action"])]
        expected = ["kms:Decrypt", "kms:GenerateDataKey"] if wid in LOG_WRITERS else ["kms:Decrypt"]
        assert (sorted(kms["Action"]), kms["Resource"], kms["Condition"]) == (
            expected, [STORAGE_KEY], {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}), wid


def test_every_role_trusts_only_pod_identity_for_its_own_cluster_namespace_and_service_accounts(platform):
    _, doc, _ = platform
    roles = doc["resource"]["aws_iam_role"].values()
    assert len(roles) == len(WORKLOADS)
    trusted = {}
    for role in roles:
        (trust,) = json.loads(role["assume_role_policy"])["Statement"]
        condition = trust.pop("Condition")
        assert trust == {"Sid": "AssumeByEksPodIdentity", "Effect": "Allow",
                         "Principal": {"Service": "pods.eks.amazonaws.com"},
                         "Action": ["sts:AssumeRole", "sts:TagSession"]}
        (equals,) = condition.values()
        assert list(condition) == ["StringEquals"]
        assert (equals.pop("aws:SourceAccount"), equals.pop("aws:RequestTag/eks-cluster-arn")) == (
            ACCOUNT, f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/af-test"), role["name"]
        trusted[role["name"]] = equals
    # Each role: exactly its workload's namespace and service accounts, nothing else in the condition.
    assert trusted == {f"af-test-{wid}": {"aws:RequestTag/kubernetes-namespace": ns,
                                          "aws:RequestTag/kubernetes-service-account": list(sas)}
                       for wid, (ns, sas) in WORKLOADS.items()}


def test_one_association_per_service_account_in_the_workloads_namespace(platform):
    _, doc, _ = platform
    res = doc["resource"]
    role_name = {f"${{aws_iam_role.{address}.arn}}": role["name"] for address, role in res["aws_iam_role"].items()}
    associations = sorted((a["namespace"], a["service_account"], role_name[a["role_arn"]], a["cluster_name"])
                          for a in res["aws_eks_pod_identity_association"].values())
    expected = sorted((ns, sa, f"af-test-{wid}", "af-test") for wid, (ns, sas) in WORKLOADS.items() for sa in sas)
    assert associations == expected and len(associations) == 13


def test_service_account_names_follow_the_airflow_chart_and_release():
    assert workloads(airflow_namespace="data", airflow_release="af") == {
        "airflow-scheduler": ("data", ("af-scheduler",)),
        "airflow-dag-processor": ("data", ("af-dag-processor",)),
        "airflow-triggerer": ("data", ("af-triggerer",)),
        "airflow-api-server": ("data", ("af-api-server",)),
        "airflow-worker": ("data", ("af-worker",)),
        "airflow-task": ("data", ("af-worker-kubernetes",)),
        "vault": ("vault", ("vault",)),
        "vault-snapshot": ("vault", ("vault-snapshot",)),
        "aws-load-balancer-controller": ("kube-system", ("aws-load-balancer-controller",)),
        "karpenter": ("kube-system", ("karpenter",)),
        "external-secrets": ("external-secrets", ("external-secrets",)),
        "cloudwatch-agent": ("amazon-cloudwatch", ("cloudwatch-agent",)),
        "ebs-csi-driver": ("kube-system", ("ebs-csi-controller-sa",)),
    }


def test_role_arns_are_exposed_per_workload(platform):
    identities, _, _ = platform
    assert sorted(identities.role_arns) == sorted(WORKLOADS)
    assert all(arn.startswith("${TfToken[") for arn in identities.role_arns.values())


def test_grant_after_construction_lands_in_that_roles_policy_only(platform):
    _, _, policies = platform
    granted = [(wid, s) for wid, statements in policies.items() for s in statements if s["Sid"] == "ConsumeEventQueue"]
    assert granted == [("airflow-triggerer", {
        "Sid": "ConsumeEventQueue", "Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage"],
        "Resource": [f"arn:aws:sqs:{REGION}:{ACCOUNT}:af-test-events"]})]


def test_secrets_delivery_reads_only_the_delivered_secrets_through_secrets_manager(platform):
    _, _, policies = platform
    read, decrypt = policies["external-secrets"]
    assert read["Resource"] == list(DELIVERED_SECRETS)
    assert (decrypt["Resource"], decrypt["Condition"]) == (
        list(SECRETS_KEYS),
        {"StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}})


def test_vault_uses_only_the_unseal_key(platform):
    _, _, policies = platform
    (unseal,) = policies["vault"]
    assert unseal["Resource"] == [UNSEAL_KEY]


def test_load_balancer_controller_registers_only_in_cluster_target_groups_and_changes_no_security_group(platform):
    _, _, policies = platform
    lb = policies["aws-load-balancer-controller"]
    (register,) = _with_action(lb, "elasticloadbalancing:RegisterTargets")
    assert register["Resource"] == [f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/af-test-*/*"]
    # Terraform admits the ALB on the node group (Cluster.allow_node_ingress); the controller may open nothing.
    writes = {a for s in lb for a in s["Action"] if not is_read_action(a)}
    assert writes == {"elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"}


def test_target_group_bindings_ask_the_controller_for_no_security_group_rules():
    """A binding's spec.networking makes the controller Authorize/Revoke ingress on node groups, which its role
    may not do: render bindings without it (or grant it first, scoped to those groups)."""
    template = (Path(__file__).parents[3] / "helm/platform-glue/templates/targetgroupbindings.yaml").read_text()
    assert "kind: TargetGroupBinding" in template and "networking" not in template


def test_karpenter_passes_only_the_node_role_and_launches_only_into_discovered_networks(platform):
    _, _, policies = platform
    karpenter = policies["karpenter"]
    (pass_role,) = _with_action(karpenter, "iam:PassRole")
    assert (pass_role["Resource"], pass_role["Condition"]) == (
        [NODE_ROLE], {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}})
    (network,) = [s for s in karpenter if s["Sid"] == "AllowDiscoveredNetworkAccess"]
    assert network["Condition"] == {"StringEquals": {"aws:ResourceTag/karpenter.sh/discovery": "af-test"}}
    (delete,) = _with_action(karpenter, "ec2:TerminateInstances")
    assert delete["Condition"]["StringEquals"] == {"aws:ResourceTag/kubernetes.io/cluster/af-test": "owned"}
    for s in karpenter:                                   # every write names this account's/region's ARNs
        if not all(is_read_action(a) for a in s["Action"]):
            assert all(r.startswith((f"arn:aws:ec2:{REGION}:", f"arn:aws:iam::{ACCOUNT}:", f"arn:aws:eks:{REGION}:"))
                       for r in s["Resource"]), s["Sid"]


def test_ebs_csi_driver_manages_only_this_clusters_volumes(platform):
    _, _, policies = platform
    ebs = policies["ebs-csi-driver"]
    (create,) = _with_action(ebs, "ec2:CreateVolume")
    (delete,) = _with_action(ebs, "ec2:DeleteVolume")
    assert create["Condition"] == {"StringEquals": {"aws:RequestTag/ebs.csi.aws.com/cluster": "true",
                                                    "aws:RequestTag/kubernetes.io/cluster/af-test": "owned"}}
    assert delete["Condition"] == {"StringEquals": {"aws:ResourceTag/ebs.csi.aws.com/cluster": "true",
                                                    "aws:ResourceTag/kubernetes.io/cluster/af-test": "owned"}}
    assert not [a for a in _actions(ebs) if a.startswith("kms:")]   # no EBS key given: no KMS access


def test_ebs_key_grants_only_for_aws_resources_when_a_key_is_given():
    stack = new_stack()
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/ebs"
    grant_all(PlatformIdentities(stack, "identities", props=PlatformIdentitiesProps(**BASE)), ebs_kms_key_arn=key)
    ebs = _policies(synth(stack))["ebs-csi-driver"]
    (grant,) = _with_action(ebs, "kms:CreateGrant")
    (use,) = _with_action(ebs, "kms:Decrypt")
    assert (grant["Resource"], grant["Condition"]) == ([key], {"Bool": {"kms:GrantIsForAWSResource": "true"}})
    assert use["Condition"] == {"StringEquals": {"kms:ViaService": f"ec2.{REGION}.amazonaws.com"}}


def test_addon_managed_workloads_get_a_role_but_no_separate_association():
    stack = new_stack()
    grant_all(PlatformIdentities(stack, "identities", props=PlatformIdentitiesProps(
        **BASE, addon_managed=("ebs-csi-driver", "cloudwatch-agent"))))
    res = synth(stack)["resource"]
    service_accounts = {a["service_account"] for a in res["aws_eks_pod_identity_association"].values()}
    assert len(res["aws_iam_role"]) == 13 and len(service_accounts) == 11
    assert not {"ebs-csi-controller-sa", "cloudwatch-agent"} & service_accounts


# ---- WorkloadIdentity and its checks --------------------------------------------------------------

IDENTITY = dict(name="af-test-app", cluster_name="af-test", namespace="apps",
                service_accounts=("app", "app-jobs"), description="app")
READ = iam.statement("ReadObjects", ["s3:GetObject"], [f"{DAGS}/*"])


def test_workload_identity_associates_each_service_account_with_its_role():
    stack = new_stack()
    identity = WorkloadIdentity(stack, "app", props=WorkloadIdentityProps(**IDENTITY, statements=(READ,)))
    identity.grant("PutAppMetrics", ["cloudwatch:PutMetricData"], "*",
                   condition={"StringEquals": {"cloudwatch:namespace": "App"}})
    res = synth(stack)["resource"]
    (role,) = res["aws_iam_role"].values()
    (policy,) = res["aws_iam_role_policy"].values()
    assert role["name"] == "af-test-app"
    assert [s["Sid"] for s in json.loads(policy["policy"])["Statement"]] == ["ReadObjects", "PutAppMetrics"]
    assert sorted((a["namespace"], a["service_account"]) for a in res["aws_eks_pod_identity_association"].values()) \
        == [("apps", "app"), ("apps", "app-jobs")]


@pytest.mark.parametrize("action", ["*", "s3:*"])
def test_rejects_service_wide_wildcard_actions(action):
    bad = iam.statement("TooBroad", [action], [f"{DAGS}/*"])
    message = rf"statements\[TooBroad\]\.Action='{re.escape(action)}' grants every action.*fix: list"
    with pytest.raises(ValueError, match=message):
        WorkloadIdentityProps(**IDENTITY, statements=(bad,))


def test_rejects_star_resource_on_a_write_without_a_condition():
    bad = iam.statement("WriteAnything", ["s3:GetObject", "s3:PutObject"], "*")
    with pytest.raises(ValueError, match=r"statements\[WriteAnything\]\.Action='s3:PutObject' is a write action on "
                                         r"Resource '\*' without a Condition; fix: name the resource ARNs"):
        WorkloadIdentityProps(**IDENTITY, statements=(bad,))


def test_accepts_star_resource_on_reads_and_on_conditioned_writes():
    reads = iam.statement("DescribeThings", ["ec2:DescribeInstances", "ec2:GetSecurityGroupsForVpc"], "*")
    metrics = iam.statement("PutMetrics", ["cloudwatch:PutMetricData"], "*",
                            condition={"StringEquals": {"cloudwatch:namespace": "App"}})
    props = WorkloadIdentityProps(**IDENTITY, statements=(reads, metrics))
    assert [s["Sid"] for s in props.statements] == ["DescribeThings", "PutMetrics"]


def test_grant_rejects_a_bad_statement_and_leaves_the_policy_unchanged():
    stack = new_stack()
    identity = WorkloadIdentity(stack, "app", props=WorkloadIdentityProps(**IDENTITY, statements=(READ,)))
    with pytest.raises(ValueError, match=r"grant\[SendAnywhere\]\.Action='sqs:SendMessage' is a write action"):
        identity.grant("SendAnywhere", ["sqs:SendMessage"], "*")
    with pytest.raises(ValueError, match=r"grant\.Sid='ReadObjects' is used twice"):
        identity.grant("ReadObjects", ["s3:GetObject"], [f"{PLUGINS}/*"])
    assert [s["Sid"] for s in identity.statements] == ["ReadObjects"]


def test_platform_grant_rejects_an_unknown_workload(platform):
    identities, _, _ = platform
    with pytest.raises(ValueError, match=r"workload_id='airflow-webserver' is not a workload.*fix: use one of"):
        identities.grant("airflow-webserver", "ReadThings", ["s3:GetObject"], [f"{DAGS}/*"])


@pytest.mark.parametrize("field,value,message", [
    ("service_accounts", (), r"service_accounts=\(\) is empty"),
    ("service_accounts", ("App",), r"service_accounts='App' is not a valid Kubernetes service account"),
    ("namespace", "Apps", r"namespace='Apps' is not a valid Kubernetes namespace"),
    ("name", "x" * 65, r"is not a valid IAM role name"),
])
def test_workload_identity_props_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        WorkloadIdentityProps(**{**IDENTITY, field: value}, statements=(READ,))


def test_rejects_statements_without_sid_or_with_not_action():
    with pytest.raises(ValueError, match=r"statements\.Sid='read-objects' is missing or not 1-128 ASCII"):
        WorkloadIdentityProps(**IDENTITY, statements=(iam.statement("read-objects", ["s3:GetObject"], "*"),))
    not_action = {"Sid": "AllButIam", "Effect": "Allow", "NotAction": ["iam:PassRole"], "Resource": "*"}
    with pytest.raises(ValueError, match=r"statements\[AllButIam\]\.NotAction=.*is not allowed"):
        WorkloadIdentityProps(**IDENTITY, statements=(not_action,))


def test_platform_props_reject_a_cluster_name_that_leaves_no_room_for_target_group_names():
    with pytest.raises(ValueError, match=r"cluster_name='airflow-production-eu-west-1-main' does not leave room"):
        PlatformIdentitiesProps(**{**BASE, "cluster_name": "airflow-production-eu-west-1-main"})


def test_platform_props_reject_unknown_addon_workloads():
    with pytest.raises(ValueError, match=r"addon_managed=\['vault'\] are not workloads an EKS add-on associates"):
        PlatformIdentitiesProps(**BASE, addon_managed=("vault",))
