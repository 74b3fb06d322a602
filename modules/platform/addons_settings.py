"""Environment-tunable settings of the cluster add-ons (modules/platform/addons.py), validated here: each field,
its default, its rule and its one-line doc exist only in this class (the environment section
environments/sections/addons.py subclasses it and adds the production rules; ClusterAddonsProps embeds it whole).

A module of its own because addons.py imports cdktf at the top: environments/ imports this before the jsii runtime
is set up (main.py validates the config first), so it must stay pure Python. Chart versions are pinned in addons.py
(one place, each with its source), not per environment: what differs between environments is capacity and
redundancy. Instance families and their architectures come from modules/aws/settings.py (shared with the system
node group)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..aws.settings import IN_TRANSIT_ENCRYPTION_FAMILIES, INSTANCE_FAMILIES
from ..core import validation
from ..core.validation import require

_FAMILY = re.compile(r"[a-z][a-z0-9]*(-flex)?")
_SIZES = ("medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")
_DURATION = re.compile(r"(\d+h)?(\d+m)?(\d+s)?")
_BUDGET = re.compile(r"\d{1,3}%|\d{1,4}")
_AMI_ALIAS = re.compile(r"(al2023|bottlerocket)@(latest|v\d+(\.\d+){0,2}|v\d{8})")


def _duration(field: str, value: str) -> None:
    ok = isinstance(value, str) and value not in ("", "0s") and _DURATION.fullmatch(value) is not None
    require(ok, field, value, "is not a duration Karpenter accepts",
            "use hours/minutes/seconds such as '30s', '5m' or '720h'")


@dataclass(frozen=True, kw_only=True)
class AddonsSettings:
    # Replicas of each controller (cert-manager, External Secrets, KEDA, Karpenter): 2+ rides out a node drain.
    controller_replicas: int = 2
    # Airflow worker capacity (Karpenter NodePool `airflow-workers`, spot with on-demand fallback).
    worker_instance_families: tuple[str, ...] = ("m7i", "m6i", "m7a", "m6a")   # one architecture (x86_64 or arm64)
    worker_instance_sizes: tuple[str, ...] = ("large", "xlarge", "2xlarge")   # sizes Karpenter may pick from
    worker_cpu_limit: int = 64                       # vCPUs the pool may hold in total (cost ceiling)
    worker_memory_limit_gib: int = 256               # memory the pool may hold in total
    worker_root_volume_gib: int = 100                # encrypted gp3 root volume per worker node
    worker_consolidate_after: str = "5m"             # how long a node stays empty/underused before removal
    worker_expire_after: str = "720h"                # nodes are replaced after this age (patching)
    worker_disruption_budget: str = "10%"            # nodes Karpenter may disrupt at once ('N' or 'N%')
    # EC2NodeClass amiSelectorTerms alias; production pins a release, 'al2023@vYYYYMMDD' (an amazon-eks-ami tag)
    worker_ami_alias: str = "al2023@latest"
    # Persistent volumes (Vault raft, Prometheus): Retain keeps the EBS volume when its claim is deleted.
    storage_reclaim_policy: Literal["Retain", "Delete"] = "Retain"

    def __post_init__(self) -> None:
        with validation.section("addons"):
            self._validate()

    def _validate(self) -> None:
        require(isinstance(self.controller_replicas, int) and 1 <= self.controller_replicas <= 5,
                "controller_replicas", self.controller_replicas, "is outside 1-5",
                "use 1 for dev, 2 or 3 where a controller must survive a node drain")
        families = self.worker_instance_families
        require(isinstance(families, tuple) and len(families) >= 1
                and all(isinstance(f, str) and _FAMILY.fullmatch(f) for f in families)
                and len(set(families)) == len(families),
                "worker_instance_families", list(families) if isinstance(families, tuple) else families,
                "is empty, repeats a family or names something that is not an EC2 instance family",
                "list families such as ['m7i', 'm6i'] (without the size)")
        unknown = [f for f in families if f not in INSTANCE_FAMILIES]
        require(not unknown, "worker_instance_families", unknown, "names no known instance family",
                f"use families from {', '.join(sorted(INSTANCE_FAMILIES))}")
        plain = [f for f in families if f not in IN_TRANSIT_ENCRYPTION_FAMILIES]
        require(not plain, "worker_instance_families", plain,
                "does not encrypt traffic between instances (no Nitro in-transit encryption)",
                f"use families from {', '.join(sorted(IN_TRANSIT_ENCRYPTION_FAMILIES))}")
        require(len({INSTANCE_FAMILIES[f] for f in families}) == 1, "worker_instance_families", list(families),
                "mixes x86_64 and Graviton (arm64) families",
                "use one architecture: the Airflow image is built for one (e.g. only m7i/m6i, or only m7g/m6g)")
        sizes = self.worker_instance_sizes
        require(isinstance(sizes, tuple) and len(sizes) >= 1 and all(s in _SIZES for s in sizes),
                "worker_instance_sizes", list(sizes) if isinstance(sizes, tuple) else sizes,
                "is empty or names an unknown instance size", f"use sizes among {', '.join(_SIZES)}")
        require(isinstance(self.worker_cpu_limit, int) and 2 <= self.worker_cpu_limit <= 10000,
                "worker_cpu_limit", self.worker_cpu_limit, "is outside 2-10000 vCPUs",
                "set the most vCPUs the Airflow worker pool may hold, e.g. 64")
        require(isinstance(self.worker_memory_limit_gib, int) and 4 <= self.worker_memory_limit_gib <= 80000,
                "worker_memory_limit_gib", self.worker_memory_limit_gib, "is outside 4-80000 GiB",
                "set the most memory the Airflow worker pool may hold, e.g. 256")
        require(isinstance(self.worker_root_volume_gib, int) and 20 <= self.worker_root_volume_gib <= 16384,
                "worker_root_volume_gib", self.worker_root_volume_gib,
                "is outside what a gp3 root volume accepts", "use 20-16384 GiB")
        for name in ("worker_consolidate_after", "worker_expire_after"):
            _duration(name, getattr(self, name))
        budget = self.worker_disruption_budget
        ok = isinstance(budget, str) and _BUDGET.fullmatch(budget) is not None and budget not in ("0", "0%") \
            and (not budget.endswith("%") or int(budget[:-1]) <= 100)
        require(ok, "worker_disruption_budget", budget, "is not a node count or percentage above zero",
                "use e.g. '10%' or '2' (Karpenter disrupts at most that many worker nodes at once)")
        require(isinstance(self.worker_ami_alias, str) and _AMI_ALIAS.fullmatch(self.worker_ami_alias) is not None,
                "worker_ami_alias", self.worker_ami_alias, "is not an EC2NodeClass AMI alias",
                "use 'al2023@latest' or a pinned release such as 'al2023@v20250715'")
        require(self.storage_reclaim_policy in ("Retain", "Delete"), "storage_reclaim_policy",
                self.storage_reclaim_policy, "is not a reclaim policy", "use 'Retain' or 'Delete'")
