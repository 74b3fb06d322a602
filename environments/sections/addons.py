"""Cluster add-ons in the platform stack: cert-manager, External Secrets, Karpenter, KEDA. The fields, their
defaults and their validation live in modules/platform/addons_settings.py AddonsSettings (library users get the same
checks); this section adds the production rules."""
from __future__ import annotations

from dataclasses import dataclass

from modules.core import validation
from modules.core.validation import require
from modules.platform.addons_settings import AddonsSettings


@dataclass(frozen=True, kw_only=True)
class AddonsConfig(AddonsSettings):
    def check_production(self) -> None:
        """Rules that apply only when the environment is production (called by EnvironmentConfig)."""
        with validation.section("addons"):
            require(self.controller_replicas >= 2, "controller_replicas", self.controller_replicas,
                    "is a single point of failure in production",
                    "use controller_replicas >= 2 in production (webhooks stay available during node drains)")
            require(self.storage_reclaim_policy == "Retain", "storage_reclaim_policy", self.storage_reclaim_policy,
                    "lets a deleted claim destroy Vault or Prometheus data in production",
                    "use storage_reclaim_policy='Retain' in production")
            require(not self.worker_ami_alias.endswith("@latest"), "worker_ami_alias", self.worker_ami_alias,
                    "lets AWS's next AMI release replace every production worker node (Karpenter drift) untested",
                    "pin a release staging has run, e.g. 'al2023@v20260714' (docs/platform-addons.md, "
                    "\"Upgrading the worker AMI\")")
