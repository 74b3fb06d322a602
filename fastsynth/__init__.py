"""Synth speed-ups for CDKTF Python apps: a runtime package, not part of the construct library (no construct imports it).

    import fastsynth
    fastsynth.install()          # first thing, before anything imports cdktf or a provider package
    ...                          # build and synthesize the app
    fastsynth.exit_now(0)        # optional: leave without the ~0.4 s kernel shutdown once the output is written

What each speed-up does and why it keeps the output byte-identical: `fastsynth/runtime.py`. They patch jsii's and
cdktf's internals, so `install()` applies them only on the exact versions they were verified with (VERIFIED); on
any other it says so once on stderr and leaves the stock runtime as a whole (jsii still runs on the virtualenv's
Node 24), so an upgrade is slower until re-verified, never wrong.
"""
from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

from . import runtime

# jsii and cdktf exactly; Python by minor release (the bytecode loader follows 3.11's importlib internals).
VERIFIED = {"jsii": "1.142.0", "cdktf": "0.21.0", "python": "3.11"}

_active = False
_refused = False      # the versions were checked and differ: said once, not again


def installed_versions() -> dict[str, str]:
    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"
    return {"jsii": of("jsii"), "cdktf": of("cdktf"), "python": f"{sys.version_info.major}.{sys.version_info.minor}"}


def install(*, token_stack_traces: bool = False) -> bool:
    """Apply every speed-up if the versions are the verified ones; returns whether they are active. jsii runs on the
    virtualenv's Node either way. `token_stack_traces` keeps cdktf's token creation stacks (runtime.py, 8.)."""
    global _active, _refused
    runtime.use_bundled_node()
    if _active or _refused:
        return _active
    found = installed_versions()
    mismatch = {name: (found[name], wanted) for name, wanted in VERIFIED.items() if found[name] != wanted}
    if mismatch:
        differences = ", ".join(f"{name} {have} (verified: {wanted})" for name, (have, wanted) in mismatch.items())
        print(f"fastsynth: {differences}; using the stock CDKTF runtime (same output, slower synth)", file=sys.stderr)
        _refused = True
        return False
    runtime.apply_all(token_stack_traces=token_stack_traces)
    _active = True
    return True


def preload_assemblies() -> None:
    """With the speed-ups on, start Node loading every provider now (runtime.py, 6.); stock loads on first use."""
    if _active:
        runtime.preload_assemblies()


def exit_now(code: int) -> None:
    """End a finished app: at once with the speed-ups on (runtime.py, 7.), the stock way (`sys.exit`) otherwise."""
    if _active:
        runtime.exit_now(code)
    sys.exit(code)


use_bundled_node = runtime.use_bundled_node
