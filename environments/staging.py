from .common import ACCOUNT_ID, REGION, STATE, TAGS
from .config import EnvironmentConfig, NetworkConfig

CONFIG = EnvironmentConfig(
    name="staging",
    production=False,
    account_id=ACCOUNT_ID,
    region=REGION,
    domain="staging.data.example.com",
    network=NetworkConfig(vpc_cidr="10.20.0.0/16", az_count=3, nat_gateways="single"),
    state=STATE,
    tags=TAGS,
    log_retention_days=90,
    deletion_protection=True,
)
