"""`ephemeral_attribute`: a Terraform ephemeral resource (Terraform >= 1.10) and a reference to one attribute of it.

Why an escape hatch: cdktf 0.21.0 (its final release) has no ephemeral-resource class and the prebuilt provider
bindings generate none, though hashicorp/aws 5.100.0 has ephemeral resources (`terraform providers schema -json`,
`ephemeral_resource_schemas`). So the block is written with `TerraformStack.add_override` under the top-level
`ephemeral` key, as the backend's `use_lockfile` is (stacks/backend.py). An empty `TerraformElement` child gives
the block cdktf's own path-based logical id (unique in the stack, stable across synths, refused twice in one
scope) and, through its `fqn`, a real reference token: a literal `"${ephemeral...}"` string would be escaped to
`$${...}` inside `Fn` calls.

Terraform's rules hold (docs/design.md §9): an ephemeral value is never stored in plan or state, and may flow only
into write-only arguments (`*_wo`), provider or provisioner configuration, or other ephemeral contexts; Terraform
refuses it anywhere else at plan. The attribute's type and the block's arguments are not checked here: `terraform
validate` with the real provider checks them (tests/test_terraform_validate.py).
"""
from __future__ import annotations

from typing import Any

from cdktf import Fn, TerraformElement, TerraformStack, Token
from constructs import Construct


def ephemeral_attribute(scope: Construct, id_: str, *, type_: str, config: dict[str, Any], attribute: str) -> str:
    """Declare `ephemeral "<type_>" "<logical id>" { config }` and return `${ephemeral.<type_>.<id>.<attribute>}`.

    `config` is literal (Terraform JSON argument names and values); the returned string may be passed where a
    string token is (inside `Fn` calls too) and must reach only write-only arguments."""
    anchor = TerraformElement(scope, id_, f"ephemeral.{type_}")
    name = anchor.friendly_unique_id
    TerraformStack.of(scope).add_override(f"ephemeral.{type_}.{name}", config)
    return Token.as_string(Fn.lookup(anchor.fqn, attribute))    # renders as ephemeral.<type_>.<name>.<attribute>
