"""The repository's documentation is self-contained: no tracked text file cites a document a clone does not have
(the external design document, paths on a build machine), every cited docs page exists, and every cited section of
docs/design.md is one of its numbered `## N.` sections (docs/design.md §1 says so)."""
from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DESIGN = "docs/design.md"

# Written in pieces so that this file does not match itself.
FORBIDDEN = {
    "DESIGN" + " §": "cites the external design document; cite docs/design.md §<n> instead",
    "../" + "shared/": "is a path outside the repository; name the upstream source (repository, path, tag, sha256)",
    "/wo" + "rk/": "is a path on a build machine; name a path in the repository or the upstream source",
}
SKIPPED = ("tests/data/charts/*/values*.yaml", "tests/data/charts/**/values*.yaml", "*.lock", "package-lock.json",
           "*/package-lock.json")

# `docs/<name>.md` not preceded by a path or URL character (so another project's docs/ in a URL is not ours).
DOCS_PAGE = re.compile(r"(?<![\w./-])docs/[\w./-]*?\.md")
# A section of the design page: `docs/design.md §6`, `[design.md](design.md) §6` (from docs/), `design.md §6`.
DESIGN_SECTION = re.compile(r"(?<![\w./-])(?:docs/)?design\.md\)?\s*§\s*(\d+)")
SECTION_HEADING = re.compile(r"^## (\d+)\. ", re.MULTILINE)
# A source file of this repository named by path (`modules/aws/storage.py`, `tools/emulator.py`, ...).
SOURCE_PATH = re.compile(r"(?<![\w./-])((?:modules|stacks|tools|environments|benchmarks|fastsynth|tests)/[\w/.-]*?"
                         r"\.(?:py|js|sh))\b")
BARE_SECTION = re.compile(r"§\s*(\d+)")


def design_sections(text: str) -> set[int]:
    return {int(n) for n in SECTION_HEADING.findall(text)}


def findings(path: str, text: str, *, existing: set[str], sections: set[int]) -> list[str]:
    """What is wrong with one tracked file's text: `<path>:<line>: <what>` per problem."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path}:{number}"
        for needle, why in FORBIDDEN.items():
            if needle in line:
                problems.append(f"{where}: {needle!r} {why}")
        for page in DOCS_PAGE.findall(line):
            if page not in existing:
                problems.append(f"{where}: cites {page}, which does not exist")
        for source in SOURCE_PATH.findall(line):
            if source not in existing:
                problems.append(f"{where}: names {source}, which is not in the repository")
        cited = [int(n) for n in DESIGN_SECTION.findall(line)]
        if path == DESIGN:   # the page's own cross-references (`§7`)
            cited += [int(n) for n in BARE_SECTION.findall(line)]
        for n in cited:
            if n not in sections:
                problems.append(f"{where}: cites {DESIGN} §{n}, which has no section {n} "
                                f"(it has {', '.join(map(str, sorted(sections)))})")
    return problems


def tracked_text_files() -> dict[str, str]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"not a git checkout ({err})")
    files = {}
    for path in filter(None, listed.decode().split("\0")):
        if any(fnmatch.fnmatch(path, pattern) for pattern in SKIPPED):
            continue
        file = ROOT / path
        if not file.is_file():      # deleted in the work tree, or a submodule
            continue
        data = file.read_bytes()
        if b"\0" in data:
            continue
        try:
            files[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return files


def test_design_page_has_numbered_sections():
    sections = design_sections((ROOT / DESIGN).read_text())
    assert sections and sorted(sections) == list(range(1, max(sections) + 1))


def test_tracked_files_cite_only_what_the_repository_has():
    files = tracked_text_files()
    assert DESIGN in files and "README.md" in files
    existing = set(files)
    sections = design_sections(files[DESIGN])
    problems = [p for path, text in sorted(files.items())
                for p in findings(path, text, existing=existing, sections=sections)]
    assert not problems, "\n".join(problems)


# ---- the checks themselves, on crafted text -----------------------------------------------------------------

EXISTING = {"docs/design.md", "docs/airflow.md", "modules/aws/storage.py"}
SECTIONS = {1, 2, 3}


@pytest.mark.parametrize("line", [
    "see (" + "DESIGN" + " §4)",
    "copied from ../" + "shared/charts/keda/Chart.yaml",
    "defaults: /wo" + "rk/shared/charts/x/values.yaml",
    "see docs/" + "missing.md",
    "[vault](docs/vault.md)",
    "(docs/design.md §4)",
    "docs/design.md §" + " 9",
    "S3 buckets (modules/" + "storage.py)",
])
def test_a_violation_is_reported(line):
    assert findings("modules/" + "x.py", f"ok\n{line}\n", existing=EXISTING, sections=SECTIONS)


def test_the_design_page_own_references_are_checked():
    assert findings(DESIGN, "## 1. A\nas §4 says\n", existing=EXISTING, sections=SECTIONS)
    assert not findings(DESIGN, "## 1. A\nas §3 says\n", existing=EXISTING, sections=SECTIONS)


def test_a_relative_link_from_docs_is_checked_as_the_design_page():
    assert findings("docs/airflow.md", "[design.md](design.md) §7", existing=EXISTING, sections=SECTIONS)
    assert not findings("docs/airflow.md", "[design.md](design.md) §2", existing=EXISTING, sections=SECTIONS)


@pytest.mark.parametrize("line", [
    "(docs/design.md §3) and docs/airflow.md",
    "https://github.com/other/project/blob/main/docs/unrelated.md",
    "see the design (docs/design.md §1)",
    "S3 buckets (`modules/aws/storage.py`)",
])
def test_valid_citations_pass(line):
    assert not findings("README.md", line, existing=EXISTING, sections=SECTIONS)
