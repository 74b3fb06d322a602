"""EventBridge bus, rules -> SQS, and optional MSK (infra stack; modules/aws/events.py, modules/aws/kafka.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from modules.aws.event_patterns import DEFAULT_RULE_NAMES, EventRule, event_rules
from modules.core.validation import require

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_GROUP = re.compile(r"[A-Za-z0-9._-]{1,255}")
_KAFKA_VERSION = re.compile(r"\d+\.\d+\.(\d+|x)")
_BROKER_TYPE = re.compile(r"kafka\.(t3|m5|m7g)\.[a-z0-9]+")


@dataclass(frozen=True, kw_only=True)
class EventsConfig:
    # Rules beyond the two every environment has (objects created in the landing bucket, and application
    # events whose source starts with `application_source_prefix` on the environment's bus).
    rules: tuple[EventRule, ...] = ()
    application_source_prefix: str = "app."
    max_receive_count: int = 5                   # receives before SQS moves a message to the dead-letter queue
    retry_attempts: int = 8                      # EventBridge delivery retries before the target DLQ (0-185)
    max_event_age_seconds: int = 3600            # EventBridge gives up delivering after this (60-86400)
    message_retention_seconds: int = 345600      # 4 days on the queues (DLQs keep 14 days, SQS's maximum)
    visibility_timeout_seconds: int = 300
    landing_expiration_days: int = 30            # landing objects are inputs; DAGs copy what they keep
    # Optional MSK (modules/aws/kafka.py). Provisioned is the secure default: serverless cannot use a customer
    # KMS key or ship broker logs, so production refuses it.
    kafka: bool = False
    kafka_mode: Literal["provisioned", "serverless"] = "provisioned"
    kafka_availability_zones: tuple[str, ...] = ()   # broker subnets: the private subnet of each zone (2 or 3)
    kafka_version: str = "3.8.x"
    kafka_broker_instance_type: str = "kafka.m7g.large"
    kafka_brokers_per_zone: int = 1
    kafka_volume_size_gib: int = 100
    kafka_topics: tuple[str, ...] = ("airflow-events",)   # the only topics Airflow's triggerer may read
    kafka_consumer_group: str = "airflow"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", event_rules("events.rules", self.rules))
        require(isinstance(self.application_source_prefix, str) and 0 < len(self.application_source_prefix) <= 200
                and not self.application_source_prefix.startswith("aws."), "events.application_source_prefix",
                self.application_source_prefix, "is empty, too long or an AWS service source",
                "use the source prefix your applications put events with, e.g. 'app.'")
        for field, low, high in (("max_receive_count", 1, 1000), ("retry_attempts", 0, 185),
                                 ("max_event_age_seconds", 60, 86400), ("message_retention_seconds", 60, 1209600),
                                 ("visibility_timeout_seconds", 0, 43200), ("landing_expiration_days", 1, 36500)):
            value = getattr(self, field)
            require(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
                    f"events.{field}", value, f"is outside {low}-{high}", f"use {low}-{high}")
        require(self.kafka_mode in ("provisioned", "serverless"), "events.kafka_mode", self.kafka_mode,
                "is not an MSK cluster type", "use 'provisioned' or 'serverless'")
        if self.kafka:
            zones = self.kafka_availability_zones
            high = 3 if self.kafka_mode == "provisioned" else 5
            require(2 <= len(zones) <= high and len(set(zones)) == len(zones), "events.kafka_availability_zones",
                    list(zones), f"gives {len(zones)} broker subnets while kafka=True (MSK {self.kafka_mode} needs "
                    f"2-{high} in distinct zones)", "list 2 or 3 of the environment's availability zones (one "
                    "private subnet each), e.g. ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'], or set kafka=False")
        require(_KAFKA_VERSION.fullmatch(self.kafka_version or "") is not None, "events.kafka_version",
                self.kafka_version, "is not an MSK Kafka version", "use e.g. '3.8.x' (MSK's recommended version)")
        require(_BROKER_TYPE.fullmatch(self.kafka_broker_instance_type or "") is not None,
                "events.kafka_broker_instance_type", self.kafka_broker_instance_type, "is not an MSK broker type",
                "use 'kafka.<t3|m5|m7g>.<size>', e.g. 'kafka.m7g.large'")
        require(isinstance(self.kafka_brokers_per_zone, int) and 1 <= self.kafka_brokers_per_zone <= 10,
                "events.kafka_brokers_per_zone", self.kafka_brokers_per_zone, "is outside 1-10", "use 1-10")
        require(isinstance(self.kafka_volume_size_gib, int) and 1 <= self.kafka_volume_size_gib <= 16384,
                "events.kafka_volume_size_gib", self.kafka_volume_size_gib, "is outside 1-16384", "use 1-16384 GiB")
        require(bool(self.kafka_topics) and all(isinstance(t, str) and _TOPIC.fullmatch(t) and t not in (".", "..")
                                                for t in self.kafka_topics)
                and len(set(self.kafka_topics)) == len(self.kafka_topics), "events.kafka_topics",
                list(self.kafka_topics), "is empty, repeats a topic or names an invalid topic",
                "list Kafka topic names of letters, digits, '.', '_' and '-'")
        require(isinstance(self.kafka_consumer_group, str) and _GROUP.fullmatch(self.kafka_consumer_group) is not None,
                "events.kafka_consumer_group", self.kafka_consumer_group, "is not a Kafka consumer group id",
                "use letters, digits, '.', '_' and '-'")

    @property
    def rule_names(self) -> tuple[str, ...]:
        """Every rule (the two defaults first), in the order queues and Airflow environment variables are made."""
        return (*DEFAULT_RULE_NAMES, *(r.name for r in self.rules))

    def check_production(self) -> None:
        """Rules that apply only when the environment is production (called by EnvironmentConfig)."""
        if self.kafka:
            require(self.kafka_mode == "provisioned", "events.kafka_mode", self.kafka_mode,
                    "cannot use a customer KMS key or broker logs (MSK Serverless) in production",
                    "use kafka_mode='provisioned' in production")
            require(len(self.kafka_availability_zones) >= 3, "events.kafka_availability_zones",
                    list(self.kafka_availability_zones), "has fewer than 3 zones for a production Kafka cluster",
                    "list 3 availability zones in production")
