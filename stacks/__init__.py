"""Stacks compose constructs, providers and backends; nothing else happens here."""
from __future__ import annotations

from typing import Iterable

from cdktf import App

from environments.config import EnvironmentConfig
from modules.core.aspects import PolicyPack, Tagging, govern

from .infra import InfraStack
from .platform import PlatformStack
from .provider import Emulator
from .state import StateStack
from .vault_config import VaultConfigStack


def build(app: App, configs: Iterable[EnvironmentConfig], *, emulator: Emulator | None = None) -> PolicyPack:
    """Add the state stack(s) and every environment's stacks to `app`; return the policy pack to check after synth.
    `emulator` points every AWS provider at a local emulator (tests, `make rehearse`), never the default."""
    configs = list(configs)
    policy = PolicyPack()
    state_stacks: dict[str, StateStack] = {}
    for config in configs:
        if config.state.bucket not in state_stacks:
            stack = StateStack(app, f"{config.project}-state", state=config.state, account_id=config.account_id,
                               emulator=emulator)
            govern(stack, tagging=Tagging({**config.resource_tags(), "environment": "shared"}), policy=policy)
            state_stacks[config.state.bucket] = stack
        infra = InfraStack(app, config.stack_name("infra"), config=config, emulator=emulator)
        govern(infra, tagging=Tagging(config.resource_tags()), policy=policy)
        platform = PlatformStack(app, config.stack_name("platform"), config=config, infra=infra,
                                 emulator=emulator)
        govern(platform, tagging=Tagging(config.resource_tags()), policy=policy)
        # Applied once Vault runs (docs/vault.md). Vault objects take no tags: only the policy pack applies.
        vault_config = VaultConfigStack(app, config.stack_name("vault-config"), config=config,
                                        emulator=emulator)
        vault_config.add_dependency(platform)
        vault_config.govern(policy=policy)
    return policy
