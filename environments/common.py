"""Values shared by every environment of this deployment. Replace the account id, bucket and domains
with your own before deploying (README: "Adding or changing an environment")."""
from modules.aws.settings import CiRunnerSettings, GuardrailsSettings

from .config import StateConfig, TagsConfig

ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
STATE = StateConfig(bucket="example-airflow-terraform-state", region=REGION,
                    github_repository="example-org/airflow-platform")
TAGS = TagsConfig(owner="data-platform", cost_centre="cc-1234")
# The account's AWS CodeConnections connection to GitHub, created and approved once in the console (docs/design.md
# §10); each environment's in-VPC deploy runner uses the connection of its own account. Replace with your own ARN.
CI_RUNNER = CiRunnerSettings(
    connection_arn=f"arn:aws:codeconnections:{REGION}:{ACCOUNT_ID}:connection/4f2b1c9e-7d3a-4e51-9b8c-0a6d2e5f7c13")
# Roles given cluster-admin on every EKS cluster (access entries; the creator gets no implicit admin).
ADMIN_ROLE_ARNS = (f"arn:aws:iam::{ACCOUNT_ID}:role/platform-admin",)
# dev and staging share prod's account (ACCOUNT_ID above): prod's multi-region trail and GuardDuty detector already
# record and watch it, AWS allows one detector per account and region, and more trails would record the same events
# again at a cost. When each environment gets an account of its own (issue #16 item 1), drop this from dev and staging.
SHARED_ACCOUNT_GUARDRAILS = GuardrailsSettings(
    cloudtrail=False, guardduty=False,
    off_reason="shares prod's AWS account, whose multi-region CloudTrail trail and GuardDuty detector (prod's infra "
               "stack) cover it; on again once this environment has its own account (issue #16 item 1)")
