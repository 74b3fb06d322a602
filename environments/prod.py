from .common import ACCOUNT_ID, ADMIN_ROLE_ARNS, REGION, STATE, TAGS
from .config import (AddonsConfig, AirflowConfig, AlarmsConfig, EventsConfig, MonitoringConfig,
                     VaultConfig)
from .config import CacheConfig, ClusterConfig, DatabaseConfig, EnvironmentConfig, NetworkConfig, StorageConfig

CONFIG = EnvironmentConfig(
    name="prod",
    production=True,
    account_id=ACCOUNT_ID,
    region=REGION,
    domain="data.example.com",
    network=NetworkConfig(vpc_cidr="10.30.0.0/16", az_count=3, nat_gateways="per_az"),
    state=STATE,
    tags=TAGS,
    cluster=ClusterConfig(admin_role_arns=ADMIN_ROLE_ARNS, system_instance_types=("m7i.xlarge",), system_min_size=3,
                          system_desired_size=3, system_max_size=6, system_disk_size_gib=100),
    database=DatabaseConfig(instance_class="db.r7g.large", multi_az=True, backup_retention_days=30,
                            allocated_storage_gib=100, max_allocated_storage_gib=1000),
    cache=CacheConfig(node_type="cache.r7g.large", num_nodes=3, multi_az=True, snapshot_retention_days=14),
    storage=StorageConfig(task_log_expiration_days=365, access_log_expiration_days=730),
    addons=AddonsConfig(),
    airflow=AirflowConfig(),
    vault=VaultConfig(),
    monitoring=MonitoringConfig(),
    events=EventsConfig(),
    alarms=AlarmsConfig(),
    log_retention_days=365,
    deletion_protection=True,
)
