"""The opt-in decision: add label and hash for targets, remove only what the operator added."""

from __future__ import annotations

import copy
from typing import Any

from api.constants import BACKUP_LABEL, RESTORE_ANNOTATION
from api.objects import JSON
from controller.invokers.optin import (
    HASH_ANNOTATION,
    MANAGED_ANNOTATION,
    OptInReconciler,
    desired_patch,
    pods_carry,
    pods_to_ask,
)


def merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    out = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def deployment(*, labelled: bool = False, annotations: JSON | None = None) -> JSON:
    labels = {"app": "web"}
    if labelled:
        labels[BACKUP_LABEL] = "enabled"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo", "annotations": annotations or {}},
        "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": []}}},
    }


def _template_meta(obj: JSON) -> JSON:
    meta: JSON = obj["spec"]["template"]["metadata"]
    return meta


def test_a_targeted_workload_gets_the_label_the_hash_and_the_managed_mark() -> None:
    patched = merge_patch(deployment(), desired_patch(deployment(), "abc"))
    assert _template_meta(patched)["labels"] == {"app": "web", BACKUP_LABEL: "enabled"}
    assert _template_meta(patched)["annotations"] == {HASH_ANNOTATION: "abc"}
    assert patched["metadata"]["annotations"] == {MANAGED_ANNOTATION: "true"}


def test_reconciling_twice_changes_nothing_the_second_time() -> None:
    once = merge_patch(deployment(), desired_patch(deployment(), "abc"))
    assert desired_patch(once, "abc") is None


def test_a_changed_plan_changes_only_the_hash() -> None:
    once = merge_patch(deployment(), desired_patch(deployment(), "abc"))
    assert desired_patch(once, "def") == {
        "spec": {"template": {"metadata": {"annotations": {HASH_ANNOTATION: "def"}}}}
    }


def test_an_untargeted_workload_loses_what_the_operator_added() -> None:
    once = merge_patch(deployment(), desired_patch(deployment(), "abc"))
    twice = merge_patch(once, desired_patch(once, None))
    assert _template_meta(twice)["labels"] == {"app": "web"}
    assert _template_meta(twice)["annotations"] == {}
    assert twice["metadata"]["annotations"] == {}
    assert desired_patch(twice, None) is None


def test_a_label_the_user_wrote_is_kept_when_targets_go_away() -> None:
    gitops = deployment(labelled=True)
    targeted = merge_patch(gitops, desired_patch(gitops, "abc"))
    assert MANAGED_ANNOTATION not in targeted["metadata"]["annotations"]
    released = merge_patch(targeted, desired_patch(targeted, None))
    assert _template_meta(released)["labels"][BACKUP_LABEL] == "enabled"
    assert HASH_ANNOTATION not in _template_meta(released).get("annotations", {})


def test_an_untouched_workload_is_left_alone() -> None:
    assert desired_patch(deployment(), None) is None
    assert desired_patch(deployment(labelled=True), None) is None


def test_a_workload_being_restored_is_opted_in_and_rolled_once_for_the_restore() -> None:
    patched = merge_patch(deployment(), desired_patch(deployment(), None, ("uid-1",)))
    assert _template_meta(patched)["labels"][BACKUP_LABEL] == "enabled"
    assert _template_meta(patched)["annotations"] == {RESTORE_ANNOTATION: "uid-1"}
    assert desired_patch(patched, None, ("uid-1",)) is None  # rolled once, not again


def test_a_second_restore_rolls_the_pods_again() -> None:
    once = merge_patch(deployment(), desired_patch(deployment(), None, ("uid-1",)))
    again = desired_patch(once, None, ("uid-1", "uid-2"))
    assert again == {
        "spec": {"template": {"metadata": {"annotations": {RESTORE_ANNOTATION: "uid-1,uid-2"}}}}
    }


def test_the_end_of_a_restore_leaves_the_restore_mark_and_a_backed_up_workload_as_it_is() -> None:
    backed = merge_patch(deployment(), desired_patch(deployment(), "abc", ("uid-1",)))
    assert desired_patch(backed, "abc") is None


def test_the_end_of_a_restore_takes_the_operators_label_off_a_workload_nobody_backs_up() -> None:
    restoring = merge_patch(deployment(), desired_patch(deployment(), None, ("uid-1",)))
    done = merge_patch(restoring, desired_patch(restoring, None))
    assert BACKUP_LABEL not in _template_meta(done)["labels"]
    assert _template_meta(done)["annotations"] == {RESTORE_ANNOTATION: "uid-1"}


def _pod(fingerprint: str | None, *, sidecar: bool = True) -> JSON:
    annotations = {HASH_ANNOTATION: fingerprint} if fingerprint else {}
    containers = [
        {"name": "app"},
        *([{"name": "stash", "args": ["run-backup"]}] if sidecar else []),
    ]
    return {"metadata": {"annotations": annotations}, "spec": {"containers": containers}}


def test_a_workload_opted_in_by_its_own_label_whose_pods_are_current_is_not_rolled() -> None:
    gitops = deployment(labelled=True)
    assert pods_to_ask(gitops, "abc")
    assert pods_carry([_pod("abc"), _pod("abc")], "abc")
    patch = desired_patch(gitops, "abc", pods_current=True)
    patched = merge_patch(gitops, patch)
    assert _template_meta(patched) == _template_meta(gitops)  # the template is untouched
    assert patched["metadata"]["annotations"] == {HASH_ANNOTATION: "abc"}
    assert not pods_to_ask(patched, "abc")
    assert desired_patch(patched, "abc") is None  # reconciled again: nothing to write


def test_pods_without_the_current_sidecar_are_rolled_by_marking_the_template() -> None:
    gitops = deployment(labelled=True)
    assert not pods_carry([_pod("abc"), _pod(None, sidecar=False)], "abc")
    assert not pods_carry([_pod("old")], "abc")
    patched = merge_patch(gitops, desired_patch(gitops, "abc", pods_current=False))
    assert _template_meta(patched)["annotations"] == {HASH_ANNOTATION: "abc"}


def test_a_plan_that_changes_after_the_hash_was_recorded_on_the_workload_rolls_the_pods() -> None:
    recorded = merge_patch(
        deployment(labelled=True),
        desired_patch(deployment(labelled=True), "abc", pods_current=True),
    )
    assert pods_to_ask(recorded, "def")
    changed = merge_patch(recorded, desired_patch(recorded, "def", pods_current=False))
    assert _template_meta(changed)["annotations"] == {HASH_ANNOTATION: "def"}


def test_the_recorded_hash_goes_when_nothing_targets_the_workload_any_more() -> None:
    recorded = merge_patch(
        deployment(labelled=True),
        desired_patch(deployment(labelled=True), "abc", pods_current=True),
    )
    gone = merge_patch(recorded, desired_patch(recorded, None))
    assert HASH_ANNOTATION not in (gone["metadata"].get("annotations") or {})
    assert _template_meta(gone)["labels"][BACKUP_LABEL] == "enabled"  # the user's label stays


def test_only_a_workload_opted_in_by_its_own_label_asks_its_pods() -> None:
    assert not pods_to_ask(deployment(), "abc")  # the operator adds the label: a roll is needed
    assert not pods_to_ask(deployment(labelled=True), None)
    marked = merge_patch(deployment(), desired_patch(deployment(), "abc"))
    assert not pods_to_ask(marked, "def")  # a template the operator marked is marked again


class _NoWorkloads:
    """The caches after a workload was deleted."""

    def get(self, rt: object, namespace: str, name: str) -> None:
        return None


def test_a_deleted_workload_leaves_nothing_remembered() -> None:
    reconciler = OptInReconciler(client=None, caches=_NoWorkloads())  # type: ignore[arg-type]
    key = ("demo", "Deployment", "web")
    reconciler._written_over[key] = "41"  # written, then deleted before the echo came
    assert reconciler.reconcile(key) is None
    assert key not in reconciler._written_over
