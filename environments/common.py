"""Values shared by every environment of this deployment. Replace the account ids, bucket names and domains
with your own before deploying (README: "Adding or changing an environment").

One AWS account per environment is the default layout (docs/design.md, "Environments and accounts"): each
account holds its own Terraform state bucket and key, CI roles and guardrails, so nothing one environment's
identity can reach belongs to another. Non-production environments may share an account (list the same id and
the same `state_in(...)`); production never shares one with a non-production environment (refused at synth).
"""
from modules.aws.settings import CiRunnerSettings
from modules.aws.sso_settings import SsoSettings

from .config import StateConfig, TagsConfig

REGION = "eu-west-1"
GITHUB_REPOSITORY = "example-org/airflow-platform"
# Example ids (AWS documentation style): one account per environment.
ACCOUNT_IDS = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}
TAGS = TagsConfig(owner="data-platform", cost_centre="cc-1234")


def state_in(account_id: str) -> StateConfig:
    """The state bucket of one account (its state stack creates it, with that account's CI roles)."""
    return StateConfig(bucket=f"example-airflow-terraform-state-{account_id}", region=REGION,
                       github_repository=GITHUB_REPOSITORY,
                       key_admin_arns=admin_role_arns(account_id))


def admin_role_arns(account_id: str) -> tuple[str, ...]:
    """Roles given cluster-admin on the account's EKS clusters (access entries; the creator gets no implicit admin).
    They also administer the account's KMS keys (manage, never use them; docs/design.md), with the deploy role."""
    return (f"arn:aws:iam::{account_id}:role/platform-admin",)


def ci_runner_in(account_id: str) -> CiRunnerSettings:
    """The account's AWS CodeConnections connection to GitHub, created and approved once in the console (docs/design.md
    §12); each environment's in-VPC deploy runner uses the connection of its own account. Replace with your own ARNs."""
    return CiRunnerSettings(
        connection_arn=f"arn:aws:codeconnections:{REGION}:{account_id}:connection/4f2b1c9e-7d3a-4e51-9b8c-0a6d2e5f7c13")


# The organisation's OpenID Connect IdP (an Okta-style custom authorization server here). Replace the URLs, client ids
# and groups with your own; the client secret is created once per account in Secrets Manager under the name below
# (README "Single sign-on"), never written here.
IDP_ISSUER = "https://login.example.com/oauth2/default"


def sso_for(environment: str, *, local_login: bool = False) -> SsoSettings:
    """The IdP client of one environment and who gets which role (the same groups everywhere; the client differs)."""
    return SsoSettings(
        issuer_url=IDP_ISSUER, authorization_endpoint=f"{IDP_ISSUER}/v1/authorize",
        token_endpoint=f"{IDP_ISSUER}/v1/token", user_info_endpoint=f"{IDP_ISSUER}/v1/userinfo",
        client_id=f"airflow-platform-{environment}", client_secret_name=f"airflow-{environment}/sso/client-secret",
        airflow_roles={"data-platform-admins": "Admin", "data-engineers": "User", "data-analysts": "Viewer"},
        grafana_roles={"data-platform-admins": "Admin", "data-engineers": "Editor", "data-analysts": "Viewer"},
        local_login=local_login)
