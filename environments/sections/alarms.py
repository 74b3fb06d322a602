"""CloudWatch alarms and their SNS topics / PagerDuty / Slack (infra stack; modules/aws/observability.py).

Thresholds are the fields of modules.aws.alarm_thresholds.AlarmThresholds (validated ranges, one line per bad value);
this section adds where alerts go. docs/alerting.md explains the path and the one-time setup."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from modules.aws.alarm_thresholds import AlarmThresholds, check_routing
from modules.core.validation import require


@dataclass(frozen=True, kw_only=True)
class AlarmsConfig(AlarmThresholds):
    FIELD_PREFIX: ClassVar[str] = "alarms."

    # Secrets Manager secret (name, not value) holding the PagerDuty "Amazon CloudWatch" integration URL; it
    # contains the integration key, so it is read at apply time and never written into code or JSON. "" = off.
    pagerduty_secret_name: str = ""
    pagerduty_severities: tuple[str, ...] = ("critical",)   # topics that page; the rest only reach Slack
    # AWS Chatbot: ids (not secrets) of a workspace authorised once in the Chatbot console, and a channel. "" = off.
    slack_workspace_id: str = ""
    slack_channel_id: str = ""
    slack_severities: tuple[str, ...] = ("critical", "warning")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_routing(self.FIELD_PREFIX, pagerduty_secret_name=self.pagerduty_secret_name,
                      pagerduty_severities=self.pagerduty_severities, slack_workspace_id=self.slack_workspace_id,
                      slack_channel_id=self.slack_channel_id, slack_severities=self.slack_severities)

    def check_production(self) -> None:
        """Rules that apply only when the environment is production (called by EnvironmentConfig)."""
        require(bool(self.pagerduty_secret_name) or bool(self.slack_channel_id), "alarms.pagerduty_secret_name",
                self.pagerduty_secret_name, "and slack_channel_id are both empty for a production environment, so "
                "alarms reach nobody", "set alarms.pagerduty_secret_name and/or the Slack ids in production")
