"""Per-concern sections of an environment's config (one file each, owned by the module they configure).
Each section is a frozen dataclass validated in __post_init__; `check_production()` adds the stricter rules
EnvironmentConfig applies when `production=True`. The platform sections (addons, airflow, monitoring, vault) are
subclasses of their construct's settings (modules/platform/*_settings.py), which hold the fields, defaults and
rules once; the section adds only `check_production()`."""
from .addons import AddonsConfig
from .airflow import AirflowConfig
from .alarms import AlarmsConfig
from .events import EventsConfig
from .monitoring import MonitoringConfig
from .vault import VaultConfig

__all__ = ["AddonsConfig", "AirflowConfig", "AlarmsConfig", "EventsConfig", "MonitoringConfig", "VaultConfig"]
