"""What the fact reader says of a storage Secret: its keys (never its values), read again only
after a few seconds, and a missing Secret looked for every time."""

from __future__ import annotations

import base64
from typing import Any

from api.objects import JSON
from controller.invokers.facts import SECRET_KEYS_TTL, FactReader
from kube import NotFound


class _Secrets:
    """The API server's Secrets, by (namespace, name), as GET answers them."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], dict[str, str]] = {}

    def request(self, method: str, path: str, **_: Any) -> JSON:
        parts = path.strip("/").split("/")  # api/v1/namespaces/<ns>/secrets/<name>
        key = (parts[3], parts[5])
        if key not in self.stored:
            raise NotFound(message=f"secrets {parts[5]} not found", status=404)
        data = {k: base64.b64encode(v.encode()).decode() for k, v in self.stored[key].items()}
        return {"kind": "Secret", "data": data}


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reader() -> tuple[FactReader, _Secrets, _Clock]:
    secrets, clock = _Secrets(), _Clock()
    return FactReader(secrets, None, "stash", clock=clock), secrets, clock  # type: ignore[arg-type]


def test_a_secret_gives_its_keys_and_never_its_values() -> None:
    facts, secrets, _ = reader()
    secrets.stored[("demo", "repo-secret")] = {"RESTIC_PASSWORD": "s3cr3t-value"}
    keys = facts.secret_keys("demo", "repo-secret")
    assert keys == frozenset({"RESTIC_PASSWORD"})
    assert "s3cr3t-value" not in repr(facts.__dict__)


def test_keys_read_moments_ago_answer_until_they_are_old() -> None:
    facts, secrets, clock = reader()
    secrets.stored[("demo", "repo-secret")] = {"RESTIC_PASSWORD": "x"}
    assert facts.secret_keys("demo", "repo-secret") == frozenset({"RESTIC_PASSWORD"})
    secrets.stored[("demo", "repo-secret")] = {"AWS_ACCESS_KEY_ID": "y"}
    clock.now += SECRET_KEYS_TTL / 2
    assert facts.secret_keys("demo", "repo-secret") == frozenset({"RESTIC_PASSWORD"})
    clock.now += SECRET_KEYS_TTL
    assert facts.secret_keys("demo", "repo-secret") == frozenset({"AWS_ACCESS_KEY_ID"})
    del secrets.stored[("demo", "repo-secret")]
    clock.now += SECRET_KEYS_TTL
    assert facts.secret_keys("demo", "repo-secret") is None


def test_a_missing_secret_is_seen_as_soon_as_it_is_created() -> None:
    facts, secrets, _ = reader()
    assert facts.secret_keys("demo", "later") is None
    secrets.stored[("demo", "later")] = {"RESTIC_PASSWORD": "x"}
    assert facts.secret_keys("demo", "later") == frozenset({"RESTIC_PASSWORD"})
    assert facts.secret_keys("prod", "later") is None  # another namespace's is another Secret
