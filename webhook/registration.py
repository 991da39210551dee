"""The MutatingWebhookConfiguration ``stash-webhook`` (DESIGN.md section 4), built and applied.

Pods only reach the webhook when they carry the opt-in label (``objectSelector``) and are not in
kube-system or the operator's own namespace (``namespaceSelector``); ``failurePolicy: Ignore``
by default, so a webhook that is down never blocks a pod.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from api.constants import BACKUP_LABEL, BACKUP_LABEL_VALUE, GROUP, WEBHOOK_NAME, WEBHOOK_PATH
from kube import Client

FailurePolicy = Literal["Ignore", "Fail"]
WEBHOOK_FIELD_MANAGER = "stash-webhook"


def webhook_configuration(
    *,
    operator_namespace: str,
    ca_bundle: bytes | None = None,
    url: str | None = None,
    service: str | None = None,
    service_port: int = 443,
    failure_policy: FailurePolicy = "Ignore",
    timeout_seconds: int = 5,
) -> dict[str, Any]:
    """The configuration, pointing at ``url`` (local use) or at ``service`` in the namespace."""
    if (url is None) == (service is None):
        raise ValueError("give exactly one of url and service")
    client_config: dict[str, Any]
    if url is not None:
        client_config = {"url": url}
    else:
        client_config = {
            "service": {
                "namespace": operator_namespace,
                "name": service,
                "path": WEBHOOK_PATH,
                "port": service_port,
            }
        }
    if ca_bundle:
        client_config["caBundle"] = base64.b64encode(ca_bundle).decode()
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": WEBHOOK_NAME,
            "labels": {"app.kubernetes.io/name": "stash", "app.kubernetes.io/component": "webhook"},
        },
        "webhooks": [
            {
                "name": f"pods.{GROUP}",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": failure_policy,
                "reinvocationPolicy": "IfNeeded",
                "matchPolicy": "Equivalent",
                "timeoutSeconds": timeout_seconds,
                "clientConfig": client_config,
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "objectSelector": {"matchLabels": {BACKUP_LABEL: BACKUP_LABEL_VALUE}},
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": ["kube-system", operator_namespace],
                        }
                    ]
                },
            }
        ],
    }


def register(client: Client, configuration: dict[str, Any]) -> dict[str, Any]:
    """Create or update the configuration (server-side apply, so reruns change nothing)."""
    return client.apply(configuration, field_manager=WEBHOOK_FIELD_MANAGER)
