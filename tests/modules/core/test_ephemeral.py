"""ephemeral_attribute: an ephemeral block under cdktf's own logical id, and a reference that survives Fn calls."""
from __future__ import annotations

import pytest
from cdktf import Fn
from cdktf_cdktf_provider_aws import secretsmanager_secret_version
from constructs import Construct

from tests.conftest import new_stack, synth

from modules.core.ephemeral import ephemeral_attribute

CONFIG = {"password_length": 32, "exclude_punctuation": True}


def test_block_is_declared_once_and_the_reference_renders_inside_and_outside_functions():
    stack = new_stack()
    scope = Construct(stack, "owner")
    value = ephemeral_attribute(scope, "token", type_="aws_secretsmanager_random_password", config=CONFIG,
                                attribute="random_password")
    for id_, written in (("plain", value), ("wrapped", Fn.base64encode(Fn.jsonencode({"k": value})))):
        secretsmanager_secret_version.SecretsmanagerSecretVersion(stack, id_, secret_id="s", secret_string_wo=written,
                                                                  secret_string_wo_version=1)
    doc = synth(stack)
    versions = doc["resource"]["aws_secretsmanager_secret_version"]
    ((name, body),) = doc["ephemeral"]["aws_secretsmanager_random_password"].items()
    assert name.startswith("owner_token_") and body == CONFIG
    ref = f"ephemeral.aws_secretsmanager_random_password.{name}.random_password"
    assert versions["plain"]["secret_string_wo"] == f"${{{ref}}}"
    assert versions["wrapped"]["secret_string_wo"] == f'${{base64encode(jsonencode({{"k" = {ref}}}))}}'   # not $${...}


def test_same_id_twice_in_one_scope_is_refused():
    stack = new_stack()
    ephemeral_attribute(stack, "token", type_="aws_secretsmanager_random_password", config=CONFIG,
                        attribute="random_password")
    with pytest.raises(Exception, match="token"):
        ephemeral_attribute(stack, "token", type_="aws_secretsmanager_random_password", config=CONFIG,
                            attribute="random_password")
