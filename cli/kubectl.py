"""``kubectl stash``: the kubectl plugin (an executable ``kubectl-stash`` on the PATH).

kubectl's conventions: ``-n/--namespace`` (default: the context's namespace), ``--context``,
``--kubeconfig``, ``-o json|yaml|wide``, ``TYPE/NAME`` arguments, exit code 0 on success, 1
when the thing asked for failed or could not be done, 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from agent.host_backup import load_repository, open_repository
from api.blueprint import GENERATED_BY_LABEL
from api.constants import INVOKER_NAME_LABEL, INVOKER_TYPE_LABEL
from api.crd import KINDS as CRD_KINDS
from api.naming import label_value
from api.objects import JSON
from api.tags import SnapshotOwner
from cli import describe
from cli.restore_request import RestoreRequest, backup_member_of, restore_session_for
from cli.table import print_table
from engine.progress import REASONS, progress_of
from engine.restic import ResticError, check_binary
from kube import Client, Forbidden, KubeError, NotFound, ResourceType
from kube.sessions import create_session
from kube.types import BACKUP_CONFIGURATIONS, BACKUP_SESSIONS, EVENTS, INVOKER_TYPES, STASH

PROG = "kubectl stash"
RESTORE_KINDS = ("RestoreSession", "RestoreBatch")
ENDED_PHASES = ("Succeeded", "Failed", "Skipped", "Invalid")
PROGRESS_REASONS = tuple(REASONS.values())
BAR_WIDTH = 20

# The plugin's own abbreviations, beside the CRDs' short names.
ABBREVIATIONS = {
    "BackupBatch": ("bb",),
    "BackupSession": ("bs",),
    "RestoreSession": ("rs",),
    "RestoreBatch": ("rb",),
    "BackupBlueprint": ("blueprint", "blueprints"),
}
# TYPE as a person types it → kind (kubectl's way: singular, plural, short name, any case),
# from the CRDs' own names.
KIND_ALIASES = {
    alias: info.kind
    for info in CRD_KINDS
    for alias in (
        info.kind.lower(),
        info.plural,
        *info.short_names,
        *ABBREVIATIONS.get(info.kind, ()),
    )
}
TARGETS = {
    **dict.fromkeys(("deployment", "deployments", "deploy"), ("apps/v1", "Deployment")),
    **dict.fromkeys(("statefulset", "statefulsets", "sts"), ("apps/v1", "StatefulSet")),
    **dict.fromkeys(("daemonset", "daemonsets", "ds"), ("apps/v1", "DaemonSet")),
    **dict.fromkeys(
        ("persistentvolumeclaim", "persistentvolumeclaims", "pvc"),
        ("v1", "PersistentVolumeClaim"),
    ),
}
BACKUP_INVOKERS = ("BackupBatch", "BackupConfiguration")


class Failed(Exception):
    """What was asked for failed (a session, a check): said in one line, exit code 1."""


def _split(value: str, allowed: Sequence[str], command: str) -> tuple[str | None, str]:
    """``TYPE/NAME`` (TYPE one of ``allowed`` kinds) or a bare NAME: (kind or None, name)."""
    if "/" not in value:
        return None, value
    kind_text, _, name = value.partition("/")
    kind = KIND_ALIASES.get(kind_text.lower())
    if kind is None or kind not in allowed or not name:
        raise ValueError(f"{command}: {value!r} is not one of {', '.join(allowed)} as TYPE/NAME")
    return kind, name


def _type(kind: str) -> ResourceType:
    return STASH[kind]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _print_object(obj: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(obj, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump(obj, sort_keys=False))


# -- backup invokers -------------------------------------------------------------------------


def _invoker(client: Client, namespace: str, value: str, command: str) -> JSON:
    """The BackupBatch or BackupConfiguration named (a bare name: a BackupBatch first)."""
    kind, name = _split(value, BACKUP_INVOKERS, command)
    for candidate in (kind,) if kind else BACKUP_INVOKERS:
        try:
            found = client.get(_type(candidate), name, namespace)
        except NotFound:
            continue
        return {"kind": candidate, **found}
    what = kind or "BackupBatch or BackupConfiguration"
    raise ValueError(f"{command}: no {what} {name!r} in namespace {namespace}")


def cmd_trigger(client: Client, args: argparse.Namespace) -> int:
    invoker = _invoker(client, args.namespace, args.invoker, "trigger")
    meta = invoker["metadata"]
    session = create_session(
        client, invoker["kind"], meta["name"], args.namespace, uid=meta.get("uid")
    )
    name = session["metadata"]["name"]
    if args.output in ("json", "yaml") and not args.wait:
        _print_object(session, args.output)
        return 0
    print(f"backupsession.stash.appscode.com/{name} created")
    if not args.wait:
        return 0
    return _follow(client, "BackupSession", args.namespace, name, args)


def cmd_pause(client: Client, args: argparse.Namespace) -> int:
    paused = args.command == "pause"
    invoker = _invoker(client, args.namespace, args.invoker, args.command)
    name = invoker["metadata"]["name"]
    if bool((invoker.get("spec") or {}).get("paused")) == paused:
        print(f"{invoker['kind'].lower()}.stash.appscode.com/{name} already {args.command}d")
        return 0
    client.patch(
        _type(invoker["kind"]), name, {"spec": {"paused": paused}}, namespace=args.namespace
    )
    print(f"{invoker['kind'].lower()}.stash.appscode.com/{name} {args.command}d")
    return 0


# -- status ----------------------------------------------------------------------------------


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    """Every backup invoker with its last good backup, how old it is, whether it is stale."""
    namespace = None if args.all_namespaces else args.namespace
    invokers = [
        {"kind": kind, **obj}
        for kind in BACKUP_INVOKERS
        for obj in client.list(_type(kind), namespace)["items"]
    ]
    sessions = client.list(BACKUP_SESSIONS, namespace)["items"]
    rows = describe.status_rows(invokers, sessions, _now())
    if args.output in ("json", "yaml"):
        _print_object(rows, args.output)
        return 0
    if not rows:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No BackupBatch or BackupConfiguration in {where}.")
        return 0
    columns = ["invoker", "schedule", "lastGoodBackup", "ended", "age", "stale", "verified"]
    if namespace is None:
        columns.insert(0, "namespace")
    header = [{"lastGoodBackup": "LAST GOOD BACKUP"}.get(col, col.upper()) for col in columns]
    print_table(header, [[row[col] for col in columns] for row in rows])
    return 0


# -- describe --------------------------------------------------------------------------------


def cmd_describe(client: Client, args: argparse.Namespace) -> int:
    allowed = (*BACKUP_INVOKERS, "BackupSession", "RestoreSession", "RestoreBatch")
    kind, name = _split(args.object, (*allowed, "BackupBlueprint"), "describe")
    if kind is None:
        raise ValueError(f"describe: give TYPE/NAME, TYPE one of {', '.join(allowed)}")
    obj = {"kind": kind, **client.get(_type(kind), name, args.namespace)}
    if args.output in ("json", "yaml"):
        _print_object(obj, args.output)
        return 0
    if kind == "BackupBlueprint":
        print(describe.describe_blueprint(obj, _generated_by(client, name, args.namespace)))
    elif kind in BACKUP_INVOKERS:
        selector = f"{INVOKER_TYPE_LABEL}={kind},{INVOKER_NAME_LABEL}={label_value(name)}"
        listed = client.list(BACKUP_SESSIONS, args.namespace, label_selector=selector)["items"]
        mine = [
            s for s in listed if ((s.get("spec") or {}).get("invoker") or {}).get("name") == name
        ]
        latest = describe.newest(mine)[:1]
        progress = _progress_events(client, latest[0]) if latest else {}
        print(describe.describe_invoker(obj, mine, _now(), progress))
    else:
        print(_render(obj, _progress_events(client, obj)))
    return 0


def _generated_by(client: Client, blueprint: str, namespace: str) -> list[JSON]:
    """The BackupConfigurations a blueprint generated: in every namespace the caller may
    list, else in ``namespace``."""
    selector = f"{GENERATED_BY_LABEL}={label_value(blueprint)}"
    try:
        found = client.list(BACKUP_CONFIGURATIONS, None, label_selector=selector)["items"]
    except Forbidden:
        found = client.list(BACKUP_CONFIGURATIONS, namespace, label_selector=selector)["items"]
    return [{"kind": "BackupConfiguration", **obj} for obj in found]


def _render(obj: JSON, progress: dict[tuple[str, str], str]) -> str:
    if obj.get("kind") == "BackupSession":
        return describe.describe_backup_session(obj, _now(), progress)
    return describe.describe_restore(obj, _now(), progress)


def _progress_events(client: Client, obj: JSON) -> dict[tuple[str, str], str]:
    """The progress Events of a running session's hosts (none once it ended)."""
    if ((obj.get("status") or {}).get("phase")) in ENDED_PHASES:
        return {}
    meta = obj["metadata"]
    kind = obj.get("kind") or "BackupSession"
    selector = f"involvedObject.name={meta['name']},involvedObject.kind={kind}"
    events = client.list(EVENTS, meta["namespace"], field_selector=selector)["items"]
    return progress_of(
        str(e.get("message", "")) for e in events if e.get("reason") in PROGRESS_REASONS
    )


def _follow(client: Client, kind: str, namespace: str, name: str, args: argparse.Namespace) -> int:
    """Wait for a session to end, a line at each change; its description at the end; 1 if it
    did not succeed."""
    deadline = time.monotonic() + args.timeout
    shown = ""
    obj: JSON = {}
    bar = sys.stderr.isatty()
    while time.monotonic() < deadline:
        obj = {"kind": kind, **client.get(_type(kind), name, namespace)}
        line = _progress(obj, _progress_events(client, obj))
        if bar:  # one line that moves, as a terminal shows a progress bar
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        elif line != shown:
            print(line, file=sys.stderr, flush=True)
        shown = line
        if ((obj.get("status") or {}).get("phase")) in ENDED_PHASES:
            break
        time.sleep(args.poll)
    else:
        if bar:
            print(file=sys.stderr)
        raise Failed(f"{kind} {namespace}/{name} did not end within {args.timeout:g} s")
    if bar:
        print(file=sys.stderr)
    print(_render(obj, {}))
    phase = (obj.get("status") or {}).get("phase")
    if phase != "Succeeded":
        raise Failed(f"{kind} {namespace}/{name} ended {phase}")
    return 0


def _progress(obj: JSON, running: dict[tuple[str, str], str]) -> str:
    """``[#####---------------]  25% nightly-1: Running: 1/3 host(s) reported`` for a
    session of any kind: the hosts done, and the running ones as far as restic says."""
    status = obj.get("status") or {}
    entries = status.get("targets") or status.get("members") or [status]
    done = sum(len(e.get("stats") or []) for e in entries)
    total = sum(int(e.get("totalHosts") or 0) for e in entries)
    line = f"{obj['metadata']['name']}: {status.get('phase') or 'Pending'}"
    if not total:
        return line
    partial = sum(_percent(where) for where in running.values()) / 100
    fraction = min(1.0, (done + partial) / total)
    filled = round(fraction * BAR_WIDTH)
    bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction * 100:3.0f}%"
    return f"{bar} {line}: {done}/{total} host(s) reported"


def _percent(where: str) -> float:
    """The leading ``42%`` of a progress message."""
    head = where.split("%", 1)[0]
    try:
        return float(head)
    except ValueError:
        return 0.0


# -- repositories ----------------------------------------------------------------------------


def _restic(client: Client, args: argparse.Namespace) -> Any:
    _, name = _split(args.repository, ("Repository",), args.command)
    check_binary(args.restic)
    repository, secret = load_repository(client, name, args.namespace)
    cache = Path(args.cache_dir) if args.cache_dir else None
    return open_repository(repository, secret, cache, binary=args.restic)


def cmd_snapshots(client: Client, args: argparse.Namespace) -> int:
    with _restic(client, args) as restic:
        found = restic.snapshots(host=args.host or None)
    if not args.all_owners:
        owner = SnapshotOwner(args.owner or args.namespace, args.namespace)
        found = [s for s in found if owner.owns(s.tags)]
    if args.output in ("json", "yaml"):
        docs = [
            {
                "id": s.id,
                "time": s.time,
                "hostname": s.hostname,
                "paths": list(s.paths),
                "tags": list(s.tags),
            }
            for s in found
        ]
        _print_object(docs, args.output)
        return 0
    wide = args.output == "wide"
    header = ["ID", "TIME", "HOST", "PATHS", *(["TAGS", "FULL ID"] if wide else [])]
    rows = [
        [
            s.short_id,
            s.time[:19].replace("T", " "),
            s.hostname,
            ",".join(s.paths),
            *([",".join(s.tags), s.id] if wide else []),
        ]
        for s in found
    ]
    if not rows:
        print(f"no snapshots in Repository {args.namespace}/{args.repository}", file=sys.stderr)
        return 0
    print_table(header, rows, gap=3)  # kubectl's own spacing
    return 0


def cmd_unlock(client: Client, args: argparse.Namespace) -> int:
    with _restic(client, args) as restic:
        removed = restic.unlock_stale()
    count = "stale locks" if removed is None else f"{removed} stale lock(s)"
    print(f"removed {count}; live locks were kept")
    return 0


def cmd_check(client: Client, args: argparse.Namespace) -> int:
    with _restic(client, args) as restic:
        result = restic.check()
    if not result.ok and result.denied:
        raise Failed(f"Repository {args.namespace}/{args.repository}: {result.says()}")
    if not result.ok:
        raise Failed(f"Repository {args.namespace}/{args.repository} is damaged: {result.message}")
    print(f"Repository {args.namespace}/{args.repository}: no errors ({result.message})")
    return 0


# -- restore ---------------------------------------------------------------------------------


def _restore_from_file(path: str, namespace: str) -> JSON:
    """The one RestoreSession or RestoreBatch in a manifest (``-`` for standard input)."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    found = [d for d in docs if isinstance(d, dict) and d.get("kind") in RESTORE_KINDS]
    if len(found) != 1:
        raise ValueError(f"restore -f {path}: expected one RestoreSession or RestoreBatch")
    restore = found[0]
    given = (restore.get("metadata") or {}).get("namespace")
    if given and given != namespace:
        raise ValueError(f"restore -f {path}: it is for namespace {given}; give -n {given}")
    return dict(restore)


def _preview(client: Client, body: JSON, args: argparse.Namespace) -> int:
    from cli.restore_preview import (
        PreviewError,
        default_image,
        hosts_of,
        render,
        repository_of,
        run_previews,
    )

    try:
        repository = repository_of(client, body, args.namespace)
        hosts = hosts_of(client, body, args.namespace)
        image = args.image or default_image(client)
        previews = run_previews(client, hosts, repository, image, timeout=args.timeout)
    except PreviewError as exc:
        raise Failed(f"restore --preview: {exc}") from None
    print(render(previews, hosts))
    return 1 if any(p.error for p in previews) else 0


def cmd_restore(client: Client, args: argparse.Namespace) -> int:
    body = (
        _restore_from_file(args.filename, args.namespace)
        if args.filename
        else _restore_asked(client, args)
    )
    if args.preview:
        return _preview(client, body, args)
    if args.dry_run:
        _print_object(body, args.output if args.output in ("json", "yaml") else "yaml")
        return 0
    kind = str(body["kind"])
    made = client.create(body, args.namespace)
    print(f"{kind.lower()}.stash.appscode.com/{made['metadata']['name']} created")
    if not args.wait:
        return 0
    return _follow(client, kind, args.namespace, made["metadata"]["name"], args)


def _restore_asked(client: Client, args: argparse.Namespace) -> JSON:
    """The RestoreSession the command line asks for: the target, a snapshot, what its backup
    says of it."""
    if not args.target:
        raise ValueError("restore: give TYPE/NAME, or -f FILE")
    kind_text, _, name = args.target.partition("/")
    found = TARGETS.get(kind_text.lower())
    if found is None or not name:
        kinds = "deployment, statefulset, daemonset, pvc"
        raise ValueError(f"restore: {args.target!r} is not TYPE/NAME with TYPE one of {kinds}")
    api_version, kind = found
    target = {"apiVersion": api_version, "kind": kind, "name": name}
    invokers = [
        {"kind": k, **obj}
        for k, rt in INVOKER_TYPES.items()
        for obj in client.list(rt, args.namespace)["items"]
    ]
    request = RestoreRequest(
        name=args.name or f"{name}-restore-{int(time.time())}",
        namespace=args.namespace,
        target=target,
        repository=args.repository or "",
        snapshot=args.snapshot,
        paths=tuple(p for p in (args.paths or "").split(",") if p),
    )
    return restore_session_for(request, backup_member_of(invokers, target))


# -- the command line ------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="default: the context's namespace")
    common.add_argument("--context", help="the kubeconfig context to use")
    common.add_argument("--kubeconfig", help="default: $KUBECONFIG, then ~/.kube/config")
    common.add_argument("-o", "--output", choices=["json", "yaml", "wide"], default="")
    return common


def _waiting(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--wait", action="store_true", help=f"follow the {what} to its end")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds (with --wait)")
    parser.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, text: str, func: Callable[[Client, argparse.Namespace], int]) -> Any:
        command = sub.add_parser(name, help=text, parents=[common])
        command.set_defaults(func=func)
        return command

    trigger = add("trigger", "start a backup session now", cmd_trigger)
    trigger.add_argument("invoker", help="NAME, backupbatch/NAME or backupconfiguration/NAME")
    _waiting(trigger, "session")
    for name, text in (("pause", "stop scheduling"), ("resume", "schedule again")):
        paused = add(name, f"{text} a BackupBatch or BackupConfiguration", cmd_pause)
        paused.add_argument("invoker", help="NAME, backupbatch/NAME or backupconfiguration/NAME")
    status = add("status", "every backup invoker's last good backup and its age", cmd_status)
    status.add_argument(
        "-A", "--all-namespaces", action="store_true", help="the invokers of every namespace"
    )
    describing = add("describe", "a batch, a session or a restore in plain words", cmd_describe)
    describing.add_argument("object", help="TYPE/NAME: bb, bc, bs, rs or rb (or their full names)")
    for name, text, func in (
        ("snapshots", "list a Repository's snapshots (restic runs here)", cmd_snapshots),
        ("unlock", "remove a Repository's stale locks, never live ones", cmd_unlock),
        ("check", "check a Repository's integrity now", cmd_check),
    ):
        repo = add(name, text, func)
        repo.add_argument("repository", help="the Repository's NAME")
        repo.add_argument("--cache-dir", default="", help="restic cache (default: none)")
        repo.add_argument("--restic", default="restic", help="the restic to run (0.18 or later)")
        if name == "snapshots":
            repo.add_argument("--host", help="only this host's snapshots")
            repo.add_argument(
                "--owner",
                default="",
                help="the namespace whose snapshots to list (default: the Repository's); a "
                "shared Repository holds each namespace's apart",
            )
            repo.add_argument(
                "--all-owners", action="store_true", help="every namespace's snapshots"
            )
    restore = add(
        "restore", "restore from a snapshot, or preview what it would change", cmd_restore
    )
    restore.add_argument(
        "target", nargs="?", help="deployment/NAME, statefulset/NAME, daemonset/NAME, pvc/NAME"
    )
    restore.add_argument(
        "-f", "--filename", help="a RestoreSession or RestoreBatch manifest (- for stdin)"
    )
    restore.add_argument(
        "--preview",
        action="store_true",
        help="say which files the restore would add, overwrite and leave alone (restic's dry "
        "run against the live data, in a Job of yours), and change nothing",
    )
    restore.add_argument(
        "--image", default="", help="the preview Job's image (default: the operator's)"
    )
    restore.add_argument("--snapshot", default="latest", help="a snapshot ID (default: latest)")
    restore.add_argument("--repository", help="default: the one its backup uses")
    restore.add_argument("--paths", help="comma-separated paths to restore (default: all)")
    restore.add_argument("--name", help="the RestoreSession's name")
    restore.add_argument("--dry-run", action="store_true", help="print it, create nothing")
    _waiting(restore, "restore")
    return parser


def _client(args: argparse.Namespace) -> Client:
    client = Client.from_environment(args.kubeconfig, context=args.context)
    if not args.namespace:  # the context's, else the pod's: as the connection was loaded
        args.namespace = client.connection.namespace
    return client


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("trigger", "restore", "status") and args.output == "wide":
        parser.error(f"{args.command}: -o wide is for snapshots")
    try:
        client = _client(args)
        try:
            code: int = args.func(client, args)
        finally:
            client.close()
    except (Failed, ValueError, RuntimeError, KubeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ResticError as exc:
        print(f"error: restic {exc.operation}: {exc.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
