"""The composed infra stack of each environment: stable addresses of stateful resources, environment
differences, and the cross-component wiring (who may reach whom, who may do what)."""
from __future__ import annotations

import json

import pytest

import environments

INFRA = [f"airflow-{name}-infra" for name in environments.NAMES]

# Renaming any of these plans a destroy of data: change them only with a `terraform state mv` plan.
STATEFUL_ADDRESSES = {
    "aws_db_instance": {"database_instance_D7FC2283"},
    "aws_elasticache_replication_group": {"cache_replication-group_FA5C54CF"},
    "aws_s3_bucket": {"storage_access-logs_bucket_1F0A0A1E", "storage_dags_bucket_82E0F595",
                      "storage_plugins_bucket_5965B0E8", "storage_task-logs_bucket_9964E3BD",
                      "events_landing_bucket_CE50F6D9", "vault-storage_snapshots_bucket_0423A693"},
    "aws_kms_key": {"cache_key_85736327", "cluster_secrets-key_6F9AD049", "database_key_CA7EEF20", "logs-key_44F95A88",
                    "storage_storage-key_6FCD5129", "vault-unseal-key_CB0C113C", "platform-secrets_key_AC596A9B",
                    "alerting_key_4C41E48A", "events_queue-key_B9EC59FB", "node-interruption_key_3193E706",
                    "vault-storage_data-key_35E4479C"},
    "aws_eks_cluster": {"cluster_A4C38409"},
    "aws_secretsmanager_secret": {"cache_auth-token-secret_9CFFAD65", "platform-secrets_airflow-keys_FB8EC2EE",
                                  "platform-secrets_airflow-database-users_0769806C",
                                  "platform-secrets_airflow-api-server_58C6A543",
                                  "platform-secrets_grafana-admin_C4BD28F8", "platform-secrets_alert-receivers_74B6DDAD"},
}
# Where Kafka is on (events.kafka: staging and prod), the MSK cluster and its key are stateful too.
KAFKA_ADDRESSES = {"aws_kms_key": {"kafka_key_04EB7037"}, "aws_msk_cluster": {"kafka_cluster_4FCB1297"}}
# Where the account guardrails are on (guardrails.cloudtrail / guardduty: prod), the trail's bucket and key hold the
# audit record, and a new detector would start GuardDuty's findings history from nothing.
TRAIL_ADDRESSES = {"aws_s3_bucket": {"guardrails_trail-bucket_6A18E4BE"}, "aws_kms_key": {"guardrails_trail-key_2D8ADAD2"},
                   "aws_cloudtrail": {"guardrails_trail_91C67781"}}
DETECTOR_ADDRESSES = {"aws_guardduty_detector": {"guardrails_detector_6944F04E"}}
# Where the in-VPC CI runner exists (state.github_repository set, ci_runner.enabled): its key encrypts its build logs.
RUNNER_ADDRESSES = {"aws_kms_key": {"ci-runner_key_1B17F46C"}}
STATE_ADDRESSES = {"aws_s3_bucket": {"state-access-logs_bucket_2091920F", "state-bucket_828F7150"},
                   "aws_kms_key": {"state-key_753BFC90"}}


@pytest.mark.parametrize("stack_name", INFRA)
def test_stateful_resources_keep_their_terraform_addresses(stacks, stack_name):
    res = stacks[stack_name]["resource"]
    expected = {rtype: set(addresses) for rtype, addresses in STATEFUL_ADDRESSES.items()}
    config = environments.load(stack_name.split("-")[1])
    guardrails = config.guardrails
    for on, extra in (("-dev-" not in stack_name, KAFKA_ADDRESSES), (guardrails.cloudtrail, TRAIL_ADDRESSES),
                      (guardrails.guardduty, DETECTOR_ADDRESSES), (config.has_ci_runner, RUNNER_ADDRESSES)):
        for rtype, addresses in extra.items():
            expected[rtype] = expected.get(rtype, set()) | (addresses if on else set())
    assert {rtype: set(res.get(rtype, {})) for rtype in expected} == expected


@pytest.mark.parametrize("name", environments.NAMES)
def test_every_environment_runs_the_guardrails_of_its_own_account(stacks, name):
    """One account per environment (environments/common.py): each records and watches its own account."""
    res, settings = stacks[f"airflow-{name}-infra"]["resource"], environments.load(name).guardrails
    assert (settings.cloudtrail, settings.guardduty, settings.off_reason) == (True, True, "")
    (trail,) = res["aws_cloudtrail"].values()
    assert trail["is_multi_region_trail"] is True and trail["enable_log_file_validation"] is True
    assert trail["name"] == f"airflow-{name}-trail"
    (detector,) = res["aws_guardduty_detector"].values()
    assert detector["enable"] is True
    assert {f["name"] for f in res["aws_guardduty_detector_feature"].values()} == {
        "EKS_AUDIT_LOGS", "RUNTIME_MONITORING", "S3_DATA_EVENTS"}


@pytest.mark.parametrize("name", environments.NAMES)
def test_every_role_of_the_environment_carries_its_workload_boundary(stacks, name):
    config = environments.load(name)
    for layer in ("infra", "platform"):
        roles = stacks[config.stack_name(layer)]["resource"].get("aws_iam_role", {})
        assert {role["permissions_boundary"] for role in roles.values()} <= {config.workload_boundary_arn}
        assert all("permissions_boundary" in role for role in roles.values())
    assert len(stacks[config.stack_name("infra")]["resource"]["aws_iam_role"]) > 10


@pytest.mark.parametrize("name", environments.NAMES)
def test_every_role_of_the_environment_is_named_under_its_prefix(stacks, name):
    """The boundaries let a deploy or workload pass or re-trust only `<prefix>-*` roles (modules/aws/ci_roles.py)."""
    config = environments.load(name)
    roles = stacks[config.stack_name("infra")]["resource"]["aws_iam_role"].values()
    cluster = "${aws_eks_cluster.cluster_A4C38409.name}-"      # the cluster is named config.prefix
    assert [r["name"] for r in roles if not r["name"].replace(cluster, f"{config.prefix}-").startswith(
        f"{config.prefix}-")] == []


@pytest.mark.parametrize("name,multi_az,protected,backups,cache_nodes", [
    ("dev", False, False, 7, 1), ("staging", True, True, 14, 2), ("prod", True, True, 30, 3)])
def test_data_layer_follows_the_environment(stacks, name, multi_az, protected, backups, cache_nodes):
    res = stacks[f"airflow-{name}-infra"]["resource"]
    (db,) = res["aws_db_instance"].values()
    assert (db["multi_az"], db["deletion_protection"], db["backup_retention_period"]) == (multi_az, protected, backups)
    assert db["skip_final_snapshot"] is (not protected) and db["copy_tags_to_snapshot"] is True
    assert db["manage_master_user_password"] is True and "password" not in db
    (cache,) = res["aws_elasticache_replication_group"].values()
    assert (cache["num_cache_clusters"], cache["multi_az_enabled"]) == (cache_nodes, multi_az)
    assert cache["transit_encryption_enabled"] is True and cache["at_rest_encryption_enabled"] in (True, "true")
    buckets = [b for b in res["aws_s3_bucket"].values()]
    assert all(("lifecycle" in b) is protected for b in buckets)


@pytest.mark.parametrize("stack_name", INFRA)
def test_database_and_cache_admit_only_the_cluster_nodes(stacks, stack_name):
    res = stacks[stack_name]["resource"]
    node_sg = next("${aws_security_group." + n + ".id}" for n in res["aws_security_group"] if "node-security-group" in n)
    for port in (5432, 6379):
        (rule,) = [r for r in res["aws_vpc_security_group_ingress_rule"].values() if r.get("from_port") == port]
        assert rule["referenced_security_group_id"] == node_sg and "cidr_ipv4" not in rule
        (egress,) = [r for r in res["aws_vpc_security_group_egress_rule"].values() if r.get("from_port") == port]
        assert egress["security_group_id"] == node_sg


@pytest.mark.parametrize("stack_name", INFRA)
def test_no_iam_policy_allows_every_action_or_writes_to_every_resource(stacks, stack_name):
    res = stacks[stack_name]["resource"]
    for address, policy in res["aws_iam_role_policy"].items():
        for stmt in json.loads(policy["policy"])["Statement"]:
            actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
            assert not [a for a in actions if a == "*" or a.endswith(":*")], address
            resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
            writes = [a for a in actions if not a.split(":")[1].startswith(("Describe", "Get", "List"))]
            if "*" in resources and writes:
                assert "Condition" in stmt, (address, stmt["Sid"])


@pytest.mark.parametrize("stack_name", INFRA)
def test_every_workload_has_a_role_and_the_addons_use_theirs(stacks, stack_name):
    doc = stacks[stack_name]
    outputs = {k.removeprefix("role-arn-") for k in doc["output"] if k.startswith("role-arn-")}
    assert outputs == {"airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-api-server",
                       "airflow-worker", "airflow-task", "vault", "vault-snapshot", "aws-load-balancer-controller", "karpenter",
                       "external-secrets", "cloudwatch-agent", "ebs-csi-driver"}
    addons = {a["addon_name"]: a for a in doc["resource"]["aws_eks_addon"].values()}
    (ebs,) = addons["aws-ebs-csi-driver"]["pod_identity_association"]
    assert ebs["service_account"] == "ebs-csi-controller-sa" and "ebs-csi-driver" in ebs["role_arn"]


@pytest.mark.parametrize("stack_name", INFRA)
def test_each_pod_identity_role_trusts_only_its_clusters_associations(stacks, stack_name):
    """Three clusters share one account: a role trusts the session tags of its own cluster, namespace and service
    accounts, and every association (ours or an add-on's) names a service account its role trusts."""
    res, config = stacks[stack_name]["resource"], environments.load(stack_name.split("-")[1])
    cluster_arn = (f"arn:aws:eks:{config.region}:{config.account_id}:cluster/"
                   f"${{aws_eks_cluster.cluster_A4C38409.name}}")
    trusted = {}
    for address, role in res["aws_iam_role"].items():
        (stmt,) = json.loads(role["assume_role_policy"])["Statement"]
        if stmt["Principal"] != {"Service": "pods.eks.amazonaws.com"}:
            continue
        equals = stmt["Condition"]["StringEquals"]
        assert (equals["aws:SourceAccount"], equals["aws:RequestTag/eks-cluster-arn"]) == (
            config.account_id, cluster_arn), address
        trusted[f"${{aws_iam_role.{address}.arn}}"] = (equals["aws:RequestTag/kubernetes-namespace"],
                                                      equals["aws:RequestTag/kubernetes-service-account"])
    assert len(trusted) == 13
    associations = [(a["role_arn"], a["namespace"], a["service_account"])
                    for a in res["aws_eks_pod_identity_association"].values()]
    addon_namespaces = {"aws-ebs-csi-driver": "kube-system", "amazon-cloudwatch-observability": "amazon-cloudwatch"}
    associations += [(a["role_arn"], addon_namespaces[addon["addon_name"]], a["service_account"])
                     for addon in res["aws_eks_addon"].values() for a in addon.get("pod_identity_association", [])]
    assert len(associations) == 13
    for role_arn, namespace, service_account in associations:
        assert namespace == trusted[role_arn][0] and service_account in trusted[role_arn][1], role_arn


@pytest.mark.parametrize("stack_name", INFRA)
def test_no_workload_may_change_security_group_rules(stacks, stack_name):
    """The ALB reaches pods through a Terraform-managed rule on the node group; no controller opens ports."""
    res = stacks[stack_name]["resource"]
    actions = {a for p in res["aws_iam_role_policy"].values() for s in json.loads(p["policy"])["Statement"]
               for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert not actions & {"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress",
                          "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupEgress"}


@pytest.mark.parametrize("stack_name", INFRA)
def test_every_vpc_endpoint_admits_only_this_accounts_principals(stacks, stack_name):
    res, config = stacks[stack_name]["resource"], environments.load(stack_name.split("-")[1])
    only_this_account = {"Sid": "OnlyThisAccountsPrincipals", "Effect": "Allow", "Principal": "*", "Action": "*",
                         "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalAccount": config.account_id}}}
    endpoints = res["aws_vpc_endpoint"].values()
    assert len(endpoints) == 1 + len(config.network.interface_endpoints)
    for endpoint in endpoints:
        first, *others = json.loads(endpoint["policy"])["Statement"]
        assert first == only_this_account, endpoint["service_name"]
        # Only the S3 gateway adds a second statement: reads of AWS-owned buckets (ECR layers, AL2023 repos, ...).
        assert [s["Action"] for s in others] == ([["s3:GetObject"]] if endpoint["vpc_endpoint_type"] == "Gateway" else [])


@pytest.mark.parametrize("stack_name", INFRA)
def test_outputs_later_stacks_need(stacks, stack_name):
    assert {"cluster-name", "cluster-endpoint", "cluster-certificate-authority-data", "cluster-oidc-issuer-url",
            "database-endpoint", "database-master-secret-arn", "cache-primary-endpoint", "cache-auth-token-secret-arn",
            "dags-bucket-name", "task-logs-bucket-name", "plugins-bucket-name", "vault-unseal-key-arn"} <= \
        set(stacks[stack_name]["output"])


@pytest.mark.parametrize("stack_name", INFRA)
def test_alb_is_dual_stack_with_a_and_aaaa_aliases_for_both_hosts(stacks, stack_name):
    res = stacks[stack_name]["resource"]
    (alb,) = res["aws_lb"].values()
    assert alb["ip_address_type"] == "dualstack"
    aliases = sorted((r["name"].split(".")[0], r["type"]) for r in res["aws_route53_record"].values() if "alias" in r)
    assert aliases == [("airflow", "A"), ("airflow", "AAAA"), ("grafana", "A"), ("grafana", "AAAA")]


@pytest.mark.parametrize("stack_name", INFRA)
def test_deploy_role_reaches_the_private_cluster_only_through_the_in_vpc_runner(stacks, stack_name):
    """issue #16 item 4: the deploy role has an access entry (its literal ARN, no cross-stack reference), the runner
    sits in the private subnets, and the API endpoint's group admits the runner's group, which admits nothing."""
    config = environments.load(stack_name.split("-")[1])
    res = stacks[stack_name]["resource"]
    (deployer,) = [e for k, e in res["aws_eks_access_entry"].items() if "deployer" in k]
    assert deployer["principal_arn"] == config.deploy_role_arn
    (project,) = res["aws_codebuild_project"].values()
    assert project["name"] == config.ci_runner_project_name
    private = {f"${{aws_subnet.{k}.id}}" for k, s in res["aws_subnet"].items() if s["tags"]["tier"] == "private"}
    assert set(project["vpc_config"]["subnets"]) == private and len(private) == config.network.az_count
    (runner_sg,) = project["vpc_config"]["security_group_ids"]
    assert not [r for r in res["aws_vpc_security_group_ingress_rule"].values() if r["security_group_id"] == runner_sg]
    (api_rule,) = [r for r in res["aws_vpc_security_group_ingress_rule"].values()
                   if r.get("referenced_security_group_id") == runner_sg]
    assert (api_rule["security_group_id"], api_rule["from_port"], api_rule["to_port"]) == (
        "${aws_security_group.cluster_cluster-security-group_75C7CD04.id}", 443, 443)


@pytest.mark.parametrize("name", environments.NAMES)
def test_only_external_secrets_and_the_plan_role_may_read_the_idp_client_secret(stacks, name):
    config = environments.load(name)
    arn = f"arn:aws:secretsmanager:{config.region}:{config.account_id}:secret:{config.sso.client_secret_name}-??????"
    readers = {}
    for stack in (f"airflow-{name}-infra", f"airflow-state-{config.account_id}"):
        for key, policy in stacks[stack]["resource"].get("aws_iam_role_policy", {}).items():
            for statement in json.loads(policy["policy"])["Statement"]:
                resources = statement.get("Resource", [])
                if statement["Effect"] == "Allow" and arn in ([resources] if isinstance(resources, str) else resources):
                    readers[key.split("_")[0] + "/" + key.split("_")[1]] = "secretsmanager:GetSecretValue" in statement["Action"]
    assert readers == {"identities/external-secrets": True, f"ci-roles/environment-{name}": True}


def _resolved_policies(stacks, name: str) -> tuple[dict[str, dict], dict[str, dict], dict, str]:
    """(identity policy by role ARN, trust policy by role ARN, the workload boundary, the master secret's ARN) of an
    environment's infra roles, with Terraform references replaced by the ARNs they resolve to."""
    config = environments.load(name)
    res = stacks[f"airflow-{name}-infra"]["resource"]
    master = f"arn:aws:secretsmanager:{config.region}:{config.account_id}:secret:rds!db-0123-AbCdEf"
    names = {a: r["name"].replace("${aws_eks_cluster.cluster_A4C38409.name}", config.cluster_name)
             for a, r in res["aws_iam_role"].items()}
    refs = {f"${{aws_iam_role.{a}.arn}}": f"arn:aws:iam::{config.account_id}:role/{n}" for a, n in names.items()}
    refs |= {f"${{aws_secretsmanager_secret.{a}.arn}}": f"arn:aws:secretsmanager:{config.region}:"
             f"{config.account_id}:secret:{s['name']}-AbCdEf" for a, s in res["aws_secretsmanager_secret"].items()}
    refs |= {f"${{aws_kms_key.{a}.arn}}": f"arn:aws:kms:{config.region}:{config.account_id}:key/{a}"
             for a in res["aws_kms_key"]}
    refs["${aws_db_instance.database_instance_D7FC2283.master_user_secret[0].secret_arn}"] = master

    def resolve(text: str) -> dict:
        for ref, value in refs.items():
            text = text.replace(ref, value)
        return json.loads(text)
    identity = {refs[p["role"].replace(".id}", ".arn}")]: resolve(p["policy"])
                for p in res["aws_iam_role_policy"].values()}
    trust = {refs[f"${{aws_iam_role.{a}.arn}}"]: resolve(r["assume_role_policy"]) for a, r in res["aws_iam_role"].items()}
    (boundary,) = [p for p in stacks[f"airflow-state-{config.account_id}"]["resource"]["aws_iam_policy"].values()
                   if p["name"] == f"{config.prefix}-workload-boundary"]
    return identity, trust, json.loads(boundary["policy"]), master


@pytest.mark.parametrize("name", environments.NAMES)
def test_only_the_db_admin_secrets_role_reads_the_master_secret_and_only_external_secrets_assumes_it(stacks, name):
    """Security review L6: the shared External Secrets identity cannot read the RDS master secret; it may only assume
    the role the database-role Job's SecretStore names, which nothing else may assume (boundary included)."""
    from tests.iam_eval import allowed

    config = environments.load(name)
    identity, trust, boundary, master = _resolved_policies(stacks, name)
    role = lambda n: f"arn:aws:iam::{config.account_id}:role/{config.prefix}-{n}"  # noqa: E731
    reader, eso = role("db-admin-secrets"), role("external-secrets")
    may = lambda arn, action, resource: allowed(action, resource, identity=[identity[arn]], boundary=boundary)  # noqa: E731
    assert [arn for arn in identity if may(arn, "secretsmanager:GetSecretValue", master)] == [reader]
    assert [arn for arn in identity if may(arn, "sts:AssumeRole", reader)] == [eso]
    assert [r for r in trust if r != reader and may(eso, "sts:AssumeRole", r)] == []
    (statement,) = trust[reader]["Statement"]
    assert (statement["Principal"], statement["Action"]) == ({"AWS": eso}, ["sts:AssumeRole", "sts:TagSession"])
    assert "Condition" not in statement
    users = f"arn:aws:secretsmanager:{config.region}:{config.account_id}:secret:{config.prefix}/airflow/database-users-AbCdEf"
    assert may(reader, "secretsmanager:GetSecretValue", users) and may(eso, "secretsmanager:GetSecretValue", users)
    decrypt = {arn for arn in identity for key in ("database_key_CA7EEF20",) if allowed(
        "kms:Decrypt", f"arn:aws:kms:{config.region}:{config.account_id}:key/{key}", identity=[identity[arn]],
        boundary=boundary, context={"kms:ViaService": f"secretsmanager.{config.region}.amazonaws.com"})}
    assert decrypt == {reader}
