"""A database target by its AppBinding, as Stash's addons back one up: on the real node, the
PostgreSQL example Task finds the server, the database and the user in the AppBinding, the Job's
pod reads the password from the AppBinding's Secret (the operator never does), and a server that
demands that password gets it; the dump restores row for row."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from pathlib import Path

from api.blueprint import BLUEPRINT_ANNOTATION
from api.objects import JSON
from controller.operator import Operator
from devcluster import ControlPlane
from devcluster.images import Images
from devcluster.services import Postgres, Service
from kube import Client, NotFound
from kube.sessions import create_session
from kube.types import (
    BACKUP_BATCHES,
    BACKUP_BLUEPRINTS,
    BACKUP_CONFIGURATIONS,
    BACKUP_SESSIONS,
    CRDS,
    JOBS,
    RESTORE_SESSIONS,
)
from tests.factories import batch, restore_session
from tests.integration.helpers import (
    eventually,
    invoker_ready,
    job_steps,
    running_operator,
    shared_dir,
)
from tests.integration.objects import (
    allow_host_path,
    repository,
    restic_of,
    session_snapshot,
    storage_secret,
)
from tests.manifests import ROOT, load_all

TABLE = (
    "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric);"
    "INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 300) g;"
)
CHECKSUM = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM items t"


def _install(kube: Client, images: Images) -> None:
    """The optional AppBinding CRD, as a cluster without KubeDB applies it, and the example
    Task with the image just built."""
    for doc in load_all(
        ROOT / "manifests" / "appbinding" / "appbindings.appcatalog.appscode.com.yaml"
    ):
        kube.apply(doc, field_manager="stash-tests")

    def established() -> bool:
        crd = kube.get(CRDS, "appbindings.appcatalog.appscode.com")
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    eventually(established, 30, "the AppBinding CRD")
    for obj in load_all(ROOT / "manifests" / "tasks" / "postgres.yaml"):
        if obj["kind"] == "Function":
            obj["spec"]["image"] = images.stash.name
        kube.apply(obj, field_manager="stash-tests")


def _password_required(postgres: Postgres, role: str, password: str) -> None:
    """``role`` may log in over TCP only with its password (the rest of the server stays as the
    other tests use it)."""
    postgres.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    hba = Path(postgres.psql("SHOW hba_file").strip())
    rule = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
    hba.write_text(rule + hba.read_text())
    postgres.psql("SELECT pg_reload_conf()")


def _ended(kube: Client, rt: object, namespace: str, name: str) -> JSON | None:
    status = kube.get(rt, name, namespace).get("status") or {}  # type: ignore[arg-type]
    return status if status.get("phase") in ("Succeeded", "Failed") else None


@dataclass(frozen=True)
class Shop:
    database: str
    role: str
    password: str
    checksum: str


def _shop(
    kube: Client, namespace: str, postgres: Postgres, annotations: JSON | None = None
) -> Shop:
    """A database owned by a role that must give its password, its Secret, and AppBinding
    ``shop`` saying where it is (with ``annotations``, and, when annotated, the backup Task
    of its addon as KubeDB names it)."""
    suffix = namespace.replace("-", "_")
    database, role = f"shop_{suffix}", f"owner_{suffix}"
    password = uuid.uuid4().hex
    _password_required(postgres, role, password)
    postgres.psql(f"CREATE DATABASE {database} OWNER {role}")
    postgres.psql(f"SET ROLE {role}; {TABLE}", database)
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "shop-auth"},
            "stringData": {"username": role, "password": password},
        },
        namespace,
    )
    spec: JSON = {
        "type": "kubedb.com/postgres",
        "version": "16",
        "clientConfig": {"url": f"postgresql://127.0.0.1:{postgres.port}/{database}"},
        "secret": {"name": "shop-auth"},
    }
    meta: JSON = {"name": "shop"}
    if annotations:
        meta["annotations"] = annotations
        spec["parameters"] = {"stash": {"addon": {"backupTask": {"name": "postgres-backup"}}}}
    kube.create(
        {
            "apiVersion": "appcatalog.appscode.com/v1alpha1",
            "kind": "AppBinding",
            "metadata": meta,
            "spec": spec,
        },
        namespace,
    )
    return Shop(database, role, password, postgres.psql(CHECKSUM, database))


def test_postgres_behind_an_appbinding_is_backed_up_and_restored_with_its_secrets_credentials(
    operator: Operator,
    kube: Client,
    namespace: str,
    images: Images,
    postgres: Postgres,
    tmp_path: Path,
) -> None:
    _install(kube, images)
    shop = _shop(kube, namespace, postgres)
    database, role, password, original = shop.database, shop.role, shop.password, shop.checksum
    repository(kube, namespace, tmp_path / "repo")
    target = {
        "ref": {
            "apiVersion": "appcatalog.appscode.com/v1alpha1",
            "kind": "AppBinding",
            "name": "shop",
        }
    }
    kube.create(
        batch("nightly", namespace, {"target": target, "task": {"name": "postgres-backup"}})
    )
    invoker_ready(kube, namespace, "nightly")
    session = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]

    def job() -> JSON | None:
        try:
            return kube.get(JOBS, f"stash-backup-{session}-0", namespace)
        except NotFound:
            return None

    made = eventually(job, 60, "the backup Job")
    dump_step = made["spec"]["template"]["spec"]["initContainers"][0]
    # Where and who come from the AppBinding; the password is never in the Job's spec.
    dump = f"-h 127.0.0.1 -p {postgres.port} -U $(TARGET_APP_USERNAME) {database}"
    assert any(arg.endswith(dump) for arg in dump_step["args"]), dump_step["args"]
    assert password not in str(made)
    secret_refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in dump_step["env"]
        if "secretKeyRef" in (e.get("valueFrom") or {})
    }
    assert secret_refs["TARGET_APP_PASSWORD"] == {
        "name": "shop-auth",
        "key": "password",
        "optional": True,
    }
    runs = job_steps(kube, namespace, made["metadata"]["name"])
    assert [r.returncode for r in runs] == [0, 0], [r.output for r in runs]
    ended = eventually(
        functools.partial(_ended, kube, BACKUP_SESSIONS, namespace, session), 60, session
    )
    assert ended["phase"] == "Succeeded", ended

    postgres.psql(f"SET ROLE {role}; DROP TABLE items", database)
    restore = {"target": target, "task": {"name": "postgres-restore"}}
    kube.create(restore_session("shop-back", namespace, restore), namespace)
    restored = eventually(
        functools.partial(_ended, kube, RESTORE_SESSIONS, namespace, "shop-back"),
        120,
        "the restore",
    )
    assert restored["phase"] == "Succeeded", restored
    assert postgres.psql(CHECKSUM, database) == original
    assert kube.get(BACKUP_BATCHES, "nightly", namespace)["status"]["phase"] == "Ready"


def test_an_appbinding_annotated_with_a_blueprint_is_backed_up_by_its_addons_task(
    kube: Client,
    namespace: str,
    images: Images,
    postgres: Postgres,
    pushgateway: Service,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    """Stash's database auto-backup: the blueprint names no Task; the AppBinding, as KubeDB
    writes it, names its addon's; the generated ``app-<name>`` backs the database up."""
    _install(kube, images)  # before the operator starts: it watches AppBindings if served
    blueprint = f"pg-{namespace}"
    repo_dir = shared_dir(tmp_path / "repos")
    allow_host_path(kube, namespace)
    storage_secret(kube, namespace)
    kube.create(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupBlueprint",
            "metadata": {"name": blueprint},
            "spec": {
                "backend": {
                    "local": {
                        "mountPath": str(repo_dir),
                        "hostPath": {"path": str(repo_dir)},
                        "subPath": "${TARGET_NAMESPACE}/${TARGET_APP_RESOURCE}/${TARGET_NAME}",
                    },
                    "storageSecretName": "repo-secret",
                },
                "schedule": "*/5 * * * *",
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            },
        }
    )
    try:
        with running_operator(
            control_plane.kubeconfig, pushgateway_url=pushgateway.url, image=images.stash.name
        ):
            shop = _shop(kube, namespace, postgres, {BLUEPRINT_ANNOTATION: blueprint})
            invoker_ready(kube, namespace, "app-shop", rt=BACKUP_CONFIGURATIONS)
            spec = kube.get(BACKUP_CONFIGURATIONS, "app-shop", namespace)["spec"]
            assert spec["task"] == {"name": "postgres-backup"}
            made = create_session(kube, "BackupConfiguration", "app-shop", namespace)
            session = made["metadata"]["name"]
            ended = eventually(
                functools.partial(_ended, kube, BACKUP_SESSIONS, namespace, session), 180, session
            )
            assert ended["phase"] == "Succeeded", ended
    finally:
        kube.delete(BACKUP_BLUEPRINTS, blueprint, missing_ok=True)
    with restic_of(repo_dir / namespace / "postgres" / "shop") as restic:
        snapshot = session_snapshot(restic, session)
        with restic.dump(snapshot.id, "/dumpfile.sql") as stream:
            dump = stream.read().decode()
    assert "CREATE TABLE public.items" in dump
    assert shop.password not in dump
