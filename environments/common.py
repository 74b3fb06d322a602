"""Values shared by every environment of this deployment. Replace the account id, bucket and domains
with your own before deploying (README: "Adding or changing an environment")."""
from .config import StateConfig, TagsConfig

ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
STATE = StateConfig(bucket="example-airflow-terraform-state", region=REGION,
                    github_repository="example-org/airflow-platform")
TAGS = TagsConfig(owner="data-platform", cost_centre="cc-1234")
# Roles given cluster-admin on every EKS cluster (access entries; the creator gets no implicit admin).
ADMIN_ROLE_ARNS = (f"arn:aws:iam::{ACCOUNT_ID}:role/platform-admin",)
