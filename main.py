"""Synthesize the Airflow platform's stacks: `python main.py [--env dev] [--set field=value ...]`.

The only place that reads the process environment. Output is synthesized into a temporary directory
and swapped into place only on success, so bad input never leaves a half-written cdktf.out.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import environments
import fastsynth

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
                             "fastsynth's speed-ups (slow; for benchmarks and the identity test)")
    parser.add_argument("--quiet", action="store_true", help="do not print the stack table")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks, and record cdktf's token creation stacks for resolution errors")
    return parser.parse_args(argv)


def synthesize(names: list[str], overrides: list[str], out: Path, *,
               emulator_endpoint: str | None = None, emulator_state_dir: Path | None = None) -> dict[str, int]:
    """Synthesize into a sibling temp dir and publish it into `out` on success; returns resource counts per stack."""
    configs = environments.load_all(names, overrides)
    # Only now, with the config known good, does jsii start: Node loads the providers while Python imports stacks.
    fastsynth.preload_assemblies()
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
        publish(staging, out)
        return counts
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# What a synth writes into a stack's folder. Everything else there (.terraform, the lock file, local state, saved
# plans) belongs to Terraform or the user and survives a re-synth: no `init` again, no lost emulator state.
GENERATED_IN_STACK = ("cdk.tf.json", "cdk.tf", "assets", "metadata.json")


def publish(staging: Path, out: Path) -> None:
    """Move a finished synth from `staging` into `out`. Per stack only the generated files are replaced (a file
    this synth did not write, e.g. the `cdk.tf` of an earlier HCL synth, is removed). Stacks this run did not
    synthesize (other environments) stay as they were and stay in the manifest: the cdktf CLI deletes stack
    folders missing from the manifest and fails on folders that vanish under it. The manifest is written last."""
    manifest = json.loads((staging / "manifest.json").read_text())
    try:
        kept = json.loads((out / "manifest.json").read_text()).get("stacks", {})
    except (OSError, ValueError, AttributeError):      # none yet, or not a manifest: nothing to keep from it
        kept = {}
    if not isinstance(kept, dict):
        kept = {}
    kept = {name: entry for name, entry in kept.items()
            if name not in manifest["stacks"] and (out / "stacks" / name).is_dir()}
    for name in manifest["stacks"]:
        target = out / "stacks" / name
        target.mkdir(parents=True, exist_ok=True)
        for entry in GENERATED_IN_STACK:
            _replace(staging / "stacks" / name / entry, target / entry)
    if kept:
        manifest["stacks"] = dict(sorted({**manifest["stacks"], **kept}.items()))
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    os.replace(staging / "manifest.json", out / "manifest.json")


def _replace(source: Path, target: Path) -> None:
    """`target` becomes `source` (or goes away if there is no `source`), by renames within one file system."""
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    elif not source.exists():
        target.unlink(missing_ok=True)
    if source.exists():
        os.replace(source, target)


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


def use_project_python() -> None:
    """`python main.py` run by an interpreter without the project's packages (e.g. the system Python) re-runs
    itself with the project's virtualenv (made by `make install` or `make synth`); without one, says how to get it."""
    if importlib.util.find_spec("jsii") is not None:
        return
    root = Path(__file__).resolve().parent
    venv_python = root / ".venv" / "bin" / "python"
    if venv_python.exists() and Path(sys.prefix).resolve() != venv_python.parent.parent.resolve():
        os.execv(venv_python, [str(venv_python), *["-O"] * sys.flags.optimize, str(root / "main.py"), *sys.argv[1:]])
    state = "lacks them too (an interrupted install?)" if venv_python.exists() else "does not exist"
    print(f"error: {sys.executable} has no cdktf/jsii and {venv_python} {state}; fix: run `make install` "
          f"in {root}, then run main.py again", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


# `cdktf synth --hcl` sets this for the app. cdktf 0.21 renders JSON strings (every IAM and key policy) into HCL
# that Terraform cannot parse, so the JSON is the exit path (README "Leaving CDKTF"); refuse rather than write it.
HCL_SWITCH = "SYNTH_HCL_OUTPUT"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.environ.get(HCL_SWITCH, "false") != "false":
        print(f"error: {HCL_SWITCH}={os.environ[HCL_SWITCH]} (cdktf synth --hcl): cdktf 0.21 writes HCL that "
              "Terraform cannot parse (it mangles the JSON policy strings); fix: synthesize without --hcl and use "
              "cdktf.out/stacks/<stack>/cdk.tf.json, which is plain Terraform configuration (README: Leaving CDKTF)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.plain_imports:   # the stock CDKTF Python runtime: none of fastsynth's speed-ups
        fastsynth.use_bundled_node()
        import cdktf_cdktf_provider_aws  # noqa: F401
    else:
        fastsynth.install(token_stack_traces=args.debug)
    from modules.core.aspects import PolicyViolation

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
    use_project_python()
    fastsynth.exit_now(main())    # the stock way (sys.exit) under --plain-imports or unverified versions
