"""moto, patched where it differs from AWS in ways the rehearsal meets, served on one loopback host/port.

    python -m tools.emulator_server --host 127.0.0.1 --port 5000

Each patch in PATCHES is narrow (one API, one attribute or filter), says what AWS does, and is applied in this
process only, before moto serves: the installed moto package is never edited. A patch whose target moto no longer
has fails loudly at start-up instead of silently serving unpatched behaviour.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

PATCHES: list[Callable[[], None]] = []


def patch(func: Callable[[], None]) -> Callable[[], None]:
    PATCHES.append(func)
    return func


def apply_patches() -> list[str]:
    """Apply every patch; returns their names (what the server log prints at start-up)."""
    for func in PATCHES:
        func()
    return [func.__name__ for func in PATCHES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.emulator_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless you mean otherwise)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    # AWS managed policies exist in every account; role policy attachments to them must work as on AWS.
    os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    names = apply_patches()
    print(f"emulator_server: moto with {len(names)} patches: {', '.join(names) or '-'}", flush=True)
    from moto.server import main as moto_main
    moto_main(["-H", args.host, "-p", str(args.port)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
