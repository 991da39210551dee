"""Monitoring, proven against the real thing: the alerts pass ``promtool check rules`` and
their unit tests (``promtool test rules``), and a real Prometheus scraping the real
Pushgateway, the operator's ``/metrics`` and the webhook's after a real backup on the node
finds data for every panel of the dashboard and evaluates every alert without an error."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from api.constants import WEBHOOK_PATH
from api.objects import JSON
from cli import kubectl
from devcluster import ControlPlane, services
from devcluster.cluster import free_port
from devcluster.images import Images
from devcluster.services import Service
from kube import Client
from kube.sessions import create_session
from kube.types import BACKUP_BATCHES, BACKUP_SESSIONS, CRONJOBS
from tests.factories import batch, member, pod, review
from tests.integration.helpers import WebhookProcess, running_operator
from tests.integration.objects import pvc, repository
from tests.integration.test_restic import make_data
from tests.waiting import eventually

PROJECT = Path(__file__).resolve().parents[2]
MONITORING = PROJECT / "charts" / "stash" / "monitoring"


def _rule_file(directory: Path) -> Path:
    """The PrometheusRule's groups as the plain rule file Prometheus and promtool read."""
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    path = directory / "stash-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_alerts_pass_promtool_and_their_unit_tests(tmp_path: Path) -> None:
    rules = _rule_file(tmp_path)
    checked = _promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 12 rules found" in checked.stdout
    cases = yaml.safe_load((PROJECT / "tests/fixtures/monitoring/alerts-test.yaml").read_text())
    cases["rule_files"] = [str(rules)]
    test_file = tmp_path / "alerts-test.yaml"
    test_file.write_text(yaml.safe_dump(cases, sort_keys=False))
    tested = _promtool("test", "rules", str(test_file))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = {t["alertname"] for c in cases["tests"] for t in c["alert_rule_test"]}
    every_alert = {
        r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]
    }
    assert tested_alerts == every_alert


def _panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets") or []
    ]


def _query(prometheus: Service, expr: str) -> JSON:
    url = f"http://127.0.0.1:{prometheus.port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expr}
    )
    with urllib.request.urlopen(url, timeout=10) as answer:
        found: JSON = json.load(answer)
    assert found["status"] == "success", found
    return found


@pytest.fixture
def webhook_process(
    control_plane: ControlPlane, images: Images, pushgateway: Service, tmp_path: Path
) -> Iterator[WebhookProcess]:
    (tmp_path / "webhook").mkdir()
    hook = WebhookProcess.start(
        control_plane.kubeconfig,
        tmp_path / "webhook",
        image=images.stash.name,
    )
    yield hook
    hook.stop()


def test_every_dashboard_panel_has_data_and_every_alert_evaluates_after_a_real_backup(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    images: Images,
    pushgateway: Service,
    webhook_process: WebhookProcess,
    tmp_path: Path,
) -> None:
    health = free_port()
    prometheus = services.prometheus(
        tmp_path / "prometheus",
        [
            {
                "job_name": "stash-pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{pushgateway.port}"]}],
            },
            {
                "job_name": "stash-operator",
                "static_configs": [{"targets": [f"127.0.0.1:{health}"]}],
            },
            {  # its health port: the webhook's own answers the API server's certificate only
                "job_name": "stash-webhook",
                "static_configs": [{"targets": [f"127.0.0.1:{webhook_process.health_port}"]}],
            },
        ],
        [_rule_file(tmp_path)],
    )
    try:
        shared = _pvc_member(kube, namespace, tmp_path)
        with running_operator(
            control_plane.kubeconfig,
            image=images.stash.name,
            pushgateway_url=pushgateway.url,
            health_port=health,
        ):
            # Every minute: the CronJob's slots give the schedule's metrics too.
            kube.create(batch("nightly", namespace, shared, schedule="* * * * *"), namespace)
            eventually(
                lambda: (
                    (kube.get(BACKUP_BATCHES, "nightly", namespace).get("status") or {}).get(
                        "phase"
                    )
                    == "Ready"
                ),
                30,
                "the BackupBatch to be Ready",
            )
            # A slot of the CronJob may start a session first (this one is then Skipped, and
            # goes with the history): whichever runs, one succeeds.
            create_session(kube, "BackupBatch", "nightly", namespace)
            eventually(
                lambda: _one_succeeded(kube, namespace), 240, "a backup on the node to succeed"
            )
            eventually(
                lambda: (
                    kube.get(CRONJOBS, "stash-trigger-nightly", namespace).get("status") or {}
                ).get("lastScheduleTime"),
                150,
                "the CronJob's first slot",
            )
            # One admission: the webhook's request metrics.
            status, _ = webhook_process.request(
                "POST",
                WEBHOOK_PATH,
                json.dumps(review(pod(namespace=namespace), namespace=namespace)).encode(),
                {"Content-Type": "application/json"},
            )
            assert status == 200

            missing: list[str] = []

            def every_panel_has_data() -> bool:
                missing[:] = [
                    title
                    for title, expr in _panel_queries()
                    if not _query(prometheus, expr)["data"]["result"]
                ]
                return not missing

            try:
                eventually(every_panel_has_data, 120, "data for every panel")
            except pytest.fail.Exception:
                pytest.fail(f"panels without data: {missing}")

            def rules_evaluated() -> list[JSON] | None:
                url = f"http://127.0.0.1:{prometheus.port}/api/v1/rules"
                with urllib.request.urlopen(url, timeout=10) as answer:
                    groups = json.load(answer)["data"]["groups"]
                found = [r for g in groups for r in g["rules"]]
                return (
                    found
                    if all(r.get("lastEvaluation", "").startswith("2") for r in found)
                    else None
                )

            evaluated = eventually(rules_evaluated, 60, "every rule to be evaluated")
    finally:
        prometheus.stop()
    assert len(evaluated) == 12
    assert [
        (r["name"], r["health"], r.get("lastError", "")) for r in evaluated if r["health"] != "ok"
    ] == []
    firing = {r["name"] for r in evaluated if r.get("state") == "firing"}
    assert firing == set(), firing  # the backup succeeded and everything answers


def _pvc_member(kube: Client, namespace: str, tmp_path: Path) -> JSON:
    """A Repository and PVC ``shared`` with data in ``namespace``, and the member backing it up
    through pvc-backup."""
    data = make_data(tmp_path / "pvc")
    repository(kube, namespace, tmp_path / "repo")
    pvc(kube, namespace, "shared", data)
    shared = member("PersistentVolumeClaim", "shared", mounts=(("shared", str(data)),))
    shared["task"] = {"name": "pvc-backup"}
    return shared


def _one_succeeded(kube: Client, namespace: str) -> str | None:
    """The name of a Succeeded session in ``namespace``, if one is."""
    listed = kube.list(BACKUP_SESSIONS, namespace)["items"]
    return next(
        (
            s["metadata"]["name"]
            for s in listed
            if (s.get("status") or {}).get("phase") == "Succeeded"
        ),
        None,
    )


def _firing(prometheus: Service, alert: str) -> list[JSON]:
    url = f"http://127.0.0.1:{prometheus.port}/api/v1/alerts"
    with urllib.request.urlopen(url, timeout=10) as answer:
        alerts = json.load(answer)["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("alertname") == alert and a["state"] == "firing"]


def _stale(kube: Client, namespace: str, name: str) -> JSON:
    invoker = kube.get(BACKUP_BATCHES, name, namespace)
    return next(
        (
            c
            for c in (invoker.get("status") or {}).get("conditions") or []
            if c["type"] == "BackupStale"
        ),
        {},
    )


def test_an_invoker_whose_slots_stopped_producing_sessions_is_stale_and_its_alert_fires(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    images: Images,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    health = free_port()
    prometheus = services.prometheus(
        tmp_path / "prometheus",
        [{"job_name": "stash-operator", "static_configs": [{"targets": [f"127.0.0.1:{health}"]}]}],
        [_rule_file(tmp_path)],
    )
    quota_type = kube.resource_type("v1", "ResourceQuota")
    try:
        shared = _pvc_member(kube, namespace, tmp_path)
        # The trigger CronJob's pods are refused from the start: its slots come, no session does
        # (a quota used up is one way a cluster quietly stops backing up).
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "no-pods"},
                "spec": {"hard": {"pods": "0"}},
            },
            namespace,
        )
        with running_operator(
            control_plane.kubeconfig, image=images.stash.name, health_port=health
        ):
            kube.create(batch("nightly", namespace, shared, schedule="* * * * *"), namespace)
            eventually(
                lambda: _stale(kube, namespace, "nightly").get("reason") == "BackupRecent",
                30,
                "the invoker judged, not stale yet",
            )
            eventually(
                lambda: _stale(kube, namespace, "nightly").get("status") == "True",
                200,
                "two slots to pass and the invoker to be named stale",
            )
            said = _stale(kube, namespace, "nightly")
            assert "no backup session of it has succeeded since it was created" in said["message"]
            assert kube.list(BACKUP_SESSIONS, namespace)["items"] == []
            assert (
                eventually(
                    lambda: _firing(prometheus, "StashBackupStale"), 60, "the alert to fire"
                )[0]["labels"]["invoker_name"]
                == "nightly"
            )

            assert (
                kubectl.main(
                    ["status", "-n", namespace, "--kubeconfig", str(control_plane.kubeconfig)]
                )
                == 0
            )
            table = capsys.readouterr().out.splitlines()
            assert table[0].split() == [
                "INVOKER",
                "SCHEDULE",
                "LAST",
                "GOOD",
                "BACKUP",
                "ENDED",
                "AGE",
                "STALE",
                "VERIFIED",
            ]
            assert table[1].split()[0] == "backupbatch/nightly"
            assert table[1].split()[-3:] == ["-", "yes", "never"]

            # Pods allowed again and a backup that succeeds: no longer stale, the alert ends.
            kube.delete(quota_type, "no-pods", namespace)
            # The CronJob's waiting Job may now start a session too: whichever runs, one succeeds.
            create_session(kube, "BackupBatch", "nightly", namespace)

            eventually(
                lambda: _one_succeeded(kube, namespace), 240, "a backup on the node to succeed"
            )
            eventually(
                lambda: _stale(kube, namespace, "nightly").get("status") == "False",
                30,
                "the invoker to be fresh again",
            )
            said = _stale(kube, namespace, "nightly")["message"]
            assert "its last successful backup session" in said
            eventually(lambda: not _firing(prometheus, "StashBackupStale"), 60, "the alert to end")
    finally:
        prometheus.stop()
