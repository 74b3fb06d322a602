from .common import ACCOUNT_ID, ADMIN_ROLE_ARNS, REGION, STATE, TAGS
from .config import (AddonsConfig, AirflowConfig, AlarmsConfig, EventsConfig, MonitoringConfig,
                     VaultConfig)
from .config import CacheConfig, ClusterConfig, DatabaseConfig, EnvironmentConfig, NetworkConfig, StorageConfig

CONFIG = EnvironmentConfig(
    name="dev",
    production=False,
    account_id=ACCOUNT_ID,
    region=REGION,
    domain="dev.data.example.com",
    network=NetworkConfig(vpc_cidr="10.10.0.0/16", az_count=2, nat_gateways="single"),
    state=STATE,
    tags=TAGS,
    cluster=ClusterConfig(admin_role_arns=ADMIN_ROLE_ARNS, system_instance_types=("t3.large",), system_min_size=1,
                          system_desired_size=2, system_max_size=3),
    database=DatabaseConfig(instance_class="db.t4g.medium", multi_az=False, backup_retention_days=7,
                            allocated_storage_gib=20, max_allocated_storage_gib=100),
    cache=CacheConfig(node_type="cache.t4g.micro", num_nodes=1, multi_az=False, snapshot_retention_days=1),
    storage=StorageConfig(task_log_expiration_days=30, access_log_expiration_days=90),
    addons=AddonsConfig(),
    airflow=AirflowConfig(),
    vault=VaultConfig(),
    monitoring=MonitoringConfig(),
    events=EventsConfig(),
    alarms=AlarmsConfig(),
    log_retention_days=30,
    deletion_protection=False,
)
