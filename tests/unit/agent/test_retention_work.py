"""The last host's retention, as it decides what to forget: the last good backup stays whatever
the policy says, and nothing goes when which one it is cannot be told."""

from __future__ import annotations

from typing import Any, cast

from agent.host_backup import HostJob, _apply_retention, _last_good
from api.common import RetentionPolicy
from engine import retention
from engine.restic import Restic, Snapshot
from kube import Client, KubeError

DATA = "target:PersistentVolumeClaim/data"
JOB = HostJob(
    "demo", "nightly-3", "BackupBatch", "nightly", "PersistentVolumeClaim", "data", "host-0"
)


class Repository:
    """A repository's snapshots; ``forget_ids`` removes them (what restic would do)."""

    def __init__(self, *snapshots: Snapshot) -> None:
        self.snapshots = list(snapshots)

    def forget_ids(self, *ids: str, prune: bool = False) -> None:
        self.snapshots = [s for s in self.snapshots if s.id not in ids]


def snap(ident: str, day: int) -> Snapshot:
    return Snapshot(ident, ident[:8], f"2026-12-0{day}T01:00:00Z", "host-0", ("/data",), (DATA,))


def test_the_last_good_backup_survives_a_policy_that_would_remove_it() -> None:
    repo = Repository(snap("a" * 64, 1), snap("b" * 64, 2), snap("c" * 64, 3))
    good = retention.LastGood("nightly-2", frozenset({"b" * 64}))
    applied, removed = _apply_retention(
        cast(Restic, repo),
        RetentionPolicy(name="one", keep_last=1),
        [DATA],
        list(repo.snapshots),
        guard=retention.Guard(share=1.0),
        confirm="",
        good=good,
    )
    assert [s.id[0] for s in repo.snapshots] == ["b", "c"]
    assert removed == 1
    assert applied.ok
    assert applied.message == (
        "policy one: removed 1 snapshot(s) (PersistentVolumeClaim/data 1); kept 1 snapshot(s) "
        "the policy would remove: those of nightly-2, the last session that succeeded (the "
        "last good backup is never removed)"
    )


class Refusing:
    def list(self, *args: Any, **kwargs: Any) -> Any:
        raise KubeError("backupsessions is forbidden", 403)


def test_when_the_sessions_cannot_be_read_the_last_good_backup_is_not_known() -> None:
    good, why = _last_good(cast(Client, Refusing()), JOB)
    assert good is None
    assert why == "the invoker's sessions could not be listed (backupsessions is forbidden)"
