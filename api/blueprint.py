"""BackupBlueprint (``stash.appscode.com/v1beta1``, cluster-scoped): the template of the
Repository and the BackupConfiguration that auto-backup generates for every workload, PVC or
AppBinding annotated with the blueprint's name (docs/guides/auto-backup.md), and the
annotations that ask for it.

The repository part is a Repository's spec whose backend may use ``${TARGET_*}`` variables;
the rest is a BackupConfiguration's spec without its target and repository, which the
generator fills in.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import Field

from api.base import CelRule, Model, Opaque, Resource
from api.common import (
    BackupHooks,
    Duration,
    EmptyDirSettings,
    RawObject,
    RetentionPolicy,
    RetryConfig,
    RuntimeSettings,
    TaskRef,
)
from api.constants import GROUP, V1BETA1
from api.repository import Backend, UsagePolicy

# On a workload, PVC or AppBinding: the blueprints to back it up with (comma-separated), and,
# for a workload, what to back up; a schedule that overrides the blueprint's.
BLUEPRINT_ANNOTATION: Final = f"{GROUP}/backup-blueprint"
TARGET_PATHS_ANNOTATION: Final = f"{GROUP}/target-paths"
VOLUME_MOUNTS_ANNOTATION: Final = f"{GROUP}/volume-mounts"
SCHEDULE_ANNOTATION: Final = f"{GROUP}/schedule"
# On what auto-backup generated: the blueprint it came from (a label, to find them again) and
# the digest of what was generated (to know, from the cache, whether it is still current).
GENERATED_BY_LABEL: Final = f"{GROUP}/backup-blueprint"
GENERATED_DIGEST_ANNOTATION: Final = f"{GROUP}/blueprint-digest"


class BackupBlueprintSpec(Model):
    # The Repository's part (Stash inlines a RepositorySpec)
    backend: Backend
    wipe_out: bool | None = None
    usage_policy: UsagePolicy | None = None
    # Where Stash would put the Repository / the backup objects: this project generates
    # both in the target's own namespace and refuses a blueprint that names another one.
    repo_namespace: str | None = None
    backup_namespace: str | None = None
    # The BackupConfiguration's part
    schedule: str | None = None
    task: TaskRef | None = None
    retention_policy: RetentionPolicy
    runtime_settings: RuntimeSettings | None = None
    temp_dir: EmptyDirSettings | None = None
    interim_volume_template: RawObject | None = None
    backup_history_limit: Annotated[int, Field(ge=0)] | None = None
    hooks: BackupHooks | None = None
    time_out: Duration | None = None
    retry_config: RetryConfig | None = None
    paused: bool | None = None


class BackupBlueprint(Resource):
    API_VERSION = V1BETA1
    KIND = "BackupBlueprint"

    spec: BackupBlueprintSpec


class BackupTemplate(Resource):
    """BackupTemplate: the name Stash's design proposal gave the blueprint before it shipped
    as BackupConfigurationTemplate and then BackupBlueprint. No Stash release served it; the API
    server refuses one with a message that says what to write instead."""

    API_VERSION = V1BETA1
    KIND = "BackupTemplate"
    crd_rules = (
        CelRule(
            "false",
            "BackupTemplate was a Stash design proposal that no release served: write a "
            "BackupBlueprint (stash.appscode.com/v1beta1; the same backend, schedule, task and "
            "retentionPolicy, with ${TARGET_NAMESPACE}, ${TARGET_KIND} and ${TARGET_NAME} in "
            "the prefix) and annotate targets with stash.appscode.com/backup-blueprint "
            "(docs/guides/auto-backup.md)",
        ),
    )

    spec: Annotated[dict[str, Any], Opaque()] | None = None
