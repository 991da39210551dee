"""Retention for every target from one listing (``engine.retention``) removes exactly what
restic's own ``forget --tag target:… <policy>`` removes, on a real repository whose snapshots
span hours, days, weeks, months and years, several time zones, hosts, paths and targets."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from api.common import RetentionPolicy
from engine.restic import Snapshot, retention_flags
from engine.retention import plan

PASSWORD = "retention-pw-0b7d"
TARGETS = ("target:Deployment/web", "target:PersistentVolumeClaim/data")
ZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Pacific/Auckland")
POLICIES = [
    RetentionPolicy(name="last-3", keep_last=3),
    RetentionPolicy(name="hourly", keep_hourly=4, keep_daily=2),
    RetentionPolicy(name="calendar", keep_daily=3, keep_weekly=2, keep_monthly=2, keep_yearly=2),
    RetentionPolicy(name="yearly", keep_yearly=1),
    RetentionPolicy(name="tags", keep_last=1, keep_tags=["keep", "gold,silver"]),
    RetentionPolicy(name="only-tags", keep_tags=["keep"]),
    RetentionPolicy(name="big", keep_last=50, keep_monthly=12),
]


def _restic(repo: Path, *args: str, zone: str = "UTC") -> str:
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD, "TZ": zone}
    env["RESTIC_CACHE_DIR"] = str(repo.parent / "cache")
    done = subprocess.run(
        ["restic", *args], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Snapshot]]:
    """A repository of 26 snapshots at chosen times (some sharing an hour, a day, a week)."""
    root = tmp_path_factory.mktemp("retention")
    repo = root / "repo"
    _restic(repo, "init")
    for name in ("a", "b"):
        (root / name).mkdir()
        (root / name / "f").write_text(name)
    rng = random.Random(7)  # noqa: S311 - reproducible times, not secrets
    stamps = [
        "2023-12-31 23:30:00",
        "2024-01-01 00:10:00",
        "2024-01-01 00:50:00",
        "2024-01-01 09:00:00",
        "2024-01-07 12:00:00",
        "2024-01-08 12:00:00",
        "2024-02-29 23:59:00",
        "2024-03-01 00:01:00",
        "2024-03-01 00:02:00",
        "2024-06-15 08:00:00",
        "2024-06-15 08:30:00",
        "2024-06-16 08:00:00",
        "2024-12-30 10:00:00",
        "2025-01-05 10:00:00",
    ]
    for index, planned in enumerate(stamps * 2):
        target = TARGETS[index % 2] if index < len(stamps) else TARGETS[rng.randrange(2)]
        host = "host-0" if index % 3 else "host-1"
        path = str(root / ("a" if index % 4 else "b"))
        tags = [target, f"session:s-{index}"]
        if index % 7 == 0:
            tags.append("keep")
        if index % 5 == 0:
            tags += ["gold", "silver"]
        elif index % 5 == 1:
            tags.append("gold")
        stamp = planned
        if index >= len(stamps):  # the second round at other minutes, in other zones
            stamp = planned[:14] + f"{rng.randrange(60):02d}" + planned[16:]
        _restic(
            repo,
            "backup",
            "--quiet",
            "--host",
            host,
            "--time",
            stamp,
            *(f"--tag={t}" for t in tags),
            path,
            zone=ZONES[index % len(ZONES)],
        )
    listing = [Snapshot.from_json(doc) for doc in json.loads(_restic(repo, "snapshots", "--json"))]
    assert len(listing) == len(stamps) * 2
    return repo, listing


@pytest.mark.integration
@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_one_listing_removes_exactly_what_restic_forget_removes_per_target(
    repository: tuple[Path, list[Snapshot]], policy: RetentionPolicy
) -> None:
    repo, listing = repository
    ours = {t.tag: {s.id for s in t.removed} for t in plan(listing, policy, TARGETS)}
    for tag in TARGETS:
        ours_tag = next(t for t in plan(listing, policy, [tag]))
        try:
            out = _restic(
                repo, "forget", "--dry-run", "--json", "--tag", tag, *retention_flags(policy)
            )
        except subprocess.CalledProcessError as exc:
            words = json.loads(exc.stderr.splitlines()[-1])["message"]
            assert words.startswith("refusing to delete last snapshot"), words
            assert ours_tag.refused, f"{policy.name} on {tag}: restic refused ({words})"
            assert not ours_tag.removed
            continue
        assert not ours_tag.refused
        groups = json.loads(next(line for line in out.splitlines() if line.startswith("[")))
        theirs = {s["id"] for g in groups for s in g.get("remove") or []}
        kept = {s["id"] for g in groups for s in g.get("keep") or []}
        assert ours[tag] == theirs, f"{policy.name} on {tag}"
        assert {s.id for s in ours_tag.kept} == kept
    assert any(ours.values()) or policy.name in ("big", "only-tags"), "it removes something"
