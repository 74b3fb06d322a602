"""kube-prometheus-stack: Prometheus, Alertmanager, Grafana (platform stack). Values are validated by
modules/platform/monitoring.py MonitoringProps (errors name `environments.<env>.monitoring.<field>`)."""
from __future__ import annotations

from dataclasses import dataclass

from modules.core.validation import require


@dataclass(frozen=True, kw_only=True)
class MonitoringConfig:
    prometheus_retention: str = "15d"          # how long Prometheus keeps samples ...
    prometheus_retention_size: str = "40GB"    # ... or until the TSDB reaches this size (base 2), whichever first
    prometheus_storage_gib: int = 50           # gp3 volume per Prometheus replica
    prometheus_replicas: int = 1
    alertmanager_retention: str = "120h"       # silences and notification state
    alertmanager_storage_gib: int = 2
    alertmanager_replicas: int = 1
    grafana_storage_gib: int = 5
    queued_tasks_threshold: int = 50           # AirflowQueuedTasksPilingUp: queued tasks per executor for 15 minutes
    task_failure_ratio: float = 0.1            # AirflowTaskFailureRateHigh: failed share of finished tasks (15 minutes)

    def __post_init__(self) -> None:
        pass   # field rules live in MonitoringProps (one place for the construct and the config)

    def check_production(self) -> None:
        """Rules that apply only when the environment is production (called by EnvironmentConfig)."""
        for name in ("prometheus_replicas", "alertmanager_replicas"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 2, f"monitoring.{name}", value,
                    "is below 2 for a production environment",
                    f"set monitoring.{name}=2 or more so alerting survives losing a node")
