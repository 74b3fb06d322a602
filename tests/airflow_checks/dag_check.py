"""Run with real Airflow (tests/harness.py run_in_airflow): parse dags/ with a DagBag once per environment and report
what every event-driven DAG watches.

Arguments: the DAG folder, then a JSON object {env: {"environment": {VAR: value}, "expect": {dag_id: scheme}}}.
For each env the variables are set (and all PLATFORM_EVENTS_* others unset), the folder is parsed, and the check
fails (exit 1, reasons on stderr) on any import error, on DAG ids other than the expected ones, or on an expected
DAG without an AssetWatcher whose MessageQueueTrigger has the expected scheme. Each trigger is resolved through the
installed message-queue providers and serialized, as the triggerer would. Prints one JSON object:
{env: {dag_id: [{"asset", "watcher", "scheme", "classpath", "kwargs"}]}}.
"""
from __future__ import annotations

import json
import os
import sys


def assets(condition) -> list:
    """The Assets of a DAG's schedule (an Asset, or AssetAll/AssetAny nesting them in `objects`)."""
    nested = getattr(condition, "objects", None)
    if nested is None:
        return [condition]
    return [asset for obj in nested for asset in assets(obj)]


def watches(dag) -> list[dict]:
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    found = []
    for asset in assets(dag.timetable.asset_condition):
        for watcher in getattr(asset, "watchers", []):
            trigger = watcher.trigger
            entry = {"asset": asset.name, "watcher": watcher.name, "trigger": type(trigger).__name__}
            if isinstance(trigger, MessageQueueTrigger):
                classpath, kwargs = trigger.serialize()      # resolves the provider the triggerer would run
                entry.update(scheme=trigger.scheme, classpath=classpath,
                             kwargs={k: v for k, v in kwargs.items() if isinstance(v, (str, int, float, list, type(None)))})
            found.append(entry)
    return found


def main() -> int:
    folder, cases = sys.argv[1], json.loads(sys.argv[2])
    from airflow.dag_processing.dagbag import DagBag

    report, problems = {}, []
    for env, case in cases.items():
        for var in [v for v in os.environ if v.startswith("PLATFORM_EVENTS_")]:
            del os.environ[var]
        os.environ.update(case["environment"])
        bag = DagBag(dag_folder=folder, safe_mode=False)
        for path, error in bag.import_errors.items():
            problems.append(f"{env}: import error in {path}: {error.strip().splitlines()[-1]}")
        expect = case["expect"]
        if sorted(bag.dag_ids) != sorted(expect):
            problems.append(f"{env}: dag ids {sorted(bag.dag_ids)} != expected {sorted(expect)}")
        report[env] = {dag_id: watches(dag) for dag_id, dag in bag.dags.items()}
        for dag_id, scheme in expect.items():
            if not any(w.get("scheme") == scheme for w in report[env].get(dag_id, [])):
                problems.append(f"{env}: {dag_id} has no AssetWatcher with a MessageQueueTrigger(scheme={scheme!r})")
    print(json.dumps(report, sort_keys=True))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
