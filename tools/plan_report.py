"""Markdown summary of `terraform show -json <planfile>` output for a pull-request comment.

    python -m tools.plan_report PLAN       # PLAN: one plan JSON file, or a directory of *.json (one per stack)
    make plan-report PLAN=plans/

Per stack it counts create / update / replace / delete, lists every changed address with its action, and
puts every delete or replace of a stateful resource (databases, caches, buckets, KMS keys, the EKS cluster,
MSK, secrets, volumes, EBS-backed Helm releases) under "Data at risk". The stack name is the file's stem.

Exit status: 0 nothing stateful at risk, 3 something is (CI asks for an approval label), 2 bad input
(missing file, not JSON, not a plan) with one line on stderr. `make` reports any failing recipe as 2, so
`--status-file FILE` (make: STATUS_FILE=FILE) also writes the status for CI to read.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_DATA_AT_RISK = 3

# Resource types whose delete or replace loses data (or, for KMS keys, makes data unreadable).
STATEFUL_TYPES = frozenset({
    "aws_db_instance", "aws_rds_cluster", "aws_elasticache_replication_group", "aws_s3_bucket", "aws_kms_key",
    "aws_eks_cluster", "aws_msk_cluster", "aws_msk_serverless_cluster", "aws_secretsmanager_secret",
    "aws_ebs_volume", "aws_efs_file_system", "aws_dynamodb_table",
})
# Helm charts whose pods keep their data on EBS volumes (persistent volume claims die with the release).
EBS_BACKED_CHARTS = frozenset({"vault", "kube-prometheus-stack"})
ACTIONS = ("create", "update", "replace", "delete")
MAX_TABLE_ROWS = 300           # per stack; GitHub comments stop at 65,536 characters


class PlanError(ValueError):
    """Input that is not `terraform show -json` plan output; the message is one line naming the file."""


@dataclass(frozen=True, kw_only=True)
class Change:
    address: str
    type: str
    action: str                           # create | update | replace | delete | forget | import
    replace_paths: tuple[str, ...] = ()   # the arguments forcing a replace, when Terraform says
    stateful: bool = False

    @property
    def at_risk(self) -> bool:
        return self.stateful and self.action in ("replace", "delete")


@dataclass(frozen=True, kw_only=True)
class StackReport:
    stack: str
    changes: tuple[Change, ...]

    @property
    def counts(self) -> dict[str, int]:
        return {action: sum(c.action == action for c in self.changes) for action in ACTIONS}

    @property
    def at_risk(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.at_risk)


# ---- reading --------------------------------------------------------------------------------------

def load_plan(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PlanError(f"{path}: cannot read: {err}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise PlanError(f"{path}: not JSON ({err.msg} at line {err.lineno}); "
                        "pass the output of `terraform show -json <planfile>`") from None
    if not is_plan(doc):
        raise PlanError(f"{path}: JSON but not a Terraform plan (no format_version/resource_changes); "
                        "pass the output of `terraform show -json <planfile>`, not of state or the stack JSON")
    return doc


def is_plan(doc: Any) -> bool:
    """`terraform show -json <planfile>` output: a format_version and the planned changes (Terraform omits an
    empty resource_changes list, so a no-change plan is recognised by its planned_values)."""
    return (isinstance(doc, dict) and isinstance(doc.get("format_version"), str)
            and (isinstance(doc.get("resource_changes"), list) or isinstance(doc.get("planned_values"), dict)))


def load_plans(path: Path) -> dict[str, dict[str, Any]]:
    """Stack name (file stem) -> plan, from one file or from every *.json file of a directory."""
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise PlanError(f"{path}: directory holds no *.json plan files")
        return {file.stem: load_plan(file) for file in files}
    return {path.stem: load_plan(path)}


# ---- classifying ----------------------------------------------------------------------------------

def action_of(actions: Iterable[str], *, importing: bool = False) -> str | None:
    """The one word for Terraform's action list; None for no change (no-op, data source read)."""
    actions = tuple(actions)
    if set(actions) == {"delete", "create"}:
        return "replace"
    if actions in (("create",), ("update",), ("delete",), ("forget",)):
        return actions[0]
    if "delete" in actions:                    # any future combination that still deletes
        return "delete"
    if actions in (("no-op",), ("read",), ()):
        return "import" if importing else None
    return "+".join(actions)


def _chart(change: dict[str, Any]) -> str:
    for side in ("before", "after"):
        values = change.get(side)
        if isinstance(values, dict) and isinstance(values.get("chart"), str):
            return values["chart"].rstrip("/").rsplit("/", 1)[-1]   # 'oci://registry/charts/vault' -> 'vault'
    return ""


def is_stateful(resource_type: str, change: dict[str, Any]) -> bool:
    if resource_type == "helm_release":
        return _chart(change) in EBS_BACKED_CHARTS
    return resource_type in STATEFUL_TYPES


def _path(path: Any) -> str:
    return ".".join(str(step) for step in path) if isinstance(path, list) else str(path)


def changes(plan: dict[str, Any]) -> tuple[Change, ...]:
    found = []
    for rc in plan.get("resource_changes") or ():
        if not isinstance(rc, dict) or rc.get("mode") == "data":
            continue
        change = rc.get("change") or {}
        action = action_of(change.get("actions") or (), importing=bool(change.get("importing")))
        if action is None:
            continue
        rtype = str(rc.get("type", ""))
        found.append(Change(address=str(rc.get("address", "?")), type=rtype, action=action,
                            replace_paths=tuple(_path(p) for p in change.get("replace_paths") or ()),
                            stateful=is_stateful(rtype, change)))
    return tuple(found)


def reports(plans: dict[str, dict[str, Any]]) -> tuple[StackReport, ...]:
    return tuple(StackReport(stack=stack, changes=changes(plan)) for stack, plan in plans.items())


# ---- rendering ------------------------------------------------------------------------------------

def _code(text: str) -> str:
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


_ICON = {"create": "create", "update": "update", "replace": "**replace**", "delete": "**delete**"}


def render(stack_reports: Iterable[StackReport]) -> str:
    stack_reports = tuple(stack_reports)
    risky = [(r.stack, c) for r in stack_reports for c in r.at_risk]
    lines = ["## Terraform plan", ""]
    lines += ["| stack | create | update | replace | delete |", "|---|---:|---:|---:|---:|"]
    for r in stack_reports:
        counts = r.counts
        lines.append(f"| {_code(r.stack)} | " + " | ".join(str(counts[a]) for a in ACTIONS) + " |")
    lines += ["", "### Data at risk", ""]
    if risky:
        lines += [f":warning: {len(risky)} stateful resource(s) would be deleted or replaced. Merging needs the "
                  "`approved-data-risk` label.", "", "| stack | address | action | forced by |", "|---|---|---|---|"]
        for stack, c in risky:
            forced = ", ".join(_code(p) for p in c.replace_paths) or "—"
            lines.append(f"| {_code(stack)} | {_code(c.address)} | **{c.action}** | {forced} |")
    else:
        lines.append("None: no stateful resource is deleted or replaced.")
    for r in stack_reports:
        lines += ["", f"### {_code(r.stack)}", ""]
        if not r.changes:
            lines.append("No changes.")
            continue
        lines += [f"<details><summary>{len(r.changes)} changed resource(s)</summary>", "",
                  "| address | action |", "|---|---|"]
        for c in r.changes[:MAX_TABLE_ROWS]:
            lines.append(f"| {_code(c.address)} | {_ICON.get(c.action, c.action)} |")
        if len(r.changes) > MAX_TABLE_ROWS:
            lines.append(f"| … {len(r.changes) - MAX_TABLE_ROWS} more (see the workflow log) | |")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def exit_status(stack_reports: Iterable[StackReport]) -> int:
    return EXIT_DATA_AT_RISK if any(r.at_risk for r in stack_reports) else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.plan_report", description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path, help="plan JSON file, or a directory of them (one per stack)")
    parser.add_argument("--status-file", type=Path, help="also write the exit status here (`make` turns every "
                                                           "failing status into 2; CI reads 3 from this file)")
    args = parser.parse_args(argv)
    try:
        stack_reports = reports(load_plans(args.plan))
    except PlanError as err:
        print(f"plan-report: error: {err}", file=sys.stderr)
        status = EXIT_BAD_INPUT
    else:
        sys.stdout.write(render(stack_reports))
        status = exit_status(stack_reports)
    if args.status_file:
        args.status_file.write_text(f"{status}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
