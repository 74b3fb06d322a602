"""Environment-tunable settings of Vault: its Helm release (modules/platform/vault.py) and its configuration in the
vault-config stack (modules/platform/vault_config.py, stacks/vault_config.py), validated here: each field, its
default, its rule and its one-line doc exist only in this class (the environment section
environments/sections/vault.py subclasses it and adds the production rules; VaultProps and VaultAirflowConfigProps
embed it whole).

A module of its own because vault.py and vault_config.py import cdktf at the top: environments/ imports this before
the jsii runtime is set up (main.py validates the config first), so it must stay pure Python."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..core import validation
from ..core.validation import require

# Kubernetes resource quantities as the chart passes them through (e.g. "10Gi", "250m", "512Mi").
_STORAGE = re.compile(r"[1-9]\d*(Mi|Gi|Ti)")
_CPU = re.compile(r"([1-9]\d*m|\d+(\.\d+)?)")
_MEMORY = re.compile(r"[1-9]\d*(Mi|Gi)")
_CRON = re.compile(r"[0-9*/,-]+( [0-9*/,-]+){4}")
MAX_REPLICAS = 7          # raft: more voters only slow every write down
_WORKFLOW_FILE = re.compile(r"\.github/workflows/[A-Za-z0-9._-]+\.ya?ml")
_GIT_REF = re.compile(r"refs/(heads|tags)/[A-Za-z0-9._/-]+")


@dataclass(frozen=True, kw_only=True)
class VaultCiAuthSettings:
    """How the deploy workflow logs in to Vault with its GitHub OIDC token (modules/platform/vault_ci_auth.py)."""
    workflow_file: str = ".github/workflows/deploy.yml"  # the only workflow whose jobs may log in (job_workflow_ref)
    ref: str = "refs/heads/main"                        # ... and only from this ref (ref and job_workflow_ref)
    token_ttl: int = 900                                # seconds: one vault-config apply takes about a minute
    token_max_ttl: int = 1800                           # seconds, renewals included

    def __post_init__(self) -> None:
        with validation.section("vault.ci_auth"):
            require(isinstance(self.workflow_file, str) and _WORKFLOW_FILE.fullmatch(self.workflow_file) is not None,
                    "workflow_file", self.workflow_file, "is not a workflow file of the repository",
                    "use '.github/workflows/<name>.yml', e.g. '.github/workflows/deploy.yml'")
            require(isinstance(self.ref, str) and _GIT_REF.fullmatch(self.ref) is not None and ".." not in self.ref,
                    "ref", self.ref, "is not a full Git ref", "use e.g. 'refs/heads/main'")
            for name in ("token_ttl", "token_max_ttl"):
                value = getattr(self, name)
                require(isinstance(value, int) and not isinstance(value, bool) and 60 <= value <= 3600, name, value,
                        "is not a token lifetime between 60 and 3600 seconds",
                        "keep CI tokens short, e.g. 900; the provider's child token lives within it")
            require(self.token_ttl <= self.token_max_ttl, "token_ttl", self.token_ttl,
                    f"exceeds token_max_ttl={self.token_max_ttl}", "keep the TTL at or below the max TTL")


@dataclass(frozen=True, kw_only=True)
class VaultSettings:
    # ---- the Helm release (modules/platform/vault.py)
    replicas: int = 3                       # raft voters; odd, so a quorum survives (n-1)/2 failures
    data_storage_size: str = "10Gi"         # raft data per replica (gp3, KMS-encrypted)
    audit_storage_size: str = "10Gi"        # file audit device per replica
    cpu: str = "250m"                       # request per replica
    memory: str = "512Mi"                   # request and limit per replica
    # ---- the vault-config stack (stacks/vault_config.py, modules/platform/vault_config.py)
    address: str = "https://127.0.0.1:8200"  # where the operator reaches Vault: `kubectl port-forward` by default
    ca_cert_file: str = ""                  # the platform CA that signed Vault's certificate; "" = ~/.vault/<prefix>-ca.crt
    airflow_token_ttl: int = 900            # seconds a token from the Airflow role lives (renewable up to max)
    airflow_token_max_ttl: int = 3600       # seconds a renewed Airflow token may live in total
    kv_max_versions: int = 10               # versions kept per Airflow secret (rollback of a bad rotation)
    ci_auth: VaultCiAuthSettings = field(default_factory=VaultCiAuthSettings)   # the deploy workflow's JWT login
    # ---- raft snapshots (modules/platform/vault_snapshots.py, bucket in modules/aws/vault_storage.py)
    snapshot_schedule: str = "0 */6 * * *"  # CronJob schedule (UTC): how much raft state a restore can lose
    snapshot_retention_days: int = 30       # snapshots older than this expire from the bucket

    def __post_init__(self) -> None:
        with validation.section("vault"):
            self._validate()

    def _validate(self) -> None:
        require(isinstance(self.replicas, int) and not isinstance(self.replicas, bool)
                and 1 <= self.replicas <= MAX_REPLICAS and self.replicas % 2 == 1,
                "replicas", self.replicas, f"is not an odd number of raft voters between 1 and {MAX_REPLICAS}",
                "use 1 (dev), 3 or 5: an even count adds no fault tolerance to a raft quorum")
        for name in ("data_storage_size", "audit_storage_size"):
            value = getattr(self, name)
            require(isinstance(value, str) and _STORAGE.fullmatch(value) is not None, name, value,
                    "is not a volume size", "use a Kubernetes quantity in Mi, Gi or Ti, e.g. '10Gi'")
        require(isinstance(self.cpu, str) and _CPU.fullmatch(self.cpu) is not None, "cpu", self.cpu,
                "is not a CPU quantity", "use millicores or cores, e.g. '250m' or '1'")
        require(isinstance(self.memory, str) and _MEMORY.fullmatch(self.memory) is not None, "memory",
                self.memory, "is not a memory quantity", "use Mi or Gi, e.g. '512Mi'")
        parts = urlsplit(self.address) if isinstance(self.address, str) else None
        require(parts is not None and parts.scheme == "https" and bool(parts.hostname) and parts.path in ("", "/")
                and not parts.query and not parts.username, "address", self.address,
                "is not an https URL of a Vault server", "use e.g. 'https://127.0.0.1:8200' (kubectl port-forward "
                "svc/vault-active 8200:8200); Vault only listens with TLS")
        require(isinstance(self.ca_cert_file, str) and (self.ca_cert_file == "" or (
            self.ca_cert_file.startswith(("/", "~/")) and not any(c.isspace() for c in self.ca_cert_file))),
                "ca_cert_file", self.ca_cert_file, "is not an absolute path",
                "use an absolute or ~/ path (terraform runs inside cdktf.out/stacks/<stack>), or '' for "
                "~/.vault/<project>-<env>-ca.crt")
        for name in ("airflow_token_ttl", "airflow_token_max_ttl"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and 60 <= value <= 86400,
                    name, value, "is not a token lifetime between 60 and 86400 seconds",
                    "use a short lifetime, e.g. 900 (15 minutes); Airflow logs in again when it expires")
        require(self.airflow_token_ttl <= self.airflow_token_max_ttl, "airflow_token_ttl",
                self.airflow_token_ttl, f"exceeds airflow_token_max_ttl={self.airflow_token_max_ttl}",
                "keep the TTL at or below the max TTL")
        require(isinstance(self.snapshot_schedule, str) and _CRON.fullmatch(self.snapshot_schedule) is not None,
                "snapshot_schedule", self.snapshot_schedule, "is not a five-field cron schedule",
                "use e.g. '0 */6 * * *' (every six hours, UTC)")
        require(isinstance(self.snapshot_retention_days, int) and not isinstance(self.snapshot_retention_days, bool)
                and 1 <= self.snapshot_retention_days <= 3650, "snapshot_retention_days",
                self.snapshot_retention_days, "is not between 1 and 3650 days",
                "keep snapshots long enough to restore from before a bad change is noticed, e.g. 30")
        require(isinstance(self.kv_max_versions, int) and not isinstance(self.kv_max_versions, bool)
                and 1 <= self.kv_max_versions <= 100, "kv_max_versions", self.kv_max_versions,
                "is not between 1 and 100", "keep a few versions for rollback, e.g. 10")
