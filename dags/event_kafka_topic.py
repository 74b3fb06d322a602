"""Runs for messages on the environment's MSK topics (environments where Kafka is on).

Event path: producer -> MSK topic (TLS, IAM auth) -> this asset's AssetWatcher (AwaitMessageTrigger through
MessageQueueTrigger, scheme 'kafka') in the triggerer -> a DAG run.

The topics and the Airflow connection id come from environment variables set on the Airflow pods
(modules/aws/events.py `airflow_environment()`); the connection itself lives in Vault at
`airflow/connections/<conn id>` (docs/events.md). Without the variables (Kafka off) the DAG is not defined.
"""
from __future__ import annotations

import os

from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
from airflow.sdk import Asset, AssetWatcher, dag, task

TOPICS = [t for t in os.environ.get("PLATFORM_EVENTS_KAFKA_TOPICS", "").split(",") if t]
CONN_ID = os.environ.get("PLATFORM_EVENTS_KAFKA_CONN_ID", "kafka_msk")

if TOPICS:
    kafka_messages = Asset(
        "kafka_events",
        watchers=[AssetWatcher(
            name="kafka_topic_messages",
            trigger=MessageQueueTrigger(scheme="kafka", topics=TOPICS, kafka_config_id=CONN_ID, poll_interval=5),
        )],
    )

    @dag(dag_id="event_kafka_topic", schedule=[kafka_messages], catchup=False, max_active_runs=4,
         tags=["events", "kafka"])
    def event_kafka_topic():
        @task
        def handle_messages(**context) -> int:
            """Each asset event carries the message value the trigger received."""
            events = context["triggering_asset_events"][kafka_messages]
            for event in events:
                print("kafka message:", event.extra.get("payload"))
            return len(events)

        handle_messages()

    event_kafka_topic()
