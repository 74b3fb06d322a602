"""Alarm thresholds and alert routing as typed, validated data: what modules/aws/observability.py alarms on and
where it sends alerts.

Pure Python on purpose: environments/ (AlarmsConfig extends AlarmThresholds) imports it before the jsii
runtime starts, so it must not import cdktf. Errors name the field with `FIELD_PREFIX` in front
(AlarmsConfig sets 'alarms.'), so `--set alarms.rds_cpu_percent=150` reports exactly that path.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import ClassVar

from ..core.validation import require

SEVERITIES = ("critical", "warning")
GIB = 1024 ** 3
MIB = 1024 ** 2
_DAY = 86400

# field -> (lowest, highest, unit). Percentages are CloudWatch percent metrics; counts are per alarm period.
RANGES: dict[str, tuple[float, float, str]] = {
    "rds_cpu_percent": (1, 100, "percent"),
    "rds_free_storage_bytes": (1, math.inf, "bytes"),
    "rds_freeable_memory_bytes": (1, math.inf, "bytes"),
    "rds_connections": (1, 100_000, "connections"),
    "redis_engine_cpu_percent": (1, 100, "percent"),
    "redis_memory_percent": (1, 100, "percent"),
    "redis_evictions": (1, math.inf, "evicted keys per period"),
    "redis_connections": (1, 65_000, "connections"),            # Redis maxclients on ElastiCache
    "alb_5xx_count": (1, math.inf, "responses per period"),
    "alb_target_response_seconds": (0.001, 4000, "seconds"),     # ALB idle timeout tops out at 4000 s
    "alb_unhealthy_hosts": (1, 1000, "targets"),
    "sqs_dlq_messages": (1, math.inf, "messages"),
    "sqs_oldest_message_seconds": (60, 1_209_600, "seconds"),    # SQS keeps messages 14 days at most
    "cluster_min_nodes": (1, 1000, "nodes"),
    "cluster_failed_nodes": (1, 1000, "nodes"),
    "cluster_node_cpu_percent": (1, 100, "percent"),
    "cluster_crash_looping_containers": (1, math.inf, "containers"),
}


@dataclass(frozen=True, kw_only=True)
class AlarmThresholds:
    """When each alarm fires. Defaults suit a small production deployment; environments tune them."""
    FIELD_PREFIX: ClassVar[str] = ""

    period_seconds: int = 300            # one datapoint per period ...
    evaluation_periods: int = 3          # ... and this many breaching in a row raise the alarm
    rds_cpu_percent: int = 80
    rds_free_storage_bytes: int = 10 * GIB
    rds_freeable_memory_bytes: int = 256 * MIB
    rds_connections: int = 300           # db.t4g.medium allows ~400 (DBInstanceClassMemory / 9531392)
    redis_engine_cpu_percent: int = 80
    redis_memory_percent: int = 80       # DatabaseMemoryUsagePercentage: the broker runs noeviction
    redis_evictions: int = 1             # any eviction loses Celery messages
    redis_connections: int = 1000
    alb_5xx_count: int = 10
    alb_target_response_seconds: float = 2.0   # p95 of TargetResponseTime
    alb_unhealthy_hosts: int = 1
    sqs_dlq_messages: int = 1            # any message in a dead-letter queue needs a look
    sqs_oldest_message_seconds: int = 900
    cluster_min_nodes: int = 2           # fewer nodes than this reporting (or none at all) is critical
    cluster_failed_nodes: int = 1
    cluster_node_cpu_percent: int = 85   # average over the cluster's nodes
    cluster_crash_looping_containers: int = 1

    def __post_init__(self) -> None:
        p = self.FIELD_PREFIX
        require(type(self.period_seconds) is int and 60 <= self.period_seconds <= _DAY
                and self.period_seconds % 60 == 0, f"{p}period_seconds", self.period_seconds,
                "is not a CloudWatch alarm period for standard-resolution metrics",
                "use a multiple of 60 seconds between 60 and 86400, e.g. 300")
        require(type(self.evaluation_periods) is int and self.evaluation_periods >= 1, f"{p}evaluation_periods",
                self.evaluation_periods, "must be a whole number of periods, at least 1", "use 1 or more, e.g. 3")
        require(self.evaluation_periods * self.period_seconds <= _DAY, f"{p}evaluation_periods",
                self.evaluation_periods, f"times period_seconds={self.period_seconds} exceeds one day, the longest "
                "range CloudWatch evaluates for these periods",
                f"use at most {_DAY // self.period_seconds} periods of {self.period_seconds} s")
        for name, (low, high, unit) in RANGES.items():
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            span = f"{low:g}-{high:g}" if high != math.inf else f"{low:g} or more"
            require(number and low <= value <= high, f"{p}{name}", value, f"is outside {span} {unit}",
                    f"set a threshold in {span} {unit}")

    @classmethod
    def threshold_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(AlarmThresholds))

    def thresholds(self) -> "AlarmThresholds":
        """Just the thresholds (a subclass such as AlarmsConfig carries more)."""
        return AlarmThresholds(**{name: getattr(self, name) for name in self.threshold_fields()})


# Secrets Manager names: 1-512 of letters, digits and /_+=.@-
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
# Slack ids (not secrets): workspace 'T…', channel 'C…' (public) or 'G…' (private), upper-case letters and digits.
_SLACK_WORKSPACE = re.compile(r"T[A-Z0-9]{8,11}")
_SLACK_CHANNEL = re.compile(r"[CG][A-Z0-9]{8,11}")


def check_routing(prefix: str, *, pagerduty_secret_name: str, pagerduty_severities: tuple[str, ...],
                  slack_workspace_id: str, slack_channel_id: str, slack_severities: tuple[str, ...]) -> None:
    """Validate where alerts go: an optional PagerDuty secret, optional Slack ids (both or neither)."""
    require(pagerduty_secret_name == "" or (isinstance(pagerduty_secret_name, str)
                                            and _SECRET_NAME.fullmatch(pagerduty_secret_name) is not None),
            f"{prefix}pagerduty_secret_name", pagerduty_secret_name, "is not a Secrets Manager secret name",
            "name the secret holding the PagerDuty integration URL, e.g. 'airflow-prod/alerting/pagerduty', "
            "or '' for no PagerDuty")
    for name, chosen in (("pagerduty_severities", pagerduty_severities), ("slack_severities", slack_severities)):
        unknown = [s for s in chosen if s not in SEVERITIES]
        require(not unknown and len(set(chosen)) == len(chosen), f"{prefix}{name}", list(chosen),
                "names unknown or repeated severities", f"list some of {', '.join(SEVERITIES)}, each once")
    require(slack_workspace_id == "" or _SLACK_WORKSPACE.fullmatch(str(slack_workspace_id)) is not None,
            f"{prefix}slack_workspace_id", slack_workspace_id, "is not a Slack workspace (team) id",
            "copy the workspace id shown in the AWS Chatbot console after authorising the workspace, e.g. "
            "'T01ABCDEF23', or '' for no Slack")
    require(slack_channel_id == "" or _SLACK_CHANNEL.fullmatch(str(slack_channel_id)) is not None,
            f"{prefix}slack_channel_id", slack_channel_id, "is not a Slack channel id",
            "copy the id at the end of the channel's link (e.g. 'C01ABCDEF23'), not its name, or '' for no Slack")
    require(bool(slack_workspace_id) == bool(slack_channel_id), f"{prefix}slack_channel_id", slack_channel_id,
            f"and slack_workspace_id={slack_workspace_id!r} must be set together",
            "set both ids to post alerts to Slack, or neither")


@dataclass(frozen=True, kw_only=True)
class AlarmsSettings(AlarmThresholds):
    """The alarms' thresholds and where alerts go (environments.<env>.alarms)."""
    FIELD_PREFIX: ClassVar[str] = "alarms."

    # Secrets Manager secret (name, not value) holding the PagerDuty "Amazon CloudWatch" integration URL; it
    # contains the integration key, so it is read at apply time and never written into code or JSON. "" = off.
    pagerduty_secret_name: str = ""
    pagerduty_severities: tuple[str, ...] = ("critical",)   # topics that page; the rest only reach Slack
    # AWS Chatbot: ids (not secrets) of a workspace authorised once in the Chatbot console, and a channel. "" = off.
    slack_workspace_id: str = ""
    slack_channel_id: str = ""
    slack_severities: tuple[str, ...] = SEVERITIES

    def __post_init__(self) -> None:
        super().__post_init__()
        check_routing(self.FIELD_PREFIX, pagerduty_secret_name=self.pagerduty_secret_name,
                      pagerduty_severities=self.pagerduty_severities, slack_workspace_id=self.slack_workspace_id,
                      slack_channel_id=self.slack_channel_id, slack_severities=self.slack_severities)
