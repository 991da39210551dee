"""What the sidecar backs up, and as which host."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from typing import Any

import pytest

from agent.run_backup import (
    AgentOptions,
    FinishClaimed,
    SidecarAgent,
    ended_words,
    orphaned_claim,
    pending_work,
    sidecar_step,
)
from api.hosts import Identity
from kube import NotFound
from tests.factories import batch, deadline_exceeded, member

WEB = Identity("demo", "Deployment", "web", "web-6d4cf-k2x9q")


def session(phase: str = "Running", target_phase: str = "Running", **extra: Any) -> dict[str, Any]:
    target = {"ref": {"kind": "Deployment", "name": "web"}, "phase": target_phase, **extra}
    return {
        "metadata": {"name": "nightly-1", "namespace": "demo"},
        "spec": {"invoker": {"kind": "BackupBatch", "name": "nightly"}},
        "status": {"phase": phase, "targets": [target]},
    }


def test_hostnames_follow_stash_per_workload_kind() -> None:
    assert WEB.hostname(None) == "host-0"
    assert WEB.hostname("frontend") == "frontend"
    assert Identity("demo", "StatefulSet", "db", "db-12").hostname(None) == "host-12"
    assert Identity("demo", "DaemonSet", "agent", "agent-x", "node-3").hostname(None) == "node-3"
    with pytest.raises(ValueError, match="NODE_NAME"):
        Identity("demo", "DaemonSet", "agent", "agent-x").hostname(None)


def test_only_deployment_like_workloads_elect_one_pod() -> None:
    assert WEB.elects
    assert WEB.lease_name == "stash-sidecar-deployment-web"
    assert not Identity("demo", "StatefulSet", "db", "db-0").elects


def test_a_running_session_whose_target_started_is_backed_up() -> None:
    work = pending_work(session(), batch("nightly", "demo", member()), WEB)
    assert work is not None
    assert (work.session, work.hostname) == ("nightly-1", "host-0")
    chosen = work.member()
    assert chosen is not None
    assert chosen.target is not None
    assert chosen.target.paths == ["/data"]


def test_deciding_about_a_session_loads_none_of_the_backups_machinery() -> None:
    script = (
        "import sys\n"
        "from api.hosts import Identity\n"
        "from agent.run_backup import pending_work\n"
        "from tests.factories import batch, member\n"
        "from tests.unit.agent.test_run_backup import WEB, session\n"
        "assert pending_work(session(), batch('nightly', 'demo', member()), WEB)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'prometheus_client', 'fastapi', 'cryptography', 'kubernetes'))\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""


@pytest.mark.parametrize(
    ("sess", "why"),
    [
        (session(phase="Pending"), "the session has not started"),
        (session(target_phase="Pending"), "Sequential: an earlier member runs first"),
        (session(target_phase="Succeeded"), "the target is settled"),
        (session(stats=[{"hostname": "host-0", "phase": "Succeeded"}]), "already backed up"),
    ],
)
def test_nothing_is_backed_up_twice_or_too_early(sess: dict[str, Any], why: str) -> None:
    assert pending_work(sess, batch("nightly", "demo", member()), WEB) is None, why


def test_sessions_of_other_invokers_or_workloads_are_ignored() -> None:
    other = batch("other", "demo", member())
    assert pending_work(session(), other, WEB) is None
    assert pending_work(session(), None, WEB) is None
    pvc_only = batch("nightly", "demo", member("PersistentVolumeClaim", "web", task="pvc-backup"))
    assert pending_work(session(), pvc_only, WEB) is None


def test_long_workload_names_get_distinct_leases() -> None:
    first = Identity("demo", "Deployment", "a" * 300 + "-blue", "p").lease_name
    second = Identity("demo", "Deployment", "a" * 300 + "-green", "p").lease_name
    assert first != second
    assert len(first) <= 253


class _Listing:
    """A namespace's sessions as the API server lists them (one page)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.events: list[dict[str, Any]] = []  # what the next watch delivers
        self.now: dict[str, Any] | None = None  # the session a look finds (None: not found)

    def list(self, rt: Any, namespace: str | None, **_: Any) -> dict[str, Any]:
        return {"items": self.items, "metadata": {"resourceVersion": "9"}}

    def watch(self, rt: Any, namespace: str | None, **_: Any) -> Any:
        return iter(self.events)

    def get(self, rt: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        if self.now is not None and self.now["metadata"]["name"] == name:
            return self.now
        raise NotFound(f"backupsessions {name} not found")


def test_the_sidecar_holds_no_finished_session_of_its_namespaces_history() -> None:
    def named(name: str, phase: str) -> dict[str, Any]:
        s = session(phase=phase)
        s["metadata"]["name"] = name
        return s

    history = [named(f"nightly-{i}", ("Succeeded", "Failed", "Skipped")[i % 3]) for i in range(300)]
    listing = _Listing([*history, named("nightly-301", "Running"), named("nightly-302", "Pending")])
    agent = SidecarAgent(listing, WEB, AgentOptions())  # type: ignore[arg-type]

    agent.sessions._list()

    held = sorted(s["metadata"]["name"] for s in agent.sessions.items())
    assert held == ["nightly-301", "nightly-302"]


def test_a_sidecar_that_comes_back_after_the_deadline_backs_up_nothing_nobody_would_count() -> None:
    sess = session()
    sess["status"]["sessionDeadline"] = "2026-01-01T10:10:00Z"
    invoker = batch("nightly", "demo", member())
    before = dt.datetime(2026, 1, 1, 10, 9, tzinfo=dt.UTC)
    after = dt.datetime(2026, 1, 1, 10, 11, tzinfo=dt.UTC)
    assert pending_work(sess, invoker, WEB, before) is not None
    assert pending_work(sess, invoker, WEB, after) is None


def _claimed(holder: str, *recorded: str) -> dict[str, Any]:
    sess = session(target_phase="Succeeded", stats=[{"hostname": "host-0", "phase": "Succeeded"}])
    conditions = [{"type": "RepositoryWorkClaimed", "status": "True", "message": holder}]
    conditions += [{"type": kind, "status": "True"} for kind in recorded]
    sess["status"]["conditions"] = conditions
    return sess


def test_a_restarted_sidecar_takes_up_the_repository_work_its_earlier_container_claimed() -> None:
    invoker = batch("nightly", "demo", member())
    mine = "pod:demo/web-6d4cf-k2x9q"
    assert orphaned_claim(_claimed(mine), invoker, WEB)
    assert orphaned_claim(_claimed(mine, "RetentionPolicyApplied"), invoker, WEB)  # half done
    done = _claimed(mine, "RetentionPolicyApplied", "RepositoryIntegrityVerified")
    assert not orphaned_claim(done, invoker, WEB)
    assert not orphaned_claim(_claimed("pod:demo/web-6d4cf-other"), invoker, WEB)  # alive?
    assert not orphaned_claim(_claimed("pod:elsewhere/web-6d4cf-k2x9q"), invoker, WEB)
    assert not orphaned_claim(_claimed(mine), None, WEB)
    ended = _claimed(mine)
    ended["status"]["phase"] = "Failed"
    assert not orphaned_claim(ended, invoker, WEB)
    # nobody's claim: the sidecar does not take up what nobody dropped
    assert not orphaned_claim(session(), invoker, WEB)


def _ended_at_deadline() -> dict[str, Any]:
    sess = session(phase="Failed", target_phase="Failed")
    sess["status"]["conditions"] = [
        deadline_exceeded("the backup did not finish by 2026-01-01T10:10:00Z")
    ]
    return sess


def test_a_backup_under_way_is_stopped_when_its_session_ends_at_the_deadline() -> None:
    listing = _Listing([session()])
    agent = SidecarAgent(listing, WEB, AgentOptions())  # type: ignore[arg-type]
    agent.sessions._list()
    # a watch selecting unfinished sessions says DELETED, with the session as it was before
    listing.events = [{"type": "DELETED", "object": session()}]
    listing.now = _ended_at_deadline()
    with agent.in_flight("nightly-1") as cancel:
        assert cancel.reason is None
        agent.sessions._watch("9")
        assert cancel.reason == (
            "session nightly-1 ended Failed at its deadline: the backup did not finish by "
            "2026-01-01T10:10:00Z"
        )


def test_a_backup_is_stopped_when_its_session_is_deleted_or_gone_from_a_relist() -> None:
    listing = _Listing([session()])
    agent = SidecarAgent(listing, WEB, AgentOptions())  # type: ignore[arg-type]
    agent.sessions._list()
    listing.events = [{"type": "DELETED", "object": session()}]
    with agent.in_flight("nightly-1") as cancel:
        agent.sessions._watch("9")
        assert cancel.reason == "session nightly-1 was deleted"
    listing.items = [session()]
    agent.sessions._list()
    with agent.in_flight("nightly-1") as cancel:
        listing.items = []
        agent.sessions._list()  # missed while the watch was down
        assert cancel.reason == "session nightly-1 is no longer running"


def test_work_for_a_session_that_already_ended_is_stopped_before_it_starts() -> None:
    agent = SidecarAgent(_Listing([]), WEB, AgentOptions())  # type: ignore[arg-type]
    agent.sessions._list()
    with agent.in_flight("nightly-1") as cancel:
        assert cancel.reason == "session nightly-1 is no longer running"


def test_other_sessions_ending_leave_a_backup_under_way_alone() -> None:
    other = _ended_at_deadline()
    other["metadata"]["name"] = "nightly-0"
    listing = _Listing([session()])
    agent = SidecarAgent(listing, WEB, AgentOptions())  # type: ignore[arg-type]
    agent.sessions._list()
    listing.events = [{"type": "MODIFIED", "object": other}]
    with agent.in_flight("nightly-1") as cancel:
        agent.sessions._watch("9")
        assert cancel.reason is None


def test_a_session_that_ended_otherwise_is_named_by_its_phase() -> None:
    assert ended_words(session(phase="Succeeded")) == (
        "session nightly-1 ended Succeeded before this host finished"
    )
    assert ended_words(session()) == "session nightly-1 is no longer running"


def test_a_restarted_sidecar_that_lost_the_election_still_does_the_work_it_claimed() -> None:
    invoker = batch("nightly", "demo", member())
    claimed = _claimed("pod:demo/web-6d4cf-k2x9q")
    assert sidecar_step(claimed, invoker, WEB, leading=False) == FinishClaimed("nightly-1")
    assert sidecar_step(claimed, invoker, WEB, leading=True) == FinishClaimed("nightly-1")
    # another pod's claim, or none: a pod that does not lead does nothing
    assert sidecar_step(_claimed("pod:demo/web-6d4cf-other"), invoker, WEB, leading=False) is None
    assert sidecar_step(session(), invoker, WEB, leading=False) is None
    work = sidecar_step(session(), invoker, WEB, leading=True)
    assert work is not None
    assert not isinstance(work, FinishClaimed)
    assert work.hostname == "host-0"
