"""Wrong specs are named field by field: each check of controller.invokers.validation, and the
invoker becoming Invalid (or NotReady) with that message."""

from __future__ import annotations

from typing import Any

import pytest

from api import constants as c
from api.conditions import get_condition
from controller.invokers import validation
from controller.invokers.evaluation import InvokerFacts, evaluate, members_of
from tests.factories import batch, member
from tests.unit.controller.invokers.test_evaluation import T0, good_facts, repository


@pytest.mark.parametrize(
    "schedule",
    ["0 0 31 2 *", "0 0 30,31 feb *", "0 0 31 4,6,9,11 *", "0 0 30-31 2 *"],
)
def test_a_schedule_naming_no_real_day_never_fires(schedule: str) -> None:
    assert validation.never_fires(schedule) is not None


@pytest.mark.parametrize(
    "schedule",
    ["0 0 29 2 *", "0 0 31 1-12 *", "0 0 31 2 mon", "*/5 * * * *", "@daily", "0 0 31 */2 *"],
)
def test_a_schedule_that_fires_some_day_passes(schedule: str) -> None:
    assert validation.never_fires(schedule) is None


@pytest.mark.parametrize(
    ("paths", "says"),
    [
        (None, "needs at least one path"),
        ([], "needs at least one path"),
        ([""], "[0]: a path must not be empty"),
        (["/ok", "data"], "[1]: 'data' is relative"),
        (["/data/../etc"], "contains '..'"),
    ],
)
def test_paths_must_be_absolute_and_plain(paths: list[str] | None, says: str) -> None:
    problems = validation.path_problems(paths, "spec.members[0].target.paths")
    assert any(says in p for p in problems), problems


def test_mounts_must_name_the_workloads_volumes_and_stay_off_tmp() -> None:
    mounts = [{"name": "data", "mountPath": "/tmp"}, {"name": "gone", "mountPath": "/x"}]
    problems = validation.mount_problems(mounts, "w", frozenset({"data"}))
    assert problems == [
        "w[0].mountPath: /tmp is the stash sidecar's own scratch space; mount the volume elsewhere",
        "w[1].name: the workload has no volume 'gone' (it has: data)",
    ]
    assert validation.mount_problems(mounts[1:], "w", None) == []  # workload not known yet
    nested = [{"name": "data", "mountPath": "/tmp/app-data"}]
    assert validation.mount_problems(nested, "w", frozenset({"data"})) == []


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            {"retentionPolicy": {"name": "r", "keepLast": 10**9}},
            "spec.retentionPolicy.keepLast: 1000000000 is beyond any sane bound",
        ),
        (
            {"retentionPolicy": {"name": "r", "keepTags": ["monthly"]}},
            "spec.retentionPolicy.keepTags: monthly alone keeps only snapshots carrying those tags",
        ),
        ({"timeOut": "0s"}, "spec.timeOut: 0s would fail every session at once"),
        ({"timeOut": "100000h"}, "spec.timeOut: 100000h is longer than 30 days"),
        # more hours than a date can hold: a condition, not a reconcile raising for ever
        ({"timeOut": "99999999999h"}, "spec.timeOut: 99999999999h is longer than 30 days"),
        ({"timeOut": "9" * 400 + "s"}, "is longer than 30 days"),
        (
            {"retryConfig": {"maxRetry": 2, "delay": "99999999999h"}},
            "spec.retryConfig.delay: 99999999999h is longer than",
        ),
        ({"retryConfig": {"maxRetry": 1000000}}, "spec.retryConfig.maxRetry: 1000000 is more"),
        ({"retryConfig": {"maxRetry": 2, "delay": "0s"}}, "spec.retryConfig.delay: 0s would"),
    ],
)
def test_absurd_settings_make_the_invoker_invalid(change: dict[str, Any], says: str) -> None:
    obj = batch()
    obj["spec"].update(change)
    status = evaluate(obj, good_facts(obj), now=T0)
    assert status.phase == "Invalid"
    assert any(says in p for p in status.problems), status.problems


@pytest.mark.parametrize(
    ("temp_dir", "says"),
    [
        ({"medium": "Disk"}, "spec.members[0].tempDir.medium: 'Disk' is not an emptyDir medium"),
        ({"sizeLimit": "lots"}, "spec.members[0].tempDir.sizeLimit: 'lots' is not a quantity"),
    ],
)
def test_a_temp_dir_must_be_an_empty_dir(temp_dir: dict[str, Any], says: str) -> None:
    one = member()
    one["tempDir"] = temp_dir
    obj = batch("b", "demo", one)
    problems = evaluate(obj, good_facts(obj), now=T0).problems
    assert any(says in p for p in problems), problems


@pytest.mark.parametrize("temp_dir", [{"medium": "Memory", "sizeLimit": "1Gi"}, {"medium": ""}])
def test_a_proper_temp_dir_passes(temp_dir: dict[str, Any]) -> None:
    assert validation.temp_dir_problems(temp_dir, "t") == []


def test_a_mount_of_a_volume_the_workload_lacks_is_named() -> None:
    obj = batch("b", "demo", member(mounts=(("cache", "/cache"),)))
    facts = InvokerFacts(
        repository=repository(),
        secret_found=True,
        targets_found={0: True},
        workload_volumes={0: frozenset({"data"})},
    )
    status = evaluate(obj, facts, now=T0)
    assert status.phase == "Invalid"
    assert (
        "spec.members[0].target.volumeMounts[0].name: the workload has no volume 'cache' "
        "(it has: data)" in status.problems
    )


def test_a_task_that_does_not_exist_is_named() -> None:
    obj = batch("b", "demo", member("PersistentVolumeClaim", "data", task="pvc-bakup"))
    facts = InvokerFacts(
        repository=repository(),
        secret_found=True,
        targets_found={0: True},
        tasks_found={"pvc-bakup": False},
    )
    assert "spec.members[0].task.name: Task pvc-bakup not found" in (
        evaluate(obj, facts, now=T0).problems
    )


def test_a_schedule_the_api_server_refused_is_named() -> None:
    obj = batch(schedule="0 0 * * 7")
    facts = InvokerFacts(
        repository=repository(),
        secret_found=True,
        targets_found={0: True},
        schedule_problem="end of range (7) above maximum (6): 7",
    )
    assert "spec.schedule: end of range (7) above maximum (6): 7" in (
        evaluate(obj, facts, now=T0).problems
    )


def test_a_storage_secret_without_the_restic_password_is_named() -> None:
    obj = batch()
    facts = InvokerFacts(
        repository=repository(),
        secret_found=True,
        secret_keys=frozenset({"AWS_ACCESS_KEY_ID"}),
        targets_found={0: True},
    )
    status = evaluate(obj, facts, now=T0)
    assert status.phase == "NotReady"  # the Secret can still be fixed
    found = get_condition(status.conditions, c.BACKEND_SECRET_FOUND)
    assert found is not None
    assert found["status"] == "False"
    assert "Secret demo/s has no RESTIC_PASSWORD key" in found["message"]


def test_an_unknown_selector_operator_refuses_the_repository_naming_the_field() -> None:
    repo = repository(
        "other",
        **{"from": "Selector", "selector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}},
    )
    obj = batch()
    facts = InvokerFacts(repository=repo, secret_found=True, targets_found={0: True})
    found = get_condition(evaluate(obj, facts, now=T0).conditions, c.REPOSITORY_FOUND)
    assert found is not None
    assert found["status"] == "False"
    assert "matchExpressions[0].operator: 'Is' is not one of In, NotIn" in found["message"]


def test_the_sample_members_pass() -> None:
    obj = batch()
    assert evaluate(obj, good_facts(obj), now=T0).phase == "Ready"
    assert members_of(obj)[0].where == "spec.members[0]"


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "metadata.google.internal",
        "fe80::1",
        "[fd00:ec2::254]",
        "0.0.0.0",  # noqa: S104 - a hook host under test, nothing binds it
        "::ffff:169.254.169.254",
    ],
)
def test_a_hook_may_not_call_a_metadata_or_link_local_address(host: str) -> None:
    one = member()
    one["hooks"] = {"preBackup": {"httpGet": {"host": host, "port": 80}}}
    obj = batch("b", "demo", one, hooks={"postBackup": {"tcpSocket": {"host": host, "port": 1}}})
    problems = evaluate(obj, good_facts(obj), now=T0).problems
    assert any(
        p.startswith(f"spec.members[0].hooks.preBackup.httpGet.host: {host} is") for p in problems
    ), problems
    assert any(
        p.startswith(f"spec.hooks.postBackup.tcpSocket.host: {host} is") for p in problems
    ), problems


@pytest.mark.parametrize("host", ["127.0.0.1", "db.prod.svc", "10.0.0.5", "2001:db8::1"])
def test_an_ordinary_hook_host_passes(host: str) -> None:
    assert validation.hook_problems({"preBackup": {"httpGet": {"host": host}}}, "h") == []


@pytest.mark.parametrize(
    "retention",
    [
        {"name": "r", "keepTags": ["monthly"], "keepLast": 3},
        {"name": "r", "keepTags": ["namespace:demo"]},
        {"name": "r", "keepTags": ["monthly", "target:Deployment/web,namespace:demo"]},
    ],
)
def test_a_keep_tags_policy_that_can_keep_something_passes(retention: dict[str, Any]) -> None:
    obj = batch()
    obj["spec"]["retentionPolicy"] = retention
    assert not [p for p in evaluate(obj, good_facts(obj), now=T0).problems if "keepTags" in p]
