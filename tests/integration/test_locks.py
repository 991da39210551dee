"""Locks left in a repository by pods that are gone are removed; a live pod's lock never is.

The locks are real restic locks taken under other pods' host names (restic run in its own UTS
namespace with that host name, as in that pod), the holders real pods on the node."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster.images import Images
from devcluster.services import Service
from engine.backend import backend_config
from engine.locks import CLOCK_SKEW, Here, Holders, clear_stale_locks
from engine.restic import Restic
from kube import Client, NotFound
from kube.types import EVENTS, PODS
from tests.integration.conftest import REST_PASSWORD, REST_USER
from tests.integration.helpers import eventually
from tests.integration.test_restic import PASSWORD, repository


@pytest.fixture(params=["local", "rest"])
def restic(
    request: pytest.FixtureRequest, tmp_path: Path, rest_server: Service
) -> Iterator[Restic]:
    secret = {"RESTIC_PASSWORD": PASSWORD}
    if request.param == "local":
        repo = repository({"local": {"mountPath": str(tmp_path / "repo"), "hostPath": {}}})
    else:
        repo = repository({"rest": {"url": f"{rest_server.url}/{tmp_path.name}/"}})
        secret.update(REST_SERVER_USERNAME=REST_USER, REST_SERVER_PASSWORD=REST_PASSWORD)
    with Restic(backend_config(repo, secret)) as wrapper:
        wrapper.init_if_missing()
        yield wrapper


def _lock_as(restic: Restic, hostname: str) -> subprocess.Popen[bytes]:
    """A restic backup holding its lock under ``hostname`` until killed (it waits on stdin)."""
    command = restic._command(["backup", "--stdin", "--host", "host-0"])
    proc = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=restic._environ(),
    )

    def taken() -> bool:
        return any(
            (info := restic.lock(i)) is not None and info.hostname == hostname
            for i in restic.locks()
        )

    eventually(taken, 30, f"restic to take its lock as {hostname}")
    return proc


def _killed(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _holder_pod(kube: Client, namespace: str, name: str, image: str) -> dict[str, Any]:
    """A running pod named ``name`` whose ``stash`` container is where its restic would run."""
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "containers": [{"name": "stash", "image": image, "command": ["sleep", "infinity"]}],
                "terminationGracePeriodSeconds": 0,
            },
        },
        namespace,
    )

    def running() -> dict[str, Any] | None:
        pod = kube.get(PODS, name, namespace)
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return pod if statuses and (statuses[0].get("state") or {}).get("running") else None

    return eventually(running, 120, f"pod {name} to run")


def _gone(kube: Client, namespace: str, name: str) -> None:
    kube.delete(PODS, name, namespace)

    def deleted() -> bool:
        try:
            kube.get(PODS, name, namespace)
        except NotFound:
            return True
        return False

    eventually(deleted, 60, f"pod {name} to go")


def _holders(kube: Client, namespace: str) -> Holders:
    def pod(name: str) -> dict[str, Any] | None:
        try:
            return kube.get(PODS, name, namespace)
        except NotFound:
            return None

    where = Here(
        hostname="backup-pod",
        pod_name="backup-pod",
        namespace=namespace,
        started=dt.datetime.now(dt.UTC),
        repository_only_here=True,
    )

    def was_pod(name: str) -> bool:
        selector = f"involvedObject.kind=Pod,involvedObject.name={name}"
        return bool(kube.list(EVENTS, namespace, field_selector=selector)["items"])

    return Holders(where, pod, lambda: list(kube.list(PODS, namespace)["items"]), was_pod)


def _hosts(restic: Restic) -> list[str]:
    return sorted(info.hostname for i in restic.locks() if (info := restic.lock(i)))


def test_locks_of_gone_and_restarted_pods_are_removed_and_a_live_pods_lock_is_kept(
    restic: Restic, kube: Client, namespace: str, images: Images
) -> None:
    _holder_pod(kube, namespace, "holder-live", images.app.name)
    live = _lock_as(restic, "holder-live")
    try:
        # A pod killed mid-backup and gone since (its Events still say it was here).
        _holder_pod(kube, namespace, "holder-gone", images.app.name)
        _killed(_lock_as(restic, "holder-gone"))
        _gone(kube, namespace, "holder-gone")
        _killed(_lock_as(restic, "holder-restarted"))
        # The pod of that name (re)starts clearly after its lock was taken (beyond the clock
        # skew allowed): its restic cannot be the one that took it.
        taken = time.monotonic()
        eventually(lambda: time.monotonic() - taken > CLOCK_SKEW.total_seconds() + 1, 10, "skew")
        _holder_pod(kube, namespace, "holder-restarted", images.app.name)
        assert _hosts(restic) == ["holder-gone", "holder-live", "holder-restarted"]

        removed = clear_stale_locks(restic, _holders(kube, namespace))
        if restic.config.repository.startswith("/"):
            # Each dead lock removed on its own; the live one stays.
            assert removed == 2
            assert _hosts(restic) == ["holder-live"]
        else:
            # No command removes one lock of a remote repository: with a live one there,
            # nothing is removed (restic ignores the dead ones after 30 minutes).
            assert removed == 0
            assert _hosts(restic) == ["holder-gone", "holder-live", "holder-restarted"]
    finally:
        _killed(live)
    # The live holder's backup is killed and its pod goes: now every lock is dead.
    _gone(kube, namespace, "holder-live")
    clear_stale_locks(restic, _holders(kube, namespace))
    assert restic.locks() == []
