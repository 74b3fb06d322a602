"""Per-environment in-cluster platform (AWS + Helm providers): the AWS Load Balancer Controller and the
TargetGroupBindings that register the Airflow API server and Grafana pods in the infra stack's ALB target groups.

Everything it needs from the infra stack (cluster endpoint and CA, VPC id, target group ARNs) arrives as CDKTF
cross-stack references, which cdktf turns into infra outputs read here through `terraform_remote_state`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdktf import Fn, TerraformStack
from cdktf_cdktf_provider_helm.provider import HelmProvider, HelmProviderKubernetes, HelmProviderKubernetesExec
from cdktf_cdktf_provider_helm.release import Release
from constructs import Construct

from environments.config import EnvironmentConfig
from modules.identity import WORKLOADS
from modules.local_chart import LocalChart, LocalChartProps

from .backend import use_s3_backend
from .infra import InfraStack
from .provider import aws_provider, emulator_backend

ROOT = Path(__file__).resolve().parent.parent
GLUE_CHART = ROOT / "helm" / "platform-glue"
LB_CONTROLLER_CHART = "aws-load-balancer-controller"
LB_CONTROLLER_VERSION = "3.5.0"
EKS_CHARTS = "https://aws.github.io/eks-charts"
# The services the bindings point at: the Airflow chart's API server (`<release>-api-server`, port 8080) and
# kube-prometheus-stack's Grafana (`<release>-grafana`, service port 80 -> container port 3000).
BINDINGS = {
    "airflow": {"namespace": "airflow", "serviceName": "airflow-api-server", "servicePort": 8080},
    "grafana": {"namespace": "monitoring", "serviceName": "kube-prometheus-stack-grafana", "servicePort": 80},
}


def lb_controller_values(*, cluster_name: str, region: str, vpc_id: str) -> dict[str, Any]:
    """Values for chart 3.5.0. Credentials come from the Pod Identity association in the infra stack
    (modules/identity.py), so the service account carries no IRSA annotation."""
    namespace, (service_account,) = WORKLOADS["aws-load-balancer-controller"]
    assert namespace == "kube-system"
    return {"clusterName": cluster_name, "region": region, "vpcId": vpc_id,
            "serviceAccount": {"create": True, "name": service_account},
            "replicaCount": 2,
            # TargetGroupBinding only: no Service mutation (LoadBalancer Services keep the in-tree behaviour).
            "enableServiceMutatorWebhook": False}


def glue_values(target_group_arns: dict[str, str]) -> dict[str, Any]:
    bindings = [{"name": f"{host}-alb", **binding, "targetGroupARN": target_group_arns[host]}
                for host, binding in BINDINGS.items()]
    return {"bindings": bindings}


class PlatformStack(TerraformStack):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, infra: InfraStack,
                 emulator_endpoint: str | None = None) -> None:
        super().__init__(scope, id_)
        c = config
        aws_provider(self, region=c.region, account_id=c.account_id, emulator_endpoint=emulator_endpoint)
        if emulator_endpoint:
            emulator_backend(self)
        else:
            use_s3_backend(self, state=c.state, key=f"{c.name}/platform.tfstate", account_id=c.account_id,
                           partition=c.partition)
        cluster = infra.cluster
        HelmProvider(self, "helm", kubernetes=HelmProviderKubernetes(
            host=cluster.endpoint, cluster_ca_certificate=Fn.base64decode(cluster.certificate_authority_data),
            exec=HelmProviderKubernetesExec(
                api_version="client.authentication.k8s.io/v1beta1", command="aws",
                args=["eks", "get-token", "--cluster-name", c.cluster_name, "--region", c.region])))

        namespace, _ = WORKLOADS["aws-load-balancer-controller"]
        self.lb_controller = Release(
            self, "aws-load-balancer-controller", name="aws-load-balancer-controller", namespace=namespace,
            repository=EKS_CHARTS, chart=LB_CONTROLLER_CHART, version=LB_CONTROLLER_VERSION, atomic=True,
            cleanup_on_fail=True, wait=True, timeout=600,
            values=[json.dumps(lb_controller_values(cluster_name=c.cluster_name, region=c.region,
                                                    vpc_id=infra.network.vpc_id), sort_keys=True)])

        # ---- [addons] cert-manager, External Secrets, Karpenter, KEDA releases, then the platform-bootstrap
        #      LocalChart (namespaces, CA issuers, Certificates, ClusterSecretStore, ExternalSecrets, node pools).
        #      Exposes self.bootstrap (LocalChart) for the sections below.

        # ---- [vault] Vault release (adds its TLS Certificate to self.bootstrap)

        # ---- [monitoring] kube-prometheus-stack release (adds its ExternalSecrets to self.bootstrap, its
        #      ServiceMonitor / PrometheusRules to self.glue)

        # ---- [airflow] Airflow release (adds its ExternalSecrets / Certificates to self.bootstrap)

        # ---- glue: after the apps. TargetGroupBindings (+ monitoring objects added by [monitoring]).
        self.glue = LocalChart(self, "platform-glue", props=LocalChartProps(
            chart="platform-glue", namespace=namespace, timeout=300,
            values=glue_values(infra.edge.target_group_arns),
            depends_on=[self.lb_controller]))   # the TargetGroupBinding CRD and webhook come with the controller
