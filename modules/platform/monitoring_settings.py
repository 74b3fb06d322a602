"""Environment-tunable settings of kube-prometheus-stack (modules/platform/monitoring.py), validated here: each field,
its default, its rule and its one-line doc exist only in this class (the environment section
environments/sections/monitoring.py subclasses it and adds the production rules; MonitoringProps embeds it whole).

A module of its own because monitoring.py imports cdktf at the top: environments/ imports this before the jsii
runtime is set up (main.py validates the config first), so it must stay pure Python."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..core import validation
from ..core.validation import require

_PROM_DURATION = re.compile(r"[1-9][0-9]*(ms|s|m|h|d|w|y)")
_AM_DURATION = re.compile(r"[1-9][0-9]*(ms|s|m|h)")          # the Alertmanager CRD's retention pattern
_BYTE_SIZE = re.compile(r"([1-9][0-9]*)(B|KB|MB|GB|TB)")     # Prometheus ByteSize (base 2: 1GB = 2^30 bytes)
_BYTE_UNITS = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}


@dataclass(frozen=True, kw_only=True)
class MonitoringSettings:
    prometheus_retention: str = "15d"          # how long Prometheus keeps samples ...
    prometheus_retention_size: str = "40GB"    # ... or until the TSDB reaches this size (base 2; <= 90% of the volume)
    prometheus_storage_gib: int = 50           # gp3 volume per Prometheus replica
    prometheus_replicas: int = 1               # 2+ keeps alert evaluation through a node loss
    alertmanager_retention: str = "120h"       # silences and notification state
    alertmanager_storage_gib: int = 2          # gp3 volume per Alertmanager replica
    alertmanager_replicas: int = 1             # 2+ keeps notifications through a node loss
    grafana_storage_gib: int = 5               # gp3 volume of the single Grafana pod
    queued_tasks_threshold: int = 50           # AirflowQueuedTasksPilingUp: queued tasks per executor for 15 minutes
    task_failure_ratio: float = 0.1            # AirflowTaskFailureRateHigh: failed share of finished tasks (15 minutes)

    def __post_init__(self) -> None:
        with validation.section("monitoring"):
            self._validate()

    def _validate(self) -> None:
        require(isinstance(self.prometheus_retention, str) and _PROM_DURATION.fullmatch(self.prometheus_retention)
                is not None, "prometheus_retention", self.prometheus_retention, "is not a Prometheus duration",
                "use a number and a unit of ms, s, m, h, d, w or y, e.g. '15d'")
        require(isinstance(self.alertmanager_retention, str) and _AM_DURATION.fullmatch(self.alertmanager_retention)
                is not None, "alertmanager_retention", self.alertmanager_retention,
                "is not an Alertmanager retention", "use a number and a unit of ms, s, m or h, e.g. '120h'")
        for name, low, high in (("prometheus_storage_gib", 1, 16384), ("alertmanager_storage_gib", 1, 1024),
                                ("grafana_storage_gib", 1, 1024), ("prometheus_replicas", 1, 5),
                                ("alertmanager_replicas", 1, 5), ("queued_tasks_threshold", 1, 1_000_000)):
            value = getattr(self, name)
            require(type(value) is int and low <= value <= high, name, value, f"is outside {low}-{high}",
                    f"use a whole number from {low} to {high}")
        size = _BYTE_SIZE.fullmatch(self.prometheus_retention_size) if isinstance(
            self.prometheus_retention_size, str) else None
        require(size is not None, "prometheus_retention_size", self.prometheus_retention_size,
                "is not a Prometheus byte size", "use a whole number and B, KB, MB, GB or TB, e.g. '40GB'")
        size_bytes = int(size.group(1)) * _BYTE_UNITS[size.group(2)]
        require(size_bytes <= self.prometheus_storage_gib * 2**30 * 0.9, "prometheus_retention_size",
                self.prometheus_retention_size,
                f"does not fit 90% of prometheus_storage_gib={self.prometheus_storage_gib}",
                "lower the retention size or raise prometheus_storage_gib (the WAL and compaction need headroom)")
        require(isinstance(self.task_failure_ratio, (int, float)) and not isinstance(self.task_failure_ratio, bool)
                and 0 < self.task_failure_ratio < 1, "task_failure_ratio", self.task_failure_ratio,
                "is not a ratio between 0 and 1", "use a share such as 0.1 (10% of finished tasks failed)")
