"""A Helm release of one of the project's own charts under helm/, whose Kubernetes objects other constructs
add as Python data (`add_object`) until synth.

The charts' templates render `.Values.objects` verbatim (`toYaml`), plus whatever static templates the chart
carries (e.g. a dashboard ConfigMap read from the chart's files). Values are rendered lazily, so a construct
created after the release (the Vault release adding its TLS Certificate, say) still lands in it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import jsii
from cdktf import AssetType, IResolveContext, IStringProducer, ITerraformDependable, Lazy, TerraformAsset
from cdktf_cdktf_provider_helm.release import Release
from constructs import Construct

from ..core.validation import ConfigError

HELM_DIR = Path(__file__).resolve().parents[2] / "helm"


@jsii.implements(IStringProducer)
class _ValuesProducer:
    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def produce(self, context: IResolveContext) -> str:
        return json.dumps(self._values, sort_keys=True)


@dataclass(frozen=True, kw_only=True)
class LocalChartProps:
    chart: str                                   # directory name under helm/
    namespace: str                               # the release's namespace (objects carry their own)
    values: dict[str, Any] = field(default_factory=dict)   # static values besides `objects`
    depends_on: Sequence[ITerraformDependable] = ()
    timeout: int = 600

    def __post_init__(self) -> None:
        if not (HELM_DIR / self.chart / "Chart.yaml").is_file():
            raise ConfigError("chart", self.chart, f"is not a chart under {HELM_DIR}",
                              "name a directory of helm/ that holds a Chart.yaml")
        if "objects" in self.values:
            raise ConfigError("values.objects", "...", "is reserved", "add objects with add_object()")


class LocalChart(Construct):
    def __init__(self, scope: Construct, id_: str, *, props: LocalChartProps) -> None:
        super().__init__(scope, id_)
        self._objects: list[dict[str, Any]] = []
        self._values: dict[str, Any] = {**props.values, "objects": self._objects}
        asset = TerraformAsset(self, "chart", path=str(HELM_DIR / props.chart), type=AssetType.DIRECTORY)
        self.release = Release(
            self, "release", name=props.chart, namespace=props.namespace, chart=asset.path, atomic=True,
            cleanup_on_fail=True, wait=True, timeout=props.timeout,
            values=[Lazy.string_value(_ValuesProducer(self._values))],
            depends_on=list(props.depends_on) or None)
        self.release.override_logical_id(id_)   # `helm_release.<id>`: a readable, stable plan address

    @property
    def objects(self) -> tuple[dict[str, Any], ...]:
        return tuple(self._objects)

    def add_object(self, manifest: dict[str, Any]) -> None:
        """Add one Kubernetes object (apiVersion, kind, metadata.name[, metadata.namespace], ...)."""
        for key in ("apiVersion", "kind"):
            if not isinstance(manifest.get(key), str):
                raise ConfigError(f"manifest.{key}", manifest.get(key), "is missing", "give a complete manifest")
        meta = manifest.get("metadata") or {}
        if not isinstance(meta.get("name"), str):
            raise ConfigError("manifest.metadata.name", meta.get("name"), "is missing", "name the object")
        ident = (manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"])
        if any((o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) == ident
               for o in self._objects):
            raise ConfigError("manifest", "/".join(str(p) for p in ident), "is added twice",
                              "give each object of the chart its own name")
        self._objects.append(json.loads(json.dumps(manifest)))
