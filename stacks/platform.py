"""Per-environment in-cluster platform (AWS + Helm providers): the AWS Load Balancer Controller and the
TargetGroupBindings that register the Airflow API server and Grafana pods in the infra stack's ALB target groups.

Everything it needs from the infra stack (cluster endpoint and CA, VPC id, target group ARNs) arrives as CDKTF
cross-stack references, which cdktf turns into infra outputs read here through `terraform_remote_state`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdktf import Fn
from cdktf_cdktf_provider_helm.provider import HelmProvider, HelmProviderKubernetes, HelmProviderKubernetesExec
from cdktf_cdktf_provider_helm.release import Release
from constructs import Construct

from environments.config import EnvironmentConfig
from modules.platform.addons import BOOTSTRAP_CHART, BOOTSTRAP_NAMESPACE, ClusterAddons, ClusterAddonsProps
from modules.platform.airflow import Airflow, AirflowProps
from modules.core.aspects import GovernedStack
from modules.core.environment import AwsEnvironment
from modules.aws.events import airflow_environment
from modules.aws.identity import WORKLOADS
from modules.platform.local_chart import LocalChart, LocalChartProps
from modules.platform.monitoring import Monitoring, MonitoringProps, dashboard_values
from modules.platform.network_policy import NetworkIsolation, NetworkPolicyProps
from modules.platform.vault import Vault, VaultProps
from modules.platform.vault_snapshots import VaultSnapshots, VaultSnapshotsProps

from .backend import use_environment_backend
from .errors import section_props
from .infra import InfraStack
from .provider import Emulator, aws_provider

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
    (modules/aws/identity.py), so the service account carries no IRSA annotation."""
    namespace, (service_account,) = WORKLOADS["aws-load-balancer-controller"]
    assert namespace == "kube-system"
    return {"clusterName": cluster_name, "region": region, "vpcId": vpc_id,
            "serviceAccount": {"create": True, "name": service_account},
            "replicaCount": 2,
            # TargetGroupBinding only: no Service mutation (LoadBalancer Services keep the in-tree behaviour).
            "enableServiceMutatorWebhook": False,
            # The chart's defaults keep the runtime's capabilities and set no seccomp profile: Pod Security
            # restricted instead (a Go binary serving 9443/8080 needs neither).
            "podSecurityContext": {"fsGroup": 65534, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                "seccompProfile": {"type": "RuntimeDefault"}}}


def glue_values(target_group_arns: dict[str, str]) -> dict[str, Any]:
    bindings = [{"name": f"{host}-alb", **binding, "targetGroupARN": target_group_arns[host]}
                for host, binding in BINDINGS.items()]
    return {"bindings": bindings}


class PlatformStack(GovernedStack):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, infra: InfraStack,
                 emulator: Emulator | None = None) -> None:
        super().__init__(scope, id_)
        c = config
        AwsEnvironment(account_id=c.account_id, region=c.region).bind(self)
        aws_provider(self, region=c.region, account_id=c.account_id, emulator=emulator)
        use_environment_backend(self, config=c, layer="platform", emulator=emulator)
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
        self.addons = addons = ClusterAddons(self, "addons", props=section_props(
            f"environments.{c.name}", lambda: ClusterAddonsProps(
                settings=c.addons, cluster_name=c.cluster_name, region=c.region,
                node_role_name=cluster.node_role_name, interruption_queue_name=infra.node_interruption.queue_name,
                kubernetes_version=c.cluster.kubernetes_version)))
        # Apps add their Certificates / ExternalSecrets here and make their releases depend on bootstrap.release.
        self.bootstrap = LocalChart(self, BOOTSTRAP_CHART, props=LocalChartProps(
            chart=BOOTSTRAP_CHART, namespace=BOOTSTRAP_NAMESPACE, depends_on=addons.bootstrap_dependencies))
        for manifest in addons.bootstrap_objects():
            self.bootstrap.add_object(manifest)
        # Default-deny ingress in the app namespaces plus one allow per real flow, in place before any app pod
        # starts (the vpc-cni add-on's network policy agent enforces them).
        self.network_isolation = NetworkIsolation(self, "network-isolation", bootstrap=self.bootstrap,
                                                  props=section_props(f"environments.{c.name}", lambda:
                                                  NetworkPolicyProps(alb_cidrs=c.alb_subnet_cidrs,
                                                                     control_plane_cidrs=c.network.subnets["private"])))

        # ---- [vault] Vault release (adds its TLS Certificate to self.bootstrap)
        self.vault = Vault(self, "vault", bootstrap=self.bootstrap, props=section_props(
            f"environments.{c.name}", lambda: VaultProps(
                settings=c.vault, region=c.region, cluster_name=c.cluster_name,
                unseal_key_arn=infra.vault_unseal_key_arn, volume_kms_key_arn=infra.vault_storage.kms_key_arn,
                storage_reclaim_policy=c.addons.storage_reclaim_policy)))
        self.vault_snapshots = VaultSnapshots(self, "vault-snapshots", bootstrap=self.bootstrap, props=section_props(
            f"environments.{c.name}", lambda: VaultSnapshotsProps(
                settings=c.vault, bucket=infra.vault_storage.snapshot_bucket_name, region=c.region)))

        # ---- [monitoring] kube-prometheus-stack release (adds its ExternalSecrets to self.bootstrap, its
        #      ServiceMonitor / PrometheusRules to self.glue)
        self.monitoring = Monitoring(self, "monitoring", bootstrap=self.bootstrap, props=section_props(
            f"environments.{c.name}", lambda: MonitoringProps(
                settings=c.monitoring, domain=c.domain, secret_prefix=c.prefix, sso=c.sso)))

        self.vault.install_after(self.monitoring.release)   # [vault]: its ServiceMonitor needs the operator's CRDs

        # ---- [airflow] Airflow release (adds its ExternalSecrets / Certificates to self.bootstrap)
        db, cache, buckets = infra.database, infra.cache, infra.storage
        self.airflow = Airflow(self, "airflow", props=section_props(
            f"environments.{c.name}", lambda: AirflowProps(
                settings=c.airflow, prefix=c.prefix, domain=c.domain, region=c.region,
                database_host=db.address, database_port=db.port, database_name=db.database_name,
                database_master_secret_arn=db.master_secret_arn,
                database_admin_secrets_role_arn=infra.database_admin_secrets.role_arn,
                cache_endpoint=cache.primary_endpoint,
                cache_port=cache.port, cache_auth_token_secret_arn=cache.auth_token_secret_arn,
                dags_bucket=buckets.dags.name, task_logs_bucket=buckets.task_logs.name,
                plugins_bucket=buckets.plugins.name, bootstrap=self.bootstrap,
                sso=c.sso, alb_arn=infra.edge.load_balancer_arn,
                # What the example event-driven DAGs watch (dags/): queue URLs per rule, Kafka topics.
                extra_env=airflow_environment(
                    name=c.prefix, region=c.region, account_id=c.account_id, partition=c.partition,
                    rule_names=c.events.rule_names, kafka_topics=c.events.kafka_topics if c.events.kafka else ()))))

        # ---- glue: after the apps. TargetGroupBindings (+ monitoring objects added by [monitoring]).
        self.glue = LocalChart(self, "platform-glue", props=LocalChartProps(
            chart="platform-glue", namespace=namespace, timeout=300,
            values={**glue_values(infra.edge.target_group_arns), "dashboards": dashboard_values()},
            # The TargetGroupBinding CRD and webhook come with the controller; the monitoring.coreos.com CRDs
            # (ServiceMonitor, PrometheusRule) with kube-prometheus-stack.
            depends_on=[self.lb_controller, self.monitoring.release]))
        self.monitoring.add_glue_objects(self.glue)
