from .common import ACCOUNT_ID, REGION, STATE, TAGS
from .config import EnvironmentConfig, NetworkConfig

CONFIG = EnvironmentConfig(
    name="dev",
    production=False,
    account_id=ACCOUNT_ID,
    region=REGION,
    domain="dev.data.example.com",
    network=NetworkConfig(vpc_cidr="10.10.0.0/16", az_count=2, nat_gateways="single"),
    state=STATE,
    tags=TAGS,
    log_retention_days=30,
    deletion_protection=False,
)
