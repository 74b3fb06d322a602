"""Props built from a config section re-raise their validation errors under that section's config path."""
from __future__ import annotations

from typing import Callable, TypeVar

from modules.core.validation import ConfigError

P = TypeVar("P")


def section_props(path: str, build: Callable[[], P]) -> P:
    """Build construct props; a ConfigError names the field as `<path>.<field>` (e.g. environments.dev.cache)."""
    try:
        return build()
    except ConfigError as err:
        raise err.within(path) from None
