"""What is wrong in an invoker's own spec, field by field, in words a user can act on.

Pure checks of one spec: paths, volume mounts, retention, ``timeOut``, ``retryConfig``,
``tempDir``, and a schedule that can never fire. Each problem starts with the field's path
(``spec.members[1].target.paths[0]: ...``) and says why. What only the API server or the cache
can tell (the schedule's syntax, the workload's volumes, the Task) is checked by the invoker
reconciler and handed in as facts.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from api.addresses import forbidden_host
from api.constants import TMP_DIR_MOUNT_PATH
from api.objects import JSON
from api.tags import INVOKER_PREFIX, NAMESPACE_PREFIX, SESSION_PREFIX, TARGET_PREFIX
from api.units import parse_duration

MAX_KEEP = 100_000  # snapshots kept per policy rule; beyond this a typo, not a policy
MAX_TIMEOUT = dt.timedelta(days=30)
MAX_RETRY = 100
EMPTY_DIR_MEDIA = ("", "Memory")
_HUGE_PAGES = re.compile(r"^HugePages(-[0-9]+[KMG]i)?$")
# A Kubernetes resource.Quantity that a size may be: a non-negative number with a suffix.
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[mkMGTPE])?$")
_KEEPS = ("keepLast", "keepHourly", "keepDaily", "keepWeekly", "keepMonthly", "keepYearly")


def path_problems(paths: list[Any] | None, where: str) -> list[str]:
    """A sidecar member's paths: at least one, each absolute and without ``..``."""
    if not paths:
        return [f"{where}: a workload target needs at least one path to back up"]
    problems = []
    for i, path in enumerate(paths):
        field = f"{where}[{i}]"
        if not isinstance(path, str) or not path.strip():
            problems.append(f"{field}: a path must not be empty")
        elif not path.startswith("/"):
            problems.append(f"{field}: {path!r} is relative; paths are absolute in the pod")
        elif ".." in path.split("/"):
            problems.append(f"{field}: {path!r} contains '..'")
    return problems


def mount_problems(
    mounts: list[JSON] | None, where: str, volumes: frozenset[str] | None
) -> list[str]:
    """volumeMounts of a sidecar member: of volumes the workload has, never at /tmp (the
    sidecar's own scratch emptyDir). ``volumes`` None: the workload is not known yet."""
    problems = []
    for i, mount in enumerate(mounts or []):
        field = f"{where}[{i}]"
        path = str(mount.get("mountPath") or "")
        if path.rstrip("/") == TMP_DIR_MOUNT_PATH:  # beneath it is fine: mounts nest
            problems.append(
                f"{field}.mountPath: {path} is the stash sidecar's own scratch space; "
                "mount the volume elsewhere"
            )
        name = mount.get("name")
        if volumes is not None and name not in volumes:
            have = ", ".join(sorted(volumes)) or "none"
            problems.append(f"{field}.name: the workload has no volume {name!r} (it has: {have})")
    return problems


def retention_problems(retention: JSON) -> list[str]:
    problems = []
    for key in _KEEPS:
        value = retention.get(key)
        if isinstance(value, int) and value > MAX_KEEP:
            problems.append(
                f"spec.retentionPolicy.{key}: {value} is beyond any sane bound "
                f"(at most {MAX_KEEP:,})"
            )
    why = _tags_keep_nothing(retention)
    if why:
        problems.append(f"spec.retentionPolicy.keepTags: {why}")
    return problems


# The tags every snapshot made here carries (api.tags); no other tag is ever written.
_OWN_TAG_PREFIXES = (NAMESPACE_PREFIX, INVOKER_PREFIX, TARGET_PREFIX, SESSION_PREFIX)


def _tags_keep_nothing(retention: JSON) -> str | None:
    """Why a policy of ``keepTags`` alone would fail every session: it keeps only snapshots
    with tags this operator never writes, and restic refuses to empty a group of snapshots."""
    tags = retention.get("keepTags") or []
    if not tags or any(isinstance(retention.get(k), int) and retention[k] > 0 for k in _KEEPS):
        return None
    for entry in tags:  # an entry is a comma-separated list a snapshot must carry whole
        wanted = [t.strip() for t in str(entry).split(",") if t.strip()]
        if wanted and all(t.startswith(_OWN_TAG_PREFIXES) for t in wanted):
            return None  # it can match the snapshots made here
    return (
        f"{', '.join(map(str, tags))} alone keeps only snapshots carrying those tags, and "
        "snapshots made here carry only namespace:, invoker:, target: and session: tags, so "
        "every snapshot would go and restic refuses that (every session would fail); add a "
        "count such as keepLast: 1, or keep one of those tags"
    )


# The variables the operator gives a Task's Functions: who the session and the target are,
# where the repository is, what the invoker's policy says (controller.jobs.member_job.variables).
# A member's task params cannot set them: a tenant would otherwise point a Job at another
# session, target, host or repository.
OPERATOR_VARIABLES = frozenset(
    {
        "NAMESPACE", "INVOKER_KIND", "INVOKER_NAME", "BACKUP_SESSION", "RESTORE_SESSION",
        "TARGET_API_VERSION", "TARGET_KIND", "TARGET_NAME", "TARGET_NAMESPACE", "TARGET_PATHS",
        "TARGET_MOUNT_PATH", "EXCLUDE_PATTERNS", "INCLUDE_PATTERNS", "HOSTNAME",
        "SOURCE_HOSTNAME", "POD_ORDINAL", "RESTORE_PATHS", "RESTORE_SNAPSHOTS",
        "REPOSITORY_NAME", "REPOSITORY_NAMESPACE", "REPOSITORY_PROVIDER",
        "REPOSITORY_SECRET_NAME", "REPOSITORY_BUCKET", "REPOSITORY_PREFIX",
        "REPOSITORY_ENDPOINT", "REPOSITORY_REGION", "RETENTION_POLICY_NAME", "RETENTION_PRUNE",
        "RETENTION_DRY_RUN", "RETENTION_KEEP_TAGS", "RETENTION_KEEP_LAST",
        "RETENTION_KEEP_HOURLY", "RETENTION_KEEP_DAILY", "RETENTION_KEEP_WEEKLY",
        "RETENTION_KEEP_MONTHLY", "RETENTION_KEEP_YEARLY", "PROMETHEUS_PUSHGATEWAY_URL",
        "ENABLE_CACHE", "CACHE_DIR", "TARGET_APP_HOST", "TARGET_APP_PORT",
        "TARGET_APP_SCHEME", "TARGET_APP_PATH", "TARGET_APP_TYPE", "TARGET_APP_GROUP",
        "TARGET_APP_RESOURCE", "TARGET_APP_VERSION", "TARGET_APP_SECRET", "TARGET_APP_USER",
    }
)  # fmt: skip


def param_problems(task: JSON | None, where: str) -> list[str]:
    """A member's ``task.params`` naming a variable the operator sets."""
    problems = []
    for index, param in enumerate((task or {}).get("params") or []):
        name = (param or {}).get("name")
        if name in OPERATOR_VARIABLES:
            problems.append(
                f"{where}.params[{index}].name: {name} is set by the operator (who the session, "
                "target and repository are); a param cannot change it"
            )
    return problems


def timeout_problems(spec: JSON) -> list[str]:
    text = spec.get("timeOut")
    if not text:
        return []
    timeout = parse_duration(str(text))
    if timeout <= dt.timedelta(0):
        return [f"spec.timeOut: {text} would fail every session at once; give it a positive time"]
    if timeout > MAX_TIMEOUT:
        return [f"spec.timeOut: {text} is longer than {MAX_TIMEOUT.days} days"]
    return []


def retry_problems(spec: JSON) -> list[str]:
    retry = spec.get("retryConfig")
    if not retry:
        return []
    problems = []
    max_retry = retry.get("maxRetry")
    if isinstance(max_retry, int) and max_retry > MAX_RETRY:
        problems.append(f"spec.retryConfig.maxRetry: {max_retry} is more than {MAX_RETRY}")
    delay = retry.get("delay")
    wait = parse_duration(str(delay)) if delay is not None else None
    if wait is not None and wait <= dt.timedelta(0):
        problems.append(
            f"spec.retryConfig.delay: {delay} would retry a failing backup at once, over and "
            "over; give it a positive time"
        )
    elif wait is not None and wait > MAX_TIMEOUT:
        problems.append(f"spec.retryConfig.delay: {delay} is longer than {MAX_TIMEOUT.days} days")
    return problems


def temp_dir_problems(temp_dir: JSON | None, where: str) -> list[str]:
    if not temp_dir:
        return []
    problems = []
    medium = temp_dir.get("medium")
    if medium is not None and medium not in EMPTY_DIR_MEDIA and not _HUGE_PAGES.match(medium):
        problems.append(
            f'{where}.medium: {medium!r} is not an emptyDir medium ("", Memory, HugePages)'
        )
    size = temp_dir.get("sizeLimit")
    if size is not None and not _QUANTITY.match(str(size)):
        problems.append(f"{where}.sizeLimit: {size!r} is not a quantity (like 1Gi or 500M)")
    return problems


def hook_problems(hooks: JSON | None, where: str) -> list[str]:
    """Hosts no hook may call: cloud metadata services, link-local and unspecified addresses."""
    problems = []
    for kind, handler in (hooks or {}).items():
        for action in ("httpGet", "httpPost", "tcpSocket"):
            host = ((handler or {}).get(action) or {}).get("host")
            why = forbidden_host(str(host)) if host else None
            if why:
                problems.append(f"{where}.{kind}.{action}.host: {host} is {why}")
    return problems


# -- a schedule that can never fire ------------------------------------------------------------

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February 29 does happen


def _values(field: str, low: int, high: int, names: Iterable[str] = ()) -> set[int] | None:
    """The values a cron field selects (None when it is not a form read here)."""
    lookup = {name: i + low for i, name in enumerate(names)}
    found: set[int] = set()
    for item in field.lower().split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() else 1
        if base in ("*", "?"):
            start, end = low, high
        else:
            first, dash, last = base.partition("-")
            try:
                start = lookup[first] if first in lookup else int(first)
                end = (lookup[last] if last in lookup else int(last)) if dash else start
            except ValueError:
                return None
            if step_text and not dash:
                end = high
        found.update(range(start, end + 1, max(step, 1)))
    return found


def never_fires(schedule: str) -> str | None:
    """Why a (syntactically valid) schedule never fires, or None. Day of month and month
    together can name no real day (``0 0 31 2 *``); a restricted day of week always fires."""
    parts = schedule.split()
    if len(parts) != 5 or parts[4] not in ("*", "?"):
        return None
    days = _values(parts[2], 1, 31)
    months = _values(parts[3], 1, 12, _MONTHS)
    if not days or not months:
        return None
    if all(min(days) > _DAYS_IN_MONTH[m - 1] for m in months):
        return "no month it names has the day of month it names: it never fires"
    return None
