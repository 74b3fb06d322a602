"""Synth speed, measured side by side: `make bench` (python -m benchmarks.synth [--runs N]).

Runs, interleaved so machine noise hits all alike, N times each:
  full   - `python -O main.py` as `make synth` runs it (all environments, fastsynth's speed-ups)
  plain  - `python main.py --plain-imports`: the stock CDKTF Python runtime
  floor  - one stack with one VPC (benchmarks/floor.py) run like `full`: process start, jsii, assembly load
and prints medians and the ratios full/floor and full/plain. Wall-clock, so never asserted in tests.
Python writes bytecode caches as on a user's machine (PYTHONDONTWRITEBYTECODE, which some sandboxes set,
is cleared for the runs), so the warm-up run leaves every case with compiled modules.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# The environment of a user's machine: some sandboxes set PYTHONDONTWRITEBYTECODE, which would make every run
# recompile our modules (and skip fastsynth's deferred-annotation cache).
USER_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def commands(out: str) -> dict[str, list[str]]:
    """The three cases, each writing under `out`."""
    return {
        "full": [sys.executable, "-O", "main.py", "--quiet", "--out", f"{out}/full"],
        "plain": [sys.executable, "main.py", "--quiet", "--plain-imports", "--out", f"{out}/plain"],
        "floor": [sys.executable, "-O", "benchmarks/floor.py"],
    }


def run(cmd: list[str], env: dict[str, str] = USER_ENV) -> None:
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=env)


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    run(cmd)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        cases = commands(tmp)
        for cmd in cases.values():   # warm-up: bytecode and file caches
            run(cmd)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(runs):
            for name, cmd in cases.items():
                samples[name].append(timed(cmd))
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{'case':<6} {'median s':>9} {'min s':>7} {'max s':>7}   ({runs} runs each, interleaved)")
    for name, values in samples.items():
        print(f"{name:<6} {median[name]:>9.2f} {min(values):>7.2f} {max(values):>7.2f}")
    print(f"full / floor = {median['full'] / median['floor']:.2f}   (target <= 1.5)")
    print(f"full / plain = {median['full'] / median['plain']:.2f}   (target <= 0.3)")


if __name__ == "__main__":
    main()
