"""The Airflow Helm release (official chart) in the platform stack. The fields, their defaults and their validation
live in modules/platform/airflow_settings.py AirflowSettings (library users get the same checks); this section adds
the production rules."""
from __future__ import annotations

from dataclasses import dataclass

from modules.core import validation
from modules.core.validation import require
from modules.platform.airflow_settings import AirflowSettings


@dataclass(frozen=True, kw_only=True)
class AirflowConfig(AirflowSettings):
    def check_production(self) -> None:
        """Rules that apply only when the environment is production (called by EnvironmentConfig)."""
        with validation.section("airflow"):
            for name in ("scheduler_replicas", "api_server_replicas", "dag_processor_replicas", "triggerer_replicas",
                         "pgbouncer_replicas"):
                value = getattr(self, name)
                require(value >= 2, name, value, "is a single point of failure in production",
                        f"set airflow.{name} >= 2 in production (a PodDisruptionBudget then keeps one running)")
            require(self.worker_min_replicas >= 1, "worker_min_replicas", self.worker_min_replicas,
                    "scales Celery workers to zero in production (every task waits for a cold node and pod)",
                    "set airflow.worker_min_replicas >= 1 in production")
