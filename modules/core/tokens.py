"""`is_unresolved`: cdktf's `Token.is_unresolved` for the values constructs validate (strings and string lists)
answered in Python, without a jsii round trip; anything else is asked of cdktf itself.

The markers and the rules mirror cdktf 0.21.0 (lib/tokens/private/encoding.js `unresolved`): a string is
unresolved when it holds a string token `${TfToken[...]}`; a one-element list when its element is a list token
`#{TfToken[...]}`; other string lists never are. tests/modules/core/test_tokens.py compares both on real tokens.
"""
from __future__ import annotations

import re
from typing import Any

_KEY = r"[a-zA-Z0-9:._-]+"
_STRING_TOKEN = re.compile(rf"\$\{{TfToken\[{_KEY}\]\}}")
_LIST_TOKEN = re.compile(rf"#\{{TfToken\[{_KEY}\]\}}")


def is_unresolved(value: Any) -> bool:
    if isinstance(value, str):
        return _STRING_TOKEN.search(value) is not None
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return len(value) == 1 and _LIST_TOKEN.search(value[0]) is not None
    from cdktf import Token   # only here: strings are answered without starting jsii
    return Token.is_unresolved(value)
