"""The Airflow release in every environment's synthesized platform stack."""
from __future__ import annotations

import json

import pytest

import environments
from modules.platform import database_roles as dbr
from modules.platform import kubernetes as k8s
from modules.platform.airflow import METADATA_SECRET
from tests.conftest import looks_like_secret, strings
from tests.modules.platform.test_airflow import schema_errors

REPLICAS = {"dev": (1, 1, 1), "staging": (2, 2, 2), "prod": (2, 3, 3)}   # scheduler, api server, pgbouncer


def release(stacks, name):
    return stacks[f"airflow-{name}-platform"]["resource"]["helm_release"]["airflow"]


def values(stacks, name):
    (raw,) = release(stacks, name)["values"]
    return json.loads(raw)


@pytest.mark.parametrize("name", environments.NAMES)
def test_pinned_chart_installed_after_the_bootstrap_chart(stacks, name):
    rel = release(stacks, name)
    assert (rel["chart"], rel["version"], rel["repository"], rel["namespace"]) == (
        "airflow", "1.21.0", "https://airflow.apache.org", k8s.AIRFLOW_NAMESPACE)
    assert "helm_release.platform-bootstrap" in rel["depends_on"]


@pytest.mark.parametrize("name", environments.NAMES)
def test_values_validate_against_the_official_schema(stacks, name):
    assert schema_errors(values(stacks, name)) == []


@pytest.mark.parametrize("name", environments.NAMES)
def test_replicas_and_pdbs_per_environment(stacks, name):
    v = values(stacks, name)
    got = (v["scheduler"]["replicas"], v["apiServer"]["replicas"], v["pgbouncer"]["replicas"])
    assert got == REPLICAS[name]
    for component in (v["scheduler"], v["apiServer"], v["pgbouncer"]):
        assert component["podDisruptionBudget"]["enabled"] is (component["replicas"] >= 2)


def test_prod_runs_two_or_more_of_every_control_plane_component(stacks):
    v = values(stacks, "prod")
    for component in ("scheduler", "apiServer", "dagProcessor", "triggerer", "pgbouncer"):
        assert v[component]["replicas"] >= 2 and v[component]["podDisruptionBudget"]["enabled"] is True


@pytest.mark.parametrize("name", environments.NAMES)
def test_secrets_are_referenced_by_name_and_infra_outputs_only(stacks, name):
    doc = stacks[f"airflow-{name}-platform"]
    v = values(stacks, name)
    assert v["data"]["metadataSecretName"] == METADATA_SECRET
    assert not [s for s in strings(v) if looks_like_secret(s)]
    assert "{{" not in json.dumps(v)            # credential templates live in the ExternalSecrets, not in values
    objects = json.loads(doc["resource"]["helm_release"]["platform-bootstrap"]["values"][0])["objects"]
    def refs(namespace):
        return {d["remoteRef"]["key"] for o in objects if o["kind"] == "ExternalSecret"
                and o["metadata"]["namespace"] == namespace for d in o["spec"]["data"]}
    master = lambda r: r.startswith("${data.terraform_remote_state.") and "master_user_secret" in r  # noqa: E731
    airflow = refs("airflow")
    assert not [r for r in airflow if master(r)]       # the RDS master secret never reaches the airflow namespace
    assert any(r.startswith("${data.terraform_remote_state.") and "auth-token-secret" in r for r in airflow)
    assert {f"airflow-{name}/airflow/keys", f"airflow-{name}/airflow/database-users"} <= airflow
    # ... only the role Job's namespace, where no DAG author starts pods
    admin = refs(k8s.DATABASE_ADMIN_NAMESPACE)
    assert [r for r in admin if master(r)] and f"airflow-{name}/airflow/database-users" in admin
    named = [o for o in objects if o["kind"] == "ExternalSecret" and any(
        master(d["remoteRef"]["key"]) for d in o["spec"]["data"])]
    assert {o["metadata"]["namespace"] for o in named} == {k8s.DATABASE_ADMIN_NAMESPACE}
    # ... and only through that namespace's SecretStore, whose role (the infra stack's) alone may read it
    assert {(o["spec"]["secretStoreRef"]["kind"], o["spec"]["secretStoreRef"]["name"]) for o in named} == {
        ("SecretStore", dbr.ADMIN_STORE)}
    (store,) = [o for o in objects if o["kind"] == "SecretStore" and o["metadata"]["name"] == dbr.ADMIN_STORE]
    assert store["metadata"]["namespace"] == k8s.DATABASE_ADMIN_NAMESPACE
    role = store["spec"]["provider"]["aws"]["role"]
    assert role.startswith("${data.terraform_remote_state.") and "db-admin-secrets_role" in role
    (shared,) = [o for o in objects if o["kind"] == "ClusterSecretStore"]
    assert k8s.DATABASE_ADMIN_NAMESPACE not in shared["spec"]["conditions"][0]["namespaces"]


@pytest.mark.parametrize("name", environments.NAMES)
def test_base_url_logs_and_bundle_point_at_this_environment(stacks, name):
    v = values(stacks, name)
    domain = environments.load(name).domain
    assert v["config"]["api"]["base_url"] == f"https://airflow.{domain}/"
    assert v["config"]["logging"]["remote_base_log_folder"].startswith("s3://${data.terraform_remote_state.")
    assert v["config"]["logging"]["remote_base_log_folder"].endswith("/task-logs")
    (bundle,) = v["dagProcessor"]["dagBundleConfigList"]
    assert "dags" in bundle["kwargs"]["bucket_name"] and bundle["kwargs"]["aws_conn_id"] is None


@pytest.mark.parametrize("name", environments.NAMES)
def test_pod_admission_policy_is_in_the_bootstrap_chart_before_airflow_and_matches_the_system_taint(stacks, name):
    from modules.platform.admission import pod_admission_objects
    from modules.platform.airflow import TASK_POD_SECRETS, service_accounts
    doc = stacks[f"airflow-{name}-platform"]
    objects = json.loads(doc["resource"]["helm_release"]["platform-bootstrap"]["values"][0])["objects"]
    sa = service_accounts()
    policies = [o for o in objects if o["kind"] in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")]
    # The node rules for every pod, and the pod launchers' rules for the chart's scheduler and Celery workers.
    assert policies == pod_admission_objects(k8s.AIRFLOW_NAMESPACE, launchers=(sa["scheduler"], sa["celery"]),
                                             task_service_account=sa["kubernetes"], task_secrets=TASK_POD_SECRETS)
    assert [p["spec"]["policyName"] for p in policies[1::2]] == [p["metadata"]["name"] for p in policies[::2]]
    # The taint the policy refuses to tolerate is the one infra puts on the system node group.
    (group,) = stacks[f"airflow-{name}-infra"]["resource"]["aws_eks_node_group"].values()
    assert [t["key"] for t in group["taint"]] == [k8s.SYSTEM_NODE_TAINT_KEY]
