"""The README's library example runs as written and synthesizes what it says."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_library_example_synthesizes_a_database_in_its_own_stack(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = readme[readme.index("## Using the constructs in your own app"):].split("```python\n", 1)[1].split("```")[0]
    script = tmp_path / "app.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n{code}")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads((tmp_path / "cdktf.out" / "stacks" / "orders" / "cdk.tf.json").read_text())
    (instance,) = doc["resource"]["aws_db_instance"].values()
    assert (instance["identifier"], instance["instance_class"], instance["backup_retention_period"]) == (
        "orders", "db.r7g.large", 14)
    (key,) = doc["resource"]["aws_kms_key"].values()
    assert "arn:aws:iam::123456789012:root" in key["policy"]     # the account bound to the stack
