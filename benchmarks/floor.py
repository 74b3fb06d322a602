"""The floor for synth time: one stack holding one VPC, synthesized the same way main.py does it
(the same jsii runtime, the same `python -O`, the same exit)."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fastsynth  # noqa: E402

fastsynth.install()

from cdktf import App, TerraformStack  # noqa: E402
from cdktf_cdktf_provider_aws.provider import AwsProvider  # noqa: E402
from cdktf_cdktf_provider_aws.vpc import Vpc  # noqa: E402

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as out:
        app = App(outdir=out, stack_traces=False)
        stack = TerraformStack(app, "floor")
        AwsProvider(stack, "aws", region="eu-west-1")
        Vpc(stack, "vpc", cidr_block="10.0.0.0/16")
        app.synth()
    fastsynth.exit_now(0)
