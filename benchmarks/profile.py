"""Where a synth's time goes on the Node side: `python -m benchmarks.profile` (`make profile`).

Runs the full synth (as `make synth` runs it) and the one-VPC floor (benchmarks/floor.py) once each under Node's
sampling profiler (`--cpu-prof`) and splits the jsii kernel process's time into:
  waiting        - Node blocked reading the next request: Python working, or the pipe
  module load    - requiring and compiling JavaScript (cdktf, the providers' resource modules, the kernel)
  jsii kernel    - the kernel's own work: (de)serializing values, finding types, callbacks
  cdktf          - cdktf, constructs and provider code: constructing resources, resolving tokens, writing JSON
  gc, other      - the garbage collector; anything else (Node start-up, timers)
A sample counts once, for the innermost of these it is in (waiting and module load win over the rest).
The `cdktf` line is what any CDKTF program synthesizing the same resources pays, whatever its language.
"""
from __future__ import annotations

import collections
import glob
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.synth import USER_ENV, commands, run

CATEGORIES = ("waiting", "module load", "jsii kernel", "cdktf", "gc", "other")


def category(frame: dict) -> str | None:
    """The category a single call frame belongs to, or None if it does not decide one."""
    url, function = frame["url"], frame["functionName"]
    if function == "read" and url == "":
        return "waiting"
    if "cjs/loader" in url or function in ("wrapSafe", "compileFunction"):
        return "module load"
    if url.endswith(("/lib/program.js", "/bin/jsii-kernel.js")):
        return "jsii kernel"
    if any(part in url for part in ("/node_modules/cdktf/", "/node_modules/constructs/", "/node_modules/@cdktf/")):
        return "cdktf"
    return None


def split(profile: dict) -> dict[str, float]:
    """Milliseconds per category of one `.cpuprofile`."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    parent = {child: node["id"] for node in profile["nodes"] for child in node.get("children", ())}
    spent: collections.Counter = collections.Counter()
    for sample, delta in zip(profile["samples"], profile["timeDeltas"]):
        spent[sample] += delta
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for node_id, microseconds in spent.items():
        if nodes[node_id]["callFrame"]["functionName"] == "(garbage collector)":
            totals["gc"] += microseconds / 1000
            continue
        found, current = [], node_id
        while current is not None:
            found.append(category(nodes[current]["callFrame"]))
            current = parent.get(current)
        name = next((c for c in ("waiting", "module load") if c in found), None) or \
            next((c for c in found if c), "other")
        totals[name] += microseconds / 1000
    return totals


def profiled(cmd: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as profiles:
        options = f"{USER_ENV.get('NODE_OPTIONS', '')} --cpu-prof --cpu-prof-dir={profiles}".strip()
        run(cmd, env={**USER_ENV, "NODE_OPTIONS": options})
        for _ in range(100):        # the quick exit leaves Node to write its profile as it ends
            written = glob.glob(os.path.join(profiles, "*.cpuprofile"))
            if written:
                try:
                    return split(json.loads(Path(written[0]).read_text()))
                except ValueError:   # still being written
                    pass
            time.sleep(0.1)
        raise SystemExit(f"no Node profile was written for {cmd}")


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        cases = commands(out)
        for name in ("full", "floor"):   # warm-up: bytecode and file caches
            run(cases[name])
        full, floor = profiled(cases["full"]), profiled(cases["floor"])
    print(f"{'Node process, ms':<18} {'full':>7} {'floor':>7}")
    for name in CATEGORIES:
        print(f"{name:<18} {full[name]:>7.0f} {floor[name]:>7.0f}")
    print(f"{'total':<18} {sum(full.values()):>7.0f} {sum(floor.values()):>7.0f}")


if __name__ == "__main__":
    main()
