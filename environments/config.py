"""Typed, validated configuration of one environment. Differences between environments are values."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from modules.aws.settings import (CacheSettings, CiRunnerSettings, ClusterSettings, DatabaseSettings, EdgeSettings,
                                  EncryptionSettings, GuardrailsSettings, NetworkSettings, StorageSettings,
                                  connection_account, deploy_role_name, key_admin_arns, plan_role_name,
                                  whole_internet, workload_boundary_name)
from modules.aws.sso_settings import SsoSettings
from modules.core import validation
from modules.core.environment import partition_of
from modules.core.validation import ConfigError, require

from .sections import (AddonsConfig, AirflowConfig, AlarmsConfig, EventsConfig, MonitoringConfig,
                       VaultConfig)

_NAME = re.compile(r"[a-z][a-z0-9-]{0,15}")
_GITHUB_ENVIRONMENT = re.compile(r"[A-Za-z0-9_-]{1,255}")


@dataclass(frozen=True, kw_only=True)
class StateConfig:
    """Where Terraform state lives: one bucket and key per AWS account, created by that account's state stack
    (`<project>-state-<account id>`), which also holds the account's CI roles. Environments in one account share it
    (each under its own `<env>/` keys); production shares it with no non-production environment."""
    bucket: str
    region: str
    kms_key_alias: str = "alias/terraform-state"
    migrated: bool = False   # False: the state stack keeps a local backend until it has created its own bucket
    github_repository: str = ""   # "owner/name" whose GitHub Actions plan/deploy (modules/aws/ci_roles.py); "" = no CI roles
    # Who administers the state key (key management, no use of it): required, because the state of every environment
    # in the account's bucket is under this key and no one environment's admins or CI role speak for all (docs/design.md §10).
    key_admin_arns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validation.bucket_name("state.bucket", self.bucket)
        key_admin_arns("state.key_admin_arns", self.key_admin_arns, required=True)
        require(not self.github_repository or re.fullmatch(r"[A-Za-z0-9-]+/[A-Za-z0-9._-]+", self.github_repository)
                is not None, "state.github_repository", self.github_repository, "is not a GitHub 'owner/name'",
                "use the repository whose Actions plan and deploy, e.g. 'example-org/airflow-platform', or '' for none")
        validation.aws_region("state.region", self.region)
        require(re.fullmatch(r"alias/[a-zA-Z0-9/_-]{1,250}", self.kms_key_alias or "") is not None
                and not self.kms_key_alias.startswith("alias/aws/"), "state.kms_key_alias", self.kms_key_alias,
                "is not a customer KMS alias", "use 'alias/<name>' (not under alias/aws/)")


@dataclass(frozen=True, kw_only=True)
class TagsConfig:
    owner: str
    cost_centre: str
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validation.tags("tags", {"owner": self.owner, "cost_centre": self.cost_centre})
        validation.tags("tags.extra", self.extra)


@dataclass(frozen=True, kw_only=True)
class EnvironmentConfig:
    name: str
    production: bool                  # production environments must meet the stricter rules below
    account_id: str
    region: str
    domain: str
    network: NetworkSettings
    state: StateConfig
    tags: TagsConfig
    cluster: ClusterSettings
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    sso: SsoSettings                  # the IdP in front of the consoles: required (off only with a reason)
    addons: AddonsConfig = field(default_factory=AddonsConfig)
    airflow: AirflowConfig = field(default_factory=AirflowConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)
    guardrails: GuardrailsSettings = field(default_factory=GuardrailsSettings)   # CloudTrail + GuardDuty: on
    encryption: EncryptionSettings = field(default_factory=EncryptionSettings)   # KMS key administrators
    # GitHub environment whose jobs alone may plan this environment ("" = pull requests plan it with its plan role).
    # Production names a protected one (required reviewers): no pull-request identity reads production state.
    plan_environment: str = ""
    ci_runner: CiRunnerSettings = field(default_factory=CiRunnerSettings)        # in-VPC deploy runner: on
    project: str = "airflow"
    log_retention_days: int = 30
    deletion_protection: bool = True

    def __post_init__(self) -> None:
        require(_NAME.fullmatch(self.name or "") is not None, "name", self.name, "is not a valid environment name",
                "use 1-16 lowercase letters, digits and hyphens, starting with a letter")
        require(_NAME.fullmatch(self.project or "") is not None, "project", self.project, "is not a valid project name",
                "use 1-16 lowercase letters, digits and hyphens, starting with a letter")
        require(re.fullmatch(r"\d{12}", self.account_id or "") is not None, "account_id", self.account_id,
                "is not an AWS account id", "use the 12-digit id of the account this environment deploys to")
        validation.aws_region("region", self.region)
        validation.dns_name("domain", self.domain)
        zones = self.availability_zones
        require(len(zones) == self.network.az_count and all(z.startswith(self.region) and len(z) == len(self.region) + 1
                                                          for z in zones) and len(set(zones)) == len(zones),
                "network.availability_zones", list(zones), f"must be {self.network.az_count} distinct zones of {self.region}",
                f"list zones like '{self.region}a', one per AZ, or leave it empty for the default")
        validation.log_retention("log_retention_days", self.log_retention_days)
        for arn in self.key_admin_arns:
            require(not arn.startswith("arn:") or arn.split(":")[1] == self.partition, "encryption.key_admin_arns", arn,
                    f"is not in partition {self.partition} of region {self.region}",
                    f"use arn:{self.partition}:iam::<account>:role/<name>")
        require(self.plan_environment == "" or _GITHUB_ENVIRONMENT.fullmatch(self.plan_environment) is not None,
                "plan_environment", self.plan_environment, "is not a GitHub environment name usable in an OIDC subject",
                "use letters, digits, '-' and '_' (e.g. 'prod-plan'), or '' to let pull requests plan")
        for purpose in ("dags", "task-logs", "plugins", "access-logs", "cloudtrail"):
            self.bucket_name(purpose)
        if self.has_ci_runner:
            arn = self.ci_runner.connection_arn
            require(arn != "", "ci_runner.connection_arn", arn, "is empty while the in-VPC deploy runner is on",
                    "create the account's GitHub connection once (docs/design.md §12) and give its ARN, or set "
                    "ci_runner.enabled=False with an off_reason")
        open_to_all = [cidr for cidr in self.edge.ingress_cidrs if whole_internet(cidr)]
        require(not (self.production and open_to_all and not self.edge.internal and not self.sso.enabled),
                "edge.ingress_cidrs", list(self.edge.ingress_cidrs),
                "exposes the production consoles to the whole internet without single sign-on in front",
                "turn sso on (sso.enabled=True with the IdP's settings), or set edge.internal=True, or list only "
                "the office/VPN CIDRs")
        if self.production:
            require(self.network.az_count >= 3, "network.az_count", self.network.az_count,
                    "is below 3 for a production environment", "use 3 or more AZs in production")
            require(self.deletion_protection, "deletion_protection", self.deletion_protection,
                    "is off for a production environment", "set deletion_protection=True for production")
            require(self.database.multi_az, "database.multi_az", self.database.multi_az,
                    "is off for a production environment", "set database.multi_az=True in production")
            require(self.cache.multi_az, "cache.multi_az", self.cache.multi_az,
                    "is off for a production environment", "set cache.multi_az=True (and num_nodes >= 2) in production")
            require(self.network.nat_gateways == "per_az", "network.nat_gateways", self.network.nat_gateways,
                    "is a single point of failure in production", "use nat_gateways='per_az' in production")
            require(self.plan_environment != "", "plan_environment", self.plan_environment,
                    "is empty for a production environment: pull requests would read its state",
                    f"set plan_environment='{self.name}-plan', a GitHub environment with required reviewers")
            for section in (self.addons, self.airflow, self.vault, self.monitoring, self.events, self.alarms):
                section.check_production()

    def check_own_account(self) -> None:
        """Account-bound references must be in `account_id`. Checked after the environments are checked against each
        other (environments.load), so moving an environment into another's account reports the isolation error first."""
        if self.has_ci_runner:
            arn = self.ci_runner.connection_arn
            require(connection_account(arn) == self.account_id, "ci_runner.connection_arn", arn,
                    f"belongs to another account than account_id={self.account_id}",
                    "use the GitHub connection created in this environment's own account")

    @property
    def prefix(self) -> str:
        """Name prefix of this environment's AWS resources, e.g. 'airflow-dev'."""
        return f"{self.project}-{self.name}"

    def stack_name(self, layer: str) -> str:
        return f"{self.prefix}-{layer}"

    @property
    def availability_zones(self) -> tuple[str, ...]:
        """Pinned zone names: a fixed set, so a zone AWS adds later never silently changes the layout."""
        return self.network.zones(self.region)

    def bucket_name(self, purpose: str) -> str:
        """Globally unique, deterministic bucket name, checked against S3's naming rules at synth."""
        name = f"{self.storage.bucket_prefix or f'{self.project}-{self.name}-{self.account_id}'}-{purpose}"
        validation.bucket_name("storage.bucket_prefix", name)
        return name

    @property
    def alb_subnet_cidrs(self) -> tuple[str, ...]:
        """Where the ALB's nodes (and so its source addresses towards the pods) are: private subnets when internal."""
        return self.network.subnets["private" if self.edge.internal else "public"]

    @property
    def cluster_name(self) -> str:
        return self.prefix

    # Names shared by the stacks and .github/workflows (issue #16): the state stack creates the deploy role, the
    # infra stack gives it an EKS access entry, the workflows assume it and run on the runner.
    @property
    def deploy_role_name(self) -> str:
        """IAM role deploy.yml assumes for this environment (in this environment's account)."""
        return deploy_role_name(self.name)

    @property
    def deploy_role_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:role/{self.deploy_role_name}"

    @property
    def key_admin_arns(self) -> tuple[str, ...]:
        """Who administers this environment's KMS keys: `encryption.key_admin_arns`, else the cluster's admin roles plus,
        when CI deploys (state.github_repository set), the deploy role, which changes key policies, rotation, tags and
        deletion on every apply. Each must exist before the infra stack is applied (the state stack makes the deploy role)."""
        if self.encryption.key_admin_arns:
            return self.encryption.key_admin_arns
        deploy = (self.deploy_role_arn,) if self.state.github_repository else ()
        return tuple(dict.fromkeys((*self.cluster.admin_role_arns, *deploy)))

    @property
    def plan_role_name(self) -> str:
        """IAM role plan.yml assumes to plan this environment (in this environment's account): trusted by pull
        requests, or, when `plan_environment` is set, only by plan.yml on main in that GitHub environment."""
        return plan_role_name(self.name)

    @property
    def plan_role_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:role/{self.plan_role_name}"

    @property
    def workload_boundary_arn(self) -> str:
        """Permissions boundary every IAM role of this environment's stacks carries (created by the state stack of
        its account, modules/aws/ci_roles.py): the deploy role may create roles only with it."""
        return f"arn:{self.partition}:iam::{self.account_id}:policy/{workload_boundary_name(self.prefix)}"

    @property
    def ci_runner_project_name(self) -> str:
        """CodeBuild project hosting this environment's in-VPC GitHub Actions runner; workflows select it with
        `runs-on: codebuild-<this name>-${{ github.run_id }}-${{ github.run_attempt }}`."""
        return f"{self.prefix}-ci-runner"

    @property
    def has_ci_runner(self) -> bool:
        """The runner exists where a repository deploys (state.github_repository) and it is not switched off."""
        return bool(self.state.github_repository) and self.ci_runner.enabled

    @property
    def partition(self) -> str:
        return partition_of(self.region)

    def resource_tags(self) -> dict[str, str]:
        return {"environment": self.name, "project": self.project, "owner": self.tags.owner,
                "cost-centre": self.tags.cost_centre, "managed-by": "cdktf", **self.tags.extra}


def qualify(error: ConfigError, environment: str) -> ConfigError:
    return error.within(f"environments.{environment}")
