"""EventBridge bus, rules -> SQS, and optional MSK (infra stack; modules/aws/events.py, modules/aws/kafka.py).

The fields, defaults and validation are modules.aws.settings.EventsSettings; this section adds the production
rules."""
from __future__ import annotations

from dataclasses import dataclass

from modules.aws.settings import EventsSettings
from modules.core.validation import require


@dataclass(frozen=True, kw_only=True)
class EventsConfig(EventsSettings):
    def check_production(self) -> None:
        """Rules that apply only when the environment is production (called by EnvironmentConfig)."""
        if self.kafka:
            require(self.kafka_mode == "provisioned", "events.kafka_mode", self.kafka_mode,
                    "cannot use a customer KMS key or broker logs (MSK Serverless) in production",
                    "use kafka_mode='provisioned' in production")
            require(len(self.kafka_availability_zones) >= 3, "events.kafka_availability_zones",
                    list(self.kafka_availability_zones), "has fewer than 3 zones for a production Kafka cluster",
                    "list 3 availability zones in production")
