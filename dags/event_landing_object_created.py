"""Runs when an object is created in the environment's landing bucket.

Event path: S3 `Object Created` -> default event bus -> rule `<prefix>-landing-object-created` -> SQS queue
`<prefix>-events-landing-object-created` (KMS, DLQ) -> this asset's AssetWatcher in the triggerer -> a DAG run.

No account id or URL is written here: the Airflow pods get the queue URL and region as environment variables
(modules/aws/events.py `airflow_environment()`). Without them (e.g. a local parse) the DAG is not defined.
The triggerer reads the queue with its own AWS identity (EKS Pod Identity), so `aws_conn_id=None`.
"""
from __future__ import annotations

import os

from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
from airflow.sdk import Asset, AssetWatcher, dag, task

QUEUE_URL = os.environ.get("PLATFORM_EVENTS_QUEUE_URL_LANDING_OBJECT_CREATED")
REGION = os.environ.get("PLATFORM_EVENTS_REGION")

if QUEUE_URL:
    landing_objects = Asset(
        "landing_objects",
        watchers=[AssetWatcher(
            name="landing_object_created",
            trigger=MessageQueueTrigger(scheme="sqs", sqs_queue=QUEUE_URL, region_name=REGION, aws_conn_id=None,
                                        max_messages=10, wait_time_seconds=20, waiter_delay=1),
        )],
    )

    @dag(dag_id="event_landing_object_created", schedule=[landing_objects], catchup=False, max_active_runs=4,
         tags=["events", "sqs"])
    def event_landing_object_created():
        @task
        def list_new_objects(**context) -> list[str]:
            """Each asset event carries the SQS messages the trigger received (EventBridge envelopes)."""
            import json

            keys = []
            for event in context["triggering_asset_events"][landing_objects]:
                payload = event.extra.get("payload", {})
                for message in payload.get("message_batch", []):
                    body = json.loads(message.get("Body", "{}"))
                    detail = body.get("detail", {})
                    keys.append(f"s3://{detail.get('bucket', {}).get('name')}/{detail.get('object', {}).get('key')}")
            print("new objects:", keys)
            return keys

        list_new_objects()

    event_landing_object_created()
