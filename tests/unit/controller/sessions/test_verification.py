"""When a backup invoker's sessions get verified, and what ``BackupVerified`` then says."""

from __future__ import annotations

import datetime as dt

from api import constants as c
from api.objects import JSON
from controller.invokers.staleness import LastSuccess
from controller.jobs.verify_job import SCRATCH_VOLUME, VERIFY_LABEL, verify_job
from controller.sessions.verification import (
    VerifyRun,
    VerifySettings,
    plan,
    verdict_condition,
    verification_key,
    verify_settings,
)
from engine.verification import SnapshotVerdict, Verdict
from tests.factories import batch

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
LAST = LastSuccess("nightly-100", NOW - 2 * HOUR, NOW - HOUR)
ON = VerifySettings()


def good(session: str = "nightly-100") -> Verdict:
    return Verdict(
        session,
        snapshots=(SnapshotVerdict("Deployment/app", "host-0", "abcd1234", 1, 5, 1, 5),),
        check="no errors were found",
    )


def run(
    name: str,
    session: str,
    *,
    ago: float,
    done: bool = True,
    verdict: Verdict | None = None,
    failure: str = "",
) -> VerifyRun:
    created = NOW - dt.timedelta(hours=ago)
    return VerifyRun(
        name,
        session,
        created,
        done=done,
        finished=created + dt.timedelta(minutes=5) if done else None,
        verdict=verdict if verdict is not None or not done or failure else good(session),
        failure=failure,
    )


def test_a_session_that_just_succeeded_is_verified_after_it() -> None:
    decided = plan(ON, LAST, [], NOW)
    assert decided.create == ("nightly-100", None)
    assert decided.condition is None


def test_nothing_is_verified_before_a_session_succeeded_or_while_paused() -> None:
    assert plan(ON, None, [], NOW).create is None
    assert plan(ON, LAST, [], NOW, paused=True).create is None


def test_no_verification_starts_while_a_session_of_the_invoker_runs() -> None:
    assert plan(ON, LAST, [], NOW, busy=True).create is None
    assert plan(ON, LAST, [], NOW, busy=False).create == ("nightly-100", None)


def test_a_refused_invoker_has_its_running_verification_stopped_and_starts_none() -> None:
    done = run("stash-verify-nightly-90", "nightly-90", ago=5)
    running = run("stash-verify-nightly-100", "nightly-100", ago=0.1, done=False)
    decided = plan(ON, LAST, [done, running], NOW, refused=True)
    assert decided.delete == ("stash-verify-nightly-100",)  # the finished one is the record
    assert decided.create is None
    assert plan(ON, LAST, [], NOW, refused=True).create is None


def test_one_verification_runs_at_a_time() -> None:
    running = run("stash-verify-nightly-90", "nightly-90", ago=0.1, done=False)
    decided = plan(ON, LAST, [running], NOW)
    assert decided.create is None
    assert decided.recheck_at is None  # the Job's own events bring the invoker back


def test_a_verified_session_is_verified_again_once_its_period_passed() -> None:
    done = run("stash-verify-nightly-100", "nightly-100", ago=3)
    assert done.finished is not None
    early = plan(VerifySettings(every=dt.timedelta(hours=24)), LAST, [done], NOW)
    assert early.create is None
    assert early.recheck_at == done.finished + dt.timedelta(hours=24)
    later = plan(VerifySettings(every=HOUR), LAST, [done], NOW)
    assert later.create is not None
    session, again_at = later.create
    assert session == "nightly-100"
    assert again_at == int((done.finished + HOUR).timestamp())  # the same name on every pass


def test_without_after_backup_a_new_session_waits_for_the_period() -> None:
    done = run("stash-verify-nightly-90", "nightly-90", ago=3)
    settings = VerifySettings(after_backup=False, every=dt.timedelta(hours=24))
    assert plan(settings, LAST, [done], NOW).create is None
    assert plan(ON, LAST, [done], NOW).create == ("nightly-100", None)


def test_the_newest_finished_verification_is_the_condition_and_older_ones_go() -> None:
    old = run("stash-verify-nightly-80", "nightly-80", ago=30)
    newer = run("stash-verify-nightly-100", "nightly-100", ago=1)
    decided = plan(ON, LAST, [newer, old], NOW)
    assert decided.delete == ("stash-verify-nightly-80",)
    assert decided.condition is not None
    ok, reason, message = decided.condition
    assert ok
    assert reason == "VerificationSucceeded"
    assert message.startswith("session nightly-100: Deployment/app host host-0 snapshot abcd1234")
    assert "stash-verify-nightly-100" in message


def test_a_verification_that_found_differences_fails_the_condition_in_their_words() -> None:
    bad = Verdict(
        "nightly-100",
        snapshots=(
            SnapshotVerdict(
                "Deployment/app",
                "host-0",
                "abcd1234",
                1,
                5,
                1,
                5,
                problems=("/data/a.txt: restic: ciphertext verification failed",),
            ),
        ),
    )
    ok, reason, message = verdict_condition(run("j", "nightly-100", ago=1, verdict=bad))
    assert not ok
    assert reason == "VerificationFailed"
    assert "/data/a.txt: restic: ciphertext verification failed" in message


def test_a_job_that_ended_without_a_verdict_is_not_a_verification() -> None:
    ended = run("j", "nightly-100", ago=1, failure="DeadlineExceeded: Job was active longer")
    ok, reason, message = verdict_condition(ended)
    assert not ok
    assert reason == "VerificationNotCompleted"
    assert "DeadlineExceeded" in message


def test_turning_verification_off_removes_its_condition_and_jobs() -> None:
    done = run("stash-verify-nightly-100", "nightly-100", ago=1)
    decided = plan(VerifySettings(enabled=False), LAST, [done], NOW)
    assert decided.remove_condition
    assert decided.delete == ("stash-verify-nightly-100",)
    assert decided.create is None


def test_planning_twice_on_the_same_state_decides_the_same() -> None:
    done = run("stash-verify-nightly-100", "nightly-100", ago=30)
    assert plan(ON, LAST, [done], NOW) == plan(ON, LAST, [done], NOW)


def test_the_annotations_tune_verification_and_a_bad_one_is_named() -> None:
    invoker = batch("nightly", "demo", schedule="0 * * * *")
    invoker["metadata"]["annotations"] = {
        c.VERIFY_EVERY_ANNOTATION: "6h",
        c.VERIFY_MAX_BYTES_ANNOTATION: "200Mi",
        c.VERIFY_AFTER_BACKUP_ANNOTATION: "false",
    }
    settings = verify_settings(invoker)
    assert settings.every == dt.timedelta(hours=6)
    assert settings.max_bytes == 200 << 20
    assert not settings.after_backup
    assert settings.enabled
    invoker["metadata"]["annotations"] = {
        c.VERIFY_ANNOTATION: "False",
        c.VERIFY_MAX_BYTES_ANNOTATION: "lots",
    }
    settings = verify_settings(invoker)
    assert not settings.enabled
    assert settings.max_bytes == 1 << 30
    assert "verify-max-bytes" in settings.problems[0]


def invoker_with_uid() -> JSON:
    invoker = batch("nightly", "demo", schedule="0 * * * *")
    invoker["metadata"]["uid"] = "u-1"
    return invoker


def test_the_verification_job_runs_in_the_invokers_namespace_as_its_backup_account() -> None:
    job = verify_job(
        invoker_with_uid(), "nightly-100", None, None, image="stash:dev", max_bytes=1 << 20
    )
    meta, pod = job["metadata"], job["spec"]["template"]["spec"]
    assert meta["name"] == "stash-verify-nightly-100"
    assert meta["namespace"] == "demo"
    assert meta["ownerReferences"][0]["uid"] == "u-1"
    assert pod["serviceAccountName"] == "stash-backup-nightly"
    assert pod["securityContext"]["runAsNonRoot"] is True
    scratch = next(v for v in pod["volumes"] if v["name"] == SCRATCH_VOLUME)
    assert scratch["emptyDir"]["sizeLimit"] == str((1 << 20) + (64 << 20))
    args = pod["containers"][0]["args"]
    assert args[0] == "verify-backup"
    assert "--backupsession=nightly-100" in args
    assert "--max-bytes=1048576" in args
    assert verification_key(job) == ["demo/BackupBatch/nightly"]
    assert meta["labels"][VERIFY_LABEL] == "nightly"


def test_a_verification_again_gets_its_own_name() -> None:
    job = verify_job(invoker_with_uid(), "nightly-100", 1765000000, None, image="i", max_bytes=1)
    assert job["metadata"]["name"] == "stash-verify-nightly-100-1765000000"
