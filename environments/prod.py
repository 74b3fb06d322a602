from modules.aws.settings import (CacheSettings, ClusterSettings, DatabaseSettings, NetworkSettings,
                                  StorageSettings)

from .common import ACCOUNT_IDS, REGION, TAGS, admin_role_arns, ci_runner_in, sso_for, state_in
from .config import (AddonsConfig, AirflowConfig, AlarmsConfig, EnvironmentConfig, EventsConfig, MonitoringConfig,
                     VaultConfig)

ACCOUNT_ID = ACCOUNT_IDS["prod"]

CONFIG = EnvironmentConfig(
    name="prod",
    production=True,
    account_id=ACCOUNT_ID,
    region=REGION,
    sso=sso_for("prod"),                      # SSO only: no password form on either console
    domain="data.example.com",
    network=NetworkSettings(vpc_cidr="10.30.0.0/16", az_count=3, nat_gateways="per_az"),
    state=state_in(ACCOUNT_ID),
    ci_runner=ci_runner_in(ACCOUNT_ID),
    tags=TAGS,
    cluster=ClusterSettings(admin_role_arns=admin_role_arns(ACCOUNT_ID),
                            system_instance_types=("m7i.xlarge",), system_min_size=3,
                            system_desired_size=3, system_max_size=6, system_disk_size_gib=100),
    database=DatabaseSettings(instance_class="db.r7g.large", multi_az=True, backup_retention_days=30,
                            allocated_storage_gib=100, max_allocated_storage_gib=1000),
    cache=CacheSettings(node_type="cache.r7g.large", num_nodes=3, multi_az=True, snapshot_retention_days=14),
    storage=StorageSettings(task_log_expiration_days=365, access_log_expiration_days=730),
    addons=AddonsConfig(controller_replicas=3, worker_instance_sizes=("xlarge", "2xlarge", "4xlarge"),
                        worker_cpu_limit=512, worker_memory_limit_gib=2048, worker_root_volume_gib=200,
                        worker_consolidate_after="15m", worker_disruption_budget="10%",
                        storage_reclaim_policy="Retain",
                        # amazon-eks-ami release v20260714 (AL2023, K8s 1.30-1.36); never ahead of staging's pin.
                        # Upgrade: docs/platform-addons.md, "Upgrading the worker AMI".
                        worker_ami_alias="al2023@v20260714"),
    airflow=AirflowConfig(scheduler_replicas=2, api_server_replicas=3, dag_processor_replicas=2, triggerer_replicas=2,
                          pgbouncer_replicas=3, worker_min_replicas=2, worker_max_replicas=30, worker_concurrency=16,
                          worker_cpu="2", worker_memory="8Gi", parsing_processes=4, pgbouncer_pool_size=40,
                          pgbouncer_max_client_conn=1000),
    vault=VaultConfig(replicas=3),
    monitoring=MonitoringConfig(prometheus_retention="30d", prometheus_retention_size="180GB", prometheus_storage_gib=200,
                                prometheus_replicas=2, alertmanager_retention="240h", alertmanager_storage_gib=5,
                                alertmanager_replicas=2, grafana_storage_gib=10, queued_tasks_threshold=100,
                                task_failure_ratio=0.05),
    events=EventsConfig(kafka=True, kafka_availability_zones=(f"{REGION}a", f"{REGION}b", f"{REGION}c"),
                        kafka_broker_instance_type="kafka.m7g.large", kafka_volume_size_gib=200, max_receive_count=10,
                        landing_expiration_days=90),
    alarms=AlarmsConfig(evaluation_periods=2, rds_connections=1500, rds_free_storage_bytes=20 * 1024 ** 3,
                        rds_freeable_memory_bytes=1024 ** 3, redis_connections=5000, cluster_min_nodes=3,
                        alb_target_response_seconds=1.5, pagerduty_secret_name="airflow-prod/alerting/pagerduty",
                        slack_workspace_id="T0EXAMPLE01", slack_channel_id="C0PRODALERT"),
    plan_environment="prod-plan",   # protected: required reviewers approve each prod plan (README, plan.yml)
    log_retention_days=365,
    deletion_protection=True,
)
