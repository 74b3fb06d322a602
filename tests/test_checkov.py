"""Checkov over every synthesized stack: zero failed checks (skips only in .checkov.yaml, each with a reason)."""
from __future__ import annotations

import re
from pathlib import Path

from tests.harness import ROOT, checkov


def test_checkov_finds_no_failed_checks(synthesized):
    failures = checkov(synthesized / "stacks")
    assert [(f["check_id"], f["resource"], f["file_path"]) for f in failures] == []


def test_every_checkov_skip_has_a_reason():
    lines = (ROOT / ".checkov.yaml").read_text().splitlines()
    skips = [i for i, line in enumerate(lines) if re.fullmatch(r"\s*- CKV\w+", line)]
    assert skips, "expected the skip list"
    for i in skips:
        assert lines[i - 1].strip().startswith("#"), f"skip {lines[i].strip()} has no reason comment above it"
