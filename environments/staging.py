from .common import ACCOUNT_ID, ADMIN_ROLE_ARNS, REGION, STATE, TAGS
from .config import (AddonsConfig, AirflowConfig, AlarmsConfig, EventsConfig, MonitoringConfig,
                     VaultConfig)
from .config import CacheConfig, ClusterConfig, DatabaseConfig, EnvironmentConfig, NetworkConfig, StorageConfig

CONFIG = EnvironmentConfig(
    name="staging",
    production=False,
    account_id=ACCOUNT_ID,
    region=REGION,
    domain="staging.data.example.com",
    network=NetworkConfig(vpc_cidr="10.20.0.0/16", az_count=3, nat_gateways="single"),
    state=STATE,
    tags=TAGS,
    cluster=ClusterConfig(admin_role_arns=ADMIN_ROLE_ARNS, system_instance_types=("m7i.large",)),
    database=DatabaseConfig(instance_class="db.m7g.large", multi_az=True, backup_retention_days=14),
    cache=CacheConfig(node_type="cache.m7g.large", num_nodes=2, multi_az=True),
    storage=StorageConfig(task_log_expiration_days=60, access_log_expiration_days=180),
    addons=AddonsConfig(),
    airflow=AirflowConfig(),
    vault=VaultConfig(),
    monitoring=MonitoringConfig(),
    events=EventsConfig(),
    alarms=AlarmsConfig(),
    log_retention_days=90,
    deletion_protection=True,
)
