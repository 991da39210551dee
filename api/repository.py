"""Repository (``stash.appscode.com/v1alpha1``): where backups go and who may use it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from api.base import CelRule, CrdDefault, Model, Resource
from api.common import Condition, Time, TypedObjectReference
from api.constants import GROUP

BACKENDS = ("local", "s3", "gcs", "azure", "swift", "b2", "rest")


class LocalSpec(Model):
    """A volume (any core/v1 VolumeSource, inline) mounted at ``mountPath``."""

    crd_preserve_unknown = True

    mount_path: str
    sub_path: str | None = None


class S3Spec(Model):
    endpoint: str | None = None
    bucket: str
    prefix: str | None = None
    region: str | None = None
    insecure_tls: bool | None = Field(default=None, alias="insecureTLS")


class GCSSpec(Model):
    bucket: str
    prefix: str | None = None
    max_connections: int | None = None


class AzureSpec(Model):
    container: str
    prefix: str | None = None
    max_connections: int | None = None


class SwiftSpec(Model):
    container: str
    prefix: str | None = None


class B2Spec(Model):
    bucket: str
    prefix: str | None = None
    max_connections: int | None = None


class RestServerSpec(Model):
    url: str | None = None


class Backend(Model):
    """Exactly one storage backend, and the Secret holding its credentials."""

    crd_rules = (
        CelRule(
            rule="[" + ", ".join(f"has(self.{b})" for b in BACKENDS) + "].filter(x, x).size() == 1",
            message="exactly one backend must be set, one of: " + ", ".join(BACKENDS),
        ),
    )

    storage_secret_name: str | None = None
    local: LocalSpec | None = None
    s3: S3Spec | None = None
    gcs: GCSSpec | None = None
    azure: AzureSpec | None = None
    swift: SwiftSpec | None = None
    b2: B2Spec | None = None
    rest: RestServerSpec | None = None

    def kind(self) -> str:
        """The name of the one backend that is set (validated by the API server)."""
        for name in BACKENDS:
            if getattr(self, name) is not None:
                return name
        raise ValueError("no backend is set")


class AllowedNamespaces(Model):
    from_: Annotated[Literal["All", "Same", "Selector"], CrdDefault()] = Field(
        default="Same", alias="from"
    )
    selector: dict[str, Any] | None = None


class UsagePolicy(Model):
    allowed_namespaces: AllowedNamespaces | None = None


class RepositorySpec(Model):
    backend: Backend
    wipe_out: bool | None = None
    usage_policy: UsagePolicy | None = None


class RepositoryStatus(Model):
    observed_generation: int | None = None
    first_backup_time: Time | None = None
    last_backup_time: Time | None = None
    integrity: bool | None = None
    total_size: str | None = None
    snapshot_count: int | None = None
    snapshots_removed_on_last_cleanup: int | None = None
    references: list[TypedObjectReference] | None = None
    # How a wipeOut goes while the Repository is being deleted (``WipedOut``).
    conditions: list[Condition] | None = None


class Repository(Resource):
    API_VERSION = f"{GROUP}/v1alpha1"
    KIND = "Repository"

    spec: RepositorySpec
    status: RepositoryStatus | None = None
