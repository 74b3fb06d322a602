"""CloudWatch alarms and their SNS topics / PagerDuty / Slack (infra stack; modules/aws/observability.py).

The fields, defaults and validation are modules.aws.alarm_thresholds.AlarmsSettings (thresholds and routing);
this section adds the production rule. docs/alerting.md explains the path and the one-time setup."""
from __future__ import annotations

from dataclasses import dataclass

from modules.aws.alarm_thresholds import AlarmsSettings
from modules.core.validation import require


@dataclass(frozen=True, kw_only=True)
class AlarmsConfig(AlarmsSettings):
    def check_production(self) -> None:
        """Rules that apply only when the environment is production (called by EnvironmentConfig)."""
        require(bool(self.pagerduty_secret_name) or bool(self.slack_channel_id), "alarms.pagerduty_secret_name",
                self.pagerduty_secret_name, "and slack_channel_id are both empty for a production environment, so "
                "alarms reach nobody", "set alarms.pagerduty_secret_name and/or the Slack ids in production")
