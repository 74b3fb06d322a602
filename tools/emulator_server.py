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


@patch
def sqs_redrive_allow_policy() -> None:
    """SQS: AWS stores a queue's RedriveAllowPolicy (which source queues may use it as a dead-letter queue) and
    returns it from GetQueueAttributes; moto 5.2 does not know the attribute ("InvalidAttributeName"), so
    aws_sqs_queue_redrive_allow_policy cannot read back what it set. Store and return it like any attribute."""
    from moto.sqs.models import Queue

    if "RedriveAllowPolicy" not in Queue.BASE_ATTRIBUTES:
        Queue.BASE_ATTRIBUTES.append("RedriveAllowPolicy")
    Queue.redrive_allow_policy = None          # a queue without one returns none, as on AWS


@patch
def ec2_subnet_ipv6_association_filters() -> None:
    """EC2: DescribeSubnets on AWS accepts the filters ipv6-cidr-block-association.association-id,
    .ipv6-cidr-block and .state (API reference, DescribeSubnets); moto 5.2 raises FilterNotImplementedError for
    them, so the provider's wait for a subnet's IPv6 block to be associated fails. Answer them from the subnet's
    associations."""
    from moto.ec2.models.subnets import Subnet

    fields = {"ipv6-cidr-block-association.association-id": lambda a: a["associationId"],
              "ipv6-cidr-block-association.ipv6-cidr-block": lambda a: a["ipv6CidrBlock"],
              "ipv6-cidr-block-association.state": lambda a: a["ipv6CidrBlockState"]["State"]}
    original = Subnet.get_filter_value

    def get_filter_value(self, filter_name: str, method_name: str | None = None):
        if filter_name in fields:
            return [fields[filter_name](a) for a in self.ipv6_cidr_block_associations.values()]
        return original(self, filter_name, method_name)

    Subnet.get_filter_value = get_filter_value


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
