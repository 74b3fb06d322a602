from modules.aws.settings import (CacheSettings, ClusterSettings, DatabaseSettings, NetworkSettings,
                                  StorageSettings)

from .common import ACCOUNT_IDS, REGION, TAGS, admin_role_arns, ci_runner_in, sso_for, state_in
from .config import (AddonsConfig, AirflowConfig, AlarmsConfig, EnvironmentConfig, EventsConfig, MonitoringConfig,
                     VaultConfig)

ACCOUNT_ID = ACCOUNT_IDS["dev"]

CONFIG = EnvironmentConfig(
    name="dev",
    production=False,
    account_id=ACCOUNT_ID,
    region=REGION,
    sso=sso_for("dev", local_login=True),   # Grafana's admin form stays for dev experiments
    domain="dev.data.example.com",
    network=NetworkSettings(vpc_cidr="10.10.0.0/16", az_count=2, nat_gateways="single"),
    state=state_in(ACCOUNT_ID),
    ci_runner=ci_runner_in(ACCOUNT_ID),
    tags=TAGS,
    cluster=ClusterSettings(admin_role_arns=admin_role_arns(ACCOUNT_ID),
                            # m6a, not t3: a family with Nitro in-transit encryption (docs/tls.md)
                            system_instance_types=("m6a.large",), system_min_size=1,
                            system_desired_size=2, system_max_size=3),
    database=DatabaseSettings(instance_class="db.t4g.medium", multi_az=False, backup_retention_days=7,
                            allocated_storage_gib=20, max_allocated_storage_gib=100),
    cache=CacheSettings(node_type="cache.t4g.micro", num_nodes=1, multi_az=False, snapshot_retention_days=1),
    storage=StorageSettings(task_log_expiration_days=30, access_log_expiration_days=90),
    addons=AddonsConfig(controller_replicas=1, worker_instance_sizes=("large", "xlarge"), worker_cpu_limit=32,
                        worker_memory_limit_gib=128, worker_root_volume_gib=50, worker_disruption_budget="50%",
                        storage_reclaim_policy="Delete"),
    airflow=AirflowConfig(scheduler_replicas=1, api_server_replicas=1, dag_processor_replicas=1, triggerer_replicas=1,
                          pgbouncer_replicas=1, worker_min_replicas=0, worker_max_replicas=4, worker_concurrency=8,
                          worker_cpu="500m", worker_memory="2Gi", dag_bundle_refresh_interval=60,
                          min_file_process_interval=30, parsing_processes=1, pgbouncer_pool_size=10,
                          pgbouncer_max_client_conn=200),
    vault=VaultConfig(replicas=1, data_storage_size="5Gi", audit_storage_size="5Gi"),
    monitoring=MonitoringConfig(prometheus_retention="7d", prometheus_retention_size="18GB", prometheus_storage_gib=20,
                                prometheus_replicas=1, alertmanager_storage_gib=1, alertmanager_replicas=1,
                                grafana_storage_gib=5, queued_tasks_threshold=20, task_failure_ratio=0.2),
    events=EventsConfig(kafka=False, max_receive_count=3, landing_expiration_days=7),
    alarms=AlarmsConfig(evaluation_periods=3, cluster_min_nodes=1, rds_free_storage_bytes=2 * 1024 ** 3,
                        rds_freeable_memory_bytes=128 * 1024 ** 2, alb_5xx_count=50,
                        sqs_oldest_message_seconds=3600),   # no PagerDuty or Slack in dev: the console is enough
    log_retention_days=30,
    deletion_protection=False,
)
