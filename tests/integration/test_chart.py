"""The Helm chart ``charts/stash``: linted, rendered by the real helm (built from the Go module
proxy), and never drifting from ``manifests/``: with its defaults it renders exactly the objects
``kubectl kustomize manifests/`` does, and with cert-manager those of
``manifests/cert-manager/``. (Its install on the real node is in test_demo.py.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from api.crd import all_crds
from api.objects import JSON
from devcluster import ensure_binaries
from devcluster.build import Binaries

PROJECT = Path(__file__).resolve().parents[2]
CHART = PROJECT / "charts" / "stash"
Key = tuple[str, str, str, str]


@pytest.fixture(scope="module")
def binaries() -> Binaries:
    return ensure_binaries(progress=lambda _: None)


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _objects(text: str) -> dict[Key, JSON]:
    found: dict[Key, JSON] = {}
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        meta = doc["metadata"]
        key = (doc["apiVersion"], doc["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in found, f"{key} rendered twice"
        found[key] = doc
    return found


def _helm(binaries: Binaries, *values: str, namespace: str = "stash") -> dict[Key, JSON]:
    args = [str(binaries.helm), "template", "stash", str(CHART), f"--namespace={namespace}"]
    args += ["--include-crds", *(f"--set={v}" for v in values)]
    return _objects(_run(*args))


def _kustomize(binaries: Binaries, directory: Path) -> dict[Key, JSON]:
    objects = _objects(_run(str(binaries.kubectl), "kustomize", str(directory)))
    # The chart installs into the release's namespace (helm --create-namespace), never owns it.
    return {k: v for k, v in objects.items() if k[1] != "Namespace"}


def _differences(chart: dict[Key, JSON], manifests: dict[Key, JSON]) -> list[str]:
    problems = [f"only in the chart: {k}" for k in chart.keys() - manifests.keys()]
    problems += [f"only in manifests/: {k}" for k in manifests.keys() - chart.keys()]
    problems += [
        f"{k} differs:\n{yaml.safe_dump(chart[k])}\nvs manifests/:\n{yaml.safe_dump(manifests[k])}"
        for k in sorted(chart.keys() & manifests.keys())
        if chart[k] != manifests[k]
    ]
    return problems


def test_the_chart_passes_helm_lint_in_both_certificate_modes(binaries: Binaries) -> None:
    _run(str(binaries.helm), "lint", "--strict", str(CHART))
    _run(
        str(binaries.helm), "lint", "--strict", str(CHART), "--set=certificates.source=cert-manager"
    )


def test_the_charts_defaults_render_what_kustomize_renders_of_manifests(
    binaries: Binaries,
) -> None:
    chart = _helm(binaries)
    assert not _differences(chart, _kustomize(binaries, PROJECT / "manifests"))
    crds = {k[3] for k in chart if k[1] == "CustomResourceDefinition"}
    assert crds == {crd["metadata"]["name"] for crd in all_crds()}


def test_the_cert_manager_values_render_what_manifests_cert_manager_renders(
    binaries: Binaries,
) -> None:
    chart = _helm(binaries, "certificates.source=cert-manager")
    manifests = _kustomize(binaries, PROJECT / "manifests" / "cert-manager")
    assert not _differences(chart, manifests)


def test_another_namespace_is_used_everywhere_the_operators_namespace_is(
    binaries: Binaries,
) -> None:
    chart = _helm(binaries, "certificates.source=cert-manager", namespace="backup-system")
    namespaced = [k for k in chart if k[2]]
    assert namespaced
    assert {k[2] for k in namespaced} == {"backup-system"}
    text = yaml.safe_dump_all(list(chart.values()))
    assert "namespace: stash\n" not in text
    assert ".stash.svc" not in text
    mwc = chart[
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", "stash-webhook")
    ]
    (hook,) = mwc["webhooks"]
    assert hook["clientConfig"]["service"]["namespace"] == "backup-system"
    (excluded,) = hook["namespaceSelector"]["matchExpressions"]
    assert excluded["values"] == ["kube-system", "backup-system"]
    assert mwc["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "backup-system/stash-webhook"
    }


def test_the_values_reach_the_objects(binaries: Binaries) -> None:
    chart = _helm(
        binaries,
        "image.repository=registry.example/stash",
        "image.tag=v1.2.3",
        "operator.replicas=3",
        "webhook.failurePolicy=Fail",
        "webhook.excludeNamespaces={team-a}",
        "pushgateway.enabled=false",
        "rbac.userRoles=false",
    )
    deployment = chart[("apps/v1", "Deployment", "stash", "stash-operator")]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["operator", "webhook"]
    for container in pod["containers"]:
        assert container["image"] == "registry.example/stash:v1.2.3"
        assert not any(a.startswith("--pushgateway-url") for a in container["args"])
        image_env = next(e for e in container["env"] if e["name"] == "STASH_IMAGE")
        assert image_env["value"] == "registry.example/stash:v1.2.3"  # sidecars and Jobs too
    mwc = chart[
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", "stash-webhook")
    ]
    (hook,) = mwc["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "kube-system",
        "stash",
        "team-a",
    ]
    assert ("v1", "Service", "stash", "stash-pushgateway") not in chart
    kinds = {(k[1], k[3]) for k in chart}
    assert ("ClusterRole", "stash-edit") not in kinds
    assert ("ClusterRole", "stash-operator") in kinds


def test_the_monitoring_values_render_what_manifests_monitoring_renders(
    binaries: Binaries,
) -> None:
    chart = _helm(
        binaries,
        "monitoring.prometheusRule=true",
        "monitoring.podMonitors=true",
        "monitoring.dashboard=true",
    )
    manifests = {
        **_kustomize(binaries, PROJECT / "manifests"),
        **_kustomize(binaries, PROJECT / "manifests" / "monitoring"),
    }
    assert not _differences(chart, manifests)
    moved = _helm(binaries, "monitoring.prometheusRule=true", namespace="observability")
    rule = moved[("monitoring.coreos.com/v1", "PrometheusRule", "observability", "stash")]
    assert "{{ $labels.invoker_name }}" in yaml.safe_dump(rule)  # Prometheus's, not Helm's


def test_the_client_ca_value_renders_what_the_client_auth_component_renders(
    binaries: Binaries, tmp_path: Path
) -> None:
    """Only the API server may call the webhook, installed either way alike."""
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    args = [str(binaries.helm), "template", "stash", str(CHART), "--namespace=stash"]
    chart = _objects(_run(*args, "--include-crds", f"--set-file=webhook.clientCA={ca}"))
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "ca.crt").write_text(ca.read_text())
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(PROJECT / "manifests", overlay)],
        "components": [os.path.relpath(PROJECT / "manifests" / "webhook" / "client-auth", overlay)],
        "configMapGenerator": [
            {
                "name": "stash-webhook-client-ca",
                "namespace": "stash",
                "files": ["ca.crt"],
                "options": {
                    "disableNameSuffixHash": True,
                    "labels": {"app.kubernetes.io/name": "stash"},
                },
            }
        ],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    assert not _differences(chart, _kustomize(binaries, overlay))
    pod = chart[("apps/v1", "Deployment", "stash", "stash-operator")]["spec"]["template"]["spec"]
    webhook = next(c for c in pod["containers"] if c["name"] == "webhook")
    assert "--client-ca-file=/var/run/stash/client-ca/ca.crt" in webhook["args"]
    config = chart[("v1", "ConfigMap", "stash", "stash-webhook-client-ca")]
    assert config["data"]["ca.crt"] == ca.read_text()
