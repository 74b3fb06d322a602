"""Checkov over every synthesized stack: zero failed checks. Skips live only in .checkov.yaml (all stacks)
and .checkov.dev.yaml (dev's stacks), each with its reason."""
from __future__ import annotations

import re
from itertools import groupby

import pytest

from tests.harness import ROOT, checkov, checkov_config


def test_checkov_finds_no_failed_checks(synthesized):
    files = sorted(synthesized.glob("stacks/*/cdk.tf.json"), key=lambda p: str(checkov_config(p.parent.name)))
    failures = []
    for config, group in groupby(files, key=lambda p: checkov_config(p.parent.name)):
        failures += checkov(list(group), config)
    assert [(f["check_id"], f["resource"], f["file_path"]) for f in failures] == []


def skip_list(name: str) -> list[str]:
    return re.findall(r"^\s*- (CKV\w+)", (ROOT / name).read_text(), flags=re.M)


@pytest.mark.parametrize("name", [".checkov.yaml", ".checkov.dev.yaml"])
def test_every_checkov_skip_has_a_reason(name):
    lines = (ROOT / name).read_text().splitlines()
    skips = [i for i, line in enumerate(lines) if re.fullmatch(r"\s*- CKV\w+", line)]
    assert skips, "expected the skip list"
    for i in skips:
        j = i - 1
        while re.fullmatch(r"\s*- CKV\w+", lines[j]):   # a group of skips shares the reason above it
            j -= 1
        assert lines[j].strip().startswith("#"), f"{name}: skip {lines[i].strip()} has no reason comment above it"


def test_dev_skips_are_the_shared_skips_plus_only_dev_cost_choices():
    shared, dev = skip_list(".checkov.yaml"), skip_list(".checkov.dev.yaml")
    assert dev[:len(shared)] == shared
    assert dev[len(shared):] == ["CKV_AWS_293", "CKV_AWS_157", "CKV2_AWS_50", "CKV_AWS_150"]
