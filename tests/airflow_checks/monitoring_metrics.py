"""Run with real Airflow (tests/harness.py run_in_airflow): for each StatsD stat name given, report its type in
Airflow's metrics registry and whether Airflow's code emits it; for each `section.option`, whether Airflow's
configuration defines it. Prints one JSON object."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

import airflow
from airflow.configuration import conf

stats, options = json.loads(sys.argv[1]), json.loads(sys.argv[2])
registry_file = Path(airflow.__file__).parent / "_shared" / "observability" / "metrics" / "metrics_template.yaml"
registry = {m["name"]: m for m in yaml.safe_load(registry_file.read_text())["metrics"]}
sources = [p.read_text(errors="ignore") for p in Path(airflow.__file__).parent.rglob("*.py")]

result = {"airflow_version": airflow.__version__, "stats": {}, "options": {}}
for stat in stats:
    entry = registry.get(stat)
    result["stats"][stat] = {"type": entry and entry["type"],
                             "emitted": any(f'"{stat}"' in text for text in sources)}
for option in options:
    section, key = option.split(".", 1)
    result["options"][option] = conf.has_option(section, key)
print(json.dumps(result))
