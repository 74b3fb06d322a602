"""The HashiCorp Vault Helm release (platform stack) and its configuration (vault-config stack). The fields, their
defaults and their validation live in modules/platform/vault_settings.py VaultSettings (library users get the same
checks); this section adds the production rules."""
from __future__ import annotations

from dataclasses import dataclass

from modules.core import validation
from modules.core.validation import require
from modules.platform.vault_settings import MAX_REPLICAS, VaultSettings  # noqa: F401  (MAX_REPLICAS: its old home)


@dataclass(frozen=True, kw_only=True)
class VaultConfig(VaultSettings):
    def check_production(self) -> None:
        """Rules that apply only when the environment is production (called by EnvironmentConfig)."""
        with validation.section("vault"):
            require(self.replicas >= 3, "replicas", self.replicas, "is below 3 for a production environment",
                    "use 3 (or 5) replicas in production so the raft quorum survives losing a node")
