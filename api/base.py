"""The model base shared by every API type, and the markers that shape the CRD schemas.

Models keep Stash's JSON field names (camelCase aliases), accept Python names too, and keep any
field they do not know (``extra="allow"``) so a Stash manifest round-trips without losing or
renaming anything: ``Model.from_dict(d).to_dict() == d``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel


@dataclass(frozen=True)
class CelRule:
    """An ``x-kubernetes-validations`` rule checked by the API server on the owning object."""

    rule: str
    message: str
    field_path: str = ""


@dataclass(frozen=True)
class IntOrString:
    """Marks a field as Kubernetes int-or-string (ports, quantities)."""


@dataclass(frozen=True)
class Format:
    """An OpenAPI ``format`` for a string field (``date-time``, ``duration``…)."""

    name: str


@dataclass(frozen=True)
class CrdDefault:
    """The field's default is written into the CRD, so the API server applies it too.

    Only fields where Stash's own CRDs set a default carry this marker; every other default is a
    reading convenience of the model and never stored.
    """


@dataclass(frozen=True)
class Opaque:
    """A Kubernetes core type kept as raw JSON (pod settings, volumes, PVC templates).

    The CRD schema preserves its unknown fields instead of duplicating the core type's schema.
    """


def first_error(error: ValidationError) -> tuple[str, str]:
    """Where the first problem of ``error`` is (``a.b.0.c``, relative to what was validated)
    and pydantic's words for it."""
    first = error.errors()[0]
    return ".".join(str(p) for p in first.get("loc", ())), str(first.get("msg"))


class Model(BaseModel):
    """Base of every API type: camelCase on the wire, unknown fields kept, unset fields omitted."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="allow",
        # Validators are built on first use, not at import: a sidecar validates a handful of
        # the ~100 types and should not pay for the rest (issue 15).
        defer_build=True,
    )

    # Rules the API server enforces on this object (see CelRule).
    crd_rules: ClassVar[tuple[CelRule, ...]] = ()
    # Keep fields the model does not declare in the stored object (e.g. an inline VolumeSource).
    crd_preserve_unknown: ClassVar[bool] = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls.model_validate(data)

    def to_dict(self) -> dict[str, Any]:
        """The object as the API server would store it: aliases, only what was set."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


class ObjectMeta(Model):
    """The parts of ``metadata`` the project reads; everything else is kept as-is."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[dict[str, Any]] | None = None
    finalizers: list[str] | None = None


class Resource(Model):
    """A top-level API object: apiVersion, kind, metadata (spec and status in subclasses).

    ``apiVersion`` and ``kind`` default to the concrete class's own and always serialise, so an
    object built in code is a complete manifest.
    """

    API_VERSION: ClassVar[str] = ""
    KIND: ClassVar[str] = ""

    api_version: str = ""
    kind: str = ""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    def model_post_init(self, context: Any, /) -> None:
        if not self.api_version:
            self.api_version = self.API_VERSION
        if not self.kind:
            self.kind = self.KIND
        self.model_fields_set.update({"api_version", "kind", "metadata"})
