from modules.aws.settings import (CacheSettings, ClusterSettings, DatabaseSettings, NetworkSettings,
                                  StorageSettings)

from .common import ACCOUNT_IDS, REGION, TAGS, admin_role_arns, ci_runner_in, sso_for, state_in
from .config import (AddonsConfig, AirflowConfig, AlarmsConfig, EnvironmentConfig, EventsConfig, MonitoringConfig,
                     VaultConfig)

ACCOUNT_ID = ACCOUNT_IDS["staging"]

CONFIG = EnvironmentConfig(
    name="staging",
    production=False,
    account_id=ACCOUNT_ID,
    region=REGION,
    sso=sso_for("staging"),
    domain="staging.data.example.com",
    network=NetworkSettings(vpc_cidr="10.20.0.0/16", az_count=3, nat_gateways="single"),
    state=state_in(ACCOUNT_ID),
    ci_runner=ci_runner_in(ACCOUNT_ID),
    tags=TAGS,
    cluster=ClusterSettings(admin_role_arns=admin_role_arns(ACCOUNT_ID),
                            system_instance_types=("m7i.large",)),
    database=DatabaseSettings(instance_class="db.m7g.large", multi_az=True, backup_retention_days=14),
    cache=CacheSettings(node_type="cache.m7g.large", num_nodes=2, multi_az=True),
    storage=StorageSettings(task_log_expiration_days=60, access_log_expiration_days=180),
    addons=AddonsConfig(controller_replicas=2, worker_cpu_limit=64, worker_memory_limit_gib=256,
                        worker_disruption_budget="20%",
                        # The AMI release prod moves to next soaks here first (dev tracks al2023@latest).
                        # docs/platform-addons.md, "Upgrading the worker AMI".
                        worker_ami_alias="al2023@v20260714"),
    airflow=AirflowConfig(worker_min_replicas=0, worker_max_replicas=8, dag_bundle_refresh_interval=120),
    vault=VaultConfig(replicas=3),
    monitoring=MonitoringConfig(prometheus_retention="15d", prometheus_retention_size="40GB", prometheus_storage_gib=50,
                                prometheus_replicas=1, alertmanager_storage_gib=2, alertmanager_replicas=1,
                                grafana_storage_gib=5, queued_tasks_threshold=50, task_failure_ratio=0.1),
    events=EventsConfig(kafka=True, kafka_availability_zones=(f"{REGION}a", f"{REGION}b", f"{REGION}c"),
                        kafka_broker_instance_type="kafka.t3.small", kafka_volume_size_gib=20, max_receive_count=5),
    alarms=AlarmsConfig(rds_connections=700, cluster_min_nodes=2, slack_workspace_id="T0EXAMPLE01",
                        slack_channel_id="C0STAGINGAL"),   # Slack only: staging never pages anyone
    log_retention_days=90,
    deletion_protection=True,
)
