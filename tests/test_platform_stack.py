"""The platform stack: Helm provider from infra via cross-stack references, the LB controller release and the
TargetGroupBindings chart, per environment."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import environments
from modules.aws.identity import WORKLOADS
from stacks.platform import GLUE_CHART, lb_controller_values

PLATFORM = [f"airflow-{name}-platform" for name in environments.NAMES]
CHART_VALUES = Path(__file__).resolve().parent / "data" / "charts" / "aws-load-balancer-controller" / "values.yaml"


def releases(doc):
    return doc["resource"]["helm_release"]


@pytest.mark.parametrize("name", environments.NAMES)
def test_helm_provider_reads_the_cluster_from_infra_and_uses_eks_get_token(stacks, name):
    doc = stacks[f"airflow-{name}-platform"]
    (helm,) = doc["provider"]["helm"]
    k8s = helm["kubernetes"]
    (remote_id, remote), = doc["data"]["terraform_remote_state"].items()
    assert remote["config"]["key"] == f"{name}/infra.tfstate"
    assert k8s["host"].startswith(f"${{data.terraform_remote_state.{remote_id}.outputs.")
    assert k8s["cluster_ca_certificate"].startswith(f"${{base64decode(data.terraform_remote_state.{remote_id}.outputs.")
    assert k8s["exec"] == {"api_version": "client.authentication.k8s.io/v1beta1", "command": "aws",
                           "args": ["eks", "get-token", "--cluster-name", f"airflow-{name}", "--region", "eu-west-1"]}
    infra_outputs = stacks[f"airflow-{name}-infra"]["output"]
    referenced = {o for o in infra_outputs if f"outputs.{o}}}" in json.dumps(doc) or f"outputs.{o})" in json.dumps(doc)}
    assert any("endpoint" in o for o in referenced) and any("certificate_authority" in o for o in referenced)


@pytest.mark.parametrize("name", environments.NAMES)
def test_platform_backend_is_its_own_state_key(stacks, name):
    backend = stacks[f"airflow-{name}-platform"]["terraform"]["backend"]["s3"]
    assert (backend["key"], backend["encrypt"], backend["use_lockfile"]) == (f"{name}/platform.tfstate", True, True)
    assert set(stacks[f"airflow-{name}-platform"]["terraform"]["required_providers"]) == {"aws", "helm"}


@pytest.mark.parametrize("name", environments.NAMES)
def test_lb_controller_release_is_the_pinned_chart_with_its_pod_identity_service_account(stacks, name):
    rel = releases(stacks[f"airflow-{name}-platform"])["aws-load-balancer-controller"]
    assert (rel["chart"], rel["version"], rel["repository"], rel["namespace"]) == (
        "aws-load-balancer-controller", "3.5.0", "https://aws.github.io/eks-charts", "kube-system")
    (raw,) = rel["values"]
    values = json.loads(raw)
    assert (values["clusterName"], values["region"], values["replicaCount"]) == (f"airflow-{name}", "eu-west-1", 2)
    assert values["enableServiceMutatorWebhook"] is False and values["vpcId"].startswith("${data.terraform_remote_state.")
    assert (rel["namespace"], (values["serviceAccount"]["name"],)) == WORKLOADS["aws-load-balancer-controller"]


def test_lb_controller_values_use_only_keys_the_chart_defines():
    chart = yaml.safe_load(CHART_VALUES.read_text())
    yaml_version = yaml.safe_load(CHART_VALUES.with_name("Chart.yaml").read_text())["version"]
    assert yaml_version == "3.5.0"

    def unknown(values, defaults, path=""):
        for key, value in values.items():
            if key not in defaults:
                yield f"{path}{key}"
            elif isinstance(value, dict) and not key.endswith(("SecurityContext", "securityContext")):
                # (a security context is a Kubernetes object, checked against its schema when rendered)
                yield from unknown(value, defaults[key] or {}, f"{path}{key}.")

    values = lb_controller_values(cluster_name="c", region="eu-west-1", vpc_id="vpc-1")
    assert list(unknown(values, chart)) == []
    assert list(unknown({"noSuchKey": 1}, chart)) == ["noSuchKey"]   # the walk does catch a typo


@pytest.mark.parametrize("name", environments.NAMES)
def test_glue_chart_binds_api_server_and_grafana_to_the_infra_target_groups(stacks, name):
    doc = stacks[f"airflow-{name}-platform"]
    rel = releases(doc)["platform-glue"]
    assert rel["chart"].startswith("assets/platform-glue_chart_") and "helm_release.aws-load-balancer-controller" in rel[
        "depends_on"]
    (raw,) = rel["values"]
    values = json.loads(raw)
    bindings = {(b["namespace"], b["serviceName"], b["servicePort"]): b["targetGroupARN"] for b in values["bindings"]}
    assert set(bindings) == {("airflow", "airflow-api-server", 8080), ("monitoring", "kube-prometheus-stack-grafana", 80)}
    infra_tg_outputs = {o for o in stacks[f"airflow-{name}-infra"]["output"] if "aws_lb_target_group" in o}
    assert len(infra_tg_outputs) == 2
    assert {arn.split(".outputs.")[1].rstrip("}") for arn in bindings.values()} == infra_tg_outputs


def test_glue_chart_renders_target_group_bindings_of_type_ip():
    template = (GLUE_CHART / "templates" / "targetgroupbindings.yaml").read_text()
    assert "apiVersion: elbv2.k8s.aws/v1beta1" in template and "kind: TargetGroupBinding" in template
    assert "targetType: ip" in template and "{{ .serviceName }}" in template and "{{ .targetGroupARN | quote }}" in template
    assert yaml.safe_load((GLUE_CHART / "Chart.yaml").read_text())["name"] == "platform-glue"


def test_platform_stacks_are_not_in_the_aws_only_validation_set():
    from tests.test_terraform_validate import AWS_ONLY_STACKS
    assert not set(PLATFORM) & set(AWS_ONLY_STACKS)
