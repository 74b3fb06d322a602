"""Synthesize the Airflow platform's stacks: `python main.py [--env dev] [--set field=value ...]`.

The only place that reads the process environment. Output is synthesized into a temporary directory
and swapped into place only on success, so bad input never leaves a half-written cdktf.out.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import environments
from modules import jsii_runtime

EXIT_BAD_INPUT = 2
EXIT_KERNEL_FAILED = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", action="append", choices=None, metavar="NAME",
                        help=f"environment to synthesize (repeatable; default: all of {', '.join(environments.NAMES)})")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one config field, e.g. --set network.az_count=3 (repeatable)")
    parser.add_argument("--out", default=os.environ.get("CDKTF_OUTDIR", "cdktf.out"), help="output directory")
    parser.add_argument("--aws-emulator-endpoint", metavar="URL",
                        help="point every AWS provider at a local emulator (e.g. moto on http://127.0.0.1:5000) with "
                             "test credentials and local state: for plan tests, `make rehearse` and `make emulator-*`, "
                             "never for deploys")
    parser.add_argument("--emulator-state-dir", default=".emulator/state", metavar="DIR",
                        help="with --aws-emulator-endpoint: where the stacks' local state files live (default: "
                             "%(default)s), outside the output directory so a re-synth keeps them")
    parser.add_argument("--plain-imports", action="store_true",
                        help="stock CDKTF Python runtime: provider packages imported in full and none of "
                             "modules/jsii_runtime's speed-ups (slow; for benchmarks and the identity test)")
    parser.add_argument("--quiet", action="store_true", help="do not print the stack table")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks, and record cdktf's token creation stacks for resolution errors")
    return parser.parse_args(argv)


def synthesize(names: list[str], overrides: list[str], out: Path, *,
               emulator_endpoint: str | None = None, emulator_state_dir: Path | None = None) -> dict[str, int]:
    """Synthesize into a sibling temp dir and swap it in; returns resource counts per stack."""
    configs = [environments.load(name, overrides) for name in names]
    # Only now, with the config known good, does jsii start: Node loads the providers while Python imports stacks.
    jsii_runtime.preload_assemblies()
    from cdktf import App

    import stacks

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        app = App(outdir=str(staging), stack_traces=False)
        emulator = None if emulator_endpoint is None else stacks.Emulator(
            endpoint=emulator_endpoint, state_dir=str((emulator_state_dir or out.parent / ".emulator-state").resolve()))
        policy = stacks.build(app, configs, emulator=emulator)
        app.synth()
        policy.raise_for_findings()
        counts = resource_counts(staging)
        previous = out.with_name(f".{out.name}-previous")
        if out.exists():
            shutil.rmtree(previous, ignore_errors=True)
            out.rename(previous)
        staging.rename(out)
        shutil.rmtree(previous, ignore_errors=True)
        return counts
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resource_counts(outdir: Path) -> dict[str, int]:
    counts = {}
    for stack_file in sorted(outdir.glob("stacks/*/cdk.tf.json")):
        doc = json.loads(stack_file.read_text())
        counts[stack_file.parent.name] = sum(len(v) for v in doc.get("resource", {}).values())
    return counts


def print_table(counts: dict[str, int]) -> None:
    width = max(len("stack"), *map(len, counts))
    print(f"{'stack':<{width}}  resources")
    for name, count in counts.items():
        print(f"{name:<{width}}  {count:>9}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plain_imports:   # the stock CDKTF Python runtime: none of jsii_runtime's speed-ups
        jsii_runtime.use_bundled_node()
        import cdktf_cdktf_provider_aws  # noqa: F401
    else:
        jsii_runtime.install(token_stack_traces=args.debug)
    from modules.aspects import PolicyViolation

    try:
        counts = synthesize(args.env or list(environments.NAMES), args.set, Path(args.out),
                            emulator_endpoint=args.aws_emulator_endpoint, emulator_state_dir=Path(args.emulator_state_dir))
    except PolicyViolation as err:
        print(str(err), file=sys.stderr)
        return EXIT_BAD_INPUT
    except json.JSONDecodeError as err:   # not bad input: jsii's Node process died or wrote out of turn
        if args.debug:
            raise
        print(f"error: the jsii kernel (Node) stopped answering ({err}); its own output, if any, is above",
              file=sys.stderr)
        return EXIT_KERNEL_FAILED
    except ValueError as err:   # ConfigError and construct props validation: one line, no traceback
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.quiet:
        print_table(counts)
    return 0


if __name__ == "__main__":
    code = main()
    if parse_args(sys.argv[1:]).plain_imports:   # the stock runtime ends the stock way
        sys.exit(code)
    jsii_runtime.exit_now(code)
