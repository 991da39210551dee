"""A sidecar's permissions as the API server answers them: a yes kept a minute, a no seconds."""

from __future__ import annotations

from typing import Any

from controller.invokers.sidecar_access import AccessReviewer, Permission


class _Server:
    """Answers SubjectAccessReviews as its current RBAC says."""

    def __init__(self) -> None:
        self.allowed = False
        self.asked = 0

    def create(self, review: dict[str, Any]) -> dict[str, Any]:
        self.asked += 1
        return {**review, "status": {"allowed": self.allowed}}


def test_a_refusal_is_asked_again_seconds_later_and_a_yes_is_kept_a_minute() -> None:
    server, now = _Server(), [0.0]
    reviewer = AccessReviewer(server, clock=lambda: now[0])  # type: ignore[arg-type]
    watch = (Permission("watch", "backupsessions"),)
    assert reviewer.missing("demo", "default", watch) == ["watch backupsessions.stash.appscode.com"]
    server.allowed = True  # the RoleBinding reaches the authorizer
    now[0] = 1.0
    assert reviewer.missing("demo", "default", watch), "still the no just read"
    now[0] = 4.0
    assert reviewer.missing("demo", "default", watch) == []
    server.allowed = False
    now[0] = 50.0
    assert reviewer.missing("demo", "default", watch) == [], "a yes holds for a minute"
    now[0] = 65.0
    assert reviewer.missing("demo", "default", watch) != []
