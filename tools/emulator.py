"""The real cdktf CLI against a local AWS emulator (moto): deploy, diff and destroy one stack of an environment.

    make emulator-deploy  [ENV=dev] [STACK=infra]    # = python -m tools.emulator deploy --env dev --stack infra
    make emulator-diff    [ENV=dev] [STACK=infra]
    make emulator-destroy [ENV=dev] [STACK=infra]
    make emulator-down                               # stop the emulator; its resources and local state go with it

What each command wraps, so nobody has to rediscover it:
- The emulator: the patched moto (`tools.emulator_server`) on 127.0.0.1, started on first use and kept running in
  the background between commands (its pid, endpoint and log are in `.emulator/`): moto keeps what it created in
  memory only.
- The app override: `bin/cdktf <command> --app "<python> -O main.py --quiet --env <env> --aws-emulator-endpoint
  <url> --emulator-state-dir .emulator/state" --output .emulator/cdktf.out` — test credentials, every AWS endpoint
  on the emulator, local state in `.emulator/state`, and an output folder of its own, so the real `cdktf.out` is
  never overwritten by an emulator build.
- The Route 53 zone the stack looks up exists on AWS (delegated by hand); it is created in the emulator first.
- `--skip-provider-lock`: the CLI would run `terraform providers lock` for every platform, which downloads
  checksums from the registry; an emulator run does not need it (a real deploy keeps the lock).
- The AWS provider comes from the machine's filesystem mirror when there is one (TF_PROVIDER_MIRROR,
  /opt/tf-plugins, ...), else from your own Terraform configuration.
- Destroy empties the stack's buckets first (force_destroy stays false, as on AWS: the access-log bucket has
  received logs) and makes a second pass if logs arrived meanwhile.
- Destroy and stack dependencies: `cdktf destroy airflow-dev-infra` refuses while `airflow-dev-platform` (which
  reads its outputs) is not destroyed with it. Platform never runs on the emulator (it needs a Kubernetes API), so
  destroy passes `--ignore-missing-stack-dependencies` only after checking that no dependant stack has resources
  in its emulator state; otherwise it stops and names the stack to destroy first.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import rehearse  # noqa: E402

HOST = "127.0.0.1"
CLI = ROOT / "bin" / "cdktf"
STARTUP_TIMEOUT = 30.0
SYNTH_TIMEOUT = 300
EXIT_USAGE = 2


class EmulatorError(RuntimeError):
    """A step of the recipe failed; the message is one line saying what and what to do."""


class Emulator:
    """One background moto and the files of its runs, all under `workdir` (default `.emulator/`)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()
        self.pid_file, self.endpoint_file = self.workdir / "moto.pid", self.workdir / "endpoint"
        self.log, self.state_dir, self.out = self.workdir / "moto.log", self.workdir / "state", self.workdir / "cdktf.out"

    # ---- the emulator process ----

    def endpoint(self) -> str | None:
        """The endpoint of the emulator this workdir started, if it is still serving."""
        try:
            pid, endpoint = int(self.pid_file.read_text()), self.endpoint_file.read_text().strip()
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return endpoint if rehearse.serving(endpoint) else None

    def up(self) -> str:
        """Start the emulator unless it runs; returns its endpoint. A new emulator starts empty, so local state
        left from an earlier one (which would name resources it does not have) is removed."""
        endpoint = self.endpoint()
        if endpoint:
            return endpoint
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        port = rehearse.free_port()
        endpoint = f"http://{HOST}:{port}"
        try:
            proc = rehearse.start_emulator(self.log, HOST, port)
        except RuntimeError:
            raise EmulatorError("moto[server] is not installed; fix: run `make install`") from None
        self.pid_file.write_text(str(proc.pid))
        self.endpoint_file.write_text(endpoint)
        try:
            rehearse.wait_until_serving(endpoint, proc, timeout=STARTUP_TIMEOUT, log_path=self.log)
        except RuntimeError as err:
            self.down()
            raise EmulatorError(str(err)) from None
        print(f"emulator: serving on {endpoint} (log: {self.log})", flush=True)
        return endpoint

    def down(self) -> None:
        """Stop the emulator (its process group) and remove what its runs left: state, output, pid."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text())
            # Only the emulator this workdir started: a stale pid file may name a process that reused the number.
            cmdline = Path(f"/proc/{pid}/cmdline")
            if Path("/proc/self").exists() and (not cmdline.exists()
                                                or b"tools.emulator_server" not in cmdline.read_bytes()):
                raise ProcessLookupError(pid)     # (where there is no /proc, the pid file is trusted)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
                for _ in range(50):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.killpg(pid, signal.SIGKILL)
        for path in (self.state_dir, self.out):
            shutil.rmtree(path, ignore_errors=True)
        for path in (self.pid_file, self.endpoint_file):
            path.unlink(missing_ok=True)

    # ---- the CLI ----

    def app(self, environment: str, endpoint: str) -> list[str]:
        return [sys.executable, "-O", "main.py", "--quiet", "--env", environment, "--aws-emulator-endpoint", endpoint,
                "--emulator-state-dir", str(self.state_dir)]

    def synth(self, environment: str, stack: str) -> list[str]:
        """Synthesize the environment for the emulator (starting it if needed) and create what the stack only
        reads; returns the app command the CLI is to run."""
        endpoint = self.up()
        app = self.app(environment, endpoint)
        synth = subprocess.run([*app, "--out", str(self.out)], cwd=ROOT, capture_output=True, text=True,
                               timeout=SYNTH_TIMEOUT)
        if synth.returncode != 0:    # bad input: main.py's own one line
            raise EmulatorError(synth.stderr.strip() or f"synth exited {synth.returncode}")
        stacks = json.loads((self.out / "manifest.json").read_text())["stacks"]
        if stack not in stacks:
            raise EmulatorError(f"{stack} is not a stack of this app; fix: use --stack infra or state, or one of "
                                f"{', '.join(sorted(stacks))}")
        doc = json.loads((self.out / "stacks" / stack / "cdk.tf.json").read_text())
        for seeded in rehearse.seed_emulator(endpoint, doc):
            print(f"emulator: created {seeded} (on AWS it exists before the first deploy)", flush=True)
        return app

    def cli(self, command: str, stack: str, app: list[str], *extra: str) -> int:
        """Run `bin/cdktf <command> <stack>` with the emulator app override; returns the CLI's exit status."""
        argv = [str(CLI), command, stack, "--app", shlex.join(app), "--output", str(self.out), "--skip-provider-lock",
                *extra]
        print(f"$ {shlex.join(argv)}", flush=True)
        return subprocess.run(argv, cwd=ROOT, env=self.terraform_env()).returncode

    def destroy(self, stack: str, app: list[str]) -> int:
        """Empty the stack's buckets (they keep force_destroy = false on purpose: on AWS you empty them yourself
        before a destroy; the emulator delivers access logs too), then `bin/cdktf destroy`."""
        endpoint = self.endpoint()
        if endpoint is None:        # never point boto3 at its default (real AWS) endpoint
            raise EmulatorError("the emulator stopped; fix: run the command again (it starts a fresh, empty one)")
        doc = json.loads((self.out / "stacks" / stack / "cdk.tf.json").read_text())
        for emptied in rehearse.empty_buckets(endpoint, doc):
            print(f"emulator: emptied {emptied} before destroy", flush=True)
        return self.cli("destroy", stack, app, "--auto-approve", "--ignore-missing-stack-dependencies")

    def dependants_with_state(self, stack: str) -> dict[str, int]:
        """Stacks that depend on `stack` (from the manifest) and hold resources in their emulator state."""
        manifest = json.loads((self.out / "manifest.json").read_text())["stacks"]
        found = {}
        for name, entry in manifest.items():
            if stack in entry.get("dependencies", []):
                count = resources_in_state(self.state_dir / f"terraform.{name}.tfstate")
                if count:
                    found[name] = count
        return found

    def protected_resources(self, stack: str) -> list[str]:
        """Addresses the stack marks prevent_destroy (e.g. the state bucket; every bucket where deletion
        protection is on): Terraform refuses a destroy plan that includes them."""
        doc = json.loads((self.out / "stacks" / stack / "cdk.tf.json").read_text())
        return sorted(f"{rtype}.{name}" for rtype, of_type in doc.get("resource", {}).items()
                      for name, body in of_type.items() if body.get("lifecycle", {}).get("prevent_destroy"))

    def terraform_env(self) -> dict[str, str]:
        return rehearse.terraform_env(self.workdir, require_mirror=False)


def resources_in_state(path: Path) -> int:
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return 0
    return sum(len(r.get("instances", [])) for r in state.get("resources", []) if r.get("mode") == "managed")


def stack_name(environment: str, stack: str) -> str:
    """`infra` -> `airflow-<env>-infra`; `state` -> the state stack of the environment's account; a full stack name
    passes through."""
    import environments
    from modules.core.validation import ConfigError

    try:
        config = environments.load(environment)
    except ConfigError as err:
        raise EmulatorError(str(err)) from None
    if stack.startswith(f"{config.project}-"):
        return stack
    return f"{config.project}-state-{config.account_id}" if stack == "state" else config.stack_name(stack)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "deploy", "diff", "destroy", "down"))
    parser.add_argument("--env", default="dev", help="environment (default: dev)")
    parser.add_argument("--stack", default="infra", help="infra (default), state, or a full stack name")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".emulator",
                        help="where the emulator's pid, log, state and output live (default: .emulator/)")
    args = parser.parse_args(argv)
    emulator = Emulator(args.workdir)
    try:
        if args.command == "up":
            emulator.up()
            return 0
        if args.command == "down":
            emulator.down()
            print("emulator: stopped; its resources and local state are gone", flush=True)
            return 0
        stack = stack_name(args.env, args.stack)
        app = emulator.synth(args.env, stack)
        if args.command == "deploy":
            return emulator.cli("deploy", stack, app, "--auto-approve")
        if args.command == "diff":
            return emulator.cli("diff", stack, app)
        protected = emulator.protected_resources(stack)
        if protected:
            raise EmulatorError(f"{stack} protects {len(protected)} resources with lifecycle.prevent_destroy "
                                f"({', '.join(protected)}), so Terraform refuses to destroy it, as it would on AWS; "
                                "fix: `make emulator-down` discards the emulator and everything on it")
        blocking = emulator.dependants_with_state(stack)
        if blocking:
            name, count = next(iter(blocking.items()))
            raise EmulatorError(f"{name} depends on {stack} and has {count} resources on the emulator; fix: destroy "
                                f"it first (python -m tools.emulator destroy --stack {name})")
        # The dependants hold nothing on the emulator (platform never runs here), so skipping them is safe.
        status = emulator.destroy(stack, app)
        if status != 0 and resources_in_state(emulator.state_dir / f"terraform.{stack}.tfstate"):
            # The access-log bucket receives server access logs while the other buckets are being destroyed.
            print("emulator: destroy stopped with resources left; emptying the buckets again for one more pass",
                  flush=True)
            status = emulator.destroy(stack, app)
        return status
    except EmulatorError as err:
        print(f"emulator: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
