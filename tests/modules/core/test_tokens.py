"""modules.core.tokens.is_unresolved answers exactly what cdktf's Token.is_unresolved answers."""
from __future__ import annotations

import cdktf
from cdktf_cdktf_provider_aws import s3_bucket

from modules.core.tokens import is_unresolved
from tests.conftest import new_stack


def test_is_unresolved_agrees_with_cdktf_on_strings_lists_and_real_tokens():
    stack = new_stack()
    bucket = s3_bucket.S3Bucket(stack, "b", bucket="b")
    string_token, list_token = bucket.arn, cdktf.Fn.split(",", bucket.id)
    samples = [
        "", "plain", "arn:aws:s3:::x", "${var.x}", "#{TfToken[x]}", "${TfToken[TOKEN.1]}", string_token,
        f"{string_token}/*", f"prefix-{bucket.id}", list_token, [string_token], [string_token, "x"], ["a"], [], ["a", "b"],
        [list_token[0]], 3, 0.5, True, None, {"k": "v"}, {"k": string_token},
    ]
    for sample in samples:
        assert is_unresolved(sample) == cdktf.Token.is_unresolved(sample), sample
    assert is_unresolved(string_token) and is_unresolved(f"{string_token}/*") and not is_unresolved("arn:aws:s3:::x")
    assert is_unresolved(list_token) and not is_unresolved(["a"])
    assert is_unresolved(tuple(list_token)) and not is_unresolved(("a",))   # tuples: as the equal list (jsii rejects them)
