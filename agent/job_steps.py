"""The steps of backup and restore Jobs (Stash's Functions): ``backup-pvc`` / ``backup-dump``
back up, ``restore`` / ``restore-dump`` (with ``--restoresession``) restore, and each leaves its
``HostResult`` in the output directory; ``update-status`` (the last step) records it in the
BackupSession (pushing metrics and, as the last host, finishing the session) or in the
RestoreSession / RestoreBatch.

A failed backup is not a failed step: the first step always leaves a result (Failed, with the
reason) so that ``update-status`` can report it; ``update-status`` then exits non-zero so the Job
fails too. Only when not even a result can be written does the first step fail.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.host_backup import (
    BackupOptions,
    HostJob,
    Setup,
    SetupError,
    back_up_paths,
    back_up_stream,
    backup_member_for,
    finish_session,
    init_guard,
    load_setup,
    open_restic,
    report,
    sessions_parent,
    with_hooks,
)
from agent.host_restore import (
    HostRestore,
    RestoreOptions,
    report_restore,
    restore_files,
    restore_host_dump,
)
from api.appbinding import PASSWORD_ENV
from api.hooks import is_final_attempt
from api.objects import JSON
from engine.locks import holders_of
from engine.progress import ProgressReport
from engine.reporting import SessionReporter, deadline_passed
from engine.restic import Progress, ResticError
from engine.results import HostResult
from kube import Client
from kube.errors import KubeError
from kube.events import EventRecorder
from kube.mutex import pod_holder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepOptions:
    output_dir: Path
    cache_dir: Path | None = None


def split_list(value: str) -> list[str]:
    """Stash passes lists as one comma-separated argument."""
    return [part.strip() for part in value.split(",") if part.strip()]


def _progress(client: Client, job: HostJob) -> Progress:
    """The host's progress: logged, and an Event on its session at a bounded rate."""

    def session() -> JSON | None:
        try:
            return SessionReporter(client, job.namespace, job.session).get()
        except KubeError:
            return None  # the log line still says it

    return ProgressReport(
        EventRecorder(client, "stash-backup-job"),
        session,
        operation="backup",
        what=job.describe(),
    )


def _with_member_hooks(
    client: Client, job: HostJob, setup: Setup, back_up: Callable[[], HostResult], step: str
) -> HostResult:
    """The member's own hooks around the backup, run in this step's container (the target's
    volume is mounted here), as the sidecar runs them. A session past its deadline (a Job that
    started late) backs up nothing: the operator fails what is unfinished at the deadline."""
    session = SessionReporter(client, job.namespace, job.session).get()
    status = session.get("status") or {}
    if deadline_passed(status, dt.datetime.now(dt.UTC)):
        raise SetupError(
            f"session {job.session} passed its deadline {status.get('sessionDeadline')} before "
            "this host began: nothing backed up"
        )
    member = backup_member_for(setup.invoker, job.target_kind, job.target_name)
    if member is None or member.hooks is None:
        return back_up()
    return with_hooks(
        job,
        member.hooks,
        back_up,
        own_container=step,
        final_attempt=is_final_attempt(session, setup.invoker),
    )


def backup_pvc(
    client: Client, job: HostJob, paths: Sequence[str], excludes: Sequence[str], opts: StepOptions
) -> int:
    started = time.monotonic()
    try:
        setup = load_setup(client, job)
        with open_restic(setup, opts.cache_dir) as restic:
            options = BackupOptions(
                guard=init_guard(client, setup, job.namespace, job.describe()),
                progress=_progress(client, job),
                parent_hint=sessions_parent(client, job),
                holders=holders_of(client, job.namespace, setup.repository),
            )
            result = _with_member_hooks(
                client,
                job,
                setup,
                lambda: back_up_paths(restic, job, paths, excludes=excludes, options=options),
                "pvc-backup",
            )
    except (SetupError, KubeError, ResticError) as exc:
        result = HostResult(job.hostname, "Failed", time.monotonic() - started, error=str(exc))
    result.save(opts.output_dir)
    return 0


def lend_password(variable: str) -> None:
    """Give the dump or restore command the database's password as ``variable`` (PGPASSWORD,
    MYSQL_PWD, REDISCLI_AUTH…) when the target is an AppBinding with credentials (the
    kubelet read them into ``TARGET_APP_PASSWORD``) and nothing set ``variable`` already
    (``runtimeSettings.container.env`` wins). Never on a command line: /proc shows those."""
    password = os.environ.get(PASSWORD_ENV)
    if variable and password and not os.environ.get(variable):
        os.environ[variable] = password


def backup_dump(
    client: Client, job: HostJob, command: str, filename: str, opts: StepOptions
) -> int:
    """Back up what ``command`` (a dump tool, e.g. pg_dump) writes to stdout as ``filename``."""
    started = time.monotonic()
    try:
        setup = load_setup(client, job)
        with open_restic(setup, opts.cache_dir) as restic:
            options = BackupOptions(
                guard=init_guard(client, setup, job.namespace, job.describe()),
                holders=holders_of(client, job.namespace, setup.repository),
                progress=_progress(client, job),
            )
            result = _with_member_hooks(
                client,
                job,
                setup,
                lambda: back_up_stream(
                    restic, job, shlex.split(command), filename=filename, options=options
                ),
                "backup-dump",
            )
    except (SetupError, KubeError, ResticError) as exc:
        result = HostResult(job.hostname, "Failed", time.monotonic() - started, error=str(exc))
    result.save(opts.output_dir)
    return 0


def _left_result(opts: StepOptions, hostname: str, noun: str) -> HostResult:
    """What the step before left in the output directory; a failure when it left nothing."""
    try:
        return HostResult.load(opts.output_dir)
    except (OSError, ValueError, TypeError) as exc:
        return HostResult(hostname, "Failed", 0.0, error=f"no {noun} result: {exc}")


def _exit_code(result: HostResult, what: str) -> int:
    if not result.succeeded:
        log.error("%s: %s", what, result.error)
        return 1
    return 0


def update_status_step(client: Client, job: HostJob, opts: StepOptions) -> int:
    result = _left_result(opts, job.hostname, "backup")
    setup = load_setup(client, job)
    with open_restic(setup, opts.cache_dir) as restic:
        report(client, job, setup, restic, result)
    return _exit_code(result, job.describe())


def finish_step(client: Client, job: HostJob, opts: StepOptions) -> int:
    """``stash finish-session``: the session's repository work (retention, the integrity
    check, the Repository's figures), done by the operator's finish Job when the last host
    died before recording it. Claimed first in this pod's name; done once (a session that
    already records it is left alone)."""
    setup = load_setup(client, job)
    pod = os.environ.get("POD_NAME", "")
    if pod:
        SessionReporter(client, job.namespace, job.session).claim(pod_holder(job.namespace, pod))
    with open_restic(setup, opts.cache_dir) as restic:
        finish_session(client, job, setup, restic)
    return 0


def restore_step(
    client: Client, job: HostRestore, target_dir: str, opts: StepOptions, step: str
) -> int:
    options = RestoreOptions(cache_dir=opts.cache_dir, own_container=step)
    restore_files(client, job, target_dir, options).save(opts.output_dir)
    return 0


def restore_dump_step(
    client: Client,
    job: HostRestore,
    filename: str,
    command: str,
    opts: StepOptions,
    *,
    step: str,
    snapshot: str = "latest",
) -> int:
    options = RestoreOptions(cache_dir=opts.cache_dir, own_container=step, snapshot=snapshot)
    restore_host_dump(client, job, filename, command, options).save(opts.output_dir)
    return 0


def update_restore_status(client: Client, job: HostRestore, opts: StepOptions) -> int:
    result = _left_result(opts, job.hostname, "restore")
    report_restore(client, job, result)
    return _exit_code(result, job.describe())
