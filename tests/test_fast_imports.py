"""The synth speed-ups (fastsynth: fast provider imports, memoized type hints, cached token reads,
the in-process kernel, pipelined loads, the quick exit, no token creation stacks, deferred binding annotations;
and `python -O` as `make synth` runs it) change nothing in the output (docs/design.md §8): a full synth is byte-identical
to one on the stock CDKTF Python runtime."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.synth import USER_ENV   # bytecode caches writable, so the deferred binding annotations are used

ROOT = Path(__file__).resolve().parent.parent


def synth(out: Path, *extra: str, python: tuple[str, ...] = (sys.executable,)) -> dict[str, bytes]:
    result = subprocess.run([*python, str(ROOT / "main.py"), "--quiet", "--out", str(out), *extra],
                            capture_output=True, text=True, timeout=600, env=USER_ENV)
    assert result.returncode == 0, result.stderr
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_output_is_byte_identical_with_and_without_the_shortcut(tmp_path):
    fast = synth(tmp_path / "fast", python=(sys.executable, "-O"))   # as `make synth` runs it
    plain = synth(tmp_path / "plain", "--plain-imports")
    assert len(fast) >= 5 and fast.keys() == plain.keys()
    assert [name for name in fast if fast[name] != plain[name]] == []


def test_shortcut_imports_one_submodule_not_the_whole_package():
    code = ("import sys; import fastsynth; fastsynth.install(); "
            "import cdktf_cdktf_provider_aws.vpc; "
            "print(sum(m.startswith('cdktf_cdktf_provider_aws.') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 10     # _jsii, vpc and its helpers, not ~2,100 submodules
