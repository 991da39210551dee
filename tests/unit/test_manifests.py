"""Hand-written manifests stay in step with the code that also builds them."""

from __future__ import annotations

import tomllib

import yaml

from cli.main import build_parser
from devcluster.build import RESTIC_VERSION
from tests.manifests import ROOT, load_all
from webhook.registration import webhook_configuration

WEBHOOK_DIR = ROOT / "manifests" / "webhook"


def test_the_webhook_manifest_is_what_registration_builds() -> None:
    (doc,) = load_all(WEBHOOK_DIR / "mutatingwebhookconfiguration.yaml")
    assert doc == webhook_configuration(operator_namespace="stash", service="stash-webhook")


def test_the_cert_manager_variant_differs_only_by_the_ca_injection_annotation() -> None:
    (plain,) = load_all(WEBHOOK_DIR / "mutatingwebhookconfiguration.yaml")
    (injected,) = load_all(WEBHOOK_DIR / "cert-manager" / "mutatingwebhookconfiguration.yaml")
    annotations = injected["metadata"].pop("annotations")
    assert annotations == {"cert-manager.io/inject-ca-from": "stash/stash-webhook"}
    assert injected == plain


def test_the_cert_manager_certificate_covers_the_service_names() -> None:
    docs = {
        (d["kind"], d["metadata"]["name"]): d
        for d in load_all(WEBHOOK_DIR / "cert-manager" / "certificate.yaml")
    }
    cert = docs[("Certificate", "stash-webhook")]
    assert cert["spec"]["secretName"] == "stash-webhook-tls"
    assert cert["spec"]["dnsNames"] == [
        "stash-webhook",
        "stash-webhook.stash",
        "stash-webhook.stash.svc",
        "stash-webhook.stash.svc.cluster.local",
    ]
    assert docs[("Issuer", "stash-ca")]["spec"]["ca"]["secretName"] == "stash-webhook-ca"


def test_no_rbac_rule_grants_wildcards() -> None:
    for path in (ROOT / "manifests" / "rbac").glob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            for rule in doc.get("rules", []) if doc else []:
                assert "*" not in rule["verbs"], path
                assert "*" not in rule["resources"], path


def test_the_operator_pod_runs_non_root_read_only_with_probes_and_limits() -> None:
    docs = list(
        yaml.safe_load_all((ROOT / "manifests" / "operator" / "deployment.yaml").read_text())
    )
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert [c["name"] for c in pod["containers"]] == ["operator", "webhook", "pushgateway"]
    for container in pod["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, container["name"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        if container["name"] != "pushgateway":  # probed through the operator's door: no
            assert container["livenessProbe"], container["name"]  # liveness tied to it
        assert container["readinessProbe"], container["name"]
        assert container["resources"]["limits"]["memory"], container["name"]


def test_the_image_holds_every_package_the_project_ships() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    for package in (p for p in packages if "." not in p):  # a subpackage comes with its parent
        assert f"COPY {package} {package}" in dockerfile, package


def test_every_container_of_the_operator_pod_runs_a_command_line_the_cli_accepts() -> None:
    docs = list(
        yaml.safe_load_all((ROOT / "manifests" / "operator" / "deployment.yaml").read_text())
    )
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    for container in pod["containers"]:
        if container["image"].startswith("stash-py"):
            args = build_parser().parse_args(container["args"])
            assert args.func is not None, container["name"]
    operator = build_parser().parse_args(pod["containers"][0]["args"])
    assert operator.health_port == 8081


def test_the_image_copies_the_restic_the_tests_run_and_no_other() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pinned = RESTIC_VERSION.removeprefix("v")
    assert f"FROM docker.io/restic/restic:{pinned} AS restic" in dockerfile
    assert "COPY --from=restic /usr/bin/restic /usr/local/bin/restic" in dockerfile
    # Debian's restic (0.14) must not come back through apt.
    installs = [line for line in dockerfile.splitlines() if "apt-get install" in line]
    assert installs
    assert not any("restic" in line for line in installs)


def test_the_pushgateway_listens_on_the_pods_loopback_and_only_the_operator_writes_to_it() -> None:
    docs = list(
        yaml.safe_load_all((ROOT / "manifests" / "operator" / "deployment.yaml").read_text())
    )
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert "--web.listen-address=127.0.0.1:9091" in containers["pushgateway"]["args"]
    assert "ports" not in containers["pushgateway"]
    operator = containers["operator"]["args"]
    assert "--pushgateway-url=http://127.0.0.1:9091" in operator
    assert "--pushgateway-read-port=56789" in operator
    assert {"name": "pushgateway", "containerPort": 56789} in containers["operator"]["ports"]
    # no other container is told where metrics go: nothing but the operator pushes
    for name in ("webhook",):
        assert not any("pushgateway" in a for a in containers[name]["args"]), name


def test_the_network_policy_opens_the_webhook_to_all_and_metrics_to_labelled_namespaces() -> None:
    policy = yaml.safe_load((ROOT / "manifests" / "operator" / "networkpolicy.yaml").read_text())
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    webhook, metrics = policy["spec"]["ingress"]
    assert webhook == {"ports": [{"protocol": "TCP", "port": 8443}]}
    assert [p["port"] for p in metrics["ports"]] == [56789, 8081, 8082]
    assert {"podSelector": {}} in metrics["from"]
    assert {
        "namespaceSelector": {"matchLabels": {"stash.appscode.com/scrape-metrics": "true"}}
    } in metrics["from"]
    kustomization = yaml.safe_load(
        (ROOT / "manifests" / "operator" / "kustomization.yaml").read_text()
    )
    assert "networkpolicy.yaml" in kustomization["resources"]
