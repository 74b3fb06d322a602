"""Stacks compose constructs, providers and backends; nothing else happens here."""
from __future__ import annotations

from typing import Iterable

from cdktf import App

from environments.config import EnvironmentConfig
from modules.core.aspects import PermissionsBoundary, PolicyPack, Tagging, govern

from .infra import InfraStack
from .platform import PlatformStack
from .provider import Emulator
from .state import StateStack
from .vault_config import VaultConfigStack


def build(app: App, configs: Iterable[EnvironmentConfig], *, emulator: Emulator | None = None) -> PolicyPack:
    """Add a state stack per AWS account and every environment's stacks to `app`; return the policy pack to check
    after synth. `emulator` points every AWS provider at a local emulator (tests, `make rehearse`), never the default.
    (environments.load_all has checked the accounts: production shares neither account nor state.)"""
    configs = list(configs)
    policy = PolicyPack()
    by_account: dict[str, list[EnvironmentConfig]] = {}
    for config in configs:
        by_account.setdefault(config.account_id, []).append(config)
    for account_id, in_account in by_account.items():
        first = in_account[0]
        stack = StateStack(app, state_stack_name(first), state=first.state, account_id=account_id,
                           environments=in_account, emulator=emulator)
        names = "+".join(config.name for config in in_account)
        govern(stack, tagging=Tagging({**first.resource_tags(), "environment": names}), policy=policy)
    for config in configs:
        # Every IAM role the environment's stacks create carries the workload boundary: the deploy role may create
        # no other (modules/aws/ci_roles.py), so the boundary is what keeps a workload inside its environment.
        boundary = PermissionsBoundary(config.workload_boundary_arn)
        infra = InfraStack(app, config.stack_name("infra"), config=config, emulator=emulator)
        govern(infra, tagging=Tagging(config.resource_tags()), policy=policy, boundary=boundary)
        platform = PlatformStack(app, config.stack_name("platform"), config=config, infra=infra,
                                 emulator=emulator)
        govern(platform, tagging=Tagging(config.resource_tags()), policy=policy, boundary=boundary)
        # Applied once Vault runs (docs/vault.md). Vault objects take no tags: only the policy pack applies.
        vault_config = VaultConfigStack(app, config.stack_name("vault-config"), config=config,
                                        emulator=emulator)
        vault_config.add_dependency(platform)
        vault_config.govern(policy=policy)
    return policy


def state_stack_name(config: EnvironmentConfig) -> str:
    """The state stack of `config`'s account: one per account, named by the account (stable whichever environments
    it serves, and never mistaken for one environment's)."""
    return f"{config.project}-state-{config.account_id}"
