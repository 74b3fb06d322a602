"""House rules the layout relies on, checked on the source: the construct library never imports the runtime
patches; bad input is a ConfigError (field, value, fix), never a bare ValueError; settings load without cdktf."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ("modules", "environments", "stacks")


def _sources(*packages: str) -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path))
            for package in packages for path in sorted((ROOT / package).rglob("*.py"))}


def test_no_construct_module_imports_the_runtime_package():
    offenders = []
    for path, tree in _sources("modules").items():
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "fastsynth"]
    assert offenders == []


def test_bad_input_is_a_config_error_not_a_bare_value_error():
    offenders = [f"{path.relative_to(ROOT)}:{node.lineno}" for path, tree in _sources(*LIBRARY).items()
                 for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ValueError"]
    assert offenders == []


def test_every_environment_loads_without_importing_cdktf_or_jsii():
    code = ("import sys, environments\n"
            "[environments.load(n) for n in environments.NAMES]\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cdktf', 'jsii', 'constructs')"
            " or m.startswith('cdktf_cdktf_provider')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
