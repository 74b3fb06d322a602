"""Cluster add-ons in the platform stack: cert-manager, External Secrets, Karpenter, KEDA."""
from __future__ import annotations

from dataclasses import dataclass

from modules.validation import require  # noqa: F401  (used by the validations below)


@dataclass(frozen=True, kw_only=True)
class AddonsConfig:
    def __post_init__(self) -> None:
        pass

    def check_production(self) -> None:
        """Rules that apply only when the environment is production (called by EnvironmentConfig)."""
