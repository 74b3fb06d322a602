from .common import ACCOUNT_ID, REGION, STATE, TAGS
from .config import EnvironmentConfig, NetworkConfig

CONFIG = EnvironmentConfig(
    name="prod",
    production=True,
    account_id=ACCOUNT_ID,
    region=REGION,
    domain="data.example.com",
    network=NetworkConfig(vpc_cidr="10.30.0.0/16", az_count=3, nat_gateways="per_az"),
    state=STATE,
    tags=TAGS,
    log_retention_days=365,
    deletion_protection=True,
)
