"""The CustomResourceDefinitions, generated from the models so schema and types never drift.

``KINDS`` describes each kind's CRD (plural, scope, short names, printer columns);
``crd_for(kind)`` builds the structural OpenAPI v3 schema by walking the pydantic models:
required fields, enums from ``Literal`` types, defaults marked ``CrdDefault``, CEL rules,
int-or-string and preserved core types.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from api.backup import BackupBatch, BackupConfiguration, BackupSession
from api.base import CrdDefault, Format, IntOrString, Model, Opaque, Resource
from api.blueprint import BackupBlueprint, BackupTemplate
from api.constants import GROUP
from api.objects import JSON
from api.repository import Repository
from api.restore import RestoreBatch, RestoreSession
from api.task import Function, Task


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    priority: int = 0

    def to_dict(self) -> JSON:
        out: JSON = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.priority:
            out["priority"] = self.priority
        return out


AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")


@dataclass(frozen=True)
class KindInfo:
    model: type[Resource]
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    columns: tuple[PrinterColumn, ...] = (AGE,)
    categories: tuple[str, ...] = ("stash", "appscode")
    has_status: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    selectable: tuple[str, ...] = ()  # JSON paths clients may use in field selectors

    @property
    def kind(self) -> str:
        return self.model.KIND

    @property
    def version(self) -> str:
        return self.model.API_VERSION.split("/")[1]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


_SESSION_DURATION = PrinterColumn("Duration", "string", ".status.sessionDuration")
_PHASE = PrinterColumn("Phase", "string", ".status.phase")
_SCHEDULE = PrinterColumn("Schedule", "string", ".spec.schedule")
_PAUSED = PrinterColumn("Paused", "boolean", ".spec.paused")
_REPOSITORY = PrinterColumn("Repository", "string", ".spec.repository.name")

KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        Repository,
        "repositories",
        short_names=("repo",),
        columns=(
            PrinterColumn("Integrity", "boolean", ".status.integrity"),
            PrinterColumn("Size", "string", ".status.totalSize"),
            PrinterColumn("Snapshot-Count", "integer", ".status.snapshotCount"),
            PrinterColumn("Last-Successful-Backup", "date", ".status.lastBackupTime"),
            AGE,
        ),
    ),
    KindInfo(
        BackupConfiguration,
        "backupconfigurations",
        short_names=("bc",),
        columns=(
            PrinterColumn("Task", "string", ".spec.task.name"),
            _SCHEDULE,
            _PAUSED,
            _PHASE,
            AGE,
        ),
    ),
    KindInfo(BackupBatch, "backupbatches", columns=(_SCHEDULE, _PAUSED, _PHASE, AGE)),
    KindInfo(
        BackupBlueprint,
        "backupblueprints",
        namespaced=False,
        # Stash's short name ``bb`` is BackupBatch's in ``kubectl stash``: not taken.
        columns=(PrinterColumn("Task", "string", ".spec.task.name"), _SCHEDULE, AGE),
        has_status=False,
    ),
    # Served only to refuse, with what to write instead (api.blueprint.BackupTemplate).
    KindInfo(BackupTemplate, "backuptemplates", namespaced=False, has_status=False, categories=()),
    KindInfo(
        BackupSession,
        "backupsessions",
        columns=(
            PrinterColumn("Invoker-Type", "string", ".spec.invoker.kind"),
            PrinterColumn("Invoker-Name", "string", ".spec.invoker.name"),
            _PHASE,
            _SESSION_DURATION,
            AGE,
        ),
        # the sidecars list and watch only unfinished sessions (a field selector on the phase)
        selectable=(".status.phase",),
    ),
    KindInfo(
        RestoreSession,
        "restoresessions",
        short_names=("restore",),
        columns=(_REPOSITORY, _PHASE, _SESSION_DURATION, AGE),
    ),
    KindInfo(RestoreBatch, "restorebatches", columns=(_REPOSITORY, _PHASE, _SESSION_DURATION, AGE)),
    KindInfo(Task, "tasks", namespaced=False, short_names=("task",), has_status=False),
    KindInfo(
        Function,
        "functions",
        namespaced=False,
        short_names=("fn",),
        has_status=False,
        columns=(PrinterColumn("Image", "string", ".spec.image"), AGE),
    ),
)

KIND_BY_NAME: dict[str, KindInfo] = {k.kind: k for k in KINDS}


def kind_info(kind: str) -> KindInfo:
    try:
        return KIND_BY_NAME[kind]
    except KeyError:
        raise KeyError(f"unknown kind {kind!r}; known: {', '.join(KIND_BY_NAME)}") from None


# ---------------------------------------------------------------------------------------------
# Schema generation


def _strip_optional(tp: Any) -> Any:
    """``X | None`` → ``X``; other unions are kept."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        return typing.Union[tuple(args)]  # noqa: UP007 - rebuilt from runtime arguments
    return tp


def _annotated_schema(tp: Any, metadata: list[Any] | tuple[Any, ...]) -> JSON:
    """The schema of ``Annotated[tp, *metadata]``: markers may replace the base type's schema."""
    if any(isinstance(m, IntOrString) for m in metadata):
        return {"x-kubernetes-int-or-string": True}
    if any(isinstance(m, Opaque) for m in metadata):
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return _apply_metadata(schema_for_type(tp), metadata)


def _apply_metadata(schema: JSON, metadata: list[Any] | tuple[Any, ...]) -> JSON:
    for item in metadata:
        if isinstance(item, Format):
            schema["format"] = item.name
        elif isinstance(item, annotated_types.Ge):
            schema["minimum"] = item.ge
        elif isinstance(item, annotated_types.Le):
            schema["maximum"] = item.le
        elif isinstance(item, FieldInfo):
            schema = _apply_metadata(schema, item.metadata)
        elif getattr(item, "pattern", None) is not None:
            schema["pattern"] = item.pattern
    return schema


def schema_for_type(tp: Any) -> JSON:  # noqa: PLR0911 - one return per kind of type
    """The structural schema of one Python annotation."""
    tp = _strip_optional(tp)
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *metadata = get_args(tp)
        return _annotated_schema(base, metadata)
    if origin is Literal:
        values = list(get_args(tp))
        return {"type": _scalar_type(type(values[0])), "enum": values}
    if origin is list:
        (item,) = get_args(tp)
        return {"type": "array", "items": schema_for_type(item)}
    if origin is dict:
        _, value = get_args(tp)
        if value is Any:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": schema_for_type(value)}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return schema_for_model(tp)
    if tp is Any:
        return {"x-kubernetes-preserve-unknown-fields": True}
    return {"type": _scalar_type(tp)}


def _scalar_type(tp: Any) -> str:
    if tp is bool:
        return "boolean"
    if tp is int:
        return "integer"
    if tp is float:
        return "number"
    if tp is str:
        return "string"
    raise TypeError(f"no CRD schema for {tp!r}")


def _field_schema(info: FieldInfo) -> JSON:
    schema = _annotated_schema(info.annotation, info.metadata)
    if any(isinstance(m, CrdDefault) for m in _all_metadata(info)):
        schema["default"] = info.default
    if info.description:
        schema["description"] = info.description
    return schema


def _all_metadata(info: FieldInfo) -> list[Any]:
    found = list(info.metadata)
    tp = _strip_optional(info.annotation)
    if get_origin(tp) is typing.Annotated:
        found.extend(get_args(tp)[1:])
    return found


def schema_for_model(model: type[BaseModel]) -> JSON:
    properties: JSON = {}
    required: list[str] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        properties[key] = _field_schema(info)
        if info.is_required():
            required.append(key)
    schema: JSON = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if issubclass(model, Model):
        if model.crd_preserve_unknown:
            schema["x-kubernetes-preserve-unknown-fields"] = True
        if model.crd_rules:
            schema["x-kubernetes-validations"] = [
                {"rule": r.rule, "message": r.message}
                | ({"fieldPath": r.field_path} if r.field_path else {})
                for r in model.crd_rules
            ]
    if model.__doc__ and issubclass(model, Model) and model.__doc__ is not Model.__doc__:
        schema["description"] = " ".join(model.__doc__.split())
    return schema


def crd_for(info: KindInfo) -> JSON:
    """The complete CustomResourceDefinition of one kind."""
    schema = schema_for_model(info.model)
    schema["properties"]["metadata"] = {"type": "object"}
    for key in ("apiVersion", "kind"):
        schema["properties"][key] = {"type": "string"}
    schema.setdefault("required", [])
    schema["required"] = [r for r in schema["required"] if r not in ("apiVersion", "kind")]
    if not schema["required"]:
        del schema["required"]
    version: JSON = {
        "name": info.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "additionalPrinterColumns": [c.to_dict() for c in info.columns],
    }
    if info.has_status:
        version["subresources"] = {"status": {}}
    if info.selectable:
        version["selectableFields"] = [{"jsonPath": path} for path in info.selectable]
    names: JSON = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.kind.lower(),
        "categories": list(info.categories),
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/name": "stash", "app.kubernetes.io/part-of": "stash"},
        },
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "versions": [version],
        },
    }


def all_crds() -> list[JSON]:
    return [crd_for(info) for info in KINDS]


def model_for(api_version: str, kind: str) -> type[Resource]:
    """The model class of a manifest's apiVersion/kind (raises KeyError when it is not ours)."""
    info = kind_info(kind)
    if api_version != info.model.API_VERSION:
        raise KeyError(f"{kind} is served as {info.model.API_VERSION}, not {api_version}")
    return info.model
