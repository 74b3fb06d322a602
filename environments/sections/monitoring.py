"""kube-prometheus-stack: Prometheus, Alertmanager, Grafana (platform stack). The fields, their defaults and their
validation live in modules/platform/monitoring_settings.py MonitoringSettings (library users get the same checks);
this section adds the production rules."""
from __future__ import annotations

from dataclasses import dataclass

from modules.core import validation
from modules.core.validation import require
from modules.platform.monitoring_settings import MonitoringSettings


@dataclass(frozen=True, kw_only=True)
class MonitoringConfig(MonitoringSettings):
    def check_production(self) -> None:
        """Rules that apply only when the environment is production (called by EnvironmentConfig)."""
        with validation.section("monitoring"):
            for name in ("prometheus_replicas", "alertmanager_replicas"):
                value = getattr(self, name)
                require(isinstance(value, int) and value >= 2, name, value, "is below 2 for a production environment",
                        f"set monitoring.{name}=2 or more so alerting survives losing a node")
